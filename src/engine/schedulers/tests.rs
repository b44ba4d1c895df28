//! The lr of every param group at every iteration against MMEngine's
//! schedulers (tests/engine/schedulers_reference.py), bit for bit, and a
//! resume in the middle of an epoch.

use std::path::PathBuf;
use std::sync::OnceLock;

use detc::registry::models::common::OneOrMany;
use detc::registry::refs::ParamSchedulerCfg;
use serde_json::Value as Json;
use tch::{Kind, Tensor};

use super::{ScheduleContext, Schedulers};
use crate::engine::optim::{OptimWrapper, Optimizer, OptimizerSpec, ParamGroup};
use crate::models::layers::fixtures::run_script;

fn scenarios() -> &'static Vec<Json> {
    static FX: OnceLock<Vec<Json>> = OnceLock::new();
    FX.get_or_init(|| {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("detc-schedulers-fixture-{}", std::process::id()));
        run_script("tests/engine/schedulers_reference.py", &dir);
        let text = std::fs::read_to_string(dir.join("schedulers.json")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        serde_json::from_str(&text).unwrap()
    })
}

fn scenario(name: &str) -> &'static Json {
    scenarios()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no scenario {name}"))
}

fn bits(v: &Json) -> f64 {
    f64::from_bits(v.as_u64().unwrap())
}

/// An optimizer wrapper with one tiny parameter per group at the
/// scenario's lrs (exact bits), as the Python side builds it.
fn wrapper(sc: &Json) -> OptimWrapper {
    let spec = OptimizerSpec::from_cfg(&sc["optimizer"]).unwrap();
    let groups = sc["group_lr_bits"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, b)| ParamGroup {
            params: vec![
                Tensor::zeros([2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true)
            ],
            names: vec![format!("p{i}")],
            lr: bits(b),
            weight_decay: spec.weight_decay,
            initial_lr: None,
        })
        .collect();
    let mut w = OptimWrapper::new(Optimizer::new(spec, groups), 1, None).unwrap();
    if let Some(base) = w.base_param_settings.as_mut() {
        base.lr = bits(&sc["optimizer_lr_bits"]);
    }
    w
}

fn context(sc: &Json) -> ScheduleContext {
    let epoch_length = sc["epoch_length"].as_u64().unwrap();
    let max_epochs = sc["max_epochs"].as_u64().unwrap();
    ScheduleContext {
        epoch_length,
        max_epochs,
        max_iters: epoch_length * max_epochs,
    }
}

fn build(sc: &Json, w: &mut OptimWrapper) -> Schedulers {
    let cfg: OneOrMany<ParamSchedulerCfg> =
        serde_json::from_value(sc["param_scheduler"].clone()).unwrap();
    Schedulers::build(Some(&cfg), &context(sc), w).unwrap()
}

fn slots(w: &mut OptimWrapper) -> Vec<f64> {
    w.lr_slots().iter().map(|s| *s.lr).collect()
}

/// Runs iterations `from..` of the scenario's loop, checking each
/// iteration's lrs against the reference.
fn run_and_check(sc: &Json, w: &mut OptimWrapper, s: &mut Schedulers, from: usize) {
    let name = sc["name"].as_str().unwrap();
    let expected = sc["lrs"].as_array().unwrap();
    let len = sc["epoch_length"].as_u64().unwrap() as usize;
    for (it, want) in expected.iter().enumerate().skip(from) {
        let want: Vec<f64> = want.as_array().unwrap().iter().map(bits).collect();
        let got = slots(w);
        assert_eq!(got.len(), want.len(), "{name}: number of lr slots");
        for (g, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                a.to_bits() == b.to_bits(),
                "{name}: iteration {it}, group {g}: lr {a:e}, MMEngine {b:e}"
            );
        }
        s.step_iter(w);
        if (it + 1) % len == 0 {
            s.step_epoch(w);
        }
    }
}

fn check_scenario(name: &str) {
    let sc = scenario(name);
    let mut w = wrapper(sc);
    let mut s = build(sc, &mut w);
    run_and_check(sc, &mut w, &mut s, 0);
}

#[test]
fn warmup_multistep_matches_mmengine() {
    check_scenario("warmup_multistep");
}

#[test]
fn warmup_multistep_default_end_matches_mmengine() {
    check_scenario("warmup_multistep_default_end");
}

#[test]
fn cosine_converted_to_iterations_matches_mmengine() {
    check_scenario("cosine_converted");
}

#[test]
fn cosine_by_epoch_with_restart_branch_matches_mmengine() {
    check_scenario("cosine_epoch_restart");
}

#[test]
fn constant_matches_mmengine() {
    check_scenario("constant");
}

#[test]
fn step_and_exponential_match_mmengine() {
    check_scenario("step_exponential");
}

#[test]
fn step_by_iteration_and_exponential_by_epoch_match_mmengine() {
    check_scenario("step_by_iter_exponential_by_epoch");
}

/// `verbose: true`: the line MMEngine logs for each value a scheduler
/// sets, when it is built and at every step inside its window, in order.
#[test]
fn verbose_schedulers_log_what_mmengine_logs() {
    let sc = scenario("verbose");
    let mut w = wrapper(sc);
    let mut s = build(sc, &mut w);
    let mut lines = s.take_log();
    let len = sc["epoch_length"].as_u64().unwrap() as usize;
    for it in 0..len * sc["max_epochs"].as_u64().unwrap() as usize {
        s.step_iter(&mut w);
        if (it + 1) % len == 0 {
            s.step_epoch(&mut w);
        }
        lines.extend(s.take_log());
    }
    let want: Vec<&str> = sc["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(lines, want);
}

/// Save after 18 iterations (mid-epoch 4, inside the warm-up), rebuild
/// everything from the config, restore, and continue: MMEngine's lrs.
#[test]
fn resume_mid_epoch_continues_the_schedule() {
    let sc = scenario("warmup_multistep");
    let len = sc["epoch_length"].as_u64().unwrap() as usize;
    let stop = 18;
    let (opt_state, sched_state) = {
        let mut w = wrapper(sc);
        let mut s = build(sc, &mut w);
        for it in 0..stop {
            s.step_iter(&mut w);
            if (it + 1) % len == 0 {
                s.step_epoch(&mut w);
            }
        }
        (w.state_dict().unwrap(), s.state_dict())
    };
    let mut w = wrapper(sc);
    let mut s = build(sc, &mut w);
    w.load_state_dict(&opt_state).unwrap();
    s.load_state_dict(&sched_state).unwrap();
    run_and_check(sc, &mut w, &mut s, stop);
}

#[test]
fn unknown_and_invalid_configs_are_errors() {
    let sc = scenario("constant");
    let mut w = wrapper(sc);
    let bad = |v: Json, w: &mut OptimWrapper| {
        let cfg: OneOrMany<ParamSchedulerCfg> = serde_json::from_value(v).unwrap();
        Schedulers::build(Some(&cfg), &context(sc), w)
            .unwrap_err()
            .to_string()
    };
    assert!(bad(serde_json::json!({"type": "PolyLR"}), &mut w).contains("not supported"));
    assert!(bad(
        serde_json::json!({"type": "LinearLR", "begin": 5, "end": 5}),
        &mut w
    )
    .contains("end should be larger"));
    let msg = bad(
        serde_json::json!({"type": "LinearLR", "by_epoch": false, "convert_to_iter_based": true}),
        &mut w,
    );
    assert!(msg.contains("only epoch-based"), "{msg}");
    let msg = bad(
        serde_json::json!({"type": "StepLR", "step_size": 0}),
        &mut w,
    );
    assert!(msg.contains("`step_size` must be positive"), "{msg}");
    let msg = bad(serde_json::json!({"type": "ExponentialLR"}), &mut w);
    assert!(msg.contains("gamma"), "{msg}");
}
