//! `PipelineSwitchHook` (mmdet/engine/hooks/pipeline_switch_hook.py): at
//! the start of epoch `switch_epoch` (or the first epoch after it, when a
//! run resumes later) the training datasets take `switch_pipeline`. The
//! loader's workers read the pipeline per sample and an epoch's batches are
//! only requested after `before_train_epoch`, so the whole epoch runs the
//! new pipeline (MMDetection restarts persistent workers for the same).

use detc::registry::engine::{PipelineSwitchHookConfig, PriorityName};
use serde_json::Value;

use super::{Hook, HookPriority, HookResult, Stage};
use crate::engine::runner::{runtime, RunState};

pub struct PipelineSwitchHook {
    switch_epoch: u64,
    pipeline: Vec<Value>,
    switched: bool,
}

impl PipelineSwitchHook {
    /// Builds the new pipeline once, so that a config it refuses stops the
    /// run before training.
    pub fn new(cfg: PipelineSwitchHookConfig) -> Result<Self, String> {
        let pipeline: Vec<Value> = cfg.switch_pipeline.iter().map(|t| t.0.clone()).collect();
        detc::data::transforms::Pipeline::from_config(&pipeline).map_err(|e| format!("switch_pipeline: {}", e.message))?;
        Ok(PipelineSwitchHook { switch_epoch: cfg.switch_epoch, pipeline, switched: false })
    }
}

impl Hook for PipelineSwitchHook {
    fn name(&self) -> &'static str {
        "PipelineSwitchHook"
    }

    fn priority(&self) -> HookPriority {
        HookPriority::named(PriorityName::Normal)
    }

    fn stages(&self) -> &'static [Stage] {
        &[Stage::BeforeTrainEpoch]
    }

    fn before_train_epoch(&mut self, state: &mut RunState) -> HookResult {
        if state.epoch >= self.switch_epoch && !self.switched {
            state.info("Switch pipeline now!")?;
            state.train_pipelines.switch(&self.pipeline).map_err(|e| runtime(e.message))?;
            self.switched = true;
        }
        Ok(())
    }
}
