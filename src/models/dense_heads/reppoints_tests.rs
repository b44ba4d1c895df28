//! `RepPointsHead` and `PointAssigner` against MMDetection's own
//! (`tests/models/reppoints_reference.py`, run once per test process), for
//! the reppoints-moment configs' head, for the min-max transform with points
//! starting on a square (no norm, two points per object, weighted
//! positives) and for the reppoints-bbox configs' grid of points in
//! regressed boxes: names, shapes and init; on MMDetection's perturbed
//! weights the three losses (an image without ground truth in the batch),
//! every gradient, and the detections with and without rescaling.

use std::sync::OnceLock;

use tch::nn::VarStore;
use tch::Device;

use super::*;
use crate::models::layers::fixtures::{script_state_dict, tensor, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/reppoints_reference.py", "detc-reppoints", "reppoints.pth"))
}

fn fx(key: &str) -> Tensor {
    tensor(fixture(), key)
}

/// `CASES` of the reference script.
fn reppoints_cfg(case: &str) -> (RepPointsHeadConfig, RepPointsTrainConfig, DenseTestConfig) {
    let mut head = serde_json::json!({
        "num_classes": 3, "in_channels": 8, "feat_channels": 8, "point_feat_channels": 8, "stacked_convs": 2,
        "num_points": 9, "gradient_mul": 0.1, "point_strides": [8, 16, 32], "point_base_scale": 4,
        "norm_cfg": {"type": "GN", "num_groups": 4, "requires_grad": true},
        "loss_cls": {"type": "FocalLoss", "use_sigmoid": true, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0},
        "loss_bbox_init": {"type": "SmoothL1Loss", "beta": 0.11, "loss_weight": 0.5},
        "loss_bbox_refine": {"type": "SmoothL1Loss", "beta": 0.11, "loss_weight": 1.0},
        "transform_method": "moment"
    });
    let max_iou = serde_json::json!({"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.4, "min_pos_iou": 0, "ignore_iof_thr": -1});
    let mut train = serde_json::json!({
        "init": {"assigner": {"type": "PointAssigner", "scale": 4, "pos_num": 1}, "allowed_border": -1, "pos_weight": -1, "debug": false},
        "refine": {"assigner": max_iou, "allowed_border": -1, "pos_weight": -1, "debug": false}
    });
    let extra = match case {
        "minmax" => {
            train["init"]["assigner"]["pos_num"] = serde_json::json!(2);
            train["refine"]["pos_weight"] = serde_json::json!(2.0);
            serde_json::json!({"transform_method": "minmax", "center_init": false, "norm_cfg": null})
        }
        "grid" => {
            train["init"]["assigner"] = max_iou;
            serde_json::json!({"transform_method": "minmax", "use_grid_points": true})
        }
        _ => serde_json::json!({}),
    };
    head.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let test = serde_json::json!({"nms_pre": 50, "min_bbox_size": 0, "score_thr": 0.05,
                                  "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 20});
    (serde_json::from_value(head).unwrap(), serde_json::from_value(train).unwrap(), serde_json::from_value(test).unwrap())
}

fn check_case(case: &str) {
    let _seed = crate::models::layers::fixtures::seeded();
    let (cfg, train, test) = reppoints_cfg(case);
    let vs = VarStore::new(Device::Cpu);
    let head = RepPointsHead::new(&cfg, Some(&train), Some(&test), &vs.root()).unwrap();
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
fn reppoints_head_with_moments_equals_mmdet() {
    check_case("moment");
}

#[test]
fn reppoints_head_with_minmax_and_square_initial_points_equals_mmdet() {
    check_case("minmax");
}

#[test]
fn reppoints_head_with_grid_points_equals_mmdet() {
    check_case("grid");
}
