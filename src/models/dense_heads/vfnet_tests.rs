//! `VFNetHead` and `VarifocalLoss` against MMDetection's own
//! (`tests/models/vfnet_reference.py`, run once per test process), for the
//! vfnet/ configs' head (ATSS, varifocal loss) and for a variant (FCOS's
//! assignment with centre sampling, focal loss, stride-scaled boxes, no
//! norm, DCNv2 last tower convs, `gradient_mul` 0.5, positives not
//! averaged): names, shapes and
//! init; on MMDetection's perturbed weights the three losses (an image
//! without ground truth in the batch), every gradient, and the detections
//! with and without rescaling; the loss alone, with and without IoU weights.

use std::sync::OnceLock;

use tch::nn::VarStore;
use tch::Device;

use super::*;
use crate::models::layers::fixtures::{assert_close, script_state_dict, tensor, StateDict};
use crate::models::losses::VarifocalLoss;

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/vfnet_reference.py", "detc-vfnet", "vfnet.pth"))
}

fn fx(key: &str) -> Tensor {
    tensor(fixture(), key)
}

/// `CASES` of the reference script.
fn vfnet_cfg(case: &str) -> (VFNetHeadConfig, RpnTrainConfig, DenseTestConfig) {
    let mut head = serde_json::json!({
        "num_classes": 3, "in_channels": 8, "stacked_convs": 2, "feat_channels": 8, "strides": [8, 16, 32],
        "regress_ranges": [[-1.0, 64.0], [64.0, 128.0], [128.0, 1e8]],
        "norm_cfg": {"type": "GN", "num_groups": 4, "requires_grad": true},
        "anchor_generator": {"type": "AnchorGenerator", "ratios": [1.0], "octave_base_scale": 8, "scales_per_octave": 1,
                             "center_offset": 0.0, "strides": [8, 16, 32]},
        "loss_cls": {"type": "VarifocalLoss", "use_sigmoid": true, "alpha": 0.75, "gamma": 2.0, "iou_weighted": true, "loss_weight": 1.0},
        "loss_bbox": {"type": "GIoULoss", "loss_weight": 1.5},
        "loss_bbox_refine": {"type": "GIoULoss", "loss_weight": 2.0}
    });
    if case == "fcos" {
        let extra = serde_json::json!({"use_atss": false, "use_vfl": false, "center_sampling": true, "bbox_norm_type": "stride",
                                       "norm_cfg": null, "gradient_mul": 0.5, "sync_num_pos": false, "dcn_on_last_conv": true});
        head.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    }
    let train = serde_json::json!({"assigner": {"type": "ATSSAssigner", "topk": 9}, "allowed_border": -1, "pos_weight": -1, "debug": false});
    let test = serde_json::json!({"nms_pre": 50, "min_bbox_size": 0, "score_thr": 0.05,
                                  "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 20});
    (serde_json::from_value(head).unwrap(), serde_json::from_value(train).unwrap(), serde_json::from_value(test).unwrap())
}

fn check_case(case: &str) {
    let _seed = crate::models::layers::fixtures::seeded();
    let (cfg, train, test) = vfnet_cfg(case);
    let vs = VarStore::new(Device::Cpu);
    let head = VFNetHead::new(&cfg, Some(&train), Some(&test), &vs.root()).unwrap();
    let samples = || crate::models::dense_heads::base_dense_head::reference_samples(fx);
    crate::models::dense_heads::base_dense_head::check_head_case(
        fixture(),
        case,
        &vs,
        |x, reduce_mean| head.loss(x, &samples(), reduce_mean).unwrap(),
        |x, rescale| head.predict(x, &samples(), rescale).unwrap(),
    );
}

#[test]
fn vfnet_head_with_atss_and_varifocal_loss_equals_mmdet() {
    check_case("atss");
}

#[test]
fn vfnet_head_with_fcos_assignment_and_focal_loss_equals_mmdet() {
    check_case("fcos");
}

#[test]
fn varifocal_loss_equals_mmdet() {
    for iou_weighted in [true, false] {
        let cfg = serde_json::json!({"alpha": 0.6, "gamma": 1.5, "iou_weighted": iou_weighted, "loss_weight": 2.0});
        let loss = VarifocalLoss::new(&serde_json::from_value(cfg).unwrap()).unwrap();
        let pred = fx("vfl.pred").set_requires_grad(true);
        let weight = fx("vfl.weight");
        let value = loss.forward(&pred, &fx("vfl.target"), LossArgs::default().weight(&weight).avg_factor(3.0)).unwrap();
        let key = format!("vfl.{}", iou_weighted as i32);
        assert_close(&value, &fx(&format!("{key}.loss")), 1e-6, 1e-5, &format!("{key} loss"));
        value.backward();
        assert_close(&pred.grad(), &fx(&format!("{key}.grad")), 1e-6, 1e-5, &format!("{key} gradient"));
    }
}
