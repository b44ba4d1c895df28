//! `ResNeSt` and `Res2Net` against MMDetection's own
//! (`tests/models/resnest_reference.py`, run once per test process): names,
//! initialisation, train-mode outputs and every gradient; ResNeSt with radix
//! 2 and the average-pool stride, and with two cardinal groups, radix 1 and
//! the stride in the conv; Res2Net with 4 scales.

use std::sync::OnceLock;

use detc::registry::models::backbones::{Res2NetConfig, ResNeStConfig};
use serde_json::json;
use tch::nn::VarStore;
use tch::Device;

use crate::models::backbones::ResNet;
use crate::models::layers::fixtures::{check_module_case, script_state_dict, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/resnest_reference.py", "detc-resnest", "resnest.pth"))
}

fn check_case(case: &str) {
    let _seed = crate::models::layers::fixtures::seeded();
    let mut cfg = json!({"depth": 50, "base_channels": 16, "stem_channels": 16, "num_stages": 4,
        "out_indices": [0, 1, 2, 3], "frozen_stages": 1, "norm_eval": false, "style": "pytorch"});
    let extra = match case {
        "s50" => json!({"radix": 2, "reduction_factor": 4, "avg_down_stride": true}),
        "s50_g2" => json!({"groups": 2, "base_width": 4, "radix": 1, "reduction_factor": 2, "avg_down_stride": false}),
        "r2_50" => json!({"scales": 4, "base_width": 6}),
        other => panic!("unknown case {other}"),
    };
    cfg.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let vs = VarStore::new(Device::Cpu);
    let net = if case == "r2_50" {
        ResNet::res2net(&serde_json::from_value::<Res2NetConfig>(cfg).unwrap(), vs.root()).unwrap()
    } else {
        ResNet::resnest(&serde_json::from_value::<ResNeStConfig>(cfg).unwrap(), vs.root()).unwrap()
    };
    check_module_case(fixture(), case, &vs, |inputs| net.forward_t(&inputs[0], true).unwrap());
}

#[test]
fn resnest50_equals_mmdet() {
    check_case("s50");
}

#[test]
fn resnest50_with_groups_and_one_split_equals_mmdet() {
    check_case("s50_g2");
}

#[test]
fn res2net50_equals_mmdet() {
    check_case("r2_50");
}
