//! `TOODHead` and `TaskAlignedAssigner` against MMDetection's own
//! (`tests/models/tood_reference.py`, run once per test process): the
//! tood/ configs' head before `initial_epoch` (ATSS, focal loss) and after
//! it (task-aligned assignment, quality focal loss), and an anchor-based
//! variant with a DCNv2 first conv and no norm: names, shapes and init; on
//! MMDetection's perturbed weights both losses (an image without ground
//! truth in the batch), every gradient, and the detections with and
//! without rescaling; the assigner alone.

use std::sync::OnceLock;

use tch::nn::VarStore;
use tch::Device;

use super::*;
use crate::models::layers::fixtures::{script_state_dict, tensor, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/tood_reference.py", "detc-tood", "tood.pth"))
}

fn fx(key: &str) -> Tensor {
    tensor(fixture(), key)
}

/// `CASES` of the reference script: the head, its train and test settings, the epoch.
fn tood_cfg(case: &str) -> (TOODHeadConfig, ToodTrainConfig, DenseTestConfig, u64) {
    let mut head = serde_json::json!({
        "num_classes": 3, "in_channels": 16, "stacked_convs": 2, "feat_channels": 16, "anchor_type": "anchor_free",
        "norm_cfg": {"type": "GN", "num_groups": 4, "requires_grad": true},
        "anchor_generator": {"type": "AnchorGenerator", "ratios": [1.0], "octave_base_scale": 8, "scales_per_octave": 1,
                             "strides": [8, 16, 32]},
        "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0, 0.0, 0.0, 0.0], "target_stds": [0.1, 0.1, 0.2, 0.2]},
        "initial_loss_cls": {"type": "FocalLoss", "use_sigmoid": true, "activated": true, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0},
        "loss_cls": {"type": "QualityFocalLoss", "use_sigmoid": true, "activated": true, "beta": 2.0, "loss_weight": 1.0},
        "loss_bbox": {"type": "GIoULoss", "loss_weight": 2.0}
    });
    let mut train = serde_json::json!({
        "initial_epoch": 4, "initial_assigner": {"type": "ATSSAssigner", "topk": 9},
        "assigner": {"type": "TaskAlignedAssigner", "topk": 13}, "alpha": 1, "beta": 6,
        "allowed_border": -1, "pos_weight": -1, "debug": false
    });
    let mut test = serde_json::json!({"nms_pre": 50, "min_bbox_size": 0, "score_thr": 0.05,
                                      "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 20});
    let epoch = match case {
        "initial" => 0,
        "aligned" => 4,
        _ => {
            let extra = serde_json::json!({"anchor_type": "anchor_based", "num_dcn": 1, "norm_cfg": null});
            head.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let extra = serde_json::json!({"assigner": {"type": "TaskAlignedAssigner", "topk": 5}, "alpha": 0.5, "beta": 4, "pos_weight": 2.0});
            train.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            test["score_thr"] = serde_json::json!(0.0);
            5
        }
    };
    (serde_json::from_value(head).unwrap(), serde_json::from_value(train).unwrap(), serde_json::from_value(test).unwrap(), epoch)
}

fn check_case(case: &str) {
    let _seed = crate::models::layers::fixtures::seeded();
    let (cfg, train, test, epoch) = tood_cfg(case);
    let vs = VarStore::new(Device::Cpu);
    let head = TOODHead::new(&cfg, Some(&train), Some(&test), &vs.root()).unwrap();
    head.set_epoch(epoch);
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
fn tood_head_in_its_initial_epochs_equals_mmdet() {
    check_case("initial");
}

#[test]
fn tood_head_with_task_aligned_assignment_equals_mmdet() {
    check_case("aligned");
}

#[test]
fn anchor_based_tood_head_with_a_dcn_conv_equals_mmdet() {
    check_case("based");
}

#[test]
fn task_aligned_assigner_equals_mmdet() {
    let cfg = detc::registry::refs::AssignerCfg(serde_json::json!({"type": "TaskAlignedAssigner", "topk": 4}));
    let assigner = TaskAlignedAssigner::from_cfg(&cfg).unwrap();
    let r = assigner
        .assign(&fx("assign.priors"), &fx("assign.scores"), &fx("assign.boxes"), &fx("assign.gts"), &fx("assign.labels"), 1.0, 6.0)
        .unwrap();
    assert_eq!(r.result.gt_inds, fx("assign.gt_inds"));
    assert_eq!(r.result.labels, fx("assign.assigned_labels"));
    crate::models::layers::fixtures::assert_close(&r.assign_metrics, &fx("assign.metrics"), 1e-7, 1e-5, "assign_metrics");
    assert!(r.result.gt_inds.gt(0).sum(Kind::Int64).int64_value(&[]) > 0);
}
