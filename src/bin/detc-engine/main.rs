//! `detc-engine`: the process that links libtorch. The light `detc` binary
//! starts it (one per worker) with an already resolved config; users do not
//! normally call it directly.

// The engine's modules live in `src/engine` and `src/models` (the layout of
// DESIGN.md) but belong to this binary alone: the library stays free of tch.
#[path = "../../engine/mod.rs"]
mod engine;
#[path = "../../models/mod.rs"]
mod models;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "detc-engine", version, about = "detc's libtorch engine (started by `detc`)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the libtorch build and the devices it sees, as JSON.
    Env,
    /// Train on a resolved config read as JSON from stdin (sent by `detc run`).
    Run(engine::runner::RunArgs),
    /// Print the model's module tree and state dict for a resolved config on stdin (sent by `detc summary`).
    Summary(detc::cli::summary::render::Options),
    /// Test a checkpoint on a resolved config read as JSON from stdin (sent by `detc test`).
    Test(engine::test_loop::TestArgs),
    /// Time training steps and inference on a resolved config on stdin (sent by `detc bench`).
    Bench(engine::runner::BenchArgs),
    /// Detect objects in images with a checkpoint, for a resolved config on stdin (sent by `detc infer`).
    Infer(engine::infer::InferArgs),
}

fn main() {
    keep_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Command::Env => println!("{}", engine::env::report().to_string_pretty()),
        Command::Run(args) => std::process::exit(engine::runner::run(&read_config(), &args)),
        Command::Summary(opts) => std::process::exit(engine::summary::summary(&read_config(), &opts)),
        Command::Test(args) => std::process::exit(engine::test_loop::test(&read_config(), &args)),
        Command::Bench(args) => std::process::exit(engine::runner::bench(&read_config(), &args)),
        Command::Infer(args) => std::process::exit(engine::infer::infer(&read_config(), &args)),
    }
}

/// libtorch frees each step's temporaries to glibc, which by default gives
/// the top of its heap back to the system once 128 KiB of it is free, and
/// serves blocks above a moving size with mmap: the next step then faults
/// those pages in again (about 9% of a demo model's training step on two CPU
/// cores). Freed memory stays in the process instead, as with jemalloc or
/// tcmalloc, which PyTorch's CPU tuning guides recommend for this; blocks
/// of up to 32 MiB come from the heap.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator parameters; it runs
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

/// The resolved config `detc` sends as JSON on stdin; exit 2 when it is not JSON.
fn read_config() -> serde_json::Value {
    match serde_json::from_reader(std::io::stdin().lock()) {
        Ok(mut c) => {
            default_data_preprocessor(&mut c);
            c
        }
        Err(e) => {
            eprintln!("error: the resolved config on stdin is not JSON: {e}");
            std::process::exit(2);
        }
    }
}

/// MMEngine's Runner: `model.setdefault('data_preprocessor', data_preprocessor)`,
/// the top-level `data_preprocessor` for a model that has none of its own.
fn default_data_preprocessor(config: &mut serde_json::Value) {
    let Some(top) = config.get("data_preprocessor").filter(|d| !d.is_null()).cloned() else {
        return;
    };
    if let Some(model) = config.get_mut("model").and_then(|m| m.as_object_mut()) {
        let own = model.entry("data_preprocessor").or_insert(serde_json::Value::Null);
        if own.is_null() {
            *own = top;
        }
    }
}

#[cfg(test)]
mod main_tests {
    use super::default_data_preprocessor;

    #[test]
    fn the_top_level_data_preprocessor_fills_in_for_the_model() {
        let top = serde_json::json!({"type": "DetDataPreprocessor", "pad_size_divisor": 32});
        let mut config = serde_json::json!({"data_preprocessor": top, "model": {"type": "QueryInst"}});
        default_data_preprocessor(&mut config);
        assert_eq!(config["model"]["data_preprocessor"], top);
        // The model's own one wins.
        let own = serde_json::json!({"type": "DetDataPreprocessor", "pad_size_divisor": 1});
        let mut config = serde_json::json!({"data_preprocessor": top, "model": {"data_preprocessor": own}});
        default_data_preprocessor(&mut config);
        assert_eq!(config["model"]["data_preprocessor"], own);
    }
}
