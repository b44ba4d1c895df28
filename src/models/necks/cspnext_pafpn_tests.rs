//! `CSPNeXtPAFPN` against MMDetection's own (`tests/models/rtmdet_reference.py`,
//! run once per test process): names, initialisation, train-mode outputs
//! and every gradient, plain and depthwise with two blocks per CSP layer.

use std::sync::OnceLock;

use detc::registry::models::necks::CSPNeXtPAFPNConfig;
use serde_json::json;
use tch::nn::VarStore;
use tch::Device;

use super::CSPNeXtPAFPN;
use crate::models::layers::fixtures::{check_module_case, script_state_dict, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/rtmdet_reference.py", "detc-rtmdet", "rtmdet.pth"))
}

fn check_case(case: &str, cfg: serde_json::Value) {
    let _seed = crate::models::layers::fixtures::seeded();
    let vs = VarStore::new(Device::Cpu);
    let neck = CSPNeXtPAFPN::new(&serde_json::from_value::<CSPNeXtPAFPNConfig>(cfg).unwrap(), vs.root()).unwrap();
    check_module_case(fixture(), case, &vs, |inputs| neck.forward_t(inputs, true).unwrap());
}

#[test]
fn cspnext_pafpn_equals_mmdet() {
    check_case(
        "pafpn",
        json!({"in_channels": [8, 16, 32], "out_channels": 8, "num_csp_blocks": 1, "expand_ratio": 0.5,
               "act_cfg": {"type": "SiLU"}}),
    );
}

#[test]
fn cspnext_pafpn_depthwise_equals_mmdet() {
    check_case(
        "pafpn_dw",
        json!({"in_channels": [8, 16, 32], "out_channels": 8, "num_csp_blocks": 2, "expand_ratio": 0.5,
               "use_depthwise": true, "act_cfg": {"type": "SiLU"},
               "norm_cfg": {"type": "BN", "momentum": 0.1, "eps": 1e-5}}),
    );
}
