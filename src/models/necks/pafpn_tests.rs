//! `PAFPN` against MMDetection's own (`tests/models/pafpn_reference.py`,
//! run once per test process): names, initialisation, train-mode outputs
//! and every gradient, with max-pooled extra levels, and from the second
//! level with stride-2 extra convs on the outputs and GroupNorm convs.

use std::sync::OnceLock;

use detc::registry::models::necks::FPNConfig;
use serde_json::json;
use tch::nn::VarStore;
use tch::Device;

use super::FPN;
use crate::models::layers::fixtures::{check_module_case, script_state_dict, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/pafpn_reference.py", "detc-pafpn", "pafpn.pth"))
}

fn check_case(case: &str, cfg: serde_json::Value) {
    let _seed = crate::models::layers::fixtures::seeded();
    let vs = VarStore::new(Device::Cpu);
    let neck = FPN::pafpn(&serde_json::from_value::<FPNConfig>(cfg).unwrap(), vs.root()).unwrap();
    check_module_case(fixture(), case, &vs, |inputs| neck.forward_t(inputs, true).unwrap());
}

#[test]
fn pafpn_equals_mmdet() {
    check_case("plain", json!({"in_channels": [8, 16, 32, 64], "out_channels": 8, "num_outs": 5}));
}

#[test]
fn pafpn_with_extra_convs_and_group_norm_equals_mmdet() {
    check_case(
        "extra",
        json!({"in_channels": [8, 16, 32, 64], "out_channels": 8, "num_outs": 5, "start_level": 1,
               "add_extra_convs": "on_output", "relu_before_extra_convs": true,
               "norm_cfg": {"type": "GN", "num_groups": 2, "requires_grad": true}}),
    );
}

#[test]
fn pafpn_refuses_an_upsample_cfg() {
    let vs = VarStore::new(Device::Cpu);
    let cfg = json!({"in_channels": [8, 16], "out_channels": 8, "num_outs": 2, "upsample_cfg": {"mode": "nearest", "scale_factor": 2.0}});
    let err = FPN::pafpn(&serde_json::from_value::<FPNConfig>(cfg).unwrap(), vs.root()).unwrap_err();
    assert!(err.to_string().contains("upsample_cfg"), "{err}");
}
