//! mmdet's `DetVisualizationHook` (mmdet/engine/hooks/visualization_hook.py)
//! with `draw: false` (MMDetection's default), which draws nothing. Drawing
//! is refused when the hook is built.

use detc::registry::engine::{DetVisualizationHookConfig, PriorityName};

use super::{Hook, HookPriority, Stage};

/// `DetVisualizationHook(draw=False)`.
pub struct DetVisualizationHook;

impl DetVisualizationHook {
    /// `at`: the hook's config path, for the error.
    pub fn new(cfg: &DetVisualizationHookConfig, at: &str) -> Result<Self, String> {
        if cfg.draw {
            return Err(format!(
                "{at}.draw: drawing predictions is not supported yet; set it to false"
            ));
        }
        Ok(DetVisualizationHook)
    }
}

impl Hook for DetVisualizationHook {
    fn name(&self) -> &'static str {
        "DetVisualizationHook"
    }

    fn priority(&self) -> HookPriority {
        HookPriority::named(PriorityName::Normal)
    }

    fn stages(&self) -> &'static [Stage] {
        &[Stage::AfterValIter, Stage::AfterTestIter]
    }
}
