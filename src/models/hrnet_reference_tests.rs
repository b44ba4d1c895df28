//! `HRNet` and `HRFPN` against MMDetection's own modules
//! (`tests/models/hrnet_reference.py`, run once per test process): the
//! state-dict names and shapes after init, the initial norms (exactly) and
//! conv weights (their spread and bound), and, on MMDetection's perturbed
//! weights, the train-mode outputs and the gradients of every input and
//! parameter.

use std::sync::OnceLock;

use detc::registry::models::backbones::HRNetConfig;
use detc::registry::models::necks::HRFPNConfig;
use serde_json::json;
use tch::nn::VarStore;
use tch::Device;

use crate::models::backbones::HRNet;
use crate::models::layers::fixtures::{check_module_case, script_state_dict, StateDict};
use crate::models::necks::HRFPN;

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/hrnet_reference.py", "detc-hrnet", "hrnet.pth"))
}

fn extra() -> serde_json::Value {
    json!({
        "stage1": {"num_modules": 1, "num_branches": 1, "block": "BOTTLENECK", "num_blocks": [2], "num_channels": [8]},
        "stage2": {"num_modules": 1, "num_branches": 2, "block": "BASIC", "num_blocks": [1, 1], "num_channels": [4, 8]},
        "stage3": {"num_modules": 2, "num_branches": 3, "block": "BASIC", "num_blocks": [1, 1, 1], "num_channels": [4, 8, 16]},
        "stage4": {"num_modules": 2, "num_branches": 4, "block": "BASIC", "num_blocks": [1, 2, 1, 1], "num_channels": [4, 8, 16, 32]},
    })
}

enum Module {
    Backbone(HRNet),
    Neck(HRFPN),
}

/// The case's module, built from the config the script builds it from.
fn build(case: &str, vs: &VarStore) -> Module {
    let hrnet = |cfg: serde_json::Value| Module::Backbone(HRNet::new(&serde_json::from_value::<HRNetConfig>(cfg).unwrap(), vs.root()).unwrap());
    let hrfpn = |cfg: serde_json::Value| Module::Neck(HRFPN::new(&serde_json::from_value::<HRFPNConfig>(cfg).unwrap(), vs.root()).unwrap());
    match case {
        "hrnet" => hrnet(json!({"extra": extra(), "norm_eval": false})),
        "hrnet_one" => hrnet(json!({"extra": extra(), "norm_eval": true, "multiscale_output": false})),
        "hrfpn" => hrfpn(json!({"in_channels": [4, 8, 16, 32], "out_channels": 8})),
        "hrfpn_max" => hrfpn(json!({"in_channels": [4, 8, 16, 32], "out_channels": 8, "num_outs": 4,
            "pooling_type": "MAX", "stride": 2, "init_cfg": null})),
        other => panic!("unknown case {other}"),
    }
}

fn check_case(case: &str) {
    let _seed = crate::models::layers::fixtures::seeded();
    let vs = VarStore::new(Device::Cpu);
    let module = build(case, &vs);
    check_module_case(fixture(), case, &vs, |inputs| match &module {
        Module::Backbone(m) => m.forward_t(&inputs[0], true).unwrap(),
        Module::Neck(m) => m.forward_t(inputs, true).unwrap(),
    });
}

#[test]
fn hrnet_equals_mmdet() {
    check_case("hrnet");
}

#[test]
fn hrnet_with_one_output_and_norm_eval_equals_mmdet() {
    check_case("hrnet_one");
}

#[test]
fn hrfpn_equals_mmdet() {
    check_case("hrfpn");
}

#[test]
fn hrfpn_with_max_pooling_and_strided_convs_equals_mmdet() {
    check_case("hrfpn_max");
}

#[test]
fn hrnet_configs_mmdet_refuses_are_errors() {
    let mut cfg = json!({"extra": extra()});
    cfg["extra"]["stage3"]["num_blocks"] = json!([1, 1]);
    let cfg: HRNetConfig = serde_json::from_value(cfg).unwrap();
    let err = HRNet::new(&cfg, VarStore::new(Device::Cpu).root()).unwrap_err();
    assert!(err.message.contains("stage3"), "{err}");
}
