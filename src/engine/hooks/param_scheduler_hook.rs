//! `ParamSchedulerHook` (mmengine/hooks/param_scheduler_hook.py): steps the
//! iteration-based schedulers after each iteration and the epoch-based ones
//! after each epoch (in an `IterBasedTrainLoop`, once, at the end, as
//! MMEngine does).

use detc::registry::engine::PriorityName;

use super::{Hook, HookPriority, HookResult, LogVars, Stage, TrainIter};
use crate::engine::runner::RunState;

/// `ParamSchedulerHook`.
pub struct ParamSchedulerHook;

impl Hook for ParamSchedulerHook {
    fn name(&self) -> &'static str {
        "ParamSchedulerHook"
    }

    fn priority(&self) -> HookPriority {
        HookPriority::named(PriorityName::Low)
    }

    /// MMEngine's class also acts after validation, for schedulers that
    /// read metrics (`ReduceOnPlateau`), which detc does not have.
    fn stages(&self) -> &'static [Stage] {
        &[
            Stage::AfterTrainIter,
            Stage::AfterTrainEpoch,
            Stage::AfterValEpoch,
        ]
    }

    fn after_train_iter(
        &mut self,
        state: &mut RunState,
        _iter: &TrainIter,
        _outputs: &LogVars,
    ) -> HookResult {
        state.schedulers.step_iter(&mut state.wrapper);
        log_scheduler_lines(state)
    }

    fn after_train_epoch(&mut self, state: &mut RunState) -> HookResult {
        state.schedulers.step_epoch(&mut state.wrapper);
        log_scheduler_lines(state)
    }
}

/// What `verbose` schedulers said about the values they set.
fn log_scheduler_lines(state: &mut RunState) -> HookResult {
    for line in state.schedulers.take_log() {
        state.info(&line)?;
    }
    Ok(())
}
