//! `detc-engine run`: MMEngine's `Runner` for an `EpochBasedTrainLoop` —
//! builds the model, data, optimizer wrapper, schedulers and hooks from the
//! resolved config, trains, validates every `val_interval` epochs, and saves
//! checkpoints that resume exactly.
//!
//! Randomness is a function of the run's seed and position only: each
//! sample's augmentation stream is `sample_rng(seed, epoch, index)`, the
//! sampler's shuffle is seeded by `(seed, epoch)`, and libtorch's generator
//! is re-seeded from `(seed, iter)` before every iteration. A resumed run
//! therefore continues with the same random numbers as the uninterrupted
//! one, with nothing but the position to restore.

pub mod state;
mod train;

use std::path::PathBuf;

pub use train::run;

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
}
