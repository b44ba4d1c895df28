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
use tch::{Device, Kind, Tensor};

use crate::models::backbones::HRNet;
use crate::models::layers::fixtures::{max_abs_diff, script_state_dict, StateDict};
use crate::models::necks::HRFPN;
use crate::models::weights::{load_state_dict, with_prefix, Shapes};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/hrnet_reference.py", "detc-hrnet", "hrnet.pth"))
}

fn fx(key: &str) -> Tensor {
    crate::models::layers::fixtures::tensor(fixture(), key)
}

/// The fixture keys `{prefix}.*`, without the prefix, in order.
fn keys(prefix: &str) -> Vec<String> {
    let prefix = format!("{prefix}.");
    fixture().keys().filter_map(|k| k.strip_prefix(&prefix).map(str::to_string)).collect()
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

/// `|a - b| <= 1e-4 * max|b|` everywhere.
fn assert_scaled(a: &Tensor, b: &Tensor, what: &str) {
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    let diff = max_abs_diff(a, b);
    assert!(diff <= 1e-4 * scale, "{what}: off by {diff} (largest value {scale})");
}

fn check_case(case: &str) {
    let _seed = crate::models::layers::fixtures::seeded();
    let vs = VarStore::new(Device::Cpu);
    let module = build(case, &vs);
    let ours = vs.variables();
    let init = keys(&format!("{case}.init"));
    let mut names: Vec<&String> = ours.keys().collect();
    names.sort();
    let mut want: Vec<&String> = init.iter().collect();
    want.sort();
    assert_eq!(names, want, "{case}: state-dict names differ");
    for name in &init {
        let (a, b) = (&ours[name], fx(&format!("{case}.init.{name}")));
        assert_eq!(a.size(), b.size(), "{case}: {name}");
        if b.kind() != Kind::Float || b.dim() == 1 {
            // Norms, biases and buffers start at constants.
            assert_eq!(max_abs_diff(a, &b), 0.0, "{case}: initial {name}");
        } else if b.numel() >= 256 {
            // Random draws: the same distribution.
            let (sa, sb) = (a.std(true).double_value(&[]), b.std(true).double_value(&[]));
            assert!((sa / sb - 1.0).abs() < 0.2, "{case}: initial {name} spread {sa} vs {sb}");
        }
    }

    let sd = with_prefix(fixture(), &format!("{case}.sd")).unwrap();
    let report = load_state_dict(&vs, "", &sd, Shapes::Refuse).unwrap();
    assert!(report.is_exact(), "{case}: {report:?}");
    let n_in = keys(case).iter().filter(|k| k.starts_with("in.")).count();
    let inputs: Vec<Tensor> = (0..n_in).map(|i| fx(&format!("{case}.in.{i}")).set_requires_grad(true)).collect();
    let outs = match &module {
        Module::Backbone(m) => m.forward_t(&inputs[0], true).unwrap(),
        Module::Neck(m) => m.forward_t(&inputs, true).unwrap(),
    };
    assert_eq!(outs.len(), keys(case).iter().filter(|k| k.starts_with("out.")).count(), "{case}: number of outputs");
    let mut loss = Tensor::zeros([], (Kind::Float, Device::Cpu));
    for (i, y) in outs.iter().enumerate() {
        assert_scaled(y, &fx(&format!("{case}.out.{i}")), &format!("{case}: output {i}"));
        loss = loss + (y * fx(&format!("{case}.dy.{i}"))).sum(Kind::Float);
    }
    loss.backward();
    for (i, x) in inputs.iter().enumerate() {
        assert_scaled(&x.grad(), &fx(&format!("{case}.gin.{i}")), &format!("{case}: input {i} gradient"));
    }
    let grads = keys(&format!("{case}.grad"));
    let mut with_grad: Vec<&String> = ours.iter().filter(|(_, t)| t.requires_grad()).map(|(n, _)| n).collect();
    with_grad.sort();
    let mut want: Vec<&String> = grads.iter().collect();
    want.sort();
    assert_eq!(with_grad, want, "{case}: the parameters that train");
    for name in &grads {
        assert_scaled(&ours[name].grad(), &fx(&format!("{case}.grad.{name}")), &format!("{case}: gradient of {name}"));
    }
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
