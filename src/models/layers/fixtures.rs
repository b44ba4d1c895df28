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
