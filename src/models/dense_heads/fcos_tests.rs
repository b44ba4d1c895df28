//! `FCOSHead` against MMDetection's own (`tests/models/fcos_reference.py`,
//! run once per test process), for the plain head and for the centre-
//! sampling, `norm_on_bbox`, `centerness_on_reg`, GIoU variant: names,
//! shapes and init; on MMDetection's perturbed weights the three losses
//! (an image without ground truth in the batch), every gradient, and the
//! detections with and without rescaling.

use std::sync::OnceLock;

use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::*;
use crate::models::layers::fixtures::{script_state_dict, tensor, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/fcos_reference.py", "detc-fcos", "fcos.pth"))
}

fn fx(key: &str) -> Tensor {
    tensor(fixture(), key)
}

/// `CASES` of the reference script.
fn fcos_cfg(case: &str) -> (FCOSHeadConfig, DenseTestConfig) {
    let mut head = serde_json::json!({
        "num_classes": 3, "in_channels": 8, "stacked_convs": 2, "feat_channels": 8, "strides": [8, 16, 32],
        "regress_ranges": [[-1, 16], [16, 32], [32, 1e8]], "norm_cfg": {"type": "GN", "num_groups": 4, "requires_grad": true},
        "loss_cls": {"type": "FocalLoss", "use_sigmoid": true, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0},
        "loss_centerness": {"type": "CrossEntropyLoss", "use_sigmoid": true, "loss_weight": 1.0},
        "loss_bbox": {"type": "IoULoss", "loss_weight": 1.0}
    });
    if case == "center" {
        let extra = serde_json::json!({"loss_bbox": {"type": "GIoULoss", "loss_weight": 1.0}, "center_sampling": true,
            "center_sample_radius": 1.5, "norm_on_bbox": true, "centerness_on_reg": true, "conv_bias": true,
            "regress_ranges": [[-1, 64], [64, 128], [128, 1e8]]});
        head.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    }
    let test = serde_json::json!({"nms_pre": 50, "min_bbox_size": 0, "score_thr": 0.05,
                                  "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 20});
    (serde_json::from_value(head).unwrap(), serde_json::from_value(test).unwrap())
}

fn samples() -> Vec<DetDataSample> {
    crate::models::dense_heads::base_dense_head::reference_samples(fx)
}

fn check_case(case: &str) {
    let _seed = crate::models::layers::fixtures::seeded();
    let (cfg, test) = fcos_cfg(case);
    let vs = VarStore::new(Device::Cpu);
    let head = FCOSHead::new(&cfg, Some(&test), &vs.root()).unwrap();
    crate::models::dense_heads::base_dense_head::check_head_case(
        fixture(),
        case,
        &vs,
        |x, reduce_mean| head.loss(x, &samples(), reduce_mean).unwrap(),
        |x, rescale| head.predict(x, &samples(), rescale).unwrap(),
    );
}

#[test]
fn fcos_head_equals_mmdet() {
    check_case("plain");
}

#[test]
fn fcos_head_with_centre_sampling_and_normalised_distances_equals_mmdet() {
    check_case("center");
}
