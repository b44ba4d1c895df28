//! `detc summary`: parameter counts and the state dict of the built model
//! equal MMDetection's own (issue 4: "Parameter count of QueryInst R50-FPN 1x
//! equals MMDetection's for the same config, and the full list of state-dict
//! names and shapes is equal"; issue 7: the same for Faster and Mask R-CNN;
//! also Cascade Mask R-CNN and the ResNeXt backbone).
//!
//! The expected lists are MMDetection 3.3.0's, stored in
//! `tests/fixtures/<model>_r50_fpn_1x_state_dict.json` and
//! made by
//!
//! ```text
//! .venv-test/bin/python tests/models/state_dict_reference.py tests/fixtures
//! ```
//!
//! which builds the real `QueryInst` / `SparseRCNN` / `FasterRCNN` / `MaskRCNN` from the configs in the
//! mmdet wheel. `fixtures_are_what_mmdetection_builds` reruns the script and
//! checks the stored fixtures still equal its output, so the fixtures are a
//! readable record that cannot go stale.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::{detc, python, root};

/// `detc summary ARGS` in the repository root, with the engine built beside it.
fn summary(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_detc"))
        .current_dir(root())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .env("NO_COLOR", "1")
        .arg("summary")
        .args(args)
        .output()
        .expect("detc runs")
}

fn fixture(name: &str) -> Value {
    let path = root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// name -> shape of a `state_dict` object.
fn shapes(v: &Value) -> BTreeMap<String, Value> {
    v["state_dict"]
        .as_object()
        .expect("a state_dict object")
        .iter()
        .map(|(k, s)| (k.clone(), s.clone()))
        .collect()
}

/// Checks detc's JSON summary of `config` against the MMDetection record,
/// naming every differing entry.
fn assert_matches_mmdet(config: &str, fixture_name: &str) {
    let out = summary(&[config, "--state-dict", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "detc summary {config} failed:\n{stderr}"
    );
    let ours: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let want = fixture(fixture_name);
    let (a, b) = (shapes(&ours), shapes(&want));
    let mut problems = vec![];
    for (name, shape) in &b {
        match a.get(name) {
            None => problems.push(format!("missing   {name} {shape}")),
            Some(s) if s != shape => {
                problems.push(format!("shape     {name}: detc {s}, mmdet {shape}"))
            }
            Some(_) => {}
        }
    }
    problems.extend(
        a.keys()
            .filter(|k| !b.contains_key(*k))
            .map(|k| format!("unexpected {k} {}", a[k])),
    );
    let names_of = |v: &Value, key: &str| -> Vec<String> {
        let mut names: Vec<String> = v[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    };
    for key in ["buffers", "shared"] {
        if names_of(&ours, key) != names_of(&want, key) {
            problems.push(format!("the {key} entries differ"));
        }
    }
    for key in ["params", "trainable", "frozen"] {
        if ours[key] != want[key] {
            problems.push(format!("{key}: detc {}, mmdet {}", ours[key], want[key]));
        }
    }
    assert!(
        problems.is_empty(),
        "{config} differs from MMDetection ({} problems):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn queryinst_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/queryinst/queryinst_r50_fpn_1x_coco.yaml",
        "queryinst_r50_fpn_1x_state_dict.json",
    );
}

#[test]
fn sparse_rcnn_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.yaml",
        "sparse-rcnn_r50_fpn_1x_state_dict.json",
    );
}

#[test]
fn faster_rcnn_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.yaml",
        "faster-rcnn_r50_fpn_1x_state_dict.json",
    );
}

#[test]
fn mask_rcnn_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/mask_rcnn/mask-rcnn_r50_fpn_1x_coco.yaml",
        "mask-rcnn_r50_fpn_1x_state_dict.json",
    );
}

#[test]
fn faster_rcnn_x101_32x4d_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/faster_rcnn/faster-rcnn_x101-32x4d_fpn_1x_coco.yaml",
        "faster-rcnn_x101-32x4d_fpn_1x_state_dict.json",
    );
}

#[test]
fn mask_rcnn_gn_ws_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/gn+ws/mask-rcnn_r50_fpn_gn-ws-all_2x_coco.yaml",
        "mask-rcnn_r50_fpn_gn-ws-all_2x_state_dict.json",
    );
}

#[test]
fn mask_rcnn_c4_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/mask_rcnn/mask-rcnn_r50-caffe-c4_1x_coco.yaml",
        "mask-rcnn_r50-caffe-c4_1x_state_dict.json",
    );
}

#[test]
fn mask_rcnn_swin_t_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.yaml",
        "mask-rcnn_swin-t-p4-w7_fpn_1x_state_dict.json",
    );
}

#[test]
fn mask_rcnn_regnetx_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/regnet/mask-rcnn_regnetx-3.2GF_fpn_1x_coco.yaml",
        "mask-rcnn_regnetx-3.2GF_fpn_1x_state_dict.json",
    );
}

#[test]
fn mask_rcnn_dcn_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/dcn/mask-rcnn_r50-dconv-c3-c5_fpn_1x_coco.yaml",
        "mask-rcnn_r50-dconv-c3-c5_fpn_1x_state_dict.json",
    );
}

#[test]
fn faster_rcnn_modulated_dcn_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/dcnv2/faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x_coco.yaml",
        "faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x_state_dict.json",
    );
}

#[test]
fn mask_rcnn_hrnet_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/hrnet/mask-rcnn_hrnetv2p-w18-1x_coco.yaml",
        "mask-rcnn_hrnetv2p-w18-1x_state_dict.json",
    );
}

#[test]
fn rpn_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/rpn/rpn_r50_fpn_1x_coco.yaml", "rpn_r50_fpn_1x_state_dict.json");
}

#[test]
fn fcos_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.yaml", "fcos_r50-caffe_fpn_gn-head_1x_state_dict.json");
}

#[test]
fn faster_rcnn_resnest50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/resnest/faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.yaml",
        "faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_state_dict.json",
    );
}

#[test]
fn faster_rcnn_res2net101_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/res2net/faster-rcnn_res2net-101_fpn_2x_coco.yaml", "faster-rcnn_res2net-101_fpn_2x_state_dict.json");
}

#[test]
fn mask_rcnn_gcnet_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/gcnet/mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x_coco.yaml", "mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x_state_dict.json");
}

#[test]
fn atss_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/atss/atss_r50_fpn_1x_coco.yaml", "atss_r50_fpn_1x_state_dict.json");
}

#[test]
fn gfl_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/gfl/gfl_r50_fpn_1x_coco.yaml", "gfl_r50_fpn_1x_state_dict.json");
}

#[test]
fn faster_rcnn_pafpn_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/pafpn/faster-rcnn_r50_pafpn_1x_coco.yaml", "faster-rcnn_r50_pafpn_1x_state_dict.json");
}

#[test]
fn mask_scoring_rcnn_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/ms_rcnn/ms-rcnn_r50_fpn_1x_coco.yaml", "ms-rcnn_r50_fpn_1x_state_dict.json");
}

#[test]
fn faster_rcnn_generalized_attention_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/empirical_attention/faster-rcnn_r50-attn1111_fpn_1x_coco.yaml",
        "faster-rcnn_r50-attn1111_fpn_1x_state_dict.json",
    );
}

#[test]
fn libra_retinanet_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/libra_rcnn/libra-retinanet_r50_fpn_1x_coco.yaml", "libra-retinanet_r50_fpn_1x_state_dict.json");
}

/// GHM's losses keep their region `edges` and running `acc_sum` as buffers
/// of the head (`bbox_head.loss_cls.*`, `bbox_head.loss_bbox.*`).
#[test]
fn ghm_retinanet_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/ghm/retinanet_r50_fpn_ghm-1x_coco.yaml", "retinanet_r50_fpn_ghm-1x_state_dict.json");
}

/// The strong baseline: SyncBN everywhere, MMCV's MMSyncBN in the RoI heads,
/// a two-conv RPN and a 4conv1fc box head.
#[test]
fn strong_baseline_mask_rcnn_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/strong_baselines/mask-rcnn_r50_fpn_rpn-2conv_4conv1fc_syncbn-all_lsj-100e_coco.yaml",
        "mask-rcnn_r50_fpn_rpn-2conv_4conv1fc_syncbn-all_lsj-100e_state_dict.json",
    );
}

/// GRoIE's extractors keep their modules under
/// `roi_head.{bbox,mask}_roi_extractor.{pre,post}_module.*`.
#[test]
fn groie_mask_rcnn_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/groie/mask-rcnn_r50_fpn_groie_1x_coco.yaml", "mask-rcnn_r50_fpn_groie_1x_state_dict.json");
}

/// RTMDet's CSPNeXt, CSPNeXtPAFPN and separate-BN head: the shared head
/// convs under every level's name, counted once among the parameters.
#[test]
fn rtmdet_tiny_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/rtmdet/rtmdet_tiny_8xb32-300e_coco.yaml", "rtmdet_tiny_state_dict.json");
}

#[test]
fn rtmdet_l_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/rtmdet/rtmdet_l_8xb32-300e_coco.yaml", "rtmdet_l_state_dict.json");
}

/// FreeAnchor's head keeps RetinaHead's names.
#[test]
fn freeanchor_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/free_anchor/freeanchor_r50_fpn_1x_coco.yaml", "freeanchor_r50_fpn_1x_state_dict.json");
}

/// ATSS after an FPN and six DyHead blocks (the neck list `neck.0`, `neck.1`).
#[test]
fn atss_dyhead_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/dyhead/atss_r50_fpn_dyhead_1x_coco.yaml", "atss_r50_fpn_dyhead_1x_state_dict.json");
}

/// VFNet's head: the refinement and classification deformable convs keep
/// MMCV's `DeformConv2d` names (a weight, no offset conv: the offsets come
/// from the initial box).
#[test]
fn vfnet_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/vfnet/vfnet_r50_fpn_1x_coco.yaml", "vfnet_r50_fpn_1x_state_dict.json");
}

/// With DCNv2 in the backbone's last three stages and as each tower's last conv.
#[test]
fn vfnet_r50_mdconv_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/vfnet/vfnet_r50-mdconv-c3-c5_fpn_ms-2x_coco.yaml",
        "vfnet_r50-mdconv-c3-c5_fpn_ms-2x_state_dict.json",
    );
}

/// TOOD's head: the shared convs, both task decompositions and the offset modules.
#[test]
fn tood_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/tood/tood_r50_fpn_1x_coco.yaml", "tood_r50_fpn_1x_state_dict.json");
}

/// With DCNv2 in the backbone (MMCV's old `deformable_groups` name) and as
/// the head's first two convs.
#[test]
fn tood_r101_dconv_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/tood/tood_r101-dconv-c3-c5_fpn_ms-2x_coco.yaml", "tood_r101-dconv-c3-c5_fpn_ms-2x_state_dict.json");
}

#[test]
fn fovea_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/foveabox/fovea_r50_fpn_4xb4-1x_coco.yaml", "fovea_r50_fpn_4xb4-1x_state_dict.json");
}

/// With the classification branch aligned to the predicted box (`feature_adaption`).
#[test]
fn fovea_r50_align_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/foveabox/fovea_r50_fpn_gn-head-align_4xb4-2x_coco.yaml",
        "fovea_r50_fpn_gn-head-align_4xb4-2x_state_dict.json",
    );
}

/// RepPoints' head: the two deformable convs' weights and `moment_transfer`.
#[test]
fn reppoints_moment_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/reppoints/reppoints-moment_r50_fpn-gn_head-gn_1x_coco.yaml",
        "reppoints-moment_r50_fpn-gn_head-gn_1x_state_dict.json",
    );
}

/// With regressed boxes (four outputs instead of the points) and no `moment_transfer`.
#[test]
fn reppoints_bbox_grid_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/reppoints/reppoints-bbox_r50_fpn-gn_head-gn-grid_1x_coco.yaml",
        "reppoints-bbox_r50_fpn-gn_head-gn-grid_1x_state_dict.json",
    );
}

#[test]
fn centernet_update_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/centernet/centernet-update_r50-caffe_fpn_ms-1x_coco.yaml", "centernet-update_r50-caffe_fpn_ms-1x_state_dict.json");
}

#[test]
fn libra_faster_rcnn_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet("configs/libra_rcnn/libra-faster-rcnn_r50_fpn_1x_coco.yaml", "libra-faster-rcnn_r50_fpn_1x_state_dict.json");
}

#[test]
fn cascade_mask_rcnn_r50_state_dict_and_params_equal_mmdetection() {
    assert_matches_mmdet(
        "configs/cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.yaml",
        "cascade-mask-rcnn_r50_fpn_1x_state_dict.json",
    );
}

/// The stored fixtures are what the reference script prints today (the mmdet
/// wheel of .venv-test): the script runs live, in a few seconds.
#[test]
fn fixtures_are_what_mmdetection_builds() {
    let out = std::process::Command::new(python())
        .current_dir(root())
        .arg("tests/models/state_dict_reference.py")
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "state_dict_reference.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    for name in [
        "queryinst_r50_fpn_1x",
        "sparse-rcnn_r50_fpn_1x",
        "faster-rcnn_r50_fpn_1x",
        "mask-rcnn_r50_fpn_1x",
        "cascade-mask-rcnn_r50_fpn_1x",
        "faster-rcnn_x101-32x4d_fpn_1x",
        "mask-rcnn_r50_fpn_gn-ws-all_2x",
        "mask-rcnn_r50-caffe-c4_1x",
        "mask-rcnn_swin-t-p4-w7_fpn_1x",
        "mask-rcnn_regnetx-3.2GF_fpn_1x",
        "mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x",
        "atss_r50_fpn_1x",
        "gfl_r50_fpn_1x",
        "faster-rcnn_r50_pafpn_1x",
        "ms-rcnn_r50_fpn_1x",
        "faster-rcnn_r50-attn1111_fpn_1x",
        "libra-retinanet_r50_fpn_1x",
        "libra-faster-rcnn_r50_fpn_1x",
        "retinanet_r50_fpn_ghm-1x",
        "mask-rcnn_r50_fpn_rpn-2conv_4conv1fc_syncbn-all_lsj-100e",
        "mask-rcnn_r50_fpn_groie_1x",
        "rtmdet_tiny",
        "rtmdet_l",
        "freeanchor_r50_fpn_1x",
        "atss_r50_fpn_dyhead_1x",
        "vfnet_r50_fpn_1x",
        "vfnet_r50-mdconv-c3-c5_fpn_ms-2x",
        "tood_r50_fpn_1x",
        "tood_r101-dconv-c3-c5_fpn_ms-2x",
        "fovea_r50_fpn_4xb4-1x",
        "fovea_r50_fpn_gn-head-align_4xb4-2x",
        "reppoints-moment_r50_fpn-gn_head-gn_1x",
        "reppoints-bbox_r50_fpn-gn_head-gn-grid_1x",
        "centernet-update_r50-caffe_fpn_ms-1x",
    ] {
        assert_eq!(
            live[name],
            fixture(&format!("{name}_state_dict.json")),
            "tests/fixtures/{name}_state_dict.json is stale: rerun \
             `.venv-test/bin/python tests/models/state_dict_reference.py tests/fixtures`"
        );
    }
}

#[test]
fn text_summary_of_the_demo_model_is_a_tree_with_totals() {
    let out = summary(&["configs/demo/queryinst_r18_shapes.yaml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("QueryInst ") && first.contains(" params ("),
        "{text}"
    );
    for module in [
        "backbone  ResNet",
        "neck  FPN",
        "rpn_head  EmbeddingRPNHead",
        "roi_head  SparseRoIHead",
    ] {
        assert!(
            text.lines().any(|l| l.contains(module)),
            "no `{module}` in:\n{text}"
        );
    }
    assert!(text.contains("bbox_head  6 × DIIHead"), "{text}");
    assert!(text.contains("mask_head  6 × DynamicMaskHead"), "{text}");
    // frozen_stages: -1 in the demo: everything trains.
    let total = text
        .lines()
        .find(|l| l.starts_with("total: "))
        .expect("a total line");
    assert!(total.contains(" trainable, 0 frozen)"), "{total}");
    assert!(!text.contains("state dict:"), "{text}");

    let out = summary(&[
        "configs/demo/queryinst_r18_shapes.yaml",
        "--state-dict",
        "--depth",
        "1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("backbone.conv1.weight "))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        [
            "backbone.conv1.weight",
            "[16,",
            "3,",
            "7,",
            "7]",
            "trainable"
        ]
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("backbone.bn1.running_mean ") && l.ends_with("buffer")),
        "{text}"
    );
}

#[test]
fn summary_refuses_an_invalid_config_without_starting_the_engine() {
    let dir = crate::support::tree(&[("main.yaml", "model:\n  type: QueryInstt\n")]);
    let out = detc(dir.path())
        .env("DETC_ENGINE", "/nonexistent/engine")
        .args(["summary", "main.yaml"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("QueryInstt"), "{err}");
    assert!(!err.contains("cannot start the engine"), "{err}");
}
