//! Config resolution speed, detc against MMEngine, side by side in one run:
//!
//!     scripts/bench-config            # or: cargo bench --bench config_resolve
//!
//! Resolves `configs/queryinst/queryinst_r50_fpn_1x_coco.yaml` (8 files with
//! its bases) both in-process (mean per resolve, after a warm-up) and as whole
//! cold processes (`detc expand` against `python -c 'Config.fromfile(...)'`),
//! and prints each ratio. Each side is timed in several rounds and its fastest
//! round reported. MMEngine runs from `.venv-test` (scripts/test-env).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// The allocator the `detc` binary ships with (src/bin/detc.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONFIG: &str = "configs/queryinst/queryinst_r50_fpn_1x_coco.yaml";

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = root.join(CONFIG);
    let python = root.join(".venv-test/bin/python");
    if !python.exists() {
        eprintln!("error: {} is missing; run scripts/test-env first", python.display());
        std::process::exit(1);
    }

    let detc_resolve = per_call(1000, || {
        let (_, tree) = detc::config::resolve(&config, &[]);
        detc::registry::validate::check(&tree.expect("bundled config resolves")).expect("bundled config is valid");
    });
    let resolve_only = per_call(1000, || drop(detc::config::resolve(&config, &[])));
    let (_, tree) = detc::config::resolve(&config, &[]);
    let tree = tree.expect("bundled config resolves");
    let validate_only = per_call(1000, || detc::registry::validate::check(&tree).expect("valid"));
    let mmengine_resolve = mmengine_in_process(&python, &config, 200);

    let detc_bin = env!("CARGO_BIN_EXE_detc");
    let detc_cold = per_call(50, || run(Command::new(detc_bin).arg("expand").arg(&config)));
    let script = format!("from mmengine.config import Config; Config.fromfile({:?})", config.display().to_string());
    let mmengine_cold = per_call(15, || run(Command::new(&python).arg("-c").arg(&script)));

    println!("resolving {CONFIG} (with its _base_ files)");
    println!("{:<28} {:>14} {:>14} {:>9}", "", "detc", "MMEngine", "ratio");
    row("in-process, per resolve", detc_resolve, mmengine_resolve);
    row("cold process", detc_cold, mmengine_cold);
    println!("(detc in-process includes validation against the registry; MMEngine's does not validate)");
    println!("detc breakdown: resolve {}, validate {}", fmt(resolve_only), fmt(validate_only));
}

fn row(what: &str, detc: Duration, mmengine: Duration) {
    let ratio = mmengine.as_secs_f64() / detc.as_secs_f64();
    println!("{what:<28} {:>14} {:>14} {:>8.0}x", fmt(detc), fmt(mmengine), ratio);
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 { format!("{us:.1} us") } else { format!("{:.2} ms", us / 1000.0) }
}

/// Rounds per measurement; the fastest round's mean is reported, for detc and
/// MMEngine alike (the least disturbed by other load on the machine).
const ROUNDS: u32 = 5;

/// Mean duration of `f` per call in the fastest of [`ROUNDS`] rounds of
/// `n / ROUNDS` calls, after `n / 10 + 1` warm-up calls.
fn per_call(n: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..n / 10 + 1 {
        f();
    }
    let per_round = (n / ROUNDS).max(1);
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_round {
                f();
            }
            start.elapsed() / per_round
        })
        .min()
        .expect("at least one round")
}

fn run(cmd: &mut Command) {
    let status = cmd.stdout(Stdio::null()).status().expect("process starts");
    assert!(status.success());
}

/// MMEngine's own in-process mean per `Config.fromfile`, timed inside Python.
fn mmengine_in_process(python: &Path, config: &Path, n: u32) -> Duration {
    let per_round = (n / ROUNDS).max(1);
    let script = format!(
        "import time\nfrom mmengine.config import Config\np = {:?}\nfor _ in range({w}): Config.fromfile(p)\n\
         best = float('inf')\nfor _ in range({ROUNDS}):\n    t = time.perf_counter()\n\
         \x20   for _ in range({per_round}): Config.fromfile(p)\n\
         \x20   best = min(best, (time.perf_counter() - t) / {per_round})\nprint(best)\n",
        config.display().to_string(),
        w = n / 10 + 1,
    );
    let out = Command::new(python).arg("-c").arg(script).output().expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("seconds");
    Duration::from_secs_f64(secs)
}
