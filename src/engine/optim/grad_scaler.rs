//! Dynamic loss scaling: `torch.amp.GradScaler` (torch 2.11), the
//! `loss_scaler` of MMEngine's `AmpOptimWrapper`.
//!
//! The loss is multiplied by `scale` before backward, so that small fp16
//! gradients do not flush to zero; before the optimizer steps the gradients
//! are divided by it again and checked for inf/NaN. A step with a
//! non-finite gradient is skipped and the scale multiplied by
//! `backoff_factor`; after `growth_interval` clean steps in a row it is
//! multiplied by `growth_factor` (`torch._amp_update_scale_`).
//!
//! As in torch, `scale` and the growth tracker are 0-dim tensors created on
//! the loss's device at the first [`GradScaler::scale`], so the found-inf
//! check costs one device-to-host copy per step, not one per gradient.

use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use detc::checkpoint::Value;

use crate::models::layers::{ModelError, ModelResult};

use super::optimizers::Optimizer;
use crate::engine::native::optim::amp_unscale_foreach;

/// `GradScaler`'s keyword arguments (MMEngine's `loss_scale: {…}` dict).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GradScalerConfig {
    pub init_scale: f64,
    pub growth_factor: f64,
    pub backoff_factor: f64,
    pub growth_interval: i64,
    /// A disabled scaler passes the loss and the step through unchanged.
    pub enabled: bool,
}

impl Default for GradScalerConfig {
    fn default() -> Self {
        GradScalerConfig {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            enabled: true,
        }
    }
}

/// The scale tensors, created at the first `scale` call.
#[derive(Debug)]
struct ScaleState {
    /// float32, 0-dim.
    scale: Tensor,
    /// int32, 0-dim: clean steps since the last change of scale.
    growth_tracker: Tensor,
}

/// `torch.amp.GradScaler` for one optimizer.
#[derive(Debug)]
pub struct GradScaler {
    enabled: bool,
    init_scale: f64,
    growth_factor: f64,
    backoff_factor: f64,
    growth_interval: i64,
    init_growth_tracker: i64,
    state: Option<ScaleState>,
    /// Set by `unscale_` until `update` (torch's per-optimizer stage
    /// UNSCALED): 1.0 when a gradient was inf/NaN.
    found_inf: Option<Tensor>,
    /// Whether `step` ran since the last `update` (stage STEPPED).
    stepped: bool,
}

impl GradScaler {
    pub fn new(cfg: &GradScalerConfig) -> ModelResult<Self> {
        if cfg.enabled && cfg.growth_factor <= 1.0 {
            return Err(err("the growth factor must be > 1.0"));
        }
        if cfg.enabled && cfg.backoff_factor >= 1.0 {
            return Err(err("the backoff factor must be < 1.0"));
        }
        Ok(GradScaler {
            enabled: cfg.enabled,
            init_scale: cfg.init_scale,
            growth_factor: cfg.growth_factor,
            backoff_factor: cfg.backoff_factor,
            growth_interval: cfg.growth_interval,
            init_growth_tracker: 0,
            state: None,
            found_inf: None,
            stepped: false,
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// `loss * scale`, creating the scale on the loss's device the first
    /// time.
    pub fn scale(&mut self, loss: &Tensor) -> ModelResult<Tensor> {
        if !self.enabled {
            return Ok(loss.shallow_clone());
        }
        let device = loss.device();
        let state = match &mut self.state {
            Some(s) => s,
            None => self.state.insert(ScaleState {
                scale: Tensor::f_full([], self.init_scale, (Kind::Float, device))?,
                growth_tracker: Tensor::f_full([], self.init_growth_tracker, (Kind::Int, device))?,
            }),
        };
        Ok(loss.f_mul(&state.scale.f_to_device(device)?)?)
    }

    /// `unscale_(optimizer)`: divides every gradient of `optimizer` by the
    /// scale in place and records whether any was inf/NaN. Call it at most
    /// once between updates, before clipping.
    pub fn unscale_(&mut self, optimizer: &Optimizer) -> ModelResult<()> {
        if !self.enabled {
            return Ok(());
        }
        if self.found_inf.is_some() {
            return Err(err(
                "unscale_() has already been called on this optimizer since the last update()",
            ));
        }
        if self.stepped {
            return Err(err("unscale_() is being called after step()"));
        }
        let scale = &self.ready("unscale_")?.scale;
        // inv_scale = scale.double().reciprocal().float()
        let inv_scale = scale
            .f_to_kind(Kind::Double)?
            .f_reciprocal()?
            .f_to_kind(Kind::Float)?;
        let grads = defined_grads(optimizer);
        if grads.iter().any(|g| g.kind() == Kind::Half) {
            return Err(err(
                "attempting to unscale FP16 gradients (keep the parameters in float32)",
            ));
        }
        self.found_inf = Some(tch::no_grad(|| {
            non_finite_check_and_unscale_(&grads, &inv_scale)
        })?);
        Ok(())
    }

    /// `step(optimizer)`: unscales unless already done, then steps the
    /// optimizer unless a gradient was inf/NaN. Returns whether it stepped.
    pub fn step(&mut self, optimizer: &mut Optimizer) -> ModelResult<bool> {
        if !self.enabled {
            optimizer.step()?;
            return Ok(true);
        }
        self.ready("step")?;
        if self.stepped {
            return Err(err(
                "step() has already been called since the last update()",
            ));
        }
        if self.found_inf.is_none() {
            self.unscale_(optimizer)?;
        }
        let found_inf = self
            .found_inf
            .as_ref()
            .ok_or_else(|| err("no inf checks were recorded"))?;
        let skip = found_inf.f_double_value(&[])? != 0.0;
        if !skip {
            optimizer.step()?;
        }
        self.stepped = true;
        Ok(!skip)
    }

    /// `update(new_scale)`: sets the scale to `new_scale` (static loss
    /// scaling), or else backs off / grows it from this step's inf check.
    pub fn update(&mut self, new_scale: Option<f64>) -> ModelResult<()> {
        if !self.enabled {
            return Ok(());
        }
        let found_inf = self.found_inf.take();
        let (growth, backoff, interval) = (
            self.growth_factor,
            self.backoff_factor,
            self.growth_interval,
        );
        let ScaleState {
            scale,
            growth_tracker,
        } = self.ready("update")?;
        match new_scale {
            Some(s) => {
                let _ = scale.f_fill_(s)?;
            }
            None => {
                let found_inf = found_inf
                    .ok_or_else(|| err("no inf checks were recorded prior to update()"))?
                    .f_to_device(scale.device())?;
                let _ = scale.f_internal_amp_update_scale_(
                    growth_tracker,
                    &found_inf,
                    growth,
                    backoff,
                    interval,
                )?;
            }
        }
        self.stepped = false;
        Ok(())
    }

    /// `get_scale()`: the current scale (`init_scale` before the first
    /// `scale`, 1.0 when disabled).
    pub fn get_scale(&self) -> ModelResult<f64> {
        match (&self.state, self.enabled) {
            (_, false) => Ok(1.0),
            (None, true) => Ok(self.init_scale),
            (Some(s), true) => Ok(s.scale.f_double_value(&[])?),
        }
    }

    fn growth_tracker(&self) -> ModelResult<i64> {
        match &self.state {
            None => Ok(self.init_growth_tracker),
            Some(s) => Ok(s.growth_tracker.f_int64_value(&[])?),
        }
    }

    /// torch's `state_dict()`: `{scale, growth_factor, backoff_factor,
    /// growth_interval, _growth_tracker}`, empty when disabled.
    pub fn state_dict(&self) -> ModelResult<Value> {
        if !self.enabled {
            return Ok(Value::Dict(Vec::new()));
        }
        let s = |k: &str| Value::Str(k.into());
        Ok(Value::Dict(vec![
            (s("scale"), Value::Float(self.get_scale()?)),
            (s("growth_factor"), Value::Float(self.growth_factor)),
            (s("backoff_factor"), Value::Float(self.backoff_factor)),
            (s("growth_interval"), Value::Int(self.growth_interval)),
            (s("_growth_tracker"), Value::Int(self.growth_tracker()?)),
        ]))
    }

    /// Restores [`Self::state_dict`] (a no-op when disabled).
    pub fn load_state_dict(&mut self, value: &Value) -> ModelResult<()> {
        if !self.enabled {
            return Ok(());
        }
        if matches!(value, Value::Dict(items) if items.is_empty()) {
            return Err(err(
                "the saved loss_scaler state is empty (saved from a disabled GradScaler)",
            ));
        }
        let number = |k: &str| match value.get(k) {
            Some(Value::Float(x)) => Ok(*x),
            Some(Value::Int(i)) => Ok(*i as f64),
            _ => Err(err(&format!(
                "the saved loss_scaler state has no number `{k}`"
            ))),
        };
        self.init_scale = number("scale")?;
        self.growth_factor = number("growth_factor")?;
        self.backoff_factor = number("backoff_factor")?;
        self.growth_interval = number("growth_interval")? as i64;
        self.init_growth_tracker = number("_growth_tracker")? as i64;
        if let Some(st) = &mut self.state {
            let _ = st.scale.f_fill_(self.init_scale)?;
            let _ = st.growth_tracker.f_fill_(self.init_growth_tracker)?;
        }
        Ok(())
    }

    fn ready(&mut self, call: &str) -> ModelResult<&mut ScaleState> {
        self.state.as_mut().ok_or_else(|| {
            err(&format!(
                "{call}() before scale(): scale the loss before backward"
            ))
        })
    }
}

fn err(message: &str) -> ModelError {
    ModelError::new("GradScaler", message)
}

/// Every gradient the optimizer holds.
fn defined_grads(optimizer: &Optimizer) -> Vec<Tensor> {
    optimizer
        .groups
        .iter()
        .flat_map(|g| g.params.iter())
        .map(|p| p.grad())
        .filter(|g| g.defined())
        .collect()
}

/// GradScaler's `_unscale_grads_`: the gradients grouped by device and
/// dtype, each group through `torch._amp_foreach_non_finite_check_and_unscale_`
/// (times `inv_scale` in place, one multi-tensor call); returns float32 1.0
/// when any element was inf/NaN, else 0.0, on the scale's device.
fn non_finite_check_and_unscale_(grads: &[Tensor], inv_scale: &Tensor) -> ModelResult<Tensor> {
    let device: Device = inv_scale.device();
    let mut groups: Vec<((Device, Kind), Vec<&Tensor>)> = Vec::new();
    for g in grads {
        let key = (g.device(), g.kind());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(g),
            None => groups.push((key, vec![g])),
        }
    }
    let mut found = Tensor::f_zeros([], (Kind::Float, device))?;
    for ((on, _), group) in groups {
        let found_here = Tensor::f_zeros([1], (Kind::Float, on))?;
        amp_unscale_foreach(&group, &found_here, &inv_scale.f_to_device(on)?)
            .map_err(|e| ModelError::new("GradScaler", e.message))?;
        found = found.f_maximum(&found_here.f_to_device(device)?.f_view([])?)?;
    }
    Ok(found)
}
