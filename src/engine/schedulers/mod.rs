//! Learning-rate schedulers (`param_scheduler`), as MMEngine 0.10.7's
//! `mmengine/optim/scheduler/param_scheduler.py` computes them.
//!
//! Every scheduler uses MMEngine's recursive ("chainable") form: each step
//! multiplies or shifts the lr the param group holds *now*, so chained
//! schedulers compose multiplicatively and the float rounding is the
//! recursive form's, not a closed formula's. The f64 arithmetic below keeps
//! Python's order of operations (and its `pow`/`cos`), so the lrs equal
//! MMEngine's bit for bit.
//!
//! Lifecycle, as MMEngine's `_ParamScheduler`: building a scheduler records
//! `initial_lr` in every group that lacks one (its base values), then takes
//! one step (`_global_step` -1 → 0), so a warm-up's first lr is set before
//! the first iteration. [`Schedulers::step_iter`] / [`Schedulers::step_epoch`]
//! are `ParamSchedulerHook.after_train_iter` / `after_train_epoch`: they step
//! the iteration-based / epoch-based schedulers, in config order. A scheduler
//! changes the lr only while `begin <= global_step < end`.
//!
//! The runner's part (`Runner._build_param_scheduler`) is here too: an
//! omitted `end` becomes `max_epochs` (by epoch) or `max_iters`, and
//! `convert_to_iter_based` scales `begin`, `end`, `milestones`, `T_max`
//! (and `step_size`) by the epoch length and makes the scheduler
//! iteration-based (see [`build`]).

#![allow(dead_code)]

mod build;
mod state;
#[cfg(test)]
mod tests;

use detc::checkpoint::Value;
use detc::registry::engine::schedulers::SCHEDULER_INF;
use detc::registry::models::common::OneOrMany;
use detc::registry::refs::ParamSchedulerCfg;

use crate::engine::optim::{LrSlot, OptimWrapper};
use crate::models::layers::{ModelError, ModelResult};

pub use build::ScheduleContext;
use build::{build_one, Window};
use state::load_scheduler_state;
pub use state::scheduler_state;

/// MMEngine's `INF = int(1e9)`: "until the end".
const INF: i64 = SCHEDULER_INF as i64;

/// The schedule rule of one scheduler, with its (iteration- or
/// epoch-counted) parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum SchedulerKind {
    /// `LinearLR`; `total_iters = end - begin - 1`.
    Linear {
        start_factor: f64,
        end_factor: f64,
        total_iters: i64,
    },
    /// `MultiStepLR`; milestones with their multiplicity (a `Counter`).
    MultiStep {
        milestones: Vec<(i64, u32)>,
        gamma: f64,
    },
    /// `StepLR`.
    Step { step_size: i64, gamma: f64 },
    /// `CosineAnnealingLR`; exactly one of `eta_min` / `eta_min_ratio`.
    Cosine {
        t_max: i64,
        eta_min: Option<f64>,
        eta_min_ratio: Option<f64>,
    },
    /// `ConstantLR`; `total_iters = end - begin - 1`.
    Constant { factor: f64, total_iters: i64 },
    /// `ExponentialLR`.
    Exponential { gamma: f64 },
}

/// One learning-rate scheduler (MMEngine `_ParamScheduler` with
/// `param_name='lr'`).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamScheduler {
    /// The config `type` (`LinearLR`, ...).
    pub type_name: String,
    pub kind: SchedulerKind,
    pub begin: i64,
    pub end: i64,
    pub by_epoch: bool,
    /// Steps taken inside `[begin, end)`, minus one (`last_step`).
    pub last_step: i64,
    /// Steps taken in all (`_global_step`).
    pub global_step: i64,
    /// Each slot's `initial_lr` when the scheduler was built.
    pub base_values: Vec<f64>,
    /// The lrs after the last step (`_last_value`).
    pub last_value: Vec<f64>,
    /// Log each value it sets (`verbose`).
    pub verbose: bool,
}

impl ParamScheduler {
    /// Builds the scheduler on the wrapper's lr slots and takes its first step.
    fn new(
        type_name: &str,
        kind: SchedulerKind,
        window: Window,
        last_step: i64,
        verbose: bool,
        slots: &mut [LrSlot<'_>],
        log: &mut Vec<String>,
    ) -> ModelResult<Self> {
        if window.end <= window.begin {
            return Err(ModelError::new(
                type_name,
                format!(
                    "end should be larger than begin, but got begin={}, end={}",
                    window.begin, window.end
                ),
            ));
        }
        if last_step < -1 {
            return Err(ModelError::new(
                type_name,
                "`last_step` must be at least -1",
            ));
        }
        let mut base_values = Vec::with_capacity(slots.len());
        for (i, slot) in slots.iter_mut().enumerate() {
            if last_step == -1 {
                // group.setdefault('initial_lr', group['lr'])
                if slot.initial_lr.is_none() {
                    *slot.initial_lr = Some(*slot.lr);
                }
            }
            let initial = slot.initial_lr.ok_or_else(|| {
                ModelError::new(
                    type_name,
                    format!("param 'initial_lr' is not specified in param_groups[{i}] when resuming an optimizer"),
                )
            })?;
            base_values.push(initial);
        }
        let mut s = ParamScheduler {
            type_name: type_name.to_string(),
            kind,
            begin: window.begin,
            end: window.end,
            by_epoch: window.by_epoch,
            last_step,
            global_step: -1,
            base_values,
            last_value: Vec::new(),
            verbose,
        };
        s.step(slots, log);
        Ok(s)
    }

    /// One step (`_ParamScheduler.step`): inside `[begin, end)` the next lr
    /// of every slot; with `verbose`, a line for each into `log`
    /// (`print_value`).
    pub fn step(&mut self, slots: &mut [LrSlot<'_>], log: &mut Vec<String>) {
        self.global_step += 1;
        if self.begin <= self.global_step && self.global_step < self.end {
            self.last_step += 1;
            let current: Vec<f64> = slots.iter().map(|s| *s.lr).collect();
            let values = self.get_value(&current);
            for (group, (slot, v)) in slots.iter_mut().zip(values).enumerate() {
                *slot.lr = v;
                if self.verbose {
                    let v = crate::engine::logging::pyfmt::exp(v, 4);
                    log.push(format!("Adjusting parameter value of group {group} to {v}."));
                }
            }
        }
        self.last_value = slots.iter().map(|s| *s.lr).collect();
    }

    /// The chainable form (`_get_value`) from the current lrs `lrs`.
    fn get_value(&self, lrs: &[f64]) -> Vec<f64> {
        let ls = self.last_step;
        match &self.kind {
            SchedulerKind::Linear {
                start_factor,
                end_factor,
                total_iters,
            } => {
                if ls == 0 {
                    return lrs.iter().map(|lr| lr * start_factor).collect();
                }
                let d = end_factor - start_factor;
                let f = 1. + d / (*total_iters as f64 * start_factor + (ls - 1) as f64 * d);
                lrs.iter().map(|lr| lr * f).collect()
            }
            SchedulerKind::MultiStep { milestones, gamma } => {
                match milestones.iter().find(|(m, _)| *m == ls) {
                    None => lrs.to_vec(),
                    Some((_, count)) => lrs
                        .iter()
                        .map(|lr| lr * gamma.powf(f64::from(*count)))
                        .collect(),
                }
            }
            SchedulerKind::Step { step_size, gamma } => {
                if ls == 0 || ls % step_size != 0 {
                    lrs.to_vec()
                } else {
                    lrs.iter().map(|lr| lr * gamma).collect()
                }
            }
            SchedulerKind::Cosine {
                t_max,
                eta_min,
                eta_min_ratio,
            } => self.cosine(lrs, *t_max, *eta_min, *eta_min_ratio),
            SchedulerKind::Constant {
                factor,
                total_iters,
            } => {
                if ls == 0 {
                    lrs.iter().map(|lr| lr * factor).collect()
                } else if ls == *total_iters {
                    lrs.iter().map(|lr| lr * (1.0 / factor)).collect()
                } else {
                    lrs.to_vec()
                }
            }
            SchedulerKind::Exponential { gamma } => {
                if ls == 0 {
                    lrs.to_vec()
                } else {
                    lrs.iter().map(|lr| lr * gamma).collect()
                }
            }
        }
    }

    /// `CosineAnnealingParamScheduler._get_value`.
    fn cosine(
        &self,
        lrs: &[f64],
        t_max: i64,
        eta_min: Option<f64>,
        ratio: Option<f64>,
    ) -> Vec<f64> {
        use std::f64::consts::PI;
        let ls = self.last_step;
        let eta = |base: f64| match ratio {
            None => eta_min.unwrap_or(0.0),
            Some(r) => base * r,
        };
        if ls == 0 {
            return lrs.to_vec();
        }
        let t = t_max as f64;
        if (ls - 1 - t_max).rem_euclid(2 * t_max) == 0 {
            return lrs
                .iter()
                .zip(&self.base_values)
                .map(|(lr, &base)| lr + (base - eta(base)) * (1.0 - (PI / t).cos()) / 2.0)
                .collect();
        }
        let ratio_cos =
            (1.0 + (PI * ls as f64 / t).cos()) / (1.0 + (PI * (ls - 1) as f64 / t).cos());
        lrs.iter()
            .zip(&self.base_values)
            .map(|(lr, &base)| ratio_cos * (lr - eta(base)) + eta(base))
            .collect()
    }
}

/// All schedulers of a run, in config order.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedulers {
    pub schedulers: Vec<ParamScheduler>,
    /// Lines of `verbose` schedulers not yet logged ([`Schedulers::take_log`]).
    log: Vec<String>,
}

impl Schedulers {
    /// Builds the `param_scheduler` section (one dict or a list) on the
    /// wrapper's param groups, as `Runner.build_param_scheduler` does; each
    /// scheduler takes its first step as it is built, so the wrapper's lrs
    /// are those of the first iteration afterwards.
    pub fn build(
        cfg: Option<&OneOrMany<ParamSchedulerCfg>>,
        ctx: &ScheduleContext,
        wrapper: &mut OptimWrapper,
    ) -> ModelResult<Self> {
        let (mut schedulers, mut log) = (Vec::new(), Vec::new());
        if let Some(cfg) = cfg {
            for c in cfg.as_vec() {
                schedulers.push(build_one(&c.0, ctx, &mut wrapper.lr_slots(), &mut log)?);
            }
        }
        Ok(Schedulers { schedulers, log })
    }

    /// `ParamSchedulerHook.after_train_iter`: steps the iteration-based ones.
    pub fn step_iter(&mut self, wrapper: &mut OptimWrapper) {
        self.step_where(wrapper, false);
    }

    /// `ParamSchedulerHook.after_train_epoch`: steps the epoch-based ones.
    pub fn step_epoch(&mut self, wrapper: &mut OptimWrapper) {
        self.step_where(wrapper, true);
    }

    fn step_where(&mut self, wrapper: &mut OptimWrapper, by_epoch: bool) {
        let mut slots = wrapper.lr_slots();
        for s in self
            .schedulers
            .iter_mut()
            .filter(|s| s.by_epoch == by_epoch)
        {
            s.step(&mut slots, &mut self.log);
        }
    }

    /// The lines `verbose` schedulers wrote since the last call (MMEngine
    /// prints them to the run's logger as it sets each value).
    pub fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }

    /// The schedulers' states, a list of dicts in config order (MMEngine's
    /// checkpoint `param_schedulers`; see [`scheduler_state`]).
    pub fn state_dict(&self) -> Value {
        Value::List(self.schedulers.iter().map(scheduler_state).collect())
    }

    /// Restores [`Self::state_dict`]. As MMEngine's `__dict__.update`, the
    /// saved window and counters replace the configured ones; the rule's
    /// parameters (milestones, factors) stay as configured.
    pub fn load_state_dict(&mut self, value: &Value) -> ModelResult<()> {
        let err = |m: String| ModelError::new("param_scheduler state", m);
        let Value::List(items) = value else {
            return Err(err("expected a list of scheduler states".into()));
        };
        if items.len() != self.schedulers.len() {
            return Err(err(format!(
                "the checkpoint has {} schedulers, the config {}",
                items.len(),
                self.schedulers.len()
            )));
        }
        for (s, v) in self.schedulers.iter_mut().zip(items) {
            load_scheduler_state(s, v)?;
        }
        Ok(())
    }
}
