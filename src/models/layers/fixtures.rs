//! Test support: outside reference outputs (torchvision, MMDetection) made
//! once per test process by `tests/models/make_fixtures.py` with
//! `.venv-test/bin/python`, read back through `detc::checkpoint`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use detc::checkpoint::{self, TensorData};
use indexmap::IndexMap;
use tch::Tensor;

use crate::models::weights::to_tensor;

pub type StateDict = IndexMap<String, TensorData>;

/// libtorch's random generator is global and tests run in parallel: a test
/// whose result depends on the values it draws after `manual_seed` holds
/// this lock from the seed to its last draw, and so does a test that draws
/// many values. (Tests must not change libtorch's thread count either:
/// `set_num_threads` is global, a test thread started after it computes with
/// the new count, and tests that compare results exactly fail by a rounding.)
pub fn seeded() -> std::sync::MutexGuard<'static, ()> {
    static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SEEDED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every fixture file, loaded.
pub struct Fixtures {
    pub roi_align: StateDict,
    /// torchvision's resnet50 `.pth` (kept on disk: the test loads it as a user would).
    pub resnet50_path: PathBuf,
    pub resnet50_io: StateDict,
    pub resnet50_mmdet: StateDict,
    /// The same three for torchvision's resnext50_32x4d and mmdet's ResNeXt.
    pub resnext50_path: PathBuf,
    pub resnext50_io: StateDict,
    pub resnext50_mmdet: StateDict,
    pub fpn: StateDict,
    pub boxes: StateDict,
}

/// Runs the fixture script once (about 10 s of CPU) and loads its output.
pub fn get() -> &'static Fixtures {
    static FX: OnceLock<Fixtures> = OnceLock::new();
    FX.get_or_init(|| {
        remove_stale_dirs();
        let out = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
        run_script("tests/models/make_fixtures.py", &out);
        let load = |name: &str| {
            checkpoint::load(&out.join(name))
                .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
                .state_dict
        };
        Fixtures {
            roi_align: load("roi_align.pth"),
            resnet50_path: out.join("resnet50.pth"),
            resnet50_io: load("resnet50_io.pth"),
            resnet50_mmdet: load("resnet50_mmdet.pth"),
            resnext50_path: out.join("resnext50.pth"),
            resnext50_io: load("resnext50_io.pth"),
            resnext50_mmdet: load("resnext50_mmdet.pth"),
            fpn: load("fpn.pth"),
            boxes: load("boxes.pth"),
        }
    })
}

/// The test-only Python environment's interpreter (scripts/test-env).
pub fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python");
    assert!(python.is_file(), "{} is missing: run scripts/test-env", python.display());
    python
}

/// Runs the reference `script` (relative to the repository) writing into `out`.
pub fn run_script(script: &str, out: &Path) {
    let run = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(run.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&run.stderr));
}

/// The state dict `file` that the reference `script` writes into a fresh
/// temporary folder `name-<pid>`, which is removed after loading. Callers
/// keep it in a `OnceLock`, so each script runs once per test process.
pub fn script_state_dict(script: &str, name: &str, file: &str) -> StateDict {
    let out = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    run_script(script, &out);
    let sd = checkpoint::load(&out.join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .state_dict;
    let _ = std::fs::remove_dir_all(&out);
    sd
}

const DIR_PREFIX: &str = "detc-models-fixtures-";

/// Fixture directories of earlier test processes that have exited (the
/// ResNet-50 checkpoint is 100 MB; a process cannot delete its own at exit).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// The tensor `key` of a fixture.
pub fn tensor(sd: &StateDict, key: &str) -> Tensor {
    let t = sd
        .get(key)
        .unwrap_or_else(|| panic!("fixture key {key} is missing"));
    to_tensor(t).unwrap()
}

/// max |a - b| (as f64).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    if a.numel() == 0 {
        return 0.0;
    }
    (a.to_kind(tch::Kind::Double) - b.to_kind(tch::Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// Asserts |a - b| <= atol + rtol * |b| elementwise, naming `what`.
pub fn assert_close(a: &Tensor, b: &Tensor, atol: f64, rtol: f64, what: &str) {
    assert_eq!(a.size(), b.size(), "{what}: shapes differ");
    let (a, b) = (a.to_kind(tch::Kind::Double), b.to_kind(tch::Kind::Double));
    let excess = ((&a - &b).abs() - b.abs() * rtol - atol)
        .max()
        .double_value(&[]);
    assert!(
        excess <= 0.0,
        "{what}: max |a-b| = {} exceeds atol {atol} + rtol {rtol}",
        max_abs_diff(&a, &b)
    );
}

/// The fixture keys `{prefix}.*` of `sd`, without the prefix, in order.
pub fn keys_under(sd: &StateDict, prefix: &str) -> Vec<String> {
    let prefix = format!("{prefix}.");
    sd.keys().filter_map(|k| k.strip_prefix(&prefix).map(str::to_string)).collect()
}

/// `|a - b| <= 1e-4 * max|b|` everywhere (float32 through many layers).
pub fn assert_scaled(a: &Tensor, b: &Tensor, what: &str) {
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    let diff = max_abs_diff(a, b);
    assert!(diff <= 1e-4 * scale, "{what}: off by {diff} (largest value {scale})");
}

/// Biases whose gradient is 0 in exact arithmetic: a softmax over
/// positions ignores a constant added to every logit (GCNet's `conv_mask`).
const SHIFT_INVARIANT_BIASES: &[&str] = &["conv_mask.bias"];

/// Checks one module `case` of a reference script that wrote, for a module
/// built from the same config: `CASE.init.*` (its state dict after init),
/// `CASE.sd.*` (perturbed weights), `CASE.in.{i}`, train-mode `CASE.out.{i}`
/// and the loss weights `CASE.dy.{i}`, and the gradients `CASE.gin.{i}` /
/// `CASE.grad.*` of `sum_i (out_i * dy_i).sum()`. `vs` holds the module
/// (built, default init), `forward` runs it in train mode.
///
/// Checked: the same names and shapes; constants (1-D entries such as norms
/// and biases, integer buffers, all-zero weights) exactly at init, random draws of 256 values
/// or more by their spread (within 30%: two draws); on the perturbed weights, every output, the inputs'
/// gradients, which parameters train, and every parameter's gradient.
pub fn check_module_case(fx: &StateDict, case: &str, vs: &tch::nn::VarStore, forward: impl Fn(&[Tensor]) -> Vec<Tensor>) {
    use crate::models::weights::{load_state_dict, with_prefix, Shapes};
    use tch::{Device, Kind};
    let get = |key: &str| tensor(fx, key);
    let ours = vs.variables();
    let init = keys_under(fx, &format!("{case}.init"));
    let mut names: Vec<&String> = ours.keys().collect();
    names.sort();
    let mut want: Vec<&String> = init.iter().collect();
    want.sort();
    assert_eq!(names, want, "{case}: state-dict names differ");
    for name in &init {
        let (a, b) = (&ours[name], get(&format!("{case}.init.{name}")));
        assert_eq!(a.size(), b.size(), "{case}: {name}");
        let constant = b.kind() != Kind::Float || b.numel() <= 1 || b.max().double_value(&[]) == b.min().double_value(&[]);
        if constant {
            assert_eq!(max_abs_diff(a, &b), 0.0, "{case}: initial {name}");
        } else if b.numel() >= 256 {
            let (sa, sb) = (a.std(true).double_value(&[]), b.std(true).double_value(&[]));
            assert!((sa / sb - 1.0).abs() < 0.3, "{case}: initial {name} spread {sa} vs {sb}");
        } else if b.dim() == 1 {
            // A random bias, too few draws for a spread: the same range, and random too.
            let (ma, mb) = (a.abs().max().double_value(&[]), b.abs().max().double_value(&[]));
            assert!(ma <= 4.0 * mb && ma >= 0.25 * mb, "{case}: initial {name} range {ma} vs {mb}");
            assert!(a.max().double_value(&[]) > a.min().double_value(&[]), "{case}: initial {name} is constant");
        }
    }
    let sd = with_prefix(fx, &format!("{case}.sd")).unwrap();
    let report = load_state_dict(vs, "", &sd, Shapes::Refuse).unwrap();
    assert!(report.is_exact(), "{case}: {report:?}");
    let case_keys = keys_under(fx, case);
    let n_in = case_keys.iter().filter(|k| k.starts_with("in.")).count();
    let inputs: Vec<Tensor> = (0..n_in).map(|i| get(&format!("{case}.in.{i}")).set_requires_grad(true)).collect();
    let outs = forward(&inputs);
    assert_eq!(outs.len(), case_keys.iter().filter(|k| k.starts_with("out.")).count(), "{case}: number of outputs");
    let mut loss = Tensor::zeros([], (Kind::Float, Device::Cpu));
    for (i, y) in outs.iter().enumerate() {
        assert_scaled(y, &get(&format!("{case}.out.{i}")), &format!("{case}: output {i}"));
        loss = loss + (y * get(&format!("{case}.dy.{i}"))).sum(Kind::Float);
    }
    loss.backward();
    for (i, x) in inputs.iter().enumerate() {
        let g = x.grad();
        let g = if g.defined() { g } else { x.zeros_like() };
        assert_scaled(&g, &get(&format!("{case}.gin.{i}")), &format!("{case}: input {i} gradient"));
    }
    let grads = keys_under(fx, &format!("{case}.grad"));
    let mut with_grad: Vec<&String> = ours.iter().filter(|(_, t)| t.requires_grad()).map(|(n, _)| n).collect();
    with_grad.sort();
    let mut want: Vec<&String> = grads.iter().collect();
    want.sort();
    assert_eq!(with_grad, want, "{case}: the parameters that train");
    for name in &grads {
        let (a, b) = (ours[name].grad(), get(&format!("{case}.grad.{name}")));
        match SHIFT_INVARIANT_BIASES.iter().any(|s| name.ends_with(s)) {
            // Mathematically 0 on both sides: float noise, small next to the weight's.
            true => {
                let weight = format!("{}weight", name.strip_suffix("bias").unwrap_or(name));
                let weight = get(&format!("{case}.grad.{weight}")).abs().max().double_value(&[]);
                for (side, g) in [("ours", &a), ("theirs", &b)] {
                    let g = g.abs().max().double_value(&[]);
                    assert!(g <= 1e-3 * weight, "{case}: gradient of {name} ({side}) is {g}, not ~0");
                }
            }
            false => assert_scaled(&a, &b, &format!("{case}: gradient of {name}")),
        }
    }
}
