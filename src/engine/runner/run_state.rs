//! What the hooks share with the runner: the optimizer and schedulers, the
//! message hub, the log, the counters MMEngine's hooks read from the runner
//! (`runner.epoch`, `runner.iter`, `max_epochs`, `max_iters`), and how to
//! write a checkpoint of the run as it stands.

use std::io;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde_json::{json, Value};
use tch::nn;

use super::state::{self, Position, TrainState};
use super::{runtime, Failure};
use crate::engine::checkpoint_hook::{Progress, SaveRequest};
use crate::engine::logging::progress::ProgressBar;
use crate::engine::logging::{LogContext, Mode, RunLog, ScalarHub};
use crate::engine::optim::OptimWrapper;
use crate::engine::schedulers::Schedulers;

/// The train loop's shape, as its hooks see it.
#[derive(Debug, Clone, Copy)]
pub struct LoopShape {
    /// `IterBasedTrainLoop` when false.
    pub by_epoch: bool,
    /// `runner.max_epochs` (1 for `IterBasedTrainLoop`, as MMEngine).
    pub max_epochs: u64,
    /// `runner.max_iters`.
    pub max_iters: u64,
    /// `len(train_dataloader)`.
    pub train_len: u64,
}

/// The run's shared state, passed to every hook stage.
pub struct RunState {
    /// The model's parameters and buffers (what a checkpoint saves).
    pub vs: nn::VarStore,
    pub wrapper: OptimWrapper,
    pub schedulers: Schedulers,
    /// The message hub's scalars (`train/lr`, `train/loss`, `val/coco/bbox_mAP`, …).
    pub hub: ScalarHub,
    /// The message hub's `eta` in seconds (IterTimerHook sets it, LoggerHook prints it).
    pub eta: Option<f64>,
    pub log: RunLog,
    pub shape: LoopShape,
    /// `runner.epoch`: during a train epoch its 0-based index, after it the
    /// epochs done; always 0 in an `IterBasedTrainLoop`.
    pub epoch: u64,
    /// `runner.iter`: during an iteration its 0-based index, after it the iterations done.
    pub iter: u64,
    /// Where a checkpoint written now resumes: iterations done and the next
    /// batch of the data stream (in an `IterBasedTrainLoop`, `epoch` counts
    /// passes over the data).
    pub position: Position,
    /// The epoch the train sampler shuffles for (`sampler.set_epoch`, by
    /// DistSamplerSeedHook in an `EpochBasedTrainLoop`; 0 without it, as MMEngine).
    pub sampler_epoch: u64,
    pub seed: u64,
    /// The dataset's classes (`meta.dataset_meta` of a checkpoint).
    pub classes: Vec<String>,
    pub work_dir: PathBuf,
    /// The `message_hub` of the checkpoint this run resumed from.
    pub resumed_hub: Option<Value>,
    /// The terminal progress bar of the running epoch (of the whole run in
    /// an `IterBasedTrainLoop`); log lines are printed with it cleared.
    pub bar: Option<ProgressBar>,
    /// Some rank got SIGTERM during the last train step: stop after it.
    pub preempted: bool,
    /// `runner.experiment_name`: the config's `experiment_name` (else the
    /// config file's stem) and the run's timestamp.
    pub experiment_name: String,
    /// EMAHook's average of the model, from its `before_train` on.
    pub ema: Option<crate::engine::ema::ModelEma>,
    /// The average and its update count of the checkpoint resumed from,
    /// for EMAHook to take.
    pub resumed_ema: Option<(IndexMap<String, detc::checkpoint::TensorData>, i64)>,
    /// The training datasets' pipelines (PipelineSwitchHook replaces them).
    pub train_pipelines: crate::engine::data::PipelineSlots,
}

impl RunState {
    /// Logs `message` at INFO.
    pub fn info(&mut self, message: &str) -> Result<(), Failure> {
        let RunState { bar, log, .. } = self;
        match bar {
            Some(bar) => bar.suspend(|| log.info(message)),
            None => log.info(message),
        }
        .map_err(runtime)
    }

    /// What LogProcessor reads from the runner for a line of `mode`. On
    /// CUDA this reads and resets the peak memory (MMEngine's `memory:`, the
    /// peak since the previous line), so call it only for a line printed.
    pub fn log_context(
        &self,
        mode: Mode,
        batch_idx: u64,
        dataloader_len: usize,
        eta: Option<f64>,
    ) -> LogContext {
        LogContext {
            mode,
            batch_idx: batch_idx as usize,
            dataloader_len,
            epoch: self.epoch,
            iter: self.iter,
            max_epochs: self.shape.max_epochs,
            max_iters: self.shape.max_iters,
            has_train_loop: true,
            eta,
            memory_mb: crate::engine::native::cuda_peak_memory_mb(self.vs.device()),
        }
    }

    /// The counters CheckpointHook reads.
    pub fn progress(&self) -> Progress {
        Progress {
            epoch: self.epoch,
            iter: self.iter,
            max_epochs: self.shape.max_epochs,
            max_iters: self.shape.max_iters,
        }
    }

    /// Writes the checkpoint `req` asks for, atomically: the weights, the
    /// position, optimizer and scheduler states as asked, and the message
    /// hub (log buffers and the checkpoint hook's state).
    pub fn save_checkpoint(&self, req: &SaveRequest<'_>) -> io::Result<()> {
        let other = |e: crate::models::layers::ModelError| io::Error::other(e.to_string());
        let st = TrainState {
            position: self.position,
            seed: self.seed,
            optimizer: if req.include_optimizer {
                Some(self.wrapper.state_dict().map_err(other)?)
            } else {
                None
            },
            param_schedulers: req
                .include_param_scheduler
                .then(|| self.schedulers.state_dict()),
            message_hub: json!({
                "log_scalars": serde_json::to_value(self.hub.state()).unwrap_or(Value::Null),
                "checkpoint_hook": serde_json::to_value(req.hook_state).unwrap_or(Value::Null),
            }),
            ema: None,
        };
        match &self.ema {
            Some(ema) => {
                let (sd, module) = ema.checkpoint(&self.vs).map_err(other)?;
                state::save(req.path, &sd, Some(&module), &st, &self.classes)
            }
            None => state::save(req.path, &state::state_dict(&self.vs).map_err(other)?, None, &st, &self.classes),
        }
    }
}
