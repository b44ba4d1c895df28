//! `GradScaler` and `AmpOptimWrapper` against torch.amp.GradScaler and
//! MMEngine's AmpOptimWrapper on the CPU (tests/engine/amp_reference.py):
//! the scale sequence and skipped steps on crafted gradients, and a few
//! bfloat16-autocast training iterations of a tiny conv + linear model.

use std::sync::OnceLock;

use detc::checkpoint::{self, Value};
use detc::registry::refs::OptimWrapperCfg;
use serde_json::{json, Value as Json};
use tch::{Device, Kind, Reduction, Tensor};

use super::*;
use crate::models::layers::fixtures::{assert_close, run_script, tensor, StateDict};

struct Fixture {
    tensors: StateDict,
    meta: Json,
}

fn fixture() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("detc-amp-fixture-{}", std::process::id()));
        run_script("tests/engine/amp_reference.py", &dir);
        let tensors = checkpoint::load(&dir.join("amp.pth")).unwrap().state_dict;
        let meta =
            serde_json::from_str(&std::fs::read_to_string(dir.join("amp.json")).unwrap()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        Fixture { tensors, meta }
    })
}

fn fx(key: &str) -> Tensor {
    tensor(&fixture().tensors, key)
}

fn leaf(t: &Tensor) -> Tensor {
    t.detach().copy().set_requires_grad(true)
}

/// Our scaler state as JSON, to compare with torch's `state_dict()`
/// (same keys in the same order, same numbers).
fn scaler_state_json(v: &Value) -> Json {
    let Value::Dict(items) = v else {
        panic!("state is not a dict: {v:?}")
    };
    let mut map = serde_json::Map::new();
    for (k, v) in items {
        let value = match v {
            Value::Float(x) => json!(x),
            Value::Int(i) => json!(i),
            other => panic!("unexpected {other:?}"),
        };
        map.insert(k.as_str().unwrap().to_string(), value);
    }
    Json::Object(map)
}

/// torch's ints and floats compare as numbers (`2000` vs `2000.0`).
fn assert_same_state(got: &Value, want: &Json, what: &str) {
    let got = scaler_state_json(got);
    let (g, w) = (got.as_object().unwrap(), want.as_object().unwrap());
    assert_eq!(
        g.keys().collect::<Vec<_>>(),
        w.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (k, v) in w {
        assert_eq!(g[k].as_f64(), v.as_f64(), "{what}: {k}");
    }
}

fn scaler_config(kwargs: &Json) -> GradScalerConfig {
    serde_json::from_value(kwargs.clone()).unwrap()
}

#[test]
fn grad_scaler_scale_sequence_and_skipped_steps_match_torch() {
    let meta = &fixture().meta["scaler"];
    let steps = meta["steps"].as_u64().unwrap() as usize;
    for case in meta["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let static_scale = case["static"].as_f64();
        let p = leaf(&fx("scaler.p_init"));
        let spec =
            OptimizerSpec::from_cfg(&json!({"type": "SGD", "lr": 0.1, "momentum": 0.9})).unwrap();
        let group = ParamGroup {
            params: vec![p.shallow_clone()],
            names: vec!["p".into()],
            lr: spec.lr,
            weight_decay: 0.0,
            initial_lr: None,
        };
        let mut opt = Optimizer::new(spec, vec![group]);
        let mut scaler = GradScaler::new(&scaler_config(&case["kwargs"])).unwrap();
        for k in 0..steps {
            let want = &case["steps"][k];
            let what = format!("{name} step {k}");
            let loss = (&p * fx(&format!("scaler.g{k}"))).sum(Kind::Float);
            scaler.scale(&loss).unwrap().backward();
            let stepped = scaler.step(&mut opt).unwrap();
            scaler.update(static_scale).unwrap();
            opt.zero_grad();
            assert_eq!(!stepped, want["skipped"].as_bool().unwrap(), "{what}");
            assert_eq!(
                scaler.get_scale().unwrap(),
                want["scale"].as_f64().unwrap(),
                "{what}"
            );
            assert_same_state(&scaler.state_dict().unwrap(), &want["state"], &what);
            assert_close(&p, &fx(&format!("scaler.{name}.p{k}")), 1e-7, 1e-6, &what);
        }
    }
}

#[test]
fn grad_scaler_state_dict_round_trips() {
    let case = &fixture().meta["scaler"]["cases"][1];
    let saved = &case["steps"][6]["state"];
    let mut scaler = GradScaler::new(&GradScalerConfig::default()).unwrap();
    let value = Value::Dict(
        saved
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let v = match v.as_i64() {
                    Some(i) if k != "scale" && !k.ends_with("factor") => Value::Int(i),
                    _ => Value::Float(v.as_f64().unwrap()),
                };
                (Value::Str(k.clone()), v)
            })
            .collect(),
    );
    scaler.load_state_dict(&value).unwrap();
    assert_same_state(&scaler.state_dict().unwrap(), saved, "loaded");
    // Once the scale tensors exist, loading fills them.
    let _ = scaler.scale(&Tensor::from(1.0f32)).unwrap();
    scaler.load_state_dict(&value).unwrap();
    assert_same_state(&scaler.state_dict().unwrap(), saved, "loaded twice");
    let empty = Value::Dict(Vec::new());
    assert!(scaler.load_state_dict(&empty).is_err());
}

#[test]
fn grad_scaler_refuses_out_of_order_calls_and_bad_factors() {
    let mut scaler = GradScaler::new(&GradScalerConfig::default()).unwrap();
    let spec = OptimizerSpec::from_cfg(&json!({"type": "SGD", "lr": 0.1})).unwrap();
    let mut opt = Optimizer::new(spec, Vec::new());
    let err = scaler.step(&mut opt).unwrap_err();
    assert!(err.to_string().contains("before scale()"), "{err}");
    let bad = GradScalerConfig {
        growth_factor: 1.0,
        ..GradScalerConfig::default()
    };
    assert!(GradScaler::new(&bad).is_err());
    let disabled = GradScalerConfig {
        enabled: false,
        ..GradScalerConfig::default()
    };
    let mut off = GradScaler::new(&disabled).unwrap();
    let loss = Tensor::from(3.0f32);
    assert!(off.scale(&loss).unwrap().equal(&loss));
    assert_eq!(off.get_scale().unwrap(), 1.0);
    assert_eq!(off.state_dict().unwrap(), Value::Dict(Vec::new()));
}

/// The reference's tiny model: conv 3->4 (3x3), ReLU, linear 64->2.
struct Tiny {
    conv_w: Tensor,
    conv_b: Tensor,
    fc_w: Tensor,
    fc_b: Tensor,
}

const TINY_NAMES: [&str; 4] = ["conv.weight", "conv.bias", "fc.weight", "fc.bias"];

impl Tiny {
    fn from_fixture() -> Self {
        let p = |n: &str| leaf(&fx(&format!("train.init.{n}")));
        Tiny {
            conv_w: p("conv.weight"),
            conv_b: p("conv.bias"),
            fc_w: p("fc.weight"),
            fc_b: p("fc.bias"),
        }
    }

    fn params(&self) -> [&Tensor; 4] {
        [&self.conv_w, &self.conv_b, &self.fc_w, &self.fc_b]
    }

    fn named(&self) -> Vec<NamedParam> {
        TINY_NAMES
            .iter()
            .zip(self.params())
            .map(|(n, t)| NamedParam {
                name: n.to_string(),
                tensor: t.shallow_clone(),
                is_norm: false,
            })
            .collect()
    }

    /// x: (N, 3, 6, 6) -> (N, 2)
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(&self.conv_w, Some(&self.conv_b), [1, 1], [0, 0], [1, 1], 1)
            .relu()
            .flatten(1, -1)
            .linear(&self.fc_w, Some(&self.fc_b))
    }
}

fn train_case(name: &str) -> &'static Json {
    fixture().meta["train"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

/// Trains the tiny model with the case's wrapper from iteration `from` to
/// the case's last, checking every iteration against MMEngine.
fn run_train_case(case: &Json, model: &Tiny, wrapper: &mut OptimWrapper, from: usize) {
    let name = case["name"].as_str().unwrap();
    let iters = case["iters"].as_array().unwrap().len();
    for k in from..iters {
        let want = &case["iters"][k];
        let what = format!("{name} iteration {k}");
        let (pred, loss) = wrapper.optim_context(|| {
            let pred = model.forward(&fx(&format!("train.x{k}")));
            let loss = pred.mse_loss(&fx(&format!("train.y{k}")), Reduction::Mean);
            (pred, loss)
        });
        assert_eq!(pred.kind(), Kind::BFloat16, "{what}: autocast");
        assert_eq!(loss.kind(), Kind::Float, "{what}: mse_loss runs in float32");
        let loss_value = loss.double_value(&[]);
        let want_loss = want["loss"].as_f64().unwrap();
        assert!(
            (loss_value - want_loss).abs() <= 1e-5 * want_loss.abs(),
            "{what}: loss {loss_value} vs {want_loss}"
        );
        assert!(wrapper.update_params(&loss).unwrap());
        let grad_norm = wrapper.grad_norm().map(|g| g.double_value(&[]));
        match &want["grad_norm"] {
            Json::Null => assert_eq!(grad_norm, None, "{what}"),
            Json::String(s) => assert_eq!(
                grad_norm.map(|g| g.to_string()),
                Some(s.clone()),
                "{what}"
            ),
            norm => {
                let (got, want) = (grad_norm.unwrap(), norm.as_f64().unwrap());
                assert!(
                    (got - want).abs() <= 1e-5 * want,
                    "{what}: grad norm {got} vs {want}"
                );
            }
        }
        let state = wrapper.state_dict().unwrap();
        assert_same_state(
            state.get("loss_scaler").unwrap(),
            &want["loss_scaler"],
            &what,
        );
        for (n, p) in TINY_NAMES.iter().zip(model.params()) {
            let w = fx(&format!("train.{name}.{n}.{k}"));
            assert_close(p, &w, 1e-6, 1e-5, &format!("{what}: {n}"));
        }
    }
}

fn amp_wrapper(case: &Json, model: &Tiny) -> OptimWrapper {
    let mut w =
        build_optim_wrapper(&OptimWrapperCfg(case["wrapper"].clone()), model.named()).unwrap();
    let iters = fixture().meta["train"]["iters"].as_u64().unwrap();
    w.initialize_count_status(0, iters);
    w
}

#[test]
fn amp_training_steps_match_mmengine_with_cpu_autocast() {
    for name in ["dynamic", "clip", "overflow"] {
        let case = train_case(name);
        let model = Tiny::from_fixture();
        let mut wrapper = amp_wrapper(case, &model);
        let amp = wrapper.amp().unwrap();
        assert_eq!(amp.autocast.dtype, Kind::BFloat16);
        run_train_case(case, &model, &mut wrapper, 0);
    }
}

/// The wrapper's state after two iterations (optimizer plus `loss_scaler`)
/// restores into a new wrapper that continues as MMEngine's uninterrupted run.
#[test]
fn amp_wrapper_resumes_with_its_loss_scaler() {
    let case = train_case("overflow");
    let model = Tiny::from_fixture();
    let mut first = amp_wrapper(case, &model);
    let mut trimmed = case.clone();
    trimmed["iters"].as_array_mut().unwrap().truncate(2);
    run_train_case(&trimmed, &model, &mut first, 0);
    let saved = first.state_dict().unwrap();
    drop(first);
    let mut resumed = amp_wrapper(case, &model);
    resumed.load_state_dict(&saved).unwrap();
    resumed.initialize_count_status(2, 4);
    run_train_case(case, &model, &mut resumed, 2);
}

#[test]
fn plain_wrapper_runs_its_context_without_autocast() {
    let model = Tiny::from_fixture();
    let cfg = json!({"type": "OptimWrapper", "optimizer": {"type": "SGD", "lr": 0.1}});
    let wrapper = build_optim_wrapper(&OptimWrapperCfg(cfg), model.named()).unwrap();
    assert!(wrapper.amp().is_none());
    let pred = wrapper.optim_context(|| model.forward(&fx("train.x0")));
    assert_eq!(pred.kind(), Kind::Float);
    assert!(wrapper.state_dict().unwrap().get("loss_scaler").is_none());
}

#[test]
fn amp_config_is_checked_against_the_device() {
    let model = Tiny::from_fixture();
    let build = |extra: Json| {
        let mut cfg = json!({"type": "AmpOptimWrapper", "optimizer": {"type": "SGD", "lr": 0.1}});
        cfg.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        build_optim_wrapper(&OptimWrapperCfg(cfg), model.named())
    };
    let err = build(json!({"dtype": "float16"})).unwrap_err();
    assert!(err.to_string().contains("only bfloat16"), "{err}");
    let err = build(json!({"loss_scale": {"init_scale": 8.0, "growth": 2}})).unwrap_err();
    assert!(err.to_string().contains("growth"), "{err}");
    let w = build(json!({"loss_scale": 512.0, "dtype": "bfloat16"})).unwrap();
    let amp = w.amp().unwrap();
    assert_eq!(amp.static_scale, Some(512.0));
    assert_eq!(amp.loss_scaler.get_scale().unwrap(), 512.0);
    assert_eq!(amp.autocast.device, Device::Cpu);
}
