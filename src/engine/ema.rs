//! The averaged model of `EMAHook`: MMEngine's `ExponentialMovingAverage`
//! and `MomentumAnnealingEMA` and MMDetection's `ExpMomentumEMA`
//! (`mmengine/model/averaged_model.py`, `mmdet/models/layers/ema.py`).
//!
//! The average holds a copy of every state-dict entry. At the first update
//! it copies the model; after that, every `interval` updates, each averaged
//! floating-point entry moves toward the model's by the rule's momentum
//! (the parameters; with `update_buffers` the buffers too, and integer
//! buffers keep their first copy), and without `update_buffers` the buffers
//! are copied. A conv shared under several names (RTMDet's head) is averaged
//! once.
//!
//! In a checkpoint, as MMEngine's `EMAHook.before_save_checkpoint` leaves
//! it, `state_dict` holds the average (so that testing a checkpoint tests
//! the average) and `ema_state_dict` the trained weights under `module.`
//! plus the update count `steps`.

use std::collections::HashMap;

use detc::checkpoint::{TensorData, Value};
use detc::registry::engine::{EMAHookConfig, EmaType};
use indexmap::IndexMap;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::engine::optim::state::tensor_data;
use crate::models::layers::{shared_aliases, ModelError, ModelResult};
use crate::models::weights::to_tensor;

/// The momentum rule of the average.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// `lerp` by `momentum`.
    Constant { momentum: f64 },
    /// `(1 - momentum) * exp(-(1 + steps) / gamma) + momentum`, as `mul_` then `add_`.
    ExpMomentum { momentum: f64, gamma: f64 },
    /// `lerp` by `max(momentum, gamma / (gamma + steps))`.
    Annealing { momentum: f64, gamma: f64 },
}

/// One state-dict entry of the average.
#[derive(Debug)]
struct Entry {
    name: String,
    /// The model's tensor (shared storage), read at every update.
    src: Tensor,
    avg: Tensor,
    buffer: bool,
}

#[derive(Debug)]
pub struct ModelEma {
    rule: Rule,
    interval: i64,
    update_buffers: bool,
    /// Updates so far (MMEngine's `steps` buffer).
    pub steps: i64,
    /// Sorted by name, without shared aliases.
    entries: Vec<Entry>,
}

/// What a checkpoint's `ema_state_dict` gives back on resume: the trained
/// weights (`module.` stripped) and `steps`.
#[derive(Debug, Clone)]
pub struct EmaCheckpoint {
    pub weights: IndexMap<String, TensorData>,
    pub steps: i64,
}

/// Whether `name` is a buffer (not in `model.parameters()`), by its last segment.
fn is_buffer(name: &str) -> bool {
    detc::cli::summary::render::BUFFER_NAMES.contains(&name.rsplit('.').next().unwrap_or(name))
}

impl ModelEma {
    /// The averaged copy of the model in `vs`, as `EMAHook`'s config says.
    pub fn new(vs: &VarStore, cfg: &EMAHookConfig) -> ModelResult<Self> {
        let gamma = |default: f64| cfg.gamma.unwrap_or(default);
        let rule = match cfg.ema_type {
            EmaType::ExponentialMovingAverage => Rule::Constant { momentum: cfg.momentum },
            EmaType::ExpMomentumEMA => Rule::ExpMomentum { momentum: cfg.momentum, gamma: gamma(2000.0) },
            EmaType::MomentumAnnealingEMA => Rule::Annealing { momentum: cfg.momentum, gamma: gamma(100.0) },
        };
        let aliases = shared_aliases(vs);
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(n, _)| !aliases.contains(n)).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let entries = tch::no_grad(|| {
            named
                .into_iter()
                .map(|(name, t)| Entry { buffer: is_buffer(&name), avg: t.detach().copy(), src: t, name })
                .collect()
        });
        Ok(ModelEma { rule, interval: cfg.interval as i64, update_buffers: cfg.update_buffers, steps: 0, entries })
    }

    /// Whether `e` is averaged (rather than copied).
    fn averaged(&self, e: &Entry) -> bool {
        self.update_buffers || !e.buffer
    }

    /// The momentum of the update after `steps` updates.
    fn momentum(&self) -> f64 {
        let steps = self.steps as f64;
        match self.rule {
            Rule::Constant { momentum } => momentum,
            Rule::ExpMomentum { momentum, gamma } => (1.0 - momentum) * (-(1.0 + steps) / gamma).exp() + momentum,
            Rule::Annealing { momentum, gamma } => momentum.max(gamma / (gamma + steps)),
        }
    }

    /// `update_parameters`: one update from the model.
    pub fn update(&mut self) -> ModelResult<()> {
        let m = self.momentum();
        tch::no_grad(|| -> ModelResult<()> {
            for e in &self.entries {
                let s = &e.src;
                if self.averaged(e) {
                    if self.steps == 0 {
                        e.avg.shallow_clone().f_copy_(s)?;
                    } else if self.steps % self.interval == 0 && e.avg.is_floating_point() {
                        match self.rule {
                            Rule::ExpMomentum { .. } => {
                                let _ = e.avg.shallow_clone().f_mul_scalar_(1.0 - m)?.f_add_(&s.f_mul_scalar(m)?)?;
                            }
                            _ => {
                                let _ = e.avg.shallow_clone().f_lerp_(s, m)?;
                            }
                        }
                    }
                } else {
                    e.avg.shallow_clone().f_copy_(s)?;
                }
            }
            Ok(())
        })?;
        self.steps += 1;
        Ok(())
    }

    /// Before the average starts (`begin_iter` / `begin_epoch`): a copy of
    /// every entry, without counting a step.
    pub fn copy_model(&mut self) -> ModelResult<()> {
        tch::no_grad(|| self.entries.iter().try_for_each(|e| e.avg.shallow_clone().f_copy_(&e.src).map(drop)))?;
        Ok(())
    }

    /// `_swap_ema_parameters`: the model takes the average and the average
    /// the model's weights (the parameters; the buffers too with `update_buffers`).
    pub fn swap(&self) -> ModelResult<()> {
        tch::no_grad(|| -> ModelResult<()> {
            for e in self.entries.iter().filter(|e| self.averaged(e)) {
                let tmp = e.avg.copy();
                e.avg.shallow_clone().f_copy_(&e.src)?;
                e.src.shallow_clone().f_copy_(&tmp)?;
            }
            Ok(())
        })
    }

    /// The checkpoint's `state_dict` (the average, under every name of `vs`)
    /// and its `ema_state_dict` (the model's weights under `module.`, and `steps`).
    pub fn checkpoint(&self, vs: &VarStore) -> ModelResult<(IndexMap<String, TensorData>, Value)> {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        // An alias shares its first name's storage, hence its average.
        let by_storage: HashMap<(usize, Vec<i64>), &Tensor> =
            self.entries.iter().map(|e| ((e.src.data_ptr() as usize, e.src.size()), &e.avg)).collect();
        let mut state_dict = IndexMap::new();
        let mut module = Vec::new();
        for (name, t) in &named {
            let avg = by_storage
                .get(&(t.data_ptr() as usize, t.size()))
                .ok_or_else(|| ModelError::new("EMAHook", format!("{name} has no average")))?;
            state_dict.insert(name.clone(), tensor_data(avg)?);
            module.push((Value::Str(format!("module.{name}")), Value::Tensor(tensor_data(t)?)));
        }
        module.push((Value::Str("steps".into()), Value::Tensor(tensor_data(&Tensor::from(self.steps))?)));
        Ok((state_dict, Value::Dict(module)))
    }

    /// Restores the average from a resumed checkpoint's `state_dict` and `steps`.
    pub fn load(&mut self, averaged: &IndexMap<String, TensorData>, steps: i64) -> ModelResult<()> {
        tch::no_grad(|| -> ModelResult<()> {
            for e in &self.entries {
                let t = averaged
                    .get(&e.name)
                    .ok_or_else(|| ModelError::new("EMAHook", format!("the checkpoint's state_dict has no {}", e.name)))?;
                e.avg.shallow_clone().f_copy_(&to_tensor(t)?.f_to_kind(e.avg.kind())?)?;
            }
            Ok(())
        })?;
        self.steps = steps;
        Ok(())
    }
}

/// A checkpoint's `ema_state_dict`, if any: the trained weights and `steps`.
pub fn ema_from_checkpoint(other: Option<&Value>) -> ModelResult<Option<EmaCheckpoint>> {
    let Some(Value::Dict(items)) = other else { return Ok(None) };
    let mut weights = IndexMap::new();
    let mut steps = 0;
    for (k, v) in items {
        match (k, v) {
            (Value::Str(k), Value::Tensor(t)) if k == "steps" => steps = to_tensor(t)?.f_to_kind(Kind::Int64)?.int64_value(&[]),
            (Value::Str(k), Value::Tensor(t)) => {
                if let Some(name) = k.strip_prefix("module.") {
                    weights.insert(name.to_string(), t.clone());
                }
            }
            _ => return Err(ModelError::new("resume", "ema_state_dict holds something other than named tensors")),
        }
    }
    Ok(Some(EmaCheckpoint { weights, steps }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::{assert_close, script_state_dict, tensor, StateDict};
    use std::sync::OnceLock;
    use tch::Device;

    fn fixture() -> &'static StateDict {
        static FX: OnceLock<StateDict> = OnceLock::new();
        FX.get_or_init(|| script_state_dict("tests/models/ema_reference.py", "detc-ema", "ema.pth"))
    }

    const NAMES: [&str; 7] =
        ["fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"];

    /// `CASES` of the reference script: six updates of a Linear + BatchNorm1d
    /// whose every entry is redrawn before each; the average after each.
    fn check(case: &str, hook: serde_json::Value) {
        let fx = |k: &str| tensor(fixture(), k);
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        for name in NAMES {
            let (module, leaf) = name.split_once('.').unwrap();
            let t = fx(&format!("{case}.0.src.{name}")).zeros_like();
            let _ = (&root / module).add(leaf, t, !is_buffer(name));
        }
        let cfg: EMAHookConfig = serde_json::from_value(hook).unwrap();
        let mut ema = ModelEma::new(&vs, &cfg).unwrap();
        for k in 0..6 {
            tch::no_grad(|| {
                for name in NAMES {
                    vs.variables()[name].shallow_clone().copy_(&fx(&format!("{case}.{k}.src.{name}")));
                }
            });
            ema.update().unwrap();
            let (sd, _) = ema.checkpoint(&vs).unwrap();
            for name in NAMES {
                let got = to_tensor(&sd[name]).unwrap();
                assert_close(&got, &fx(&format!("{case}.{k}.avg.{name}")), 1e-7, 1e-6, &format!("{case} update {k}: {name}"));
            }
        }
    }

    #[test]
    fn exp_momentum_ema_averages_buffers_as_mmdetection() {
        check("exp", serde_json::json!({"ema_type": "ExpMomentumEMA", "momentum": 0.0002, "gamma": 3, "update_buffers": true}));
    }

    #[test]
    fn exponential_moving_average_every_second_update_copies_buffers_as_mmengine() {
        check("plain", serde_json::json!({"ema_type": "ExponentialMovingAverage", "momentum": 0.3, "interval": 2}));
    }

    #[test]
    fn momentum_annealing_ema_equals_mmengine() {
        check("annealing", serde_json::json!({"ema_type": "MomentumAnnealingEMA", "momentum": 0.01, "gamma": 4, "update_buffers": true}));
    }
}
