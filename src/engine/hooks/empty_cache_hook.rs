//! `EmptyCacheHook` (mmengine/hooks/empty_cache_hook.py): empties the CUDA
//! caching allocator (`torch.cuda.empty_cache()`) before and/or after each
//! epoch and after each iteration, as configured. Off CUDA it does nothing,
//! as in MMEngine.

use detc::registry::engine::{EmptyCacheHookConfig, PriorityName};

use super::{Hook, HookPriority, HookResult, LogVars, Stage, TrainIter, ValEpoch};
use crate::engine::evaluate::EvalProgress;
use crate::engine::native::cuda_empty_cache;
use crate::engine::runner::{runtime, RunState};

/// `EmptyCacheHook(before_epoch, after_epoch, after_iter)`.
pub struct EmptyCacheHook {
    cfg: EmptyCacheHookConfig,
}

impl EmptyCacheHook {
    pub fn new(cfg: EmptyCacheHookConfig) -> Self {
        EmptyCacheHook { cfg }
    }
}

/// Empties the cache of the model's device when `when` holds.
fn empty_if(when: bool, state: &RunState) -> HookResult {
    if when {
        cuda_empty_cache(state.vs.device()).map_err(runtime)?;
    }
    Ok(())
}

impl Hook for EmptyCacheHook {
    fn name(&self) -> &'static str {
        "EmptyCacheHook"
    }

    fn priority(&self) -> HookPriority {
        HookPriority::named(PriorityName::Normal)
    }

    fn stages(&self) -> &'static [Stage] {
        use Stage::*;
        &[
            BeforeTrainEpoch,
            AfterTrainIter,
            AfterTrainEpoch,
            BeforeValEpoch,
            AfterValIter,
            AfterValEpoch,
            BeforeTestEpoch,
            AfterTestIter,
            AfterTestEpoch,
        ]
    }

    fn before_train_epoch(&mut self, state: &mut RunState) -> HookResult {
        empty_if(self.cfg.before_epoch, state)
    }

    fn after_train_iter(&mut self, state: &mut RunState, _: &TrainIter, _: &LogVars) -> HookResult {
        empty_if(self.cfg.after_iter, state)
    }

    fn after_train_epoch(&mut self, state: &mut RunState) -> HookResult {
        empty_if(self.cfg.after_epoch, state)
    }

    fn before_val_epoch(&mut self, state: &mut RunState) -> HookResult {
        empty_if(self.cfg.before_epoch, state)
    }

    fn after_val_iter(&mut self, state: &mut RunState, _: &EvalProgress) -> HookResult {
        empty_if(self.cfg.after_iter, state)
    }

    fn after_val_epoch(&mut self, state: &mut RunState, _: &ValEpoch<'_>) -> HookResult {
        empty_if(self.cfg.after_epoch, state)
    }
}
