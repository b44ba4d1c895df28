//! `DyHead` against MMDetection's own (`tests/models/dyhead_reference.py`,
//! run once per test process, MMCV's modulated deformable conv kernel
//! re-stated over torchvision's): names, initialisation, outputs and every
//! gradient, over three levels of unequal sizes (the coarser level's conv
//! taking the level's offsets as MMCV's kernel reads them), with the
//! offsets learned (not zero) so that the sampling moves.

use std::sync::OnceLock;

use detc::registry::models::necks::DyHeadConfig;
use serde_json::json;
use tch::nn::VarStore;
use tch::Device;

use super::DyHead;
use crate::models::layers::fixtures::{check_module_case, script_state_dict, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/dyhead_reference.py", "detc-dyhead", "dyhead.pth"))
}

fn check_case(case: &str, cfg: serde_json::Value) {
    let _seed = crate::models::layers::fixtures::seeded();
    let vs = VarStore::new(Device::Cpu);
    let neck = DyHead::new(&serde_json::from_value::<DyHeadConfig>(cfg).unwrap(), vs.root()).unwrap();
    check_module_case(fixture(), case, &vs, |inputs| neck.forward_t(inputs, true).unwrap());
}

#[test]
fn dyhead_equals_mmdet() {
    check_case("plain", json!({"in_channels": 16, "out_channels": 16, "num_blocks": 2}));
}

#[test]
fn dyhead_from_other_channels_without_zero_offsets_equals_mmdet() {
    check_case("wide", json!({"in_channels": 8, "out_channels": 32, "num_blocks": 1, "zero_init_offset": false}));
}
