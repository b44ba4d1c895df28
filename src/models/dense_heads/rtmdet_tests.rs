//! `RTMDetSepBNHead` against MMDetection's own
//! (`tests/models/rtmdet_reference.py`, run once per test process), for the
//! rtmdet configs' head scaled down (convs shared across levels with a
//! BatchNorm per level, exp on the regression, 1x1 predictors) and a variant
//! (no sharing, no exp, 3x3 predictors, topk 5): names (each level naming
//! the shared conv), shapes and init; on MMDetection's perturbed weights the
//! two losses (an image without ground truth in the batch), every gradient,
//! and the detections with and without rescaling.

use std::sync::OnceLock;

use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::*;
use crate::models::layers::fixtures::{script_state_dict, tensor, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/rtmdet_reference.py", "detc-rtmdet", "rtmdet.pth"))
}

fn fx(key: &str) -> Tensor {
    tensor(fixture(), key)
}

/// `HEADS` of the reference script.
fn rtm_cfg(case: &str) -> (RTMDetSepBNHeadConfig, RpnTrainConfig, DenseTestConfig) {
    let mut head = serde_json::json!({
        "num_classes": 3, "in_channels": 8, "stacked_convs": 2, "feat_channels": 8,
        "anchor_generator": {"type": "MlvlPointGenerator", "offset": 0, "strides": [8, 16, 32]},
        "bbox_coder": {"type": "DistancePointBBoxCoder"},
        "loss_cls": {"type": "QualityFocalLoss", "use_sigmoid": true, "beta": 2.0, "loss_weight": 1.0},
        "loss_bbox": {"type": "GIoULoss", "loss_weight": 2.0},
        "with_objectness": false, "exp_on_reg": true, "share_conv": true, "pred_kernel_size": 1,
        "norm_cfg": {"type": "BN"}, "act_cfg": {"type": "SiLU"}
    });
    let mut topk = 13;
    if case == "tiny" {
        let extra = serde_json::json!({"exp_on_reg": false, "share_conv": false, "pred_kernel_size": 3});
        head.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        topk = 5;
    }
    let train = serde_json::json!({"assigner": {"type": "DynamicSoftLabelAssigner", "topk": topk},
                                   "allowed_border": -1, "pos_weight": -1, "debug": false});
    let test = serde_json::json!({"nms_pre": 50, "min_bbox_size": 0, "score_thr": 0.05,
                                  "nms": {"type": "nms", "iou_threshold": 0.6}, "max_per_img": 20});
    (serde_json::from_value(head).unwrap(), serde_json::from_value(train).unwrap(), serde_json::from_value(test).unwrap())
}

fn samples() -> Vec<DetDataSample> {
    crate::models::dense_heads::base_dense_head::reference_samples(fx)
}

fn check_case(case: &str) {
    let _seed = crate::models::layers::fixtures::seeded();
    let (cfg, train, test) = rtm_cfg(case);
    let vs = VarStore::new(Device::Cpu);
    let head = RTMDetSepBNHead::new(&cfg, Some(&train), Some(&test), &vs.root()).unwrap();
    crate::models::dense_heads::base_dense_head::check_head_case(
        fixture(),
        case,
        &vs,
        |x, reduce_mean| head.loss(x, &samples(), reduce_mean).unwrap(),
        |x, rescale| head.predict(x, &samples(), rescale).unwrap(),
    );
}

#[test]
fn rtmdet_sepbn_head_equals_mmdet() {
    check_case("sepbn");
}

#[test]
fn rtmdet_head_unshared_without_exp_equals_mmdet() {
    check_case("tiny");
}
