//! `FoveaHead` against MMDetection's own (`tests/models/fovea_reference.py`,
//! run once per test process), for the foveabox/ configs' head (overlapping
//! scale ranges, so some objects train two levels) and for `with_deform`
//! (the classification branch aligned to the predicted box, GroupNorm, a
//! wider fovea): names, shapes and init; on MMDetection's perturbed weights
//! both losses (an image without ground truth in the batch), every
//! gradient, and the detections with and without rescaling.

use std::sync::OnceLock;

use tch::nn::VarStore;
use tch::Device;

use super::*;
use crate::models::layers::fixtures::{script_state_dict, tensor, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/fovea_reference.py", "detc-fovea", "fovea.pth"))
}

fn fx(key: &str) -> Tensor {
    tensor(fixture(), key)
}

/// `CASES` of the reference script.
fn fovea_cfg(case: &str) -> (FoveaHeadConfig, DenseTestConfig) {
    let mut head = serde_json::json!({
        "num_classes": 3, "in_channels": 8, "stacked_convs": 2, "feat_channels": 8, "strides": [8, 16, 32],
        "base_edge_list": [16, 32, 64], "scale_ranges": [[1, 32], [16, 64], [32, 128]], "sigma": 0.4, "with_deform": false,
        "loss_cls": {"type": "FocalLoss", "use_sigmoid": true, "gamma": 1.5, "alpha": 0.4, "loss_weight": 1.0},
        "loss_bbox": {"type": "SmoothL1Loss", "beta": 0.11, "loss_weight": 1.0}
    });
    if case == "align" {
        let extra = serde_json::json!({"with_deform": true, "deform_groups": 2, "sigma": 0.6,
                                       "norm_cfg": {"type": "GN", "num_groups": 4, "requires_grad": true}});
        head.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    }
    let test = serde_json::json!({"nms_pre": 50, "score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 20});
    (serde_json::from_value(head).unwrap(), serde_json::from_value(test).unwrap())
}

fn check_case(case: &str) {
    let _seed = crate::models::layers::fixtures::seeded();
    let (cfg, test) = fovea_cfg(case);
    let vs = VarStore::new(Device::Cpu);
    let head = FoveaHead::new(&cfg, Some(&test), &vs.root()).unwrap();
    let samples = || crate::models::dense_heads::base_dense_head::reference_samples(fx);
    crate::models::dense_heads::base_dense_head::check_head_case(
        fixture(),
        case,
        &vs,
        |x, _| head.loss(x, &samples()).unwrap(),
        |x, rescale| head.predict(x, &samples(), rescale).unwrap(),
    );
}

#[test]
fn fovea_head_equals_mmdet() {
    check_case("plain");
}

#[test]
fn fovea_head_aligned_to_the_predicted_box_equals_mmdet() {
    check_case("align");
}
