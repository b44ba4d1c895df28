//! `EMAHook` (mmengine/hooks/ema_hook.py): keeps an average of the model's
//! weights (`engine::ema`) that moves after every training iteration, swaps
//! it into the model for each validation, and saves it as the checkpoint's
//! `state_dict` (the trained weights in `ema_state_dict`). Before
//! `begin_iter` / `begin_epoch` the average copies the weights instead.
//! A resumed run takes both back (`Runner::resume`).

use detc::registry::engine::{EMAHookConfig, EmaType, PriorityName};

use super::{Hook, HookPriority, HookResult, LogVars, Stage, TrainIter, ValEpoch};
use crate::engine::ema::ModelEma;
use crate::engine::runner::{runtime, RunState};

pub struct EMAHook {
    cfg: EMAHookConfig,
}

impl EMAHook {
    /// Checks the config as MMEngine's constructors assert.
    pub fn new(cfg: EMAHookConfig) -> Result<Self, String> {
        if cfg.begin_iter != 0 && cfg.begin_epoch != 0 {
            return Err("set `begin_iter` or `begin_epoch`, not both".into());
        }
        if !(cfg.momentum > 0.0 && cfg.momentum < 1.0) {
            return Err(format!("momentum must be in (0, 1), got {}", cfg.momentum));
        }
        if cfg.gamma.is_some() && cfg.ema_type == EmaType::ExponentialMovingAverage {
            return Err("`gamma` is for ExpMomentumEMA and MomentumAnnealingEMA".into());
        }
        Ok(EMAHook { cfg })
    }

    /// `_ema_started`.
    fn started(&self, state: &RunState) -> bool {
        if self.cfg.begin_epoch > 0 {
            state.epoch + 1 >= self.cfg.begin_epoch
        } else {
            state.iter + 1 >= self.cfg.begin_iter
        }
    }

    fn swap(state: &RunState) -> HookResult {
        match &state.ema {
            Some(ema) => ema.swap().map_err(runtime),
            None => Ok(()),
        }
    }
}

impl Hook for EMAHook {
    fn name(&self) -> &'static str {
        "EMAHook"
    }

    fn priority(&self) -> HookPriority {
        HookPriority::named(PriorityName::Normal)
    }

    fn stages(&self) -> &'static [Stage] {
        use Stage::*;
        &[BeforeRun, AfterLoadCheckpoint, BeforeTrain, AfterTrainIter, BeforeValEpoch, AfterValEpoch, BeforeSaveCheckpoint, BeforeTestEpoch, AfterTestEpoch]
    }

    fn before_train(&mut self, state: &mut RunState) -> HookResult {
        let (by_epoch, max) = if self.cfg.begin_epoch > 0 {
            ("begin_epoch", (self.cfg.begin_epoch, state.shape.max_epochs))
        } else {
            ("begin_iter", (self.cfg.begin_iter, state.shape.max_iters))
        };
        if max.0 > max.1 {
            return Err(runtime(format!("EMAHook: {by_epoch} {} is beyond the run's {}", max.0, max.1)));
        }
        let mut ema = ModelEma::new(&state.vs, &self.cfg).map_err(runtime)?;
        if let Some((averaged, steps)) = state.resumed_ema.take() {
            ema.load(&averaged, steps).map_err(runtime)?;
        }
        state.ema = Some(ema);
        Ok(())
    }

    fn after_train_iter(&mut self, state: &mut RunState, _: &TrainIter, _: &LogVars) -> HookResult {
        let started = self.started(state);
        let Some(ema) = &mut state.ema else { return Ok(()) };
        if started { ema.update() } else { ema.copy_model() }.map_err(runtime)
    }

    fn before_val_epoch(&mut self, state: &mut RunState) -> HookResult {
        Self::swap(state)
    }

    fn after_val_epoch(&mut self, state: &mut RunState, _: &ValEpoch<'_>) -> HookResult {
        Self::swap(state)
    }
}
