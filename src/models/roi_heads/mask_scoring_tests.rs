//! Mask Scoring R-CNN's `MaskScoringRoIHead` and `MaskIoUHead` against
//! MMDetection's own (`ms.*` and `msinit.*` of
//! `tests/models/two_stage_roi_reference.py`): the tiny head of the standard
//! RoI head's reference with a mask-IoU head, its losses (`loss_mask_iou`
//! on the IoUs of the binarised mask logits, the ground truth's area inside
//! each proposal counted), gradients, and predictions whose scores are the
//! class scores times the predicted mask IoU; the init of the mask-IoU head.

use detc::registry::models::roi_heads::MaskScoringRoIHeadConfig;
use detc::registry::models::train_test::RcnnTrainConfig;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::standard_roi_head::tests::{extractor, features, fx, load, proposals, samples};
use super::StandardRoIHead;
use crate::models::layers::fixtures::assert_close;

/// `e2e_cfg(False)` with `CFG_MASK_IOU` of the reference script.
fn ms_head(train: bool) -> (VarStore, StandardRoIHead) {
    let cfg = serde_json::json!({
        "bbox_roi_extractor": extractor(7),
        "bbox_head": {"type": "Shared2FCBBoxHead", "in_channels": 8, "fc_out_channels": 16, "roi_feat_size": 7,
                      "num_classes": 3, "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0}},
        "mask_roi_extractor": extractor(14),
        "mask_head": {"type": "FCNMaskHead", "num_convs": 2, "in_channels": 8, "roi_feat_size": 14,
                      "conv_out_channels": 8, "num_classes": 3},
        "mask_iou_head": {"type": "MaskIoUHead", "num_convs": 2, "num_fcs": 1, "roi_feat_size": 14, "in_channels": 8,
                          "conv_out_channels": 8, "fc_out_channels": 16, "num_classes": 3}
    });
    let train_cfg: RcnnTrainConfig = serde_json::from_value(serde_json::json!({
        "assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.5, "min_pos_iou": 0.5,
                     "match_low_quality": true, "ignore_iof_thr": -1},
        "sampler": {"type": "RandomSampler", "num": 512, "pos_fraction": 0.25, "neg_pos_ub": -1, "add_gt_as_proposals": true},
        "mask_size": 28, "pos_weight": -1, "mask_thr_binary": 0.5
    }))
    .unwrap();
    let test = serde_json::from_value(serde_json::json!({
        "score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 20, "mask_thr_binary": 0.5
    }))
    .unwrap();
    let cfg: MaskScoringRoIHeadConfig = serde_json::from_value(cfg).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let head = StandardRoIHead::mask_scoring(&cfg, train.then_some(&train_cfg), Some(&test), &vs.root()).unwrap();
    (vs, head)
}

#[test]
fn mask_iou_head_init_equals_mmdet() {
    let _seed = crate::models::layers::fixtures::seeded();
    let (vs, _head) = ms_head(false);
    let vars = vs.variables();
    for name in ["convs.0.weight", "convs.1.weight", "fcs.0.weight", "fc_mask_iou.weight", "convs.0.bias", "fc_mask_iou.bias"] {
        let ours = &vars[&format!("mask_iou_head.{name}")].to_kind(Kind::Double);
        let want = Vec::<f64>::try_from(fx(&format!("msinit.init.{name}"))).unwrap();
        let (std, max) = (ours.std(true).double_value(&[]), ours.abs().max().double_value(&[]));
        if want[1] == 0.0 {
            assert_eq!(max, 0.0, "{name}");
        } else {
            assert!((std / want[1] - 1.0).abs() < 0.2, "{name}: std {std} vs {}", want[1]);
        }
    }
}

#[test]
fn mask_scoring_roi_head_loss_and_grads_equal_mmdet() {
    let (vs, head) = ms_head(true);
    load(&vs, "ms");
    let x = features("ms");
    let losses = head.loss(&x, proposals(), &samples()).unwrap();
    let keys: Vec<&str> = losses.keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["loss_cls", "acc", "loss_bbox", "loss_mask", "loss_mask_iou"]);
    for (name, v) in &losses {
        assert_close(v, &fx(&format!("ms.out.{name}")), 1e-6, 1e-5, &format!("ms {name}"));
    }
    let total: Tensor = ["loss_cls", "loss_bbox", "loss_mask", "loss_mask_iou"].iter().map(|k| losses[*k].sum(Kind::Float)).sum();
    total.backward();
    let vars = vs.variables();
    let close = |got: &Tensor, key: &str| {
        let want = fx(&format!("ms.grad.{key}"));
        let tol = 1e-6 * want.abs().max().double_value(&[]).max(1.0);
        assert_close(got, &want, tol, 1e-5, &format!("ms grad {key}"));
    };
    for key in [
        "bbox_head.fc_cls.weight",
        "mask_head.convs.0.conv.weight",
        "mask_head.conv_logits.weight",
        "mask_iou_head.convs.0.weight",
        "mask_iou_head.convs.1.bias",
        "mask_iou_head.fcs.0.weight",
        "mask_iou_head.fc_mask_iou.weight",
        "mask_iou_head.fc_mask_iou.bias",
    ] {
        close(&vars[key].grad(), key);
    }
    for (i, t) in x.iter().enumerate() {
        close(&t.grad(), &format!("x.{i}"));
    }
}

#[test]
fn mask_scoring_roi_head_predict_equals_mmdet() {
    let (vs, head) = ms_head(false);
    load(&vs, "ms");
    let x = features("ms");
    for rescale in [true, false] {
        let res = tch::no_grad(|| head.predict(&x, proposals(), &samples(), rescale)).unwrap();
        for (i, r) in res.iter().enumerate() {
            let p = format!("ms.pred{}.{i}", rescale as i32);
            let want = |k: &str| fx(&format!("{p}.{k}"));
            assert_close(&r.bboxes, &want("bboxes"), 1e-4, 1e-5, &format!("{p} bboxes"));
            assert_close(&r.scores, &want("scores"), 1e-5, 1e-5, &format!("{p} scores"));
            assert_eq!(r.labels, want("labels"), "{p} labels");
            let differ = r.masks.as_ref().unwrap().ne_tensor(&want("masks")).sum(Kind::Int64).int64_value(&[]);
            assert_eq!(differ, 0, "{p}: {differ} mask pixels differ");
        }
    }
}
