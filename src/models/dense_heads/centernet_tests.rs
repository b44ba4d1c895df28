//! `CenterNetUpdateHead` and `GaussianFocalLoss` against MMDetection's own
//! (`tests/models/centernet_reference.py`, run once per test process), for
//! the centernet-update configs' head and for a variant (the box loss
//! weighted by the heatmap, fewer and looser extra positives, a wider
//! heatmap, no norm): names, shapes and init; on MMDetection's perturbed
//! weights both losses (an image without ground truth in the batch, which
//! MMDetection's heatmap fills with `num_classes`), every gradient, and the
//! detections with and without rescaling.

use std::sync::OnceLock;

use tch::nn::VarStore;
use tch::Device;

use super::*;
use crate::models::layers::fixtures::{script_state_dict, tensor, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/centernet_reference.py", "detc-centernet", "centernet.pth"))
}

fn fx(key: &str) -> Tensor {
    tensor(fixture(), key)
}

/// `CASES` of the reference script.
fn centernet_cfg(case: &str) -> (CenterNetUpdateHeadConfig, DenseTestConfig) {
    let mut head = serde_json::json!({
        "num_classes": 3, "in_channels": 8, "stacked_convs": 2, "feat_channels": 8, "strides": [8, 16, 32],
        "regress_ranges": [[0, 40], [32, 80], [64, 1000000000]], "hm_min_radius": 4, "hm_min_overlap": 0.8,
        "more_pos_thresh": 0.2, "more_pos_topk": 9, "soft_weight_on_reg": false,
        "norm_cfg": {"type": "GN", "num_groups": 4, "requires_grad": true},
        "loss_cls": {"type": "GaussianFocalLoss", "pos_weight": 0.25, "neg_weight": 0.75, "loss_weight": 1.0},
        "loss_bbox": {"type": "GIoULoss", "loss_weight": 2.0}
    });
    if case == "soft" {
        let extra = serde_json::json!({"soft_weight_on_reg": true, "more_pos_topk": 5, "more_pos_thresh": 0.3,
                                       "hm_min_overlap": 0.7, "norm_cfg": null});
        head.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    }
    let test = serde_json::json!({"nms_pre": 50, "min_bbox_size": 0, "score_thr": 0.05,
                                  "nms": {"type": "nms", "iou_threshold": 0.6}, "max_per_img": 20});
    (serde_json::from_value(head).unwrap(), serde_json::from_value(test).unwrap())
}

fn check_case(case: &str) {
    let _seed = crate::models::layers::fixtures::seeded();
    let (cfg, test) = centernet_cfg(case);
    let vs = VarStore::new(Device::Cpu);
    let head = CenterNetUpdateHead::new(&cfg, Some(&test), &vs.root()).unwrap();
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
fn centernet_update_head_equals_mmdet() {
    check_case("plain");
}

#[test]
fn centernet_update_head_with_soft_box_weights_equals_mmdet() {
    check_case("soft");
}
