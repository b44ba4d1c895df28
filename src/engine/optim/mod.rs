//! Optimizers and the optimizer wrapper of the training engine
//! (`optim_wrapper` in the config), as MMEngine 0.10.7 and torch.optim
//! compute them.
//!
//! - [`optimizers`]: SGD, Adam, AdamW with torch's update rules;
//! - [`paramwise`]: param groups from `paramwise_cfg`
//!   (`DefaultOptimWrapperConstructor`);
//! - [`wrapper`]: `OptimWrapper` (accumulation, clipping, `get_lr`);
//! - [`amp`], [`grad_scaler`]: what `AmpOptimWrapper` adds (autocast,
//!   dynamic loss scaling);
//! - [`state`]: the optimizer state as torch's `state_dict()` layout.

#![allow(dead_code, unused_imports)]

pub mod amp;
pub mod grad_scaler;
pub mod optimizers;
pub mod paramwise;
pub mod state;
pub mod wrapper;

#[cfg(test)]
mod amp_tests;
#[cfg(test)]
mod tests;

pub use amp::{Amp, AutocastSpec};
pub use grad_scaler::{GradScaler, GradScalerConfig};
pub use optimizers::{Optimizer, OptimizerKind, OptimizerSpec, ParamGroup, ParamState};
pub use paramwise::{build_param_groups, is_norm_param_name, named_trainable, NamedParam};
pub use wrapper::{clip_grad_norm, ClipGrad, LrInfo, LrSlot, OptimWrapper};

use detc::registry::engine::optim::{AmpOptimWrapperConfig, OptimWrapperConfig};
use detc::registry::refs::OptimWrapperCfg;

use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::cfg_type;

/// Builds the `optim_wrapper` section over `params` (the model's trainable
/// parameters in registration order, e.g. from [`named_trainable`]).
///
/// `type` is `OptimWrapper` (or absent) or `AmpOptimWrapper` (autocast on
/// the parameters' device); the `constructor` must be
/// `DefaultOptimWrapperConstructor` (or absent).
pub fn build_optim_wrapper(
    cfg: &OptimWrapperCfg,
    params: Vec<NamedParam>,
) -> ModelResult<OptimWrapper> {
    let ty = cfg
        .0
        .get("type")
        .map(|_| cfg_type(&cfg.0, "optim_wrapper"))
        .transpose()?;
    let mut raw = cfg.0.clone();
    if let Some(obj) = raw.as_object_mut() {
        obj.remove("type");
    }
    let (wcfg, amp_cfg) = match ty {
        None | Some("OptimWrapper") => (parse::<OptimWrapperConfig>(raw, "OptimWrapper")?, None),
        Some("AmpOptimWrapper") => {
            let a: AmpOptimWrapperConfig = parse(raw, "AmpOptimWrapper")?;
            let plain = OptimWrapperConfig {
                optimizer: a.optimizer.clone(),
                accumulative_counts: a.accumulative_counts,
                clip_grad: a.clip_grad.clone(),
                paramwise_cfg: a.paramwise_cfg.clone(),
                constructor: a.constructor.clone(),
            };
            (plain, Some(a))
        }
        Some(other) => {
            return Err(ModelError::new(
                "optim_wrapper",
                format!("`{other}` is not supported (OptimWrapper and AmpOptimWrapper are)"),
            ))
        }
    };
    if let Some(c) = wcfg
        .constructor
        .as_deref()
        .filter(|c| *c != "DefaultOptimWrapperConstructor")
    {
        return Err(ModelError::new(
            "optim_wrapper",
            format!("constructor `{c}` is not supported (DefaultOptimWrapperConstructor is)"),
        ));
    }
    // MMEngine autocasts on its runner's device; ours is the parameters'.
    let device = params
        .first()
        .map_or(tch::Device::Cpu, |p| p.tensor.device());
    let amp = amp_cfg.map(|a| Amp::from_cfg(&a, device)).transpose()?;
    let spec = OptimizerSpec::from_cfg(&wcfg.optimizer.0)?;
    let groups = build_param_groups(&spec, cfg.0.get("paramwise_cfg"), params)?;
    let clip = wcfg
        .clip_grad
        .as_ref()
        .map(ClipGrad::from_cfg)
        .transpose()?;
    let wrapper = OptimWrapper::new(
        Optimizer::new(spec, groups),
        u64::from(wcfg.accumulative_counts),
        clip,
    )?;
    Ok(match amp {
        Some(amp) => wrapper.with_amp(amp),
        None => wrapper,
    })
}

fn parse<T: serde::de::DeserializeOwned>(raw: serde_json::Value, name: &str) -> ModelResult<T> {
    serde_json::from_value(raw).map_err(|e| ModelError::new(name, format!("bad config: {e}")))
}
