//! Config resolution speed, detc against MMEngine, side by side in one run:
//!
//!     scripts/bench-config            # or: cargo bench --bench config_resolve
//!
//! Resolves `configs/queryinst/queryinst_r50_fpn_1x_coco.yaml` (4 files with
//! its bases) in-process (mean per resolve; detc also validates against the
//! registry, MMEngine does not) and as whole cold processes (`detc expand`,
//! which validates, against `python -c 'Config.fromfile(...)'`), and prints
//! each ratio. Rounds of detc and MMEngine alternate, so both see the same
//! load on the machine; each side's fastest round is reported. MMEngine runs
//! from `.venv-test` (scripts/test-env), kept alive across rounds.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// The allocator the `detc` binary ships with (src/bin/detc.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONFIG: &str = "configs/queryinst/queryinst_r50_fpn_1x_coco.yaml";
const ROUNDS: usize = 7;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = root.join(CONFIG);
    let python = root.join(".venv-test/bin/python");
    if !python.exists() {
        eprintln!("error: {} is missing; run scripts/test-env first", python.display());
        std::process::exit(1);
    }
    let resolve_and_check = || {
        let (_, tree) = detc::config::resolve(&config, &[]);
        detc::registry::validate::check(&tree.expect("bundled config resolves")).expect("bundled config is valid");
    };
    let mut mmengine = MmengineTimer::start(&python, &config);
    let script = format!("from mmengine.config import Config; Config.fromfile({:?})", config.display().to_string());
    let detc_bin = env!("CARGO_BIN_EXE_detc");

    let (_, tree) = detc::config::resolve(&config, &[]);
    let tree = tree.expect("bundled config resolves");
    let (mut detc_in, mut mm_in, mut detc_cold, mut mm_cold) = (vec![], vec![], vec![], vec![]);
    let (mut resolve_only, mut validate_only) = (vec![], vec![]);
    timed(20, resolve_and_check); // warm-up
    for _ in 0..ROUNDS {
        detc_in.push(timed(200, resolve_and_check));
        resolve_only.push(timed(100, || drop(detc::config::resolve(&config, &[]))));
        validate_only.push(timed(100, || detc::registry::validate::check(&tree).expect("valid")));
        mm_in.push(mmengine.round(20));
        detc_cold.push(timed(10, || run(Command::new(detc_bin).arg("expand").arg(&config))));
        mm_cold.push(timed(2, || run(Command::new(&python).arg("-c").arg(&script))));
    }

    println!("resolving {CONFIG} (with its _base_ files), best of {ROUNDS} alternating rounds");
    println!("{:<28} {:>14} {:>14} {:>9}", "", "detc", "MMEngine", "ratio");
    row("in-process, per resolve", best(&detc_in), best(&mm_in));
    row("cold process", best(&detc_cold), best(&mm_cold));
    println!("(detc in-process includes validation against the registry; MMEngine's does not validate)");
    println!("detc in-process breakdown: resolve {}, validate {}", fmt(best(&resolve_only)), fmt(best(&validate_only)));
}

fn row(what: &str, detc: Duration, mmengine: Duration) {
    let ratio = mmengine.as_secs_f64() / detc.as_secs_f64();
    println!("{what:<28} {:>14} {:>14} {:>8.0}x", fmt(detc), fmt(mmengine), ratio);
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 { format!("{us:.1} us") } else { format!("{:.2} ms", us / 1000.0) }
}

fn best(rounds: &[Duration]) -> Duration {
    rounds.iter().copied().min().expect("at least one round")
}

/// Mean duration of `f` over `n` calls.
fn timed(n: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

fn run(cmd: &mut Command) {
    let status = cmd.stdout(Stdio::null()).status().expect("process starts");
    assert!(status.success());
}

/// A Python process that times `Config.fromfile` in rounds on request.
struct MmengineTimer {
    child: Child,
    reader: BufReader<std::process::ChildStdout>,
}

impl MmengineTimer {
    fn start(python: &Path, config: &Path) -> MmengineTimer {
        let script = format!(
            "import sys, time\nfrom mmengine.config import Config\np = {:?}\nfor _ in range(5): Config.fromfile(p)\n\
             for line in sys.stdin:\n    n = int(line)\n    t = time.perf_counter()\n\
             \x20   for _ in range(n): Config.fromfile(p)\n    print((time.perf_counter() - t) / n, flush=True)\n",
            config.display().to_string(),
        );
        let mut child = Command::new(python)
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python starts");
        let reader = BufReader::new(child.stdout.take().expect("piped"));
        MmengineTimer { child, reader }
    }

    /// Mean seconds per `Config.fromfile` over `n` calls.
    fn round(&mut self, n: u32) -> Duration {
        writeln!(self.child.stdin.as_mut().expect("piped"), "{n}").expect("python reads");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("python answers");
        Duration::from_secs_f64(line.trim().parse().expect("seconds"))
    }
}
