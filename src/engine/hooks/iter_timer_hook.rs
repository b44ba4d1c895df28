//! `IterTimerHook` (mmengine/hooks/iter_timer_hook.py): records each
//! iteration's `data_time` and `time` in the message hub and estimates the
//! time left (`eta`).

use std::time::Instant;

use detc::registry::engine::PriorityName;

use super::{Hook, HookPriority, HookResult, LogVars, Stage, TrainIter, ValEpoch};
use crate::engine::evaluate::EvalProgress;
use crate::engine::runner::RunState;

/// `IterTimerHook`.
pub struct IterTimerHook {
    /// When training (this session) started, and at which iteration.
    session: (Instant, u64),
    /// The end of the previous iteration (or the epoch's start).
    last: Instant,
    /// Seconds spent in this validation epoch so far.
    val_time: f64,
}

impl IterTimerHook {
    pub fn new() -> Self {
        let now = Instant::now();
        IterTimerHook {
            session: (now, 0),
            last: now,
            val_time: 0.0,
        }
    }
}

impl Hook for IterTimerHook {
    fn name(&self) -> &'static str {
        "IterTimerHook"
    }

    fn priority(&self) -> HookPriority {
        HookPriority::named(PriorityName::Normal)
    }

    fn stages(&self) -> &'static [Stage] {
        use Stage::*;
        &[
            BeforeTrain,
            BeforeTrainEpoch,
            BeforeTrainIter,
            AfterTrainIter,
            AfterTrainEpoch,
            BeforeValEpoch,
            BeforeValIter,
            AfterValIter,
            AfterValEpoch,
            BeforeTestEpoch,
            BeforeTestIter,
            AfterTestIter,
            AfterTestEpoch,
        ]
    }

    fn before_train(&mut self, state: &mut RunState) -> HookResult {
        self.session = (Instant::now(), state.iter);
        Ok(())
    }

    fn before_train_epoch(&mut self, _state: &mut RunState) -> HookResult {
        self.last = Instant::now();
        Ok(())
    }

    /// `data_time`: how long the loop waited for the batch.
    fn before_train_iter(&mut self, state: &mut RunState, iter: &TrainIter) -> HookResult {
        state.hub.update("train/data_time", iter.data_time);
        Ok(())
    }

    /// `time` since the previous iteration; `eta` from this session's mean.
    fn after_train_iter(
        &mut self,
        state: &mut RunState,
        _iter: &TrainIter,
        _outputs: &LogVars,
    ) -> HookResult {
        let now = Instant::now();
        state
            .hub
            .update("train/time", (now - self.last).as_secs_f64());
        self.last = now;
        let (start, start_iter) = self.session;
        let done = (state.iter + 1 - start_iter) as f64;
        let left = state.shape.max_iters.saturating_sub(state.iter + 1) as f64;
        state.eta = Some(start.elapsed().as_secs_f64() / done * left);
        Ok(())
    }

    fn before_val_epoch(&mut self, _state: &mut RunState) -> HookResult {
        self.val_time = 0.0;
        Ok(())
    }

    /// `val/data_time`, `val/time`, and `eta` from this validation's mean.
    fn after_val_iter(&mut self, state: &mut RunState, p: &EvalProgress) -> HookResult {
        state.hub.update("val/data_time", p.data_time);
        state.hub.update("val/time", p.time);
        self.val_time += p.time;
        let mean = self.val_time / (p.index + 1) as f64;
        state.eta = Some(mean * p.total.saturating_sub(p.index + 1) as f64);
        Ok(())
    }

    /// The next train iteration's `time` starts now: in an
    /// `IterBasedTrainLoop` it does not count the validation.
    fn after_val_epoch(&mut self, _state: &mut RunState, _epoch: &ValEpoch<'_>) -> HookResult {
        self.last = Instant::now();
        Ok(())
    }
}
