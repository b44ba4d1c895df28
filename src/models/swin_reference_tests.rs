//! `SwinTransformer` against MMDetection's (`tests/models/swin_reference.py`,
//! run once per test process): state-dict names and shapes, the initial
//! values of the norms, bias tables and position index, train-mode outputs
//! and every gradient on MMDetection's perturbed weights, frozen stages, and
//! the `Pretrained` loading of an original-repository checkpoint
//! (`convert_weights`), with bias tables resized to another window.

use std::path::PathBuf;
use std::sync::OnceLock;

use detc::registry::models::backbones::SwinTransformerConfig;
use serde_json::json;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::models::backbones::SwinTransformer;
use crate::models::layers::fixtures::{max_abs_diff, run_script, tensor, StateDict};
use crate::models::weights::{load_state_dict, with_prefix, Shapes};

struct Fixture {
    dir: PathBuf,
    tensors: StateDict,
}

fn fixture() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("detc-swin-{}", std::process::id()));
        run_script("tests/models/swin_reference.py", &dir);
        let tensors = detc::checkpoint::load(&dir.join("swin.pth")).unwrap().state_dict;
        Fixture { dir, tensors }
    })
}

fn fx(key: &str) -> Tensor {
    tensor(&fixture().tensors, key)
}

fn keys(prefix: &str) -> Vec<String> {
    let prefix = format!("{prefix}.");
    fixture().tensors.keys().filter_map(|k| k.strip_prefix(&prefix).map(str::to_string)).collect()
}

/// `CFG` of the script, with `extra` keys.
fn build(extra: serde_json::Value) -> (VarStore, SwinTransformer) {
    let mut cfg = json!({"embed_dims": 16, "depths": [2, 2], "num_heads": [2, 4], "window_size": 3,
                         "mlp_ratio": 2, "strides": [4, 2], "out_indices": [0, 1], "drop_path_rate": 0.0});
    cfg.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let cfg: SwinTransformerConfig = serde_json::from_value(cfg).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let swin = SwinTransformer::new(&cfg, vs.root()).unwrap();
    (vs, swin)
}

fn assert_scaled(a: &Tensor, b: &Tensor, what: &str) {
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    let diff = max_abs_diff(a, b);
    assert!(diff <= 1e-4 * scale, "{what}: off by {diff} (largest value {scale})");
}

#[test]
fn swin_state_dict_and_init_equal_mmdet() {
    let (vs, _swin) = build(json!({}));
    let ours = vs.variables();
    let mut names: Vec<&String> = ours.keys().collect();
    names.sort();
    let init = keys("init");
    let mut want: Vec<&String> = init.iter().collect();
    want.sort();
    assert_eq!(names, want, "state-dict names");
    for name in &init {
        let theirs = fx(&format!("init.{name}"));
        assert_eq!(ours[name].size(), theirs.size(), "{name}");
        let constant = name.contains("norm") || name.contains("relative_position") || name.ends_with("bias");
        if constant && !name.starts_with("patch_embed.projection") {
            assert_eq!(max_abs_diff(&ours[name], &theirs), 0.0, "initial {name}");
        } else if name.ends_with("weight") && !name.starts_with("patch_embed") {
            // N(0, 0.02) (MMEngine's truncated normal, cut at ±2).
            let std = ours[name].std(true).double_value(&[]);
            assert!((std / 0.02 - 1.0).abs() < 0.3, "{name}: std {std}");
        }
    }
}

#[test]
fn swin_forward_and_gradients_equal_mmdet() {
    let (vs, swin) = build(json!({}));
    let sd = with_prefix(&fixture().tensors, "sd").unwrap();
    let report = load_state_dict(&vs, "", &sd, Shapes::Refuse).unwrap();
    assert!(report.is_exact(), "{report:?}");
    let x = fx("in").set_requires_grad(true);
    let outs = swin.forward_t(&x, true).unwrap();
    assert_eq!(outs.len(), 2);
    let mut loss = Tensor::zeros([], (Kind::Float, Device::Cpu));
    for (i, y) in outs.iter().enumerate() {
        assert_scaled(y, &fx(&format!("out.{i}")), &format!("output {i}"));
        loss = loss + (y * fx(&format!("dy.{i}"))).sum(Kind::Float);
    }
    loss.backward();
    assert_scaled(&x.grad(), &fx("gin"), "input gradient");
    let ours = vs.variables();
    for name in keys("grad") {
        assert_scaled(&ours[&name].grad(), &fx(&format!("grad.{name}")), &format!("gradient of {name}"));
    }
    assert_eq!(swin.out_channels, [16, 32]);
    assert_eq!(swin.out_strides, [4, 8]);
}

#[test]
fn swin_frozen_stages_freeze_what_mmdet_freezes() {
    let (vs, _swin) = build(json!({"frozen_stages": 1}));
    let ours = vs.variables();
    for name in keys("frozen.trainable") {
        let trains = fx(&format!("frozen.trainable.{name}")).int64_value(&[]) == 1;
        assert_eq!(ours[&name].requires_grad(), trains, "{name}");
    }
}

/// An original-repository checkpoint loads through `convert_weights` into
/// MMDetection's weights; into 4x4 windows its 3x3 windows' bias tables are
/// resized as MMDetection resizes them.
#[test]
fn swin_loads_original_checkpoints_as_mmdet() {
    let original = fixture().dir.join("swin_original.pth");
    let pretrained = |path: &std::path::Path| json!({"type": "Pretrained", "checkpoint": path.to_str().unwrap()});
    let (vs, swin) = build(json!({"convert_weights": true, "init_cfg": pretrained(&original)}));
    let report = swin.init_weights(&vs).unwrap().unwrap();
    // Every weight loads; the classifier `head` was dropped by the conversion.
    assert!(report.missing.is_empty() && report.unexpected.is_empty(), "{report:?}");
    for (name, t) in vs.variables() {
        assert_eq!(max_abs_diff(&t, &fx(&format!("sd.{name}"))), 0.0, "{name} after conversion");
    }
    let no_index = fixture().dir.join("swin_original_no_index.pth");
    let (vs, swin) = build(json!({"window_size": 4, "convert_weights": true, "init_cfg": pretrained(&no_index)}));
    swin.init_weights(&vs).unwrap();
    for (name, t) in vs.variables() {
        assert_scaled(&t, &fx(&format!("resize.{name}")), &format!("{name} after resizing"));
    }
    // A checkpoint whose index buffers are of another window: refused, as torch refuses it.
    let (vs, swin) = build(json!({"window_size": 4, "convert_weights": true, "init_cfg": pretrained(&original)}));
    let err = swin.init_weights(&vs).unwrap_err();
    assert!(err.message.contains("relative_position_index"), "{err}");
}
