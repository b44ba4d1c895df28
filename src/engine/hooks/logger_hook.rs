//! `LoggerHook` (mmengine/hooks/logger_hook.py): the training and
//! validation log lines and the `scalars.json` records, at the iterations
//! [`LoggerPolicy`] picks, formatted by the [`LogProcessor`].

use detc::registry::engine::PriorityName;

use super::{Hook, HookPriority, HookResult, LogVars, Stage, TrainIter, ValEpoch};
use crate::engine::evaluate::EvalProgress;
use crate::engine::logging::{LogProcessor, LoggerPolicy, Mode};
use crate::engine::runner::{runtime, RunState};

/// `LoggerHook(interval, ignore_last, log_metric_by_epoch, …)`.
pub struct LoggerHook {
    policy: LoggerPolicy,
    processor: LogProcessor,
}

impl LoggerHook {
    pub fn new(policy: LoggerPolicy, processor: LogProcessor) -> Self {
        LoggerHook { policy, processor }
    }
}

impl Hook for LoggerHook {
    fn name(&self) -> &'static str {
        "LoggerHook"
    }

    fn priority(&self) -> HookPriority {
        HookPriority::named(PriorityName::BelowNormal)
    }

    fn stages(&self) -> &'static [Stage] {
        use Stage::*;
        &[
            BeforeRun,
            AfterTrainIter,
            AfterValIter,
            AfterValEpoch,
            AfterTestIter,
            AfterTestEpoch,
            AfterRun,
        ]
    }

    /// The log line's window means.
    fn reads_train_values(&self, state: &RunState, iter: &TrainIter) -> bool {
        self.policy.log_train_iter(iter.batch_idx, state.shape.train_len)
    }

    fn after_train_iter(
        &mut self,
        state: &mut RunState,
        iter: &TrainIter,
        _outputs: &LogVars,
    ) -> HookResult {
        let len = state.shape.train_len;
        if self.policy.log_exp_name(state.iter, iter.batch_idx, len) {
            let line = format!("Exp name: {}", state.experiment_name);
            state.info(&line)?;
        }
        if !self.policy.log_train_iter(iter.batch_idx, len) {
            return Ok(());
        }
        let ctx = state.log_context(Mode::Train, iter.batch_idx, len as usize, state.eta);
        let (tag, line) = self.processor.log_after_iter(&state.hub, &ctx);
        state.info(&line)?;
        state
            .log
            .add_scalars(&tag, LoggerPolicy::train_step(state.iter))
            .map_err(runtime)
    }

    fn after_val_iter(&mut self, state: &mut RunState, p: &EvalProgress) -> HookResult {
        if !self.policy.log_eval_iter(p.index as u64) {
            return Ok(());
        }
        let ctx = state.log_context(Mode::Val, p.index as u64, p.total, state.eta);
        let (_, line) = self.processor.log_after_iter(&state.hub, &ctx);
        state.info(&line)
    }

    /// The metrics line; its record's step is the epoch or the iteration
    /// (`log_metric_by_epoch`).
    fn after_val_epoch(&mut self, state: &mut RunState, epoch: &ValEpoch<'_>) -> HookResult {
        let last = epoch.len.saturating_sub(1) as u64;
        let ctx = state.log_context(Mode::Val, last, epoch.len, None);
        let (tag, line) = self.processor.log_after_epoch(&state.hub, &ctx);
        state.info(&line)?;
        let step = self.policy.val_step(state.epoch, state.iter, true);
        state.log.add_scalars(&tag, step).map_err(runtime)
    }
}
