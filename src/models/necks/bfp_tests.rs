//! Libra R-CNN's parts against MMDetection's own
//! (`tests/models/libra_reference.py`, run once per test process): `BFP`
//! refined by MMCV's `NonLocal2d` and by a GroupNorm ConvModule (names,
//! initialisation, train-mode outputs and every gradient), and
//! `BalancedL1Loss` on errors both sides of `beta`.

use std::sync::OnceLock;

use detc::registry::models::necks::BFPConfig;
use serde_json::json;
use tch::nn::VarStore;
use tch::Device;

use super::BFP;
use crate::models::layers::fixtures::{assert_close, check_module_case, script_state_dict, tensor, StateDict};
use crate::models::losses::{Loss, LossArgs};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/libra_reference.py", "detc-libra", "libra.pth"))
}

fn check_case(case: &str, cfg: serde_json::Value) {
    let _seed = crate::models::layers::fixtures::seeded();
    let vs = VarStore::new(Device::Cpu);
    let neck = BFP::new(&serde_json::from_value::<BFPConfig>(cfg).unwrap(), vs.root()).unwrap();
    check_module_case(fixture(), case, &vs, |inputs| neck.forward_t(inputs, true).unwrap());
}

#[test]
fn bfp_with_a_non_local_refinement_equals_mmdet() {
    check_case("nl", json!({"in_channels": 8, "num_levels": 5, "refine_level": 2, "refine_type": "non_local"}));
}

#[test]
fn bfp_with_a_conv_refinement_equals_mmdet() {
    check_case(
        "conv",
        json!({"in_channels": 8, "num_levels": 4, "refine_level": 1, "refine_type": "conv",
               "norm_cfg": {"type": "GN", "num_groups": 2, "requires_grad": true}}),
    );
}

#[test]
fn balanced_l1_loss_equals_mmdet() {
    let fx = |k: &str| tensor(fixture(), k);
    let cfg = detc::registry::refs::LossCfg(json!({"type": "BalancedL1Loss", "alpha": 0.5, "gamma": 1.5, "beta": 0.11, "loss_weight": 2.0}));
    let loss = Loss::from_cfg(&cfg).unwrap();
    let pred = fx("bl1.pred").set_requires_grad(true);
    let weight = fx("bl1.weight");
    let got = loss.forward(&pred, &fx("bl1.target"), LossArgs::default().weight(&weight).avg_factor(3.0)).unwrap();
    assert_close(&got, &fx("bl1.loss"), 1e-6, 1e-5, "loss");
    got.backward();
    assert_close(&pred.grad(), &fx("bl1.grad"), 1e-7, 1e-5, "gradient");
}
