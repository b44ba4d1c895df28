//! GHM's losses against MMDetection's own `GHMC` and `GHMR`
//! (`tests/models/ghm_reference.py`, run once per test process): three
//! calls in a row, as three FPN levels make them, with ignored samples and
//! background labels; each call's loss, input gradient and, with momentum,
//! the running counts it leaves in `acc_sum`.

use std::sync::OnceLock;

use serde_json::json;
use tch::nn::VarStore;
use tch::{Device, Kind};

use super::{Loss, LossArgs};
use crate::models::layers::fixtures::{assert_close, script_state_dict, tensor, StateDict};
use detc::registry::refs::LossCfg;

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/ghm_reference.py", "detc-ghm", "ghm.pth"))
}

fn fx(key: &str) -> tch::Tensor {
    tensor(fixture(), key)
}

fn check_case(case: &str, cfg: serde_json::Value) {
    let vs = VarStore::new(Device::Cpu);
    let loss = Loss::from_cfg_at(&LossCfg(cfg), &(vs.root() / "loss")).unwrap();
    let vars = vs.variables();
    assert_close(&vars["loss.edges"], &fx(&format!("{case}.edges")), 0.0, 0.0, &format!("{case} edges"));
    for i in 0..3 {
        let key = |what: &str| format!("{case}.{i}.{what}");
        let pred = fx(&key("pred")).set_requires_grad(true);
        let weight = fx(&key("weight"));
        // The head's avg_factor is passed and, as in MMDetection, not used.
        let got = loss.forward(&pred, &fx(&key("target")), LossArgs::default().weight(&weight).avg_factor(7.0)).unwrap();
        assert_close(&got, &fx(&key("loss")), 1e-6, 1e-5, &key("loss"));
        got.backward();
        assert_close(&pred.grad(), &fx(&key("grad")), 1e-7, 1e-5, &key("grad"));
        match fixture().contains_key(&key("acc_sum")) {
            true => assert_close(&vars["loss.acc_sum"], &fx(&key("acc_sum")), 1e-6, 1e-6, &key("acc_sum")),
            false => assert!(!vars.contains_key("loss.acc_sum"), "{case}: no acc_sum buffer without momentum"),
        }
    }
}

#[test]
fn ghmc_with_momentum_equals_mmdet_over_three_levels() {
    check_case("c", json!({"type": "GHMC", "bins": 30, "momentum": 0.75, "use_sigmoid": true, "loss_weight": 1.0}));
}

#[test]
fn ghmc_without_momentum_equals_mmdet() {
    check_case("c0", json!({"type": "GHMC", "bins": 10, "momentum": 0, "use_sigmoid": true, "loss_weight": 2.0}));
}

#[test]
fn ghmr_with_momentum_equals_mmdet_over_three_levels() {
    check_case("r", json!({"type": "GHMR", "mu": 0.02, "bins": 10, "momentum": 0.7, "loss_weight": 10.0}));
}

#[test]
fn ghmr_without_momentum_equals_mmdet() {
    check_case("r0", json!({"type": "GHMR", "mu": 0.02, "bins": 10, "momentum": 0, "loss_weight": 1.0}));
}

#[test]
fn ghmc_unreduced_equals_mmdet() {
    let vs = VarStore::new(Device::Cpu);
    let loss = Loss::from_cfg_at(&LossCfg(json!({"type": "GHMC", "bins": 10, "reduction": "none"})), &vs.root()).unwrap();
    let weight = fx("cn.weight");
    let got = loss.forward(&fx("cn.pred"), &fx("cn.target"), LossArgs::default().weight(&weight)).unwrap();
    assert_close(&got, &fx("cn.loss"), 1e-7, 1e-5, "unreduced loss");
    assert_eq!(got.kind(), Kind::Float);
}

#[test]
fn ghm_outside_an_anchor_head_is_refused_with_where_it_works() {
    let err = Loss::from_cfg(&LossCfg(json!({"type": "GHMC"}))).unwrap_err();
    assert!(err.to_string().contains("RetinaHead"), "{err}");
}
