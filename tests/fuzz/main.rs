//! Property tests of everything users hand to detc: config files (the YAML
//! loader, `_base_` merging, `{{_base_.x}}` references, validation and the
//! module-graph checks), `--cfg-options` strings, and checkpoint files (the
//! zip, pickle and safetensors readers). Each target mutates real inputs
//! (the bundled configs, the conformance fixtures, checkpoints written by
//! detc) at random and asserts that every one ends in `Ok` or an error, never
//! in a panic; the bounds on nesting and alias expansion keep memory small.
//!
//! Each target runs for `DETC_FUZZ_SECS` seconds (default 2, what CI
//! spends); `DETC_FUZZ_SEED` replays a run. An input that panics is saved
//! under `target/fuzz-failures/` and named in the failure. A long run:
//! `DETC_FUZZ_SECS=600 cargo test --release --test fuzz -- --test-threads 1`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64 as StdRng;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn budget() -> Duration {
    let secs = std::env::var("DETC_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn rng(target: &str) -> (StdRng, u64) {
    let seed = std::env::var("DETC_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    eprintln!("{target}: DETC_FUZZ_SEED={seed}");
    (StdRng::seed_from_u64(seed), seed)
}

/// Runs `case` on generated inputs for the time budget (`case` says whether
/// the input was accepted); a panic saves the input and fails the test
/// naming it. Returns the number of cases run.
fn fuzz(
    target: &str,
    mut generate: impl FnMut(&mut StdRng) -> Vec<u8>,
    case: impl Fn(&[u8]) -> bool,
) -> u64 {
    let (mut rng, seed) = rng(target);
    let start = Instant::now();
    let (mut n, mut accepted) = (0u64, 0u64);
    // The panic message is reported below with the input; keep stderr readable.
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    while n == 0 || start.elapsed() < budget() {
        let input = generate(&mut rng);
        match catch_unwind(AssertUnwindSafe(|| case(&input))) {
            Ok(ok) => accepted += ok as u64,
            Err(panic) => {
                std::panic::set_hook(quiet);
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let dir = root().join("target/fuzz-failures");
                std::fs::create_dir_all(&dir).unwrap();
                let file = dir.join(format!("{target}-{seed}-{n}"));
                std::fs::write(&file, &input).unwrap();
                panic!(
                    "{target}: case {n} (seed {seed}) panicked: {message}\n  input saved as {}",
                    file.display()
                );
            }
        }
        n += 1;
    }
    std::panic::set_hook(quiet);
    eprintln!(
        "{target}: {n} cases in {:.1} s ({accepted} accepted, the others refused with an error), no panic",
        start.elapsed().as_secs_f64()
    );
    n
}

/// Tokens that mean something to YAML, to MMEngine's config language or to detc.
const TOKENS: &[&str] = &[
    ":",
    ": ",
    "-",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\n",
    "\n  ",
    "\n    - ",
    "#",
    "'",
    "\"",
    "\\",
    "&a ",
    "*a",
    "<<: *a",
    "? ",
    "|",
    ">",
    "!!python/tuple ",
    "!!str ",
    "---",
    "...",
    "%YAML 1.2",
    "~",
    "null",
    "true",
    "yes",
    "1e-4",
    ".inf",
    ".nan",
    "0x1F",
    "0o17",
    "1_000",
    "-1",
    "2.5",
    "_delete_: true",
    "_base_: base.yaml",
    "_base_: [base.yaml, base.yaml]",
    "_base_: missing.yaml",
    "{{_base_.model}}",
    "{{_base_.a.0}}",
    "{{ fileDirname }}",
    "{{$HOME:x}}",
    "{{$DETC_UNSET_VAR}}",
    "type: ResNet",
    "type: QueryInst",
    "type: Nope",
    "model:",
    "backbone:",
    "depth: 50",
    "num_classes: 3",
    "\u{feff}",
    "é",
    "\t",
    "\r\n",
    "\0",
];

/// A random edit of `text`: tokens inserted, ranges deleted or repeated,
/// bytes flipped, the end cut off.
fn mutate(rng: &mut StdRng, text: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    for _ in 0..rng.random_range(1..6) {
        let at = if out.is_empty() {
            0
        } else {
            rng.random_range(0..=out.len())
        };
        match rng.random_range(0..6) {
            0 | 1 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
                out.splice(at..at, token.iter().copied());
            }
            2 if !out.is_empty() => {
                let end = (at + rng.random_range(1..40)).min(out.len());
                out.drain(at.min(end)..end);
            }
            3 if !out.is_empty() => {
                let end = (at + rng.random_range(1..80)).min(out.len());
                let piece: Vec<u8> = out[at.min(end)..end].to_vec();
                out.splice(at..at, piece);
            }
            4 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] ^= 1 << rng.random_range(0..8);
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// Every YAML config the repository holds: the bundled configs and the
/// conformance fixtures.
fn config_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![];
    let mut stack = vec![
        root().join("configs"),
        root().join("tests/fixtures/conformance"),
    ];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "json") {
                seeds.push(std::fs::read(&path).unwrap());
            }
        }
    }
    seeds.sort();
    seeds
}

/// Resolves the config of `dir/main.yaml` as `detc check` does: inheritance,
/// references, overrides, then the registry and module-graph checks.
fn compile(main: &Path, options: &[String]) -> bool {
    let (_sources, result) = detc::config::resolve(main, options);
    let Ok(tree) = result else { return false };
    let _ = detc::config::emit::to_json(&tree);
    detc::registry::validate::check(&tree).is_ok() & detc::graph::check(&tree).is_ok()
}

#[test]
fn config_files_never_panic() {
    let seeds = config_seeds();
    assert!(seeds.len() > 50, "{} seeds", seeds.len());
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.yaml");
    let base = dir.path().join("base.yaml");
    std::fs::write(
        &base,
        b"a: [1, 2, {b: 3}]\nmodel: {type: QueryInst, num_stages: 2}\n",
    )
    .unwrap();
    let n = fuzz(
        "config_files",
        |rng| {
            let seed = &seeds[rng.random_range(0..seeds.len())];
            mutate(rng, seed)
        },
        |input| {
            std::fs::write(&main, input).unwrap();
            compile(&main, &[])
        },
    );
    assert!(n > 0);
}

/// Pieces of `--cfg-options` tokens.
const KEYS: &[&str] = &[
    "model",
    "model.backbone.depth",
    "a.0.b",
    "a.-1",
    "model.roi_head.bbox_head.0.num_classes",
    "",
    ".",
    "a..b",
    "train_dataloader.batch_size",
    "_base_",
    "_delete_",
    "x.y.z.w.v",
    "é",
];
const VALUES: &[&str] = &[
    "1",
    "-1",
    "1.5",
    "1e-5",
    "True",
    "False",
    "None",
    "null",
    "[1,2]",
    "(1,2)",
    "[(1,2),[3,4]]",
    "[",
    "((",
    ")",
    "'a,b'",
    "\"x\"",
    "\"",
    "a,b,c",
    "{a: 1}",
    "dict(a=1)",
    "[[[[[[[[1]]]]]]]]",
    "",
    "=",
    "nan",
    "inf",
];

#[test]
fn cfg_options_never_panic() {
    let main = root().join("configs/demo/queryinst_r18_shapes_cpu.yaml");
    assert!(compile(&main, &[]), "the unchanged config checks clean");
    let n = fuzz(
        "cfg_options",
        |rng| {
            let mut options = vec![];
            for _ in 0..rng.random_range(1..4) {
                let key = KEYS[rng.random_range(0..KEYS.len())];
                let value = VALUES[rng.random_range(0..VALUES.len())];
                let sep = if rng.random_bool(0.9) { "=" } else { "" };
                let token = format!("{key}{sep}{value}");
                options.push(if rng.random_bool(0.3) {
                    String::from_utf8_lossy(&mutate(rng, token.as_bytes())).into_owned()
                } else {
                    token
                });
            }
            options.join("\u{1}").into_bytes()
        },
        |input| {
            let options: Vec<String> = String::from_utf8_lossy(input)
                .split('\u{1}')
                .map(String::from)
                .collect();
            compile(&main, &options)
        },
    );
    assert!(n > 0);
}

/// Checkpoints as detc writes them: a bare state dict, one with training
/// sections (meta, message hub, optimizer), and a safetensors file.
fn checkpoint_seeds(dir: &Path) -> Vec<Vec<u8>> {
    use detc::checkpoint::{DType, TensorData, Value};
    let mut sd = IndexMap::new();
    let floats: Vec<u8> = (0..24)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    sd.insert(
        "backbone.conv1.weight".to_string(),
        TensorData::new(DType::F32, vec![2, 3, 2, 2], floats).unwrap(),
    );
    sd.insert(
        "backbone.bn1.num_batches_tracked".to_string(),
        TensorData::new(DType::I64, vec![], 7i64.to_le_bytes().to_vec()).unwrap(),
    );
    let bare = dir.join("bare.pth");
    detc::checkpoint::save_pth(&bare, &sd, None).unwrap();
    let meta = Value::Dict(vec![
        (Value::Str("epoch".into()), Value::Int(3)),
        (
            Value::Str("classes".into()),
            Value::List(vec![Value::Str("cat".into()), Value::Tuple(vec![])]),
        ),
        (Value::Str("lr".into()), Value::Float(0.02)),
    ]);
    let hub = Value::Dict(vec![(
        Value::Str("log_scalars".into()),
        Value::Dict(vec![]),
    )]);
    let full = dir.join("full.pth");
    detc::checkpoint::save_checkpoint(&full, &sd, &[("meta", &meta), ("message_hub", &hub)])
        .unwrap();
    let st = dir.join("weights.safetensors");
    detc::checkpoint::safetensors::write(&st, &sd, None).unwrap();
    [bare, full, st]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// Byte-level edits for binary files: flips, cuts, splices of other bytes.
fn mutate_bytes(rng: &mut StdRng, data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    for _ in 0..rng.random_range(1..4) {
        if out.is_empty() {
            break;
        }
        let at = rng.random_range(0..out.len());
        match rng.random_range(0..5) {
            0 | 1 => out[at] ^= 1 << rng.random_range(0..8),
            2 => out[at] = [0, 0xff, 0x7f, 0x80, b'}', b'(', b'c', b'R'][rng.random_range(0..8)],
            3 => out.truncate(at),
            _ => {
                let len = rng.random_range(1..64).min(out.len() - at);
                let piece: Vec<u8> = out[at..at + len].to_vec();
                let to = rng.random_range(0..out.len());
                out.splice(to..to, piece);
            }
        }
    }
    out
}

#[test]
fn checkpoint_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = checkpoint_seeds(dir.path());
    for seed in &seeds {
        let path = dir.path().join("seed");
        std::fs::write(&path, seed).unwrap();
        detc::checkpoint::load(&path).expect("the unmutated seeds load");
    }
    let file = dir.path().join("case.pth");
    let n = fuzz(
        "checkpoint_files",
        |rng| {
            let seed = &seeds[rng.random_range(0..seeds.len())];
            mutate_bytes(rng, seed)
        },
        |input| {
            std::fs::write(&file, input).unwrap();
            detc::checkpoint::load(&file).is_ok()
        },
    );
    assert!(n > 0);
}
