//! Building schedulers from `param_scheduler` config dicts, with the
//! runner's part (`Runner._build_param_scheduler`): an omitted `end`
//! becomes max_epochs / max_iters, and `convert_to_iter_based` scales the
//! step counts by the epoch length (`build_iter_from_epoch`).

use detc::registry::engine::schedulers::{
    ConstantLRConfig, CosineAnnealingLRConfig, ExponentialLRConfig, LinearLRConfig,
    MultiStepLRConfig, StepLRConfig,
};

use super::{ParamScheduler, SchedulerKind, INF};
use crate::engine::optim::LrSlot;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};

/// A scheduler's active window after the runner's defaults and conversion.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) begin: i64,
    pub(super) end: i64,
    pub(super) by_epoch: bool,
}

/// What the runner knows when it builds the schedulers.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleContext {
    /// Iterations per epoch (`len(train_dataloader)`).
    pub epoch_length: u64,
    /// The train loop's `max_epochs` (1 for `IterBasedTrainLoop`, as MMEngine).
    pub max_epochs: u64,
    /// The train loop's `max_iters`.
    pub max_iters: u64,
}

/// The fields every scheduler config shares (`begin`, `end`, `last_step`,
/// `by_epoch`, `convert_to_iter_based`), read from any of them.
macro_rules! common {
    ($c:expr) => {
        Common {
            begin: $c.begin,
            end: $c.end,
            last_step: $c.last_step,
            by_epoch: $c.by_epoch,
            convert: $c.convert_to_iter_based,
            verbose: $c.verbose,
        }
    };
}

/// The fields every scheduler config has.
struct Common {
    begin: u64,
    end: u64,
    last_step: i64,
    by_epoch: bool,
    convert: bool,
    verbose: bool,
}

impl Common {
    /// The window, with the runner's default `end` (when the config omits
    /// it) and `build_iter_from_epoch`'s scaling. Returns the epoch length
    /// factor applied to step counts (1 without conversion).
    fn window(
        &self,
        raw: &serde_json::Value,
        ty: &str,
        ctx: &ScheduleContext,
    ) -> ModelResult<(Window, i64)> {
        let mut end = self.end as i64;
        if raw.get("end").is_none() {
            end = if self.by_epoch {
                ctx.max_epochs
            } else {
                ctx.max_iters
            } as i64;
        }
        let mut begin = self.begin as i64;
        if !self.convert {
            return Ok((
                Window {
                    begin,
                    end,
                    by_epoch: self.by_epoch,
                },
                1,
            ));
        }
        if !self.by_epoch {
            return Err(ModelError::new(
                ty,
                "only epoch-based schedulers (by_epoch: true) can be converted to iteration-based",
            ));
        }
        if ctx.epoch_length == 0 {
            return Err(ModelError::new(
                ty,
                "`convert_to_iter_based` needs a non-empty train dataloader",
            ));
        }
        let len = ctx.epoch_length as i64;
        begin *= len;
        if end != INF {
            end *= len;
        }
        Ok((
            Window {
                begin,
                end,
                by_epoch: false,
            },
            len,
        ))
    }
}

/// Makes the rule's parameters from the final window and the epoch length
/// factor (1 unless converted to iterations).
type KindFn = Box<dyn Fn(Window, i64) -> ModelResult<SchedulerKind>>;

/// Builds one scheduler from its config dict.
pub(super) fn build_one(
    raw: &serde_json::Value,
    ctx: &ScheduleContext,
    slots: &mut [LrSlot<'_>],
    log: &mut Vec<String>,
) -> ModelResult<ParamScheduler> {
    let ty = cfg_type(raw, "param_scheduler")?;
    let unit = |ty: &str| -> ModelResult<()> {
        Err(ModelError::new(
            ty,
            format!("factor must be between 0 and 1 ({ty})"),
        ))
    };
    let (common, make): (Common, KindFn) = match ty {
        "LinearLR" => {
            let c: LinearLRConfig = parse_cfg(raw, ty)?;
            if !(0.0..=1.0).contains(&c.start_factor) || !(0.0..=1.0).contains(&c.end_factor) {
                unit(ty)?;
            }
            let (sf, ef) = (c.start_factor, c.end_factor);
            (
                common!(c),
                Box::new(move |w: Window, _| {
                    Ok(SchedulerKind::Linear {
                        start_factor: sf,
                        end_factor: ef,
                        total_iters: w.end - w.begin - 1,
                    })
                }),
            )
        }
        "MultiStepLR" => {
            let c: MultiStepLRConfig = parse_cfg(raw, ty)?;
            let (ms, gamma) = (c.milestones.clone(), c.gamma);
            (
                common!(c),
                Box::new(move |_, len| {
                    let mut counted: Vec<(i64, u32)> = Vec::new();
                    for m in &ms {
                        let m = *m as i64 * len;
                        match counted.iter_mut().find(|(x, _)| *x == m) {
                            Some((_, n)) => *n += 1,
                            None => counted.push((m, 1)),
                        }
                    }
                    Ok(SchedulerKind::MultiStep {
                        milestones: counted,
                        gamma,
                    })
                }),
            )
        }
        "StepLR" => {
            let c: StepLRConfig = parse_cfg(raw, ty)?;
            if c.step_size == 0 {
                return Err(ModelError::new(ty, "`step_size` must be positive"));
            }
            let (step, gamma) = (c.step_size as i64, c.gamma);
            (
                common!(c),
                Box::new(move |_, len| {
                    Ok(SchedulerKind::Step {
                        step_size: step * len,
                        gamma,
                    })
                }),
            )
        }
        "CosineAnnealingLR" => {
            let c: CosineAnnealingLRConfig = parse_cfg(raw, ty)?;
            let (eta_min, ratio) = match (c.eta_min, c.eta_min_ratio) {
                (None, None) => (Some(0.0), None),
                (Some(_), Some(_)) => {
                    return Err(ModelError::new(ty, "set either `eta_min` or `eta_min_ratio`, not both"))
                }
                other => other,
            };
            let t_max = c.t_max;
            (
                common!(c),
                Box::new(move |w: Window, len| {
                    // `T_max or (end - begin)`: 0 counts as absent, as in Python.
                    let t = t_max.filter(|t| *t != 0).map_or(w.end - w.begin, |t| t as i64 * len);
                    Ok(SchedulerKind::Cosine {
                        t_max: t,
                        eta_min,
                        eta_min_ratio: ratio,
                    })
                }),
            )
        }
        "ConstantLR" => {
            let c: ConstantLRConfig = parse_cfg(raw, ty)?;
            if !(0.0..=1.0).contains(&c.factor) {
                unit(ty)?;
            }
            let factor = c.factor;
            (
                common!(c),
                Box::new(move |w: Window, _| {
                    Ok(SchedulerKind::Constant {
                        factor,
                        total_iters: w.end - w.begin - 1,
                    })
                }),
            )
        }
        "ExponentialLR" => {
            let c: ExponentialLRConfig = parse_cfg(raw, ty)?;
            let gamma = c.gamma;
            (
                common!(c),
                Box::new(move |_, _| Ok(SchedulerKind::Exponential { gamma })),
            )
        }
        other => {
            return Err(ModelError::new(
                "param_scheduler",
                format!(
                    "`{other}` is not supported (LinearLR, MultiStepLR, StepLR, CosineAnnealingLR, ConstantLR, ExponentialLR are)"
                ),
            ))
        }
    };
    let (window, len) = common.window(raw, ty, ctx)?;
    let kind = make(window, len)?;
    ParamScheduler::new(
        ty,
        kind,
        window,
        common.last_step,
        common.verbose,
        slots,
        log,
    )
}
