//! `GFLHead` and `QualityFocalLoss` against MMDetection's own
//! (`tests/models/gfl_reference.py`, run once per test process), for the
//! gfl/ configs' head and for a variant (reg_max 4 so that targets reach the
//! clamp, QFL beta 1.5, topk 5, weighted positives, border anchors dropped,
//! no norm): names, shapes and init; on MMDetection's perturbed weights the
//! three losses (an image without ground truth in the batch), every
//! gradient, and the detections with and without rescaling; the loss alone
//! against its label-and-score form, a positive of IoU 0 included.

use std::sync::OnceLock;

use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::*;
use crate::models::layers::fixtures::{assert_close, script_state_dict, tensor, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/gfl_reference.py", "detc-gfl", "gfl.pth"))
}

fn fx(key: &str) -> Tensor {
    tensor(fixture(), key)
}

/// `CASES` of the reference script.
fn gfl_cfg(case: &str) -> (GFLHeadConfig, RpnTrainConfig, DenseTestConfig) {
    let mut head = serde_json::json!({
        "num_classes": 3, "in_channels": 8, "stacked_convs": 2, "feat_channels": 8,
        "norm_cfg": {"type": "GN", "num_groups": 4, "requires_grad": true},
        "anchor_generator": {"type": "AnchorGenerator", "ratios": [1.0], "octave_base_scale": 8, "scales_per_octave": 1,
                             "strides": [8, 16, 32]},
        "loss_cls": {"type": "QualityFocalLoss", "use_sigmoid": true, "beta": 2.0, "loss_weight": 1.0},
        "loss_dfl": {"type": "DistributionFocalLoss", "loss_weight": 0.25},
        "reg_max": 16,
        "loss_bbox": {"type": "GIoULoss", "loss_weight": 2.0}
    });
    let mut train = serde_json::json!({"assigner": {"type": "ATSSAssigner", "topk": 9}, "allowed_border": -1, "pos_weight": -1, "debug": false});
    if case == "small" {
        let extra = serde_json::json!({"norm_cfg": null, "reg_max": 4,
            "anchor_generator": {"type": "AnchorGenerator", "ratios": [1.0], "octave_base_scale": 4, "scales_per_octave": 1,
                                 "strides": [8, 16, 32]},
            "loss_cls": {"type": "QualityFocalLoss", "use_sigmoid": true, "beta": 1.5, "loss_weight": 1.0}});
        head.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        train = serde_json::json!({"assigner": {"type": "ATSSAssigner", "topk": 5}, "allowed_border": 0, "pos_weight": 2.0, "debug": false});
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
    let (cfg, train, test) = gfl_cfg(case);
    let vs = VarStore::new(Device::Cpu);
    let head = GFLHead::new(&cfg, Some(&train), Some(&test), &vs.root()).unwrap();
    crate::models::dense_heads::base_dense_head::check_head_case(
        fixture(),
        case,
        &vs,
        |x, reduce_mean| head.loss(x, &samples(), reduce_mean).unwrap(),
        |x, rescale| head.predict(x, &samples(), rescale).unwrap(),
    );
}

#[test]
fn gfl_head_equals_mmdet() {
    check_case("plain");
}

#[test]
fn gfl_head_with_clamped_distances_and_weighted_positives_equals_mmdet() {
    check_case("small");
}

#[test]
fn quality_focal_loss_on_soft_targets_equals_mmdets_label_and_score_form() {
    let cfg = detc::registry::refs::LossCfg(serde_json::json!({"type": "QualityFocalLoss", "beta": 2.0, "loss_weight": 1.5}));
    let loss = Loss::from_cfg(&cfg).unwrap();
    let pred = fx("qfl.pred").set_requires_grad(true);
    let (label, score) = (fx("qfl.label"), fx("qfl.score"));
    let soft = Tensor::zeros([12, 4], (Kind::Float, Device::Cpu)).scatter(1, &label.unsqueeze(1), &score.unsqueeze(1)).narrow(1, 0, 3);
    let weight = fx("qfl.weight");
    let got = loss.forward(&pred, &soft, LossArgs::default().weight(&weight).avg_factor(5.0)).unwrap();
    assert_close(&got, &fx("qfl.loss"), 1e-6, 1e-5, "loss");
    got.backward();
    assert_close(&pred.grad(), &fx("qfl.grad"), 1e-7, 1e-5, "gradient");
}
