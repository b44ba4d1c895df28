//! mmdet's `DetVisualizationHook` (mmdet/engine/hooks/visualization_hook.py)
//! in training: with `draw: true`, after every validation batch whose
//! `runner.iter + batch_idx` is a multiple of `interval`, the batch's first
//! image is drawn (ground truth left, predictions right) and handed to the
//! visualizer's backends as `val_img` at that step: `LocalVisBackend` writes
//! `vis_data/vis_image/val_img_{step}.png`, `TensorboardVisBackend` an image.
//! Rank 0 alone draws (MMEngine's visualizer is `master_only`), from its own
//! shard. `detc test` draws its images itself (`engine::test_loop`).

use detc::registry::engine::{DetVisualizationHookConfig, PriorityName};
use detc::visualization::{draw_sample, DrawStyle, RecordsByPath};
use serde_json::Value;

use super::{Hook, HookPriority, HookResult, Stage};
use crate::engine::evaluate::EvalProgress;
use crate::engine::logging::Level;
use crate::engine::runner::{input, runtime, RunState};

/// `DetVisualizationHook(draw, interval, score_thr, …)`.
pub struct DetVisualizationHook {
    draw: bool,
    interval: u64,
    score_thr: f32,
    /// The config, for the visualizer's colours and the val set's palette.
    config: Value,
    /// Built at the first drawing: the colours and the val set's records.
    drawing: Option<(DrawStyle, RecordsByPath)>,
    /// Whether the "nothing keeps the drawings" warning was logged.
    warned: bool,
}

impl DetVisualizationHook {
    pub fn new(cfg: &DetVisualizationHookConfig, config: &Value) -> Self {
        DetVisualizationHook {
            draw: cfg.draw,
            interval: u64::from(cfg.interval.max(1)),
            score_thr: cfg.score_thr as f32,
            config: if cfg.draw {
                config.clone()
            } else {
                Value::Null
            },
            drawing: None,
            warned: false,
        }
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

    fn after_val_iter(&mut self, state: &mut RunState, p: &EvalProgress<'_>) -> HookResult {
        let step = state.iter + p.index as u64;
        if !self.draw || step % self.interval != 0 {
            return Ok(());
        }
        let (Some(meta), Some(pred)) = (p.metas.first(), p.outputs.first()) else {
            return Ok(());
        };
        if !state.log.keeps_images() {
            if !std::mem::replace(&mut self.warned, true) {
                let message = "DetVisualizationHook: draw is true, but the visualizer has no \
                               LocalVisBackend or TensorboardVisBackend to keep the drawings";
                state.log.log(Level::Warning, message).map_err(runtime)?;
            }
            return Ok(());
        }
        if self.drawing.is_none() {
            let style = DrawStyle::from_config(&self.config, "val_dataloader", p.dataset.classes())
                .map_err(input)?;
            self.drawing = Some((style, RecordsByPath::of(p.dataset)));
        }
        let (style, records) = self.drawing.as_ref().expect("built above");
        let info = records
            .get(meta)
            .map_err(|e| input(format!("DetVisualizationHook: {e}")))?;
        let image = draw_sample(info, pred, self.score_thr, style)
            .map_err(|e| runtime(format!("DetVisualizationHook: {e}")))?;
        state
            .log
            .add_image("val_img", &image, step)
            .map_err(runtime)
    }
}
