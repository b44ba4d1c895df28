//! `detc-engine run`: MMEngine's `Runner` with an `EpochBasedTrainLoop` or
//! an `IterBasedTrainLoop` — builds the model, data, optimizer wrapper,
//! schedulers and hooks from the resolved config ([`build`]), then trains,
//! validates every `val_interval` epochs (iterations) and calls the hooks
//! ([`crate::engine::hooks`]) at each stage ([`train`]); the hooks log and
//! save checkpoints that resume exactly.
//!
//! Randomness is a function of the run's seed and position only: each
//! sample's augmentation stream is `sample_rng(seed, epoch, index)`, the
//! sampler's shuffle is seeded by `(seed, epoch)`, and libtorch's generator
//! is re-seeded from `(seed, iter)` before every iteration. A resumed run
//! therefore continues with the same random numbers as the uninterrupted
//! one, with nothing but the position to restore.

mod bench;
mod build;
mod loop_cfg;
mod oom;
mod run_state;
mod synthetic;
pub mod state;
mod train;

use std::path::PathBuf;

use serde_json::Value;

pub use bench::{bench, BenchArgs};
pub use run_state::RunState;

/// A run that cannot go on: the exit code (1: the input is wrong, 3: the
/// run failed, 4: stopped by SIGTERM with a checkpoint) and the message.
pub type Failure = (i32, String);

/// The input (config, data, checkpoint) is wrong: exit code 1.
pub fn input(m: impl std::fmt::Display) -> Failure {
    (1, m.to_string())
}

/// The run failed at runtime: exit code 3.
pub fn runtime(m: impl std::fmt::Display) -> Failure {
    (3, m.to_string())
}

/// Runs training; returns the exit code.
pub fn run(config: &Value, args: &RunArgs) -> i32 {
    if crate::engine::run::report_unbuildable(config, "") {
        return 1;
    }
    crate::engine::preempt::install();
    // A libtorch error raised through one of tch's panicking calls (out of
    // memory in a kernel, say) ends the run like any other failure.
    let trained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        build::Runner::build(config, args).and_then(|(mut r, mut data)| r.train(&mut data))
    }))
    .unwrap_or_else(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(runtime(format!("the engine failed: {text}")))
    });
    match trained {
        Ok(()) => 0,
        // Rank 0 alone says where the run stopped.
        Err((code, message)) if code == crate::engine::preempt::EXIT_PREEMPTED => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            code
        }
        Err((code, message)) => {
            let rank = std::env::var("RANK").ok().and_then(|r| r.parse().ok());
            match oom::explain(&message, config, rank) {
                Some(explained) => eprintln!("error: {explained}"),
                None => eprintln!("error: {message}"),
            }
            code
        }
    }
}

/// `detc-engine run` arguments (the light `detc run` resolves the work dir).
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The work dir (checkpoints, logs, the resolved config).
    #[arg(long)]
    pub work_dir: PathBuf,
    /// Stem of the user's config file (names the dumped config).
    #[arg(long, default_value = "config")]
    pub config_stem: String,
    /// Resume from the newest checkpoint of the work dir (`last_checkpoint`).
    #[arg(long)]
    pub resume: bool,
    /// Resume from this checkpoint.
    #[arg(long)]
    pub resume_from: Option<PathBuf>,
    /// Scale the learning rate by the batch size (`auto_scale_lr`).
    #[arg(long)]
    pub auto_scale_lr: bool,
    /// `cpu` or `cuda` (default: cuda when the engine sees a GPU).
    #[arg(long)]
    pub device: Option<String>,
    /// Log to the files only, not to stdout (`detc bench`).
    #[arg(skip)]
    pub quiet: bool,
}
