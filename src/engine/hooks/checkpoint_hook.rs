//! `CheckpointHook` (mmengine/hooks/checkpoint_hook.py): the file policy of
//! [`crate::engine::checkpoint_hook`] (when, which name, what to delete,
//! `save_best`) driven at MMEngine's stages, writing through
//! [`RunState::save_checkpoint`].

use detc::registry::engine::PriorityName;

use super::{Hook, HookPriority, HookResult, LogVars, Stage, TrainIter, ValEpoch};
use crate::engine::checkpoint_hook::{
    self as policy, CheckpointHookError, CheckpointHookState, Outcome, SaveFn,
};
use crate::engine::runner::{input, runtime, RunState};

/// `CheckpointHook(interval, by_epoch, max_keep_ckpts, save_best, …)`.
pub struct CheckpointHook {
    policy: policy::CheckpointHook,
}

impl CheckpointHook {
    pub fn new(policy: policy::CheckpointHook) -> Self {
        CheckpointHook { policy }
    }

    /// Runs one policy event with the run's atomic save, then logs what it did.
    fn run(
        &mut self,
        state: &mut RunState,
        event: impl FnOnce(
            &mut policy::CheckpointHook,
            &mut SaveFn<'_>,
        ) -> Result<Outcome, CheckpointHookError>,
    ) -> HookResult {
        let out = {
            let shared: &RunState = state;
            let mut save = |req: &policy::SaveRequest<'_>| shared.save_checkpoint(req);
            event(&mut self.policy, &mut save).map_err(runtime)?
        };
        report(state, &out)
    }
}

fn report(state: &mut RunState, out: &Outcome) -> HookResult {
    for m in &out.messages {
        state.info(m)?;
    }
    for path in &out.saved {
        state.info(&format!("Saving checkpoint at {}", path.display()))?;
    }
    Ok(())
}

impl Hook for CheckpointHook {
    fn name(&self) -> &'static str {
        "CheckpointHook"
    }

    fn priority(&self) -> HookPriority {
        HookPriority::named(PriorityName::VeryLow)
    }

    fn stages(&self) -> &'static [Stage] {
        use Stage::*;
        &[
            BeforeTrain,
            AfterTrainIter,
            AfterTrainEpoch,
            AfterValEpoch,
            AfterTrain,
        ]
    }

    /// Takes the kept-checkpoint list and best scores of the checkpoint resumed from.
    fn before_train(&mut self, state: &mut RunState) -> HookResult {
        let resumed: Option<CheckpointHookState> = state
            .resumed_hub
            .as_ref()
            .map(|hub| serde_json::from_value(hub["checkpoint_hook"].clone()).unwrap_or_default());
        let out = self.policy.before_train(resumed).map_err(input)?;
        report(state, &out)
    }

    /// A checkpoint holds the message hub, and none is written after a
    /// step whose loss is not finite.
    fn reads_train_values(&self, state: &RunState, _iter: &TrainIter) -> bool {
        self.policy.saves_after_iter(state.progress())
    }

    fn after_train_iter(
        &mut self,
        state: &mut RunState,
        _iter: &TrainIter,
        _outputs: &LogVars,
    ) -> HookResult {
        let p = state.progress();
        self.run(state, |hook, save| hook.after_train_iter(p, save))
    }

    fn after_train_epoch(&mut self, state: &mut RunState) -> HookResult {
        let p = state.progress();
        self.run(state, |hook, save| hook.after_train_epoch(p, save))
    }

    /// The checkpoint a preempted run resumes from.
    fn on_preempt(&mut self, state: &mut RunState) -> HookResult {
        let p = state.progress();
        self.run(state, |hook, save| hook.save_now(p, save))
    }

    /// `save_best`.
    fn after_val_epoch(&mut self, state: &mut RunState, epoch: &ValEpoch<'_>) -> HookResult {
        let p = state.progress();
        let metrics = epoch.metrics;
        self.run(state, |hook, save| hook.after_val_epoch(p, metrics, save))
    }
}
