//! `ATSSHead` and `ATSSAssigner` against MMDetection's own
//! (`tests/models/atss_reference.py`, run once per test process), for the
//! atss/ configs' head and for a variant (two anchors per location, topk 3,
//! border anchors dropped, weighted positives, 1x1 predictors, no norm):
//! names, shapes and init; on MMDetection's perturbed weights the three
//! losses (an image without ground truth in the batch), every gradient, and
//! the detections with and without rescaling; the assigner alone with an
//! ignored box.

use std::sync::OnceLock;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::*;
use crate::models::layers::fixtures::{script_state_dict, tensor, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/atss_reference.py", "detc-atss", "atss.pth"))
}

fn fx(key: &str) -> Tensor {
    tensor(fixture(), key)
}

/// `CASES` of the reference script.
fn atss_cfg(case: &str) -> (ATSSHeadConfig, RpnTrainConfig, DenseTestConfig) {
    let mut head = serde_json::json!({
        "num_classes": 3, "in_channels": 8, "stacked_convs": 2, "feat_channels": 8,
        "norm_cfg": {"type": "GN", "num_groups": 4, "requires_grad": true},
        "anchor_generator": {"type": "AnchorGenerator", "ratios": [1.0], "octave_base_scale": 8, "scales_per_octave": 1,
                             "strides": [8, 16, 32]},
        "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0, 0.0, 0.0, 0.0], "target_stds": [0.1, 0.1, 0.2, 0.2]},
        "loss_cls": {"type": "FocalLoss", "use_sigmoid": true, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0},
        "loss_bbox": {"type": "GIoULoss", "loss_weight": 2.0},
        "loss_centerness": {"type": "CrossEntropyLoss", "use_sigmoid": true, "loss_weight": 1.0}
    });
    let mut train = serde_json::json!({"assigner": {"type": "ATSSAssigner", "topk": 9}, "allowed_border": -1, "pos_weight": -1, "debug": false});
    if case == "k3" {
        let extra = serde_json::json!({"norm_cfg": null, "pred_kernel_size": 1,
            "anchor_generator": {"type": "AnchorGenerator", "ratios": [0.5, 1.0], "octave_base_scale": 4, "scales_per_octave": 1,
                                 "strides": [8, 16, 32]}});
        head.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        train = serde_json::json!({"assigner": {"type": "ATSSAssigner", "topk": 3}, "allowed_border": 0, "pos_weight": 2.0, "debug": false});
    }
    let test = serde_json::json!({"nms_pre": 50, "min_bbox_size": 0, "score_thr": 0.05,
                                  "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 20});
    (serde_json::from_value(head).unwrap(), serde_json::from_value(train).unwrap(), serde_json::from_value(test).unwrap())
}

fn samples() -> Vec<DetDataSample> {
    crate::models::dense_heads::base_dense_head::reference_samples(fx)
}

fn check_case(case: &str) {
    let _seed = crate::models::layers::fixtures::seeded();
    let (cfg, train, test) = atss_cfg(case);
    let vs = VarStore::new(Device::Cpu);
    let head = ATSSHead::new(&cfg, Some(&train), Some(&test), &vs.root()).unwrap();
    crate::models::dense_heads::base_dense_head::check_head_case(
        fixture(),
        case,
        &vs,
        |x, reduce_mean| head.loss(x, &samples(), reduce_mean).unwrap(),
        |x, rescale| head.predict(x, &samples(), rescale).unwrap(),
    );
}

#[test]
fn atss_head_equals_mmdet() {
    check_case("plain");
}

#[test]
fn atss_head_with_two_anchors_border_filter_and_weighted_positives_equals_mmdet() {
    check_case("k3");
}

#[test]
fn atss_assigner_with_an_ignored_box_equals_mmdet() {
    let cfg = detc::registry::refs::AssignerCfg(serde_json::json!({"type": "ATSSAssigner", "topk": 3, "ignore_iof_thr": 0.5}));
    let assigner = ATSSAssigner::from_cfg(&cfg).unwrap();
    let levels = Vec::<i64>::try_from(fx("assign.levels")).unwrap();
    let ignore = fx("assign.ignore");
    let r = assigner.assign(&fx("assign.priors"), &levels, &fx("assign.gts"), &fx("assign.labels"), Some(&ignore)).unwrap();
    assert_eq!(r.gt_inds, fx("assign.gt_inds"));
    assert_eq!(r.labels, fx("assign.assigned_labels"));
    assert!(r.gt_inds.gt(0).sum(Kind::Int64).int64_value(&[]) > 0 && r.gt_inds.eq(-1).sum(Kind::Int64).int64_value(&[]) > 0);
}
