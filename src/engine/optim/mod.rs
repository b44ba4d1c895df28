//! Optimizers and the optimizer wrapper of the training engine
//! (`optim_wrapper` in the config), as MMEngine 0.10.7 and torch.optim
//! compute them.
//!
//! - [`optimizers`]: SGD, Adam, AdamW with torch's update rules;
//! - [`paramwise`]: param groups from `paramwise_cfg`
//!   (`DefaultOptimWrapperConstructor`);
//! - [`wrapper`]: `OptimWrapper` (accumulation, clipping, `get_lr`);
//! - [`state`]: the optimizer state as torch's `state_dict()` layout.

#![allow(dead_code, unused_imports)]

pub mod optimizers;
pub mod paramwise;
pub mod state;
pub mod wrapper;

#[cfg(test)]
mod tests;

pub use optimizers::{Optimizer, OptimizerKind, OptimizerSpec, ParamGroup, ParamState};
pub use paramwise::{build_param_groups, is_norm_param_name, named_trainable, NamedParam};
pub use wrapper::{clip_grad_norm, ClipGrad, LrInfo, LrSlot, OptimWrapper};

use detc::registry::engine::optim::OptimWrapperConfig;
use detc::registry::refs::OptimWrapperCfg;

use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::cfg_type;

/// Builds the `optim_wrapper` section over `params` (the model's trainable
/// parameters in registration order, e.g. from [`named_trainable`]).
///
/// `type` is `OptimWrapper` (or absent); `AmpOptimWrapper` is refused for
/// now, as is a `constructor` other than `DefaultOptimWrapperConstructor`.
pub fn build_optim_wrapper(
    cfg: &OptimWrapperCfg,
    params: Vec<NamedParam>,
) -> ModelResult<OptimWrapper> {
    let ty = cfg
        .0
        .get("type")
        .map(|_| cfg_type(&cfg.0, "optim_wrapper"))
        .transpose()?;
    match ty {
        None | Some("OptimWrapper") => {}
        Some("AmpOptimWrapper") => {
            return Err(ModelError::new(
                "AmpOptimWrapper",
                "mixed precision is not supported yet: use `type: OptimWrapper` (drop --amp)",
            ))
        }
        Some(other) => {
            return Err(ModelError::new(
                "optim_wrapper",
                format!("`{other}` is not supported (OptimWrapper is)"),
            ))
        }
    }
    let mut raw = cfg.0.clone();
    if let Some(obj) = raw.as_object_mut() {
        obj.remove("type");
    }
    let wcfg: OptimWrapperConfig = serde_json::from_value(raw)
        .map_err(|e| ModelError::new("OptimWrapper", format!("bad config: {e}")))?;
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
    let spec = OptimizerSpec::from_cfg(&wcfg.optimizer.0)?;
    let groups = build_param_groups(&spec, cfg.0.get("paramwise_cfg"), params)?;
    let clip = wcfg
        .clip_grad
        .as_ref()
        .map(ClipGrad::from_cfg)
        .transpose()?;
    OptimWrapper::new(
        Optimizer::new(spec, groups),
        u64::from(wcfg.accumulative_counts),
        clip,
    )
}
