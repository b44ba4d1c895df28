//! What `AmpOptimWrapper` adds to `OptimWrapper` (MMEngine 0.10.7
//! `amp_optimizer_wrapper.py`): an autocast region around the forward pass
//! (`optim_context`) and a [`GradScaler`] around backward and step.
//!
//! MMEngine refuses AMP without a GPU; here the CPU gets bfloat16 autocast
//! (what `torch.autocast('cpu')` and MMEngine's `autocast` default to on the
//! CPU), with the same loss scaler, so `--amp` also trains on the CPU.

use tch::{Device, Kind};

use detc::registry::engine::optim::{AmpDtype, AmpOptimWrapperConfig, LossScale};

use super::grad_scaler::{GradScaler, GradScalerConfig};
use crate::engine::native::AutocastGuard;
use crate::models::layers::{ModelError, ModelResult};

/// The autocast region of the forward pass (`torch.autocast(device, dtype,
/// enabled)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutocastSpec {
    pub device: Device,
    pub dtype: Kind,
    /// False where torch disables autocast for the dtype (float32/float64
    /// on CUDA); the loss scaler still runs.
    pub enabled: bool,
}

impl AutocastSpec {
    /// MMEngine's `autocast(dtype=cast_dtype)` on `device`: CUDA defaults to
    /// float16 and ignores (with torch's warning) dtypes it cannot autocast
    /// to; the CPU takes only bfloat16.
    pub fn resolve(device: Device, dtype: Option<AmpDtype>) -> ModelResult<Self> {
        let err = |m: String| ModelError::new("AmpOptimWrapper", m);
        let (dtype, enabled) = match (device, dtype) {
            (Device::Cuda(_), None | Some(AmpDtype::Float16)) => (Kind::Half, true),
            (Device::Cuda(_), Some(AmpDtype::Bfloat16)) => (Kind::BFloat16, true),
            (Device::Cuda(_), Some(AmpDtype::Float32)) => (Kind::Float, false),
            (Device::Cuda(_), Some(AmpDtype::Float64)) => (Kind::Double, false),
            (Device::Cpu, None | Some(AmpDtype::Bfloat16)) => (Kind::BFloat16, true),
            (Device::Cpu, Some(other)) => {
                return Err(err(format!(
                    "CPU autocast supports only bfloat16, not {other:?}: set `dtype: bfloat16` or drop it"
                )))
            }
            (other, _) => return Err(err(format!("mixed precision on {other:?} is not supported"))),
        };
        let spec = AutocastSpec {
            device,
            dtype,
            enabled,
        };
        // Entering once here leaves no way for `enter` to fail later.
        drop(spec.enter()?);
        Ok(spec)
    }

    /// Opens the region; it ends when the guard drops.
    pub fn enter(&self) -> ModelResult<AutocastGuard> {
        AutocastGuard::enter(self.device, self.dtype, self.enabled)
            .map_err(|e| ModelError::new("autocast", e.to_string()))
    }
}

/// The mixed-precision half of an `AmpOptimWrapper`.
#[derive(Debug)]
pub struct Amp {
    pub autocast: AutocastSpec,
    pub loss_scaler: GradScaler,
    /// MMEngine's `_scale_update_param`: the fixed scale of a numeric
    /// `loss_scale`, written back after every step (static scaling).
    pub static_scale: Option<f64>,
}

impl Amp {
    /// From an `AmpOptimWrapper` config, for parameters on `device`.
    /// `use_fsdp` picks torch's FSDP grad scaler, which is the plain one
    /// in a single process.
    pub fn from_cfg(cfg: &AmpOptimWrapperConfig, device: Device) -> ModelResult<Self> {
        let (scaler_cfg, static_scale) = match &cfg.loss_scale {
            LossScale::Dynamic(_) => (GradScalerConfig::default(), None),
            LossScale::Static(s) => (
                GradScalerConfig {
                    init_scale: *s,
                    ..GradScalerConfig::default()
                },
                Some(*s),
            ),
            LossScale::Kwargs(kwargs) => {
                let value = serde_json::to_value(kwargs)
                    .map_err(|e| ModelError::new("AmpOptimWrapper", format!("loss_scale: {e}")))?;
                let c: GradScalerConfig = serde_json::from_value(value).map_err(|e| {
                    ModelError::new("AmpOptimWrapper", format!("loss_scale: {e} (GradScaler takes init_scale, growth_factor, backoff_factor, growth_interval, enabled)"))
                })?;
                (c, None)
            }
        };
        Ok(Amp {
            autocast: AutocastSpec::resolve(device, cfg.dtype)?,
            loss_scaler: GradScaler::new(&scaler_cfg)?,
            static_scale,
        })
    }
}
