//! Hooks, as MMEngine's (`mmengine/hooks`): the training loops call each
//! stage (`before_train`, `after_train_iter`, …) on every registered hook in
//! priority order, and the hooks do the work around the model's step —
//! recording learning rates and losses, timing, logging, stepping the
//! schedulers, saving checkpoints.
//!
//! Registration follows `Runner.register_hooks`: MMEngine's default hooks
//! updated by the config's `default_hooks`, then `custom_hooks`, each
//! inserted after every hook of a lower or equal priority value ([`Hooks`]).
//! A hook receives the run's shared state ([`RunState`]), never the runner.
//!
//! More hooks slot in by implementing [`Hook`] and registering in
//! [`build`]; a terminal progress bar, for one, is a hook on
//! `after_train_iter` / `after_val_iter`.

mod build;
mod checkpoint_hook;
mod ema_hook;
mod empty_cache_hook;
mod hook_list;
mod iter_timer_hook;
mod logger_hook;
mod param_scheduler_hook;
mod pipeline_switch_hook;
mod priority;
mod runtime_info_hook;
mod sampler_seed_hook;
mod stage;
mod visualization_hook;

pub use build::{build_hooks, HookContext};
pub use hook_list::Hooks;
pub use priority::HookPriority;
pub use stage::Stage;

use crate::engine::evaluate::EvalProgress;
use crate::engine::runner::{Failure, RunState};

/// What a hook stage returns: a failure stops the run with its exit code.
pub type HookResult = Result<(), Failure>;

/// One training iteration, as the loops pass it to the iteration stages.
#[derive(Debug, Clone, Copy)]
pub struct TrainIter {
    /// MMEngine's `batch_idx`: the batch's index in the epoch
    /// (`EpochBasedTrainLoop`) or the iteration (`IterBasedTrainLoop`).
    pub batch_idx: u64,
    /// Seconds spent waiting for the batch.
    pub data_time: f64,
}

/// The model's outputs (`parse_losses`' `log_vars`) read from the device
/// after an iteration: for each step since the last read, in order, `loss`
/// (the total) then each loss term, as host numbers. Empty after an
/// iteration that reads none ([`Hook::reads_train_values`]).
pub type LogVars = [(String, f64)];

/// A finished validation epoch.
#[derive(Debug, Clone, Copy)]
pub struct ValEpoch<'a> {
    /// `len(val_dataloader)`.
    pub len: usize,
    /// The evaluator's metrics (`coco/bbox_mAP`, …) in its order.
    pub metrics: &'a [(String, f64)],
}

/// A hook: default no-op stages named after MMEngine's, plus the class
/// name, priority and stages that the hooks table shows.
pub trait Hook {
    /// The MMEngine class name (`LoggerHook`).
    fn name(&self) -> &'static str;

    /// The class's priority; a `priority` key in the hook's config overrides it.
    fn priority(&self) -> HookPriority;

    /// The stages MMEngine's class of this name acts at (its overridden
    /// methods), in [`Stage::ALL`] order: the rows of the hooks table.
    fn stages(&self) -> &'static [Stage];

    fn before_train(&mut self, _state: &mut RunState) -> HookResult {
        Ok(())
    }

    fn before_train_epoch(&mut self, _state: &mut RunState) -> HookResult {
        Ok(())
    }

    fn before_train_iter(&mut self, _state: &mut RunState, _iter: &TrainIter) -> HookResult {
        Ok(())
    }

    fn after_train_iter(
        &mut self,
        _state: &mut RunState,
        _iter: &TrainIter,
        _outputs: &LogVars,
    ) -> HookResult {
        Ok(())
    }

    /// Whether this hook needs, after `iter`, the losses of the steps so
    /// far (in the message hub, or in the outputs): the runner reads them
    /// from the device only then. `state.iter` is `iter`'s iteration.
    fn reads_train_values(&self, _state: &RunState, _iter: &TrainIter) -> bool {
        false
    }

    fn after_train_epoch(&mut self, _state: &mut RunState) -> HookResult {
        Ok(())
    }

    fn before_val_epoch(&mut self, _state: &mut RunState) -> HookResult {
        Ok(())
    }

    fn after_val_iter(&mut self, _state: &mut RunState, _progress: &EvalProgress) -> HookResult {
        Ok(())
    }

    fn after_val_epoch(&mut self, _state: &mut RunState, _epoch: &ValEpoch<'_>) -> HookResult {
        Ok(())
    }

    fn after_train(&mut self, _state: &mut RunState) -> HookResult {
        Ok(())
    }

    /// Not an MMEngine stage: the run stops after this iteration because
    /// of SIGTERM (CheckpointHook saves the position).
    fn on_preempt(&mut self, _state: &mut RunState) -> HookResult {
        Ok(())
    }
}
