//! `RuntimeInfoHook` (mmengine/hooks/runtime_info_hook.py): publishes the
//! learning rates before each iteration, the iteration's losses after it,
//! and the validation metrics, to the message hub the log reads.

use detc::registry::engine::PriorityName;

use super::{Hook, HookPriority, HookResult, LogVars, Stage, TrainIter, ValEpoch};
use crate::engine::runner::RunState;

/// `RuntimeInfoHook`.
pub struct RuntimeInfoHook;

impl Hook for RuntimeInfoHook {
    fn name(&self) -> &'static str {
        "RuntimeInfoHook"
    }

    fn priority(&self) -> HookPriority {
        HookPriority::named(PriorityName::VeryHigh)
    }

    fn stages(&self) -> &'static [Stage] {
        use Stage::*;
        &[
            BeforeRun,
            BeforeTrain,
            BeforeTrainEpoch,
            BeforeTrainIter,
            AfterTrainIter,
            BeforeVal,
            AfterValEpoch,
            AfterVal,
            AfterTrain,
            BeforeTest,
            AfterTestEpoch,
            AfterTest,
        ]
    }

    /// `train/base_lr` (only with several param groups) and `train/lr` (the first group's).
    fn before_train_iter(&mut self, state: &mut RunState, _iter: &TrainIter) -> HookResult {
        let lr = state.wrapper.get_lr();
        if let Some(base) = lr.base_lr {
            state.hub.update("train/base_lr", base);
        }
        state
            .hub
            .update("train/lr", lr.lr.first().copied().unwrap_or(0.0));
        Ok(())
    }

    /// `train/loss` and `train/<each loss term>`.
    fn after_train_iter(
        &mut self,
        state: &mut RunState,
        _iter: &TrainIter,
        outputs: &LogVars,
    ) -> HookResult {
        for (key, value) in outputs {
            state.hub.update(&format!("train/{key}"), *value);
        }
        Ok(())
    }

    /// `val/<metric>`.
    fn after_val_epoch(&mut self, state: &mut RunState, epoch: &ValEpoch<'_>) -> HookResult {
        for (key, value) in epoch.metrics {
            state.hub.update(&format!("val/{key}"), *value);
        }
        Ok(())
    }
}
