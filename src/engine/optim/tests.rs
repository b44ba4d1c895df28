//! Optimizer steps, clipping, accumulation and paramwise groups against
//! torch.optim / MMEngine (tests/engine/optim_reference.py), and exact
//! resume from a saved state.

use std::collections::HashMap;
use std::sync::OnceLock;

use detc::checkpoint::{self, Value};
use detc::registry::refs::OptimWrapperCfg;
use indexmap::IndexMap;
use serde_json::{json, Value as Json};
use tch::{Kind, Tensor};

use super::*;
use super::optimizers::multi_tensor;
use crate::models::layers::fixtures::{assert_close, run_script, tensor, StateDict};

struct Fixture {
    tensors: StateDict,
    meta: Json,
    /// torch's `optimizer.state_dict()` after 3 steps, per case.
    torch_states: HashMap<String, Value>,
}

fn fixture() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("detc-optim-fixture-{}", std::process::id()));
        run_script("tests/engine/optim_reference.py", &dir);
        let tensors = checkpoint::load(&dir.join("optim.pth")).unwrap().state_dict;
        let meta: Json =
            serde_json::from_str(&std::fs::read_to_string(dir.join("optim.json")).unwrap())
                .unwrap();
        let mut torch_states = HashMap::new();
        for case in meta["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap().to_string();
            let v = checkpoint::load_value(&dir.join(format!("torch_state_{name}.pth"))).unwrap();
            torch_states.insert(name, v);
        }
        let _ = std::fs::remove_dir_all(&dir);
        Fixture {
            tensors,
            meta,
            torch_states,
        }
    })
}

fn fx(key: &str) -> Tensor {
    tensor(&fixture().tensors, key)
}

fn case(name: &str) -> &'static Json {
    fixture().meta["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

fn leaf(t: &Tensor) -> Tensor {
    t.detach().copy().set_requires_grad(true)
}

/// Makes `p.grad` equal `g` (exactly): the gradient of `sum(p * g)`.
fn set_grads(params: &[&Tensor], grads: &[Tensor]) {
    let loss = params
        .iter()
        .zip(grads)
        .map(|(p, g)| (*p * g).sum(p.kind()))
        .reduce(|a, b| a + b)
        .unwrap();
    loss.backward();
}

/// The case's optimizer over (p0, p1): p0 in a group with the defaults, p1
/// in a group with its own lr and weight decay, as the reference builds it.
fn optimizer(c: &Json, p0: Tensor, p1: Tensor) -> Optimizer {
    optimizer_on(Path::Default, c, p0, p1)
}

/// torch.optim's two update paths: on CPU tensors `Default` is the
/// single-tensor one; `Foreach` is the multi-tensor one (`foreach: true`).
#[derive(Clone, Copy, Debug)]
enum Path {
    Default,
    Foreach,
}

impl Path {
    /// (atol, rtol) against torch's single-tensor results: the multi-tensor
    /// path runs torch's own operations (bit for bit); the single-tensor one
    /// rounds `a.add(b, alpha=s)` twice where torch rounds once.
    fn tolerance(self, dtype: &str) -> (f64, f64) {
        match (self, dtype) {
            (Path::Foreach, _) => (0.0, 0.0),
            (Path::Default, "f32") => (1e-7, 1e-6),
            (Path::Default, _) => (1e-15, 1e-12),
        }
    }
}

fn optimizer_on(path: Path, c: &Json, p0: Tensor, p1: Tensor) -> Optimizer {
    let mut cfg = c["cfg"].clone();
    if let Path::Foreach = path {
        cfg["foreach"] = json!(true);
    }
    let spec = OptimizerSpec::from_cfg(&cfg).unwrap();
    let g1 = &c["group1"];
    let groups = vec![
        ParamGroup {
            params: vec![p0],
            names: vec!["p0".into()],
            lr: spec.lr,
            weight_decay: spec.weight_decay,
            initial_lr: None,
        },
        ParamGroup {
            params: vec![p1],
            names: vec!["p1".into()],
            lr: g1["lr"].as_f64().unwrap(),
            weight_decay: g1["weight_decay"].as_f64().unwrap(),
            initial_lr: None,
        },
    ];
    Optimizer::new(spec, groups)
}

fn params(o: &Optimizer) -> (Tensor, Tensor) {
    (
        o.groups[0].params[0].shallow_clone(),
        o.groups[1].params[0].shallow_clone(),
    )
}

/// Steps `from..to` with the reference gradients of `dtype`.
fn run_steps(
    o: &mut Optimizer,
    dtype: &str,
    from: usize,
    to: usize,
    mut check: impl FnMut(usize, &Optimizer),
) {
    for s in from..to {
        let (p0, p1) = params(o);
        set_grads(
            &[&p0, &p1],
            &[
                fx(&format!("{dtype}.grad{s}.p0")),
                fx(&format!("{dtype}.grad{s}.p1")),
            ],
        );
        o.step().unwrap();
        o.zero_grad();
        check(s, o);
    }
}

fn check_case(name: &str) {
    let c = case(name);
    for path in [Path::Default, Path::Foreach] {
        for dtype in ["f32", "f64"] {
            let (atol, rtol) = path.tolerance(dtype);
            let mut o = optimizer_on(
                path,
                c,
                leaf(&fx(&format!("{dtype}.init.p0"))),
                leaf(&fx(&format!("{dtype}.init.p1"))),
            );
            run_steps(&mut o, dtype, 0, 5, |s, o| {
                let (p0, p1) = params(o);
                for (p, k) in [(p0, "p0"), (p1, "p1")] {
                    let want = fx(&format!("{name}.{dtype}.step{s}.{k}"));
                    assert_eq!(p.kind(), want.kind());
                    let what = format!("{name} {path:?} {dtype} step {s} {k}");
                    assert_close(&p, &want, atol, rtol, &what);
                }
            });
        }
    }
}

#[test]
fn sgd_momentum_matches_torch() {
    check_case("sgd");
}

#[test]
fn sgd_nesterov_matches_torch() {
    check_case("sgd_nesterov");
}

#[test]
fn sgd_dampening_and_plain_match_torch() {
    check_case("sgd_dampening");
    check_case("sgd_plain");
}

#[test]
fn adam_matches_torch() {
    check_case("adam");
    check_case("adam_amsgrad");
}

#[test]
fn adamw_matches_torch() {
    check_case("adamw");
    check_case("adamw_amsgrad");
}

/// torch's own `state_dict()` after 3 steps loads into ours, and steps 4-5
/// then equal torch's uninterrupted run.
#[test]
fn torch_state_dict_loads_and_continues() {
    for c in fixture().meta["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        for path in [Path::Default, Path::Foreach] {
            let (atol, rtol) = path.tolerance("f32");
            let mut o = optimizer_on(
                path,
                c,
                leaf(&fx(&format!("{name}.f32.step2.p0"))),
                leaf(&fx(&format!("{name}.f32.step2.p1"))),
            );
            o.load_state_dict(&fixture().torch_states[name]).unwrap();
            run_steps(&mut o, "f32", 3, 5, |_, _| {});
            let (p0, p1) = params(&o);
            let what = format!("{name} {path:?}");
            assert_close(&p0, &fx(&format!("{name}.f32.step4.p0")), atol, rtol, &what);
            assert_close(&p1, &fx(&format!("{name}.f32.step4.p1")), atol, rtol, &what);
        }
    }
}

/// Saving after 2 steps (through a `.pth` as the runner writes it) and
/// continuing in a fresh optimizer equals the uninterrupted run bit for bit.
#[test]
fn state_round_trip_is_bit_exact() {
    let dir = std::env::temp_dir().join(format!("detc-optim-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["sgd_nesterov", "adamw_amsgrad", "adam"] {
        let c = case(name);
        let init = |k: &str| leaf(&fx(&format!("f64.init.{k}")));
        let mut full = optimizer(c, init("p0"), init("p1"));
        run_steps(&mut full, "f64", 0, 5, |_, _| {});

        let mut first = optimizer(c, init("p0"), init("p1"));
        run_steps(&mut first, "f64", 0, 2, |_, _| {});
        let path = dir.join(format!("{name}.pth"));
        let meta = Value::Dict(vec![(
            Value::Str("optimizer".into()),
            first.state_dict().unwrap(),
        )]);
        checkpoint::save_pth(&path, &IndexMap::new(), Some(&meta)).unwrap();
        let saved = checkpoint::load_value(&path).unwrap();
        let state = saved.get("meta").and_then(|m| m.get("optimizer")).unwrap();

        let (q0, q1) = params(&first);
        let mut resumed = optimizer(c, leaf(&q0), leaf(&q1));
        resumed.load_state_dict(state).unwrap();
        run_steps(&mut resumed, "f64", 2, 5, |_, _| {});
        let (a0, a1) = params(&full);
        let (b0, b1) = params(&resumed);
        assert!(
            a0.equal(&b0) && a1.equal(&b1),
            "{name}: resumed run differs"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn clip_grad_norm_matches_torch() {
    for (i, c) in fixture().meta["clips"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let max_norm = c["max_norm"].as_f64().unwrap();
        let norm_type = c["norm_type"].as_f64().unwrap_or(f64::INFINITY);
        for (foreach, tol) in [(None, 1e-6), (Some(true), 0.0)] {
            let p0 = Tensor::zeros([3, 4], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
            let p1 = Tensor::zeros([5], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
            set_grads(
                &[&p0, &p1],
                &[fx(&format!("clip.{i}.g0")), fx(&format!("clip.{i}.g1"))],
            );
            let norm = clip_grad_norm(&[&p0, &p1], max_norm, norm_type, false, foreach)
                .unwrap()
                .double_value(&[]);
            let want = fx(&format!("clip.{i}.norm")).double_value(&[0]);
            // The multi-tensor path runs torch's operations: equal bit for bit.
            assert!(
                (norm - want).abs() <= tol * want,
                "clip {i} {foreach:?}: norm {norm}, torch {want}"
            );
            let what = |g: &str| format!("clip {i} {foreach:?} {g}");
            assert_close(&p0.grad(), &fx(&format!("clip.{i}.out0")), tol / 10.0, tol, &what("g0"));
            assert_close(&p1.grad(), &fx(&format!("clip.{i}.out1")), tol / 10.0, tol, &what("g1"));
        }
    }
}

/// `error_if_nonfinite`: an infinite gradient is an error naming the norm,
/// and no gradient is scaled.
#[test]
fn clip_grad_norm_refuses_a_non_finite_total() {
    for foreach in [None, Some(true)] {
        let p = Tensor::zeros([3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let g = Tensor::from_slice(&[1.0f32, f32::INFINITY, 2.0]);
        set_grads(&[&p], &[g.copy()]);
        let err = clip_grad_norm(&[&p], 1.0, 2.0, true, foreach).unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{foreach:?}: {err}");
        assert_eq!(p.grad(), g, "{foreach:?}");
    }
}

/// torch's choice of path (`foreach=None`): CPU parameters take the
/// single-tensor updates, CUDA ones the multi-tensor updates; `foreach`
/// picks one; `differentiable` forces the single-tensor one; `fused` is refused.
#[test]
fn the_update_path_is_chosen_as_torch_chooses_it() {
    let cpu = [Tensor::zeros([2], (Kind::Float, tch::Device::Cpu))];
    let spec = |extra: Json| {
        let mut cfg = json!({"type": "SGD", "lr": 0.1});
        cfg.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        OptimizerSpec::from_cfg(&cfg)
    };
    let on_cpu = |extra: Json| multi_tensor(spec(extra).unwrap().foreach, &cpu);
    assert!(!on_cpu(json!({})));
    assert!(on_cpu(json!({"foreach": true})));
    assert!(!on_cpu(json!({"foreach": false})));
    assert!(!on_cpu(json!({"foreach": true, "differentiable": true})));
    assert!(multi_tensor(None, &[]), "no parameter is on the CPU");
    let err = spec(json!({"fused": true})).unwrap_err().to_string();
    assert!(err.contains("fused"), "{err}");
}

/// `accumulative_counts` with a remainder window, with and without clipping,
/// through `update_params`, against MMEngine's `OptimWrapper`.
#[test]
fn accumulation_matches_mmengine() {
    for a in fixture().meta["accum"].as_array().unwrap() {
        let name = a["name"].as_str().unwrap();
        let key = |k: &str| format!("accum.{name}.{k}");
        let w = leaf(&fx(&key("w_init")));
        let mut cfg = json!({"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
                             "accumulative_counts": a["accumulative_counts"]});
        if !a["clip_grad"].is_null() {
            cfg["clip_grad"] = a["clip_grad"].clone();
        }
        let params = vec![NamedParam {
            name: "w".into(),
            tensor: w.shallow_clone(),
            is_norm: false,
        }];
        let mut wrapper = build_optim_wrapper(&OptimWrapperCfg(cfg), params).unwrap();
        let max_iters = a["max_iters"].as_u64().unwrap();
        wrapper.initialize_count_status(0, max_iters);
        for i in 0..max_iters {
            let (x, y) = (fx(&key(&format!("x{i}"))), fx(&key(&format!("y{i}"))));
            let loss = ((&w * &x).sum(Kind::Double) - y.get(0)).square();
            let stepped = wrapper.update_params(&loss).unwrap();
            assert_close(
                &w,
                &fx(&key(&format!("w{i}"))),
                1e-15,
                1e-12,
                &format!("{name} iteration {i}"),
            );
            let gn = fx(&key(&format!("grad_norm{i}"))).double_value(&[0]);
            if gn != -1.0 {
                let ours = wrapper.grad_norm().unwrap().double_value(&[]);
                assert!(
                    stepped && (ours - gn).abs() <= 1e-12 * gn,
                    "{name} iteration {i}: grad_norm {ours}, MMEngine {gn}"
                );
            }
        }
    }
}

/// `DefaultOptimWrapperConstructor`'s groups (order, lr, weight decay) on
/// QueryInst-like names, with `is_norm` guessed from the names.
#[test]
fn paramwise_groups_match_mmengine() {
    for c in fixture().meta["paramwise"].as_array().unwrap() {
        let case = c["name"].as_str().unwrap();
        let expected = c["params"].as_array().unwrap();
        let params = expected
            .iter()
            .map(|p| {
                let name = p["name"].as_str().unwrap().to_string();
                let shape: Vec<i64> = p["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_i64().unwrap())
                    .collect();
                NamedParam {
                    is_norm: is_norm_param_name(&name),
                    name,
                    tensor: Tensor::zeros(shape, (Kind::Float, tch::Device::Cpu))
                        .set_requires_grad(true),
                }
            })
            .collect();
        let mut cfg = json!({"type": "OptimWrapper", "optimizer": c["optimizer"]});
        if !c["paramwise_cfg"].is_null() {
            cfg["paramwise_cfg"] = c["paramwise_cfg"].clone();
        }
        let wrapper = build_optim_wrapper(&OptimWrapperCfg(cfg), params).unwrap();
        let groups = &wrapper.optimizer.groups;
        assert_eq!(
            groups.len() as u64,
            c["num_groups"].as_u64().unwrap(),
            "{case}: group count"
        );
        let flat: Vec<(&str, f64, f64)> = groups
            .iter()
            .flat_map(|g| {
                g.names
                    .iter()
                    .map(move |n| (n.as_str(), g.lr, g.weight_decay))
            })
            .collect();
        assert_eq!(flat.len(), expected.len());
        for ((name, lr, wd), want) in flat.iter().zip(expected) {
            assert_eq!(*name, want["name"].as_str().unwrap(), "{case}: group order");
            let (wlr, wwd) = (
                f64::from_bits(want["lr"].as_u64().unwrap()),
                f64::from_bits(want["weight_decay"].as_u64().unwrap()),
            );
            assert_eq!(
                (lr.to_bits(), wd.to_bits()),
                (wlr.to_bits(), wwd.to_bits()),
                "{case}: {name}: lr {lr} wd {wd}, MMEngine lr {wlr} wd {wwd}"
            );
        }
    }
}

#[test]
fn norm_names_of_queryinst_modules() {
    for (name, norm) in [
        ("backbone.bn1.weight", true),
        ("backbone.layer3.5.bn3.bias", true),
        ("backbone.layer1.0.downsample.1.weight", true),
        ("backbone.layer1.0.downsample.0.weight", false),
        ("backbone.conv1.weight", false),
        ("neck.fpn_convs.0.conv.bias", false),
        ("roi_head.bbox_head.0.attention_norm.weight", true),
        ("roi_head.bbox_head.0.ffn_norm.bias", true),
        (
            "roi_head.bbox_head.0.instance_interactive_conv_norm.weight",
            true,
        ),
        (
            "roi_head.bbox_head.0.instance_interactive_conv.norm_in.weight",
            true,
        ),
        (
            "roi_head.bbox_head.0.instance_interactive_conv.norm_out.bias",
            true,
        ),
        (
            "roi_head.bbox_head.0.instance_interactive_conv.fc_norm.weight",
            true,
        ),
        ("roi_head.bbox_head.0.cls_fcs.0.weight", false),
        ("roi_head.bbox_head.0.cls_fcs.1.weight", true),
        ("roi_head.bbox_head.0.reg_fcs.7.bias", true),
        ("roi_head.bbox_head.0.reg_fcs.6.weight", false),
        ("roi_head.bbox_head.0.attention.attn.in_proj_weight", false),
        ("roi_head.bbox_head.0.ffn.layers.0.0.weight", false),
        ("roi_head.mask_head.0.convs.0.bn.weight", true),
        ("roi_head.mask_head.0.conv_logits.bias", false),
        ("rpn_head.init_proposal_features.weight", false),
    ] {
        assert_eq!(is_norm_param_name(name), norm, "{name}");
    }
}

#[test]
fn unsupported_wrappers_are_errors() {
    let other = json!({"type": "ApexOptimWrapper", "optimizer": {"type": "SGD", "lr": 0.1}});
    let err = build_optim_wrapper(&OptimWrapperCfg(other), Vec::new()).unwrap_err();
    assert!(err.to_string().contains("is not supported"), "{err}");
    let lars = json!({"optimizer": {"type": "LARS", "lr": 0.1}});
    assert!(build_optim_wrapper(&OptimWrapperCfg(lars), Vec::new()).is_err());
    // A custom_keys entry that MMEngine would copy into the parameter group.
    let momentum = json!({"optimizer": {"type": "SGD", "lr": 0.1},
        "paramwise_cfg": {"custom_keys": {"backbone": {"lr_mult": 0.1, "momentum": 0.5}}}});
    let err = build_optim_wrapper(&OptimWrapperCfg(momentum), Vec::new()).unwrap_err();
    assert!(err.to_string().contains("custom_keys.backbone.momentum is not supported"), "{err}");
}

#[test]
fn named_trainable_keeps_creation_order_and_names() {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let root = vs.root();
    let _w = root
        .sub("backbone")
        .sub("conv1")
        .var("weight", &[2, 3], tch::nn::Init::Const(0.0));
    let _b = root
        .sub("backbone")
        .sub("bn1")
        .var("bias", &[2], tch::nn::Init::Const(0.0));
    let _frozen = root
        .sub("backbone")
        .sub("bn1")
        .zeros_no_train("running_mean", &[2]);
    let _n = root
        .sub("neck")
        .sub("norm")
        .var("weight", &[2], tch::nn::Init::Const(0.0));
    let got: Vec<(String, bool)> = named_trainable(&vs, is_norm_param_name)
        .into_iter()
        .map(|p| (p.name, p.is_norm))
        .collect();
    let want = [
        ("backbone.conv1.weight", false),
        ("backbone.bn1.bias", true),
        ("neck.norm.weight", true),
    ];
    assert_eq!(got, want.map(|(n, b)| (n.to_string(), b)));
}

/// After `zero_grad` a parameter that gets no gradient is skipped by `step`
/// (torch's set-to-none semantics): no weight decay, no momentum.
#[test]
fn parameter_without_gradient_is_not_updated() {
    let c = case("sgd");
    let mut o = optimizer(c, leaf(&fx("f32.init.p0")), leaf(&fx("f32.init.p1")));
    run_steps(&mut o, "f32", 0, 1, |_, _| {});
    let (p0, p1) = params(&o);
    assert!(!p1.grad().defined(), "zero_grad leaves no gradient");
    let before = p1.detach().copy();
    set_grads(&[&p0], &[fx("f32.grad1.p0")]);
    o.step().unwrap();
    assert!(p1.equal(&before));
    assert!(!p0.equal(&fx("f32.init.p0")));
}
