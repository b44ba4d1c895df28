//! `CSPNeXt` against MMDetection's own (`tests/models/rtmdet_reference.py`,
//! run once per test process): names, initialisation, train-mode outputs
//! and every gradient, for a P5 with channel attention and a depthwise P6
//! whose stem and first stage are frozen.

use std::sync::OnceLock;

use detc::registry::models::backbones::CSPNeXtConfig;
use serde_json::json;
use tch::nn::VarStore;
use tch::Device;

use super::CSPNeXt;
use crate::models::layers::fixtures::{check_module_case, script_state_dict, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/rtmdet_reference.py", "detc-rtmdet", "rtmdet.pth"))
}

fn check_case(case: &str, cfg: serde_json::Value) {
    let _seed = crate::models::layers::fixtures::seeded();
    let vs = VarStore::new(Device::Cpu);
    let net = CSPNeXt::new(&serde_json::from_value::<CSPNeXtConfig>(cfg).unwrap(), vs.root()).unwrap();
    check_module_case(fixture(), case, &vs, |inputs| net.forward_t(&inputs[0], true).unwrap());
}

#[test]
fn cspnext_p5_equals_mmdet() {
    check_case(
        "cspnext_p5",
        json!({"arch": "P5", "deepen_factor": 0.167, "widen_factor": 0.125, "expand_ratio": 0.5,
               "channel_attention": true, "act_cfg": {"type": "SiLU"}, "out_indices": [2, 3, 4]}),
    );
}

#[test]
fn cspnext_p6_depthwise_with_frozen_stages_equals_mmdet() {
    check_case(
        "cspnext_p6",
        json!({"arch": "P6", "deepen_factor": 0.33, "widen_factor": 0.125, "expand_ratio": 0.5,
               "channel_attention": false, "use_depthwise": true, "frozen_stages": 1,
               "act_cfg": {"type": "SiLU"}, "out_indices": [2, 3, 4, 5]}),
    );
}

/// Without `init_cfg` the modules keep their own inits (ConvModule's
/// Kaiming normal, torch's for the attention's conv and its bias).
#[test]
fn cspnext_without_init_cfg_equals_mmdet() {
    check_case(
        "cspnext_noinit",
        json!({"arch": "P5", "deepen_factor": 0.167, "widen_factor": 0.125, "expand_ratio": 0.5,
               "channel_attention": true, "act_cfg": {"type": "SiLU"}, "out_indices": [2, 3, 4], "init_cfg": null}),
    );
}

#[test]
fn cspnext_refuses_another_init_and_a_missing_output() {
    let build = |cfg: serde_json::Value| {
        let vs = VarStore::new(Device::Cpu);
        CSPNeXt::new(&serde_json::from_value::<CSPNeXtConfig>(cfg).unwrap(), vs.root()).map(drop).unwrap_err().to_string()
    };
    let err = build(json!({"init_cfg": {"type": "Normal", "layer": "Conv2d", "std": 0.01}}));
    assert!(err.contains("init_cfg") && err.contains("Pretrained"), "{err}");
    let err = build(json!({"out_indices": [2, 5]}));
    assert!(err.contains("out_indices: 5"), "{err}");
}
