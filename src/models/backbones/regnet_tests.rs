//! `RegNet` against MMDetection's (`tests/models/regnet_reference.py`, run
//! once per test process): the stages of every named RegNetX design, and a
//! tiny custom design's state-dict names, shapes, initial norms, frozen
//! stages and stage outputs in eval and train mode on MMDetection's weights.

use std::sync::OnceLock;

use detc::registry::models::backbones::{RegNetArchCfg, RegNetConfig};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::resnet::{regnet_design, ResNet};
use crate::models::layers::fixtures::{max_abs_diff, script_state_dict, tensor, StateDict};
use crate::models::weights::{load_state_dict, with_prefix, Shapes};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/regnet_reference.py", "detc-regnet", "regnet.pth"))
}

fn fx(key: &str) -> Tensor {
    tensor(fixture(), key)
}

#[test]
fn regnet_designs_equal_mmdets() {
    for name in [
        "regnetx_400mf",
        "regnetx_800mf",
        "regnetx_1.6gf",
        "regnetx_3.2gf",
        "regnetx_4.0gf",
        "regnetx_6.4gf",
        "regnetx_8.0gf",
        "regnetx_12gf",
    ] {
        let ours: Vec<i64> = regnet_design(&RegNetArchCfg::Named(name.into()))
            .unwrap()
            .iter()
            .flat_map(|s| [s.width, s.blocks as i64, s.group_width, s.groups])
            .collect();
        let theirs = Vec::<i64>::try_from(fx(&format!("design.{name}")).view([-1])).unwrap();
        assert_eq!(ours, theirs, "{name}");
    }
    assert!(regnet_design(&RegNetArchCfg::Named("regnetx_2gf".into())).is_err());
}

#[test]
fn regnet_equals_mmdet() {
    let cfg: RegNetConfig = serde_json::from_value(serde_json::json!({
        "arch": {"w0": 16, "wa": 24.0, "wm": 2.0, "group_w": 8, "depth": 6, "bot_mul": 1.0},
        "frozen_stages": 1, "norm_eval": false
    }))
    .unwrap();
    let vs = VarStore::new(Device::Cpu);
    let net = ResNet::regnet(&cfg, vs.root()).unwrap();
    assert_eq!(net.out_channels, [16, 32, 64, 128]);
    assert_eq!(net.out_strides, [4, 8, 16, 32]);
    let ours = vs.variables();
    let init = with_prefix(fixture(), "init").unwrap();
    assert_eq!(ours.len(), init.len(), "number of state-dict entries");
    for (name, t) in &init {
        let want = crate::models::weights::to_tensor(t).unwrap();
        assert_eq!(ours[name].size(), want.size(), "{name}");
        if name.contains("bn") || name.contains("downsample.1") {
            assert_eq!(max_abs_diff(&ours[name].to_kind(Kind::Double), &want.to_kind(Kind::Double)), 0.0, "initial {name}");
        }
    }
    for (name, t) in &ours {
        if let Some(trains) = fixture().get(&format!("trainable.{name}")) {
            let trains = crate::models::weights::to_tensor(trains).unwrap().int64_value(&[]) == 1;
            assert_eq!(t.requires_grad(), trains, "{name} trains");
        }
    }
    let report = load_state_dict(&vs, "", &with_prefix(fixture(), "sd").unwrap(), Shapes::Refuse).unwrap();
    assert!(report.is_exact(), "{report:?}");
    let x = fx("in");
    for (mode, train) in [("eval", false), ("train", true)] {
        let outs = tch::no_grad(|| net.forward_t(&x, train)).unwrap();
        for (i, y) in outs.iter().enumerate() {
            let want = fx(&format!("{mode}.{i}"));
            let tol = 1e-4 * want.abs().max().double_value(&[]);
            assert!(max_abs_diff(y, &want) <= tol, "{mode} stage {i}: off by {}", max_abs_diff(y, &want));
        }
    }
}
