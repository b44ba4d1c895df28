//! `DistSamplerSeedHook` (mmengine/hooks/sampler_seed.py): sets the train
//! sampler's epoch before each epoch, so that each epoch shuffles anew.
//! Without it the sampler stays at epoch 0 (the same order every epoch), as
//! in MMEngine. An `IterBasedTrainLoop` sets the epoch itself at each pass.

use detc::registry::engine::PriorityName;

use super::{Hook, HookPriority, HookResult, Stage};
use crate::engine::runner::RunState;

/// `DistSamplerSeedHook`.
pub struct DistSamplerSeedHook;

impl Hook for DistSamplerSeedHook {
    fn name(&self) -> &'static str {
        "DistSamplerSeedHook"
    }

    fn priority(&self) -> HookPriority {
        HookPriority::named(PriorityName::Normal)
    }

    fn stages(&self) -> &'static [Stage] {
        &[Stage::BeforeTrainEpoch]
    }

    fn before_train_epoch(&mut self, state: &mut RunState) -> HookResult {
        state.sampler_epoch = state.epoch;
        Ok(())
    }
}
