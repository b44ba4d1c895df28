//! `OptimWrapper`: backward, gradient accumulation, clipping and stepping,
//! as `mmengine.optim.OptimWrapper` (0.10.7) does them.
//!
//! Accumulation: the loss is divided by `accumulative_counts` and the
//! optimizer steps every `accumulative_counts` backward passes; after
//! [`OptimWrapper::initialize_count_status`] the last `max % counts`
//! iterations form a shorter window whose loss is divided by that remainder
//! and which steps at `max` (MMEngine's `scale_loss` / `should_update`).
//!
//! Mixed precision (`AmpOptimWrapper`) is an optional [`Amp`] part: an
//! autocast region in [`OptimWrapper::optim_context`], the loss scaled
//! before backward, and the gradients unscaled (before clipping) and checked
//! for inf/NaN before the step.
//!
//! With more than one param group MMEngine appends a `base_param_settings`
//! pseudo group (the optimizer defaults) that schedulers update too: it
//! is the `base_lr` of the log. [`OptimWrapper::lr_slots`] exposes it to the
//! schedulers the same way.

use tch::{Kind, Tensor};

use crate::engine::native::optim::clip_grad_norm_foreach;

use detc::checkpoint::Value;
use detc::registry::engine::optim::{ClipGradConfig, ClipType, NormType};

use super::amp::Amp;
use super::optimizers::{multi_tensor, Optimizer};
use crate::models::layers::{ModelError, ModelResult};

/// Gradient clipping of the wrapper's `step`.
#[derive(Debug, Clone, PartialEq)]
pub enum ClipGrad {
    /// `clip_grad_norm_(max_norm, norm_type)`; `norm_type` may be infinite.
    Norm {
        max_norm: f64,
        norm_type: f64,
        error_if_nonfinite: bool,
        /// torch's `foreach` (None: the multi-tensor path for CUDA gradients).
        foreach: Option<bool>,
    },
    /// `clip_grad_value_(clip_value)`.
    Value { clip_value: f64 },
}

impl ClipGrad {
    /// Reads a `clip_grad` config.
    pub fn from_cfg(cfg: &ClipGradConfig) -> ModelResult<Self> {
        let err = |m: &str| ModelError::new("clip_grad", m);
        match cfg.r#type.unwrap_or(ClipType::Norm) {
            ClipType::Norm => Ok(ClipGrad::Norm {
                max_norm: cfg.max_norm.ok_or_else(|| err("`max_norm` is required"))?,
                norm_type: match cfg.norm_type {
                    None => 2.0,
                    Some(NormType::P(p)) => p,
                    Some(NormType::Inf(_)) => f64::INFINITY,
                },
                error_if_nonfinite: cfg.error_if_nonfinite.unwrap_or(false),
                foreach: cfg.foreach,
            }),
            ClipType::Value => Ok(ClipGrad::Value {
                clip_value: cfg
                    .clip_value
                    .ok_or_else(|| err("`clip_value` is required"))?,
            }),
        }
    }
}

/// `torch.nn.utils.clip_grad_norm_` on the gradients of `params` (those
/// without a gradient are skipped): scales them by
/// `min(max_norm / (total_norm + 1e-6), 1)` and returns the total norm, a
/// 0-dim tensor on the gradients' device: it is read back only for
/// `error_if_nonfinite` (as torch), so the step does not wait for the device.
///
/// As torch: the norm of each gradient, the norm of those norms, and
/// `clip_coef = (total + 1e-6).reciprocal() * max_norm` (Python's `float /
/// tensor`), all in the gradients' dtype, multiplied into every gradient.
/// `foreach` as torch's: for CUDA gradients (and with `Some(true)`) through
/// the multi-tensor `_foreach_norm` / `_foreach_mul_`, equal to torch bit for
/// bit; otherwise one gradient at a time (on the CPU torch's foreach
/// kernels fall back to exactly that).
pub fn clip_grad_norm(
    params: &[&Tensor],
    max_norm: f64,
    norm_type: f64,
    error_if_nonfinite: bool,
    foreach: Option<bool>,
) -> ModelResult<Tensor> {
    let grads: Vec<Tensor> = params
        .iter()
        .map(|p| p.grad())
        .filter(|g| g.defined())
        .collect();
    if grads.is_empty() {
        return Ok(Tensor::from(0f32));
    }
    let non_finite = || {
        ModelError::new(
            "clip_grad",
            format!("the total norm of order {norm_type} of the gradients is non-finite, so it cannot be clipped"),
        )
    };
    if multi_tensor(foreach, &grads) {
        let refs: Vec<&Tensor> = grads.iter().collect();
        let total = clip_grad_norm_foreach(&refs, max_norm, norm_type, error_if_nonfinite)
            .map_err(|e| ModelError::new("clip_grad", e.message))?;
        if error_if_nonfinite && !total.f_double_value(&[])?.is_finite() {
            return Err(non_finite());
        }
        return Ok(total);
    }
    tch::no_grad(|| {
        let norms = grads
            .iter()
            .map(|g| vector_norm(g, norm_type))
            .collect::<Result<Vec<_>, _>>()?;
        let device = grads[0].device();
        let norms = norms
            .iter()
            .map(|n| n.to_device(device))
            .collect::<Vec<_>>();
        let total = vector_norm(&Tensor::f_stack(&norms, 0)?, norm_type)?;
        if error_if_nonfinite && !total.f_double_value(&[])?.is_finite() {
            return Err(non_finite());
        }
        let coef = total
            .f_add_scalar(1e-6)?
            .f_reciprocal()?
            .f_mul_scalar(max_norm)?
            .f_clamp_max(1.0)?;
        for g in &grads {
            let _ = g.shallow_clone().f_mul_(&coef.f_to_device(g.device())?)?;
        }
        Ok(total)
    })
}

/// `torch.linalg.vector_norm(t, ord)` over all elements (linalg_norm of the
/// flattened tensor is exactly that; tch does not bind vector_norm).
fn vector_norm(t: &Tensor, ord: f64) -> Result<Tensor, tch::TchError> {
    t.f_flatten(0, -1)?
        .f_linalg_norm(ord, None::<&[i64]>, false, None::<Kind>)
}

/// `clip_grad_value_`: clamps every gradient to `[-clip_value, clip_value]`.
pub fn clip_grad_value(params: &[&Tensor], clip_value: f64) -> ModelResult<()> {
    tch::no_grad(|| {
        for p in params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.f_clamp_(-clip_value, clip_value)?;
            }
        }
        Ok(())
    })
}

/// MMEngine's `_clip_grad` over the optimizer's parameters that require
/// grad; returns the total norm of a norm clip (when any has a gradient).
fn clip_params(optimizer: &Optimizer, clip: Option<&ClipGrad>) -> ModelResult<Option<Tensor>> {
    let Some(clip) = clip else {
        return Ok(None);
    };
    let params: Vec<&Tensor> = optimizer
        .groups
        .iter()
        .flat_map(|g| g.params.iter())
        .filter(|p| p.requires_grad())
        .collect();
    match *clip {
        ClipGrad::Norm {
            max_norm,
            norm_type,
            error_if_nonfinite,
            foreach,
        } => {
            if !params.iter().any(|p| p.grad().defined()) {
                return Ok(None);
            }
            clip_grad_norm(&params, max_norm, norm_type, error_if_nonfinite, foreach).map(Some)
        }
        ClipGrad::Value { clip_value } => clip_grad_value(&params, clip_value).map(|()| None),
    }
}

/// The `base_param_settings` pseudo group (optimizer defaults) MMEngine
/// adds when there is more than one param group.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseParamSettings {
    pub lr: f64,
    pub weight_decay: f64,
    pub initial_lr: Option<f64>,
}

/// A learning rate a scheduler sets: one param group's, or the base
/// settings'.
pub struct LrSlot<'a> {
    pub lr: &'a mut f64,
    pub initial_lr: &'a mut Option<f64>,
}

/// The learning rates the log shows (`get_lr()`).
#[derive(Debug, Clone, PartialEq)]
pub struct LrInfo {
    /// The base settings' lr; only with more than one group.
    pub base_lr: Option<f64>,
    /// Each group's lr; the log prints the first.
    pub lr: Vec<f64>,
}

/// An optimizer with MMEngine's wrapper logic.
#[derive(Debug)]
pub struct OptimWrapper {
    pub optimizer: Optimizer,
    pub base_param_settings: Option<BaseParamSettings>,
    pub clip_grad: Option<ClipGrad>,
    accumulative_counts: u64,
    inner_count: u64,
    /// None until `initialize_count_status` (MMEngine's `-1`).
    max_counts: Option<u64>,
    remainder_counts: u64,
    grad_norm: Option<Tensor>,
    /// Present for an `AmpOptimWrapper`.
    amp: Option<Amp>,
}

impl OptimWrapper {
    pub fn new(
        optimizer: Optimizer,
        accumulative_counts: u64,
        clip_grad: Option<ClipGrad>,
    ) -> ModelResult<Self> {
        if accumulative_counts == 0 {
            return Err(ModelError::new(
                "OptimWrapper",
                "`accumulative_counts` must be at least 1",
            ));
        }
        let base_param_settings = (optimizer.groups.len() > 1).then_some(BaseParamSettings {
            lr: optimizer.spec.lr,
            weight_decay: optimizer.spec.weight_decay,
            initial_lr: None,
        });
        Ok(OptimWrapper {
            optimizer,
            base_param_settings,
            clip_grad,
            accumulative_counts,
            inner_count: 0,
            max_counts: None,
            remainder_counts: 0,
            grad_norm: None,
            amp: None,
        })
    }

    /// Makes this an `AmpOptimWrapper`.
    pub fn with_amp(mut self, amp: Amp) -> Self {
        self.amp = Some(amp);
        self
    }

    /// The mixed-precision part, for an `AmpOptimWrapper`.
    pub fn amp(&self) -> Option<&Amp> {
        self.amp.as_ref()
    }

    /// MMEngine's `optim_context`: runs the forward pass `f` (data
    /// preprocessing and loss) in the autocast region of an
    /// `AmpOptimWrapper`, plainly otherwise. Gradients are synchronised
    /// only at the end of an accumulation window ([`Self::should_sync`]).
    pub fn optim_context<T>(&self, f: impl FnOnce() -> T) -> T {
        let _region = self.amp.as_ref().map(|amp| {
            amp.autocast
                .enter()
                .expect("the autocast region was checked when the wrapper was built")
        });
        f()
    }

    /// Sets the backward count (the iteration training starts or resumes
    /// at) and the total (max iterations), as the train loop does.
    pub fn initialize_count_status(&mut self, init_counts: u64, max_counts: u64) {
        self.inner_count = init_counts;
        self.max_counts = Some(max_counts);
        self.remainder_counts = max_counts % self.accumulative_counts;
    }

    /// Backward passes so far.
    pub fn inner_count(&self) -> u64 {
        self.inner_count
    }

    /// `scale_loss`, `backward`, and when [`Self::should_update`] `step` and
    /// `zero_grad`. Returns whether the parameters were updated.
    pub fn update_params(&mut self, loss: &Tensor) -> ModelResult<bool> {
        self.update_params_then(loss, || {})
    }

    /// [`Self::update_params`], calling `after_backward` between the last
    /// backward of a window and the step (`detc bench` marks its phases
    /// there).
    pub fn update_params_then(
        &mut self,
        loss: &Tensor,
        after_backward: impl FnOnce(),
    ) -> ModelResult<bool> {
        let loss = self.scale_loss(loss)?;
        self.backward(&loss)?;
        if self.should_update() {
            after_backward();
            self.step()?;
            self.zero_grad();
            return Ok(true);
        }
        Ok(false)
    }

    /// The parameters the optimizer updates, group after group (in model
    /// order within each).
    pub fn params(&self) -> Vec<Tensor> {
        self.optimizer
            .groups
            .iter()
            .flat_map(|g| g.params.iter().map(Tensor::shallow_clone))
            .collect()
    }

    /// `loss / loss_factor` (MMEngine `scale_loss`).
    pub fn scale_loss(&self, loss: &Tensor) -> ModelResult<Tensor> {
        let factor = match self.max_counts {
            _ if self.accumulative_counts == 1 => return Ok(loss.shallow_clone()),
            None => self.accumulative_counts,
            Some(max) if self.inner_count < max - self.remainder_counts => self.accumulative_counts,
            Some(_) => self.remainder_counts,
        };
        if factor == 0 {
            return Err(ModelError::new(
                "OptimWrapper",
                "loss factor is zero: the iteration is past `max_counts` of initialize_count_status",
            ));
        }
        Ok(loss.f_div_scalar(factor as f64)?)
    }

    /// `loss.backward()` (of the scaled loss with AMP) and one more count.
    pub fn backward(&mut self, loss: &Tensor) -> ModelResult<()> {
        match self.amp.as_mut() {
            Some(amp) => amp.loss_scaler.scale(loss)?.f_backward()?,
            None => loss.f_backward()?,
        }
        self.inner_count += 1;
        Ok(())
    }

    /// Whether this iteration ends an accumulation window.
    pub fn should_update(&self) -> bool {
        self.inner_count.is_multiple_of(self.accumulative_counts)
            || Some(self.inner_count) == self.max_counts
    }

    /// Whether gradients should be all-reduced this iteration (called before
    /// `backward`, hence the `+ 1`; MMEngine `should_sync`).
    pub fn should_sync(&self) -> bool {
        (self.inner_count + 1).is_multiple_of(self.accumulative_counts)
            || Some(self.inner_count + 1) == self.max_counts
    }

    /// Clips (when configured) and steps the optimizer. With AMP the
    /// gradients are unscaled first, the step is skipped when one is
    /// inf/NaN, and the loss scale is updated.
    pub fn step(&mut self) -> ModelResult<()> {
        let Some(amp) = self.amp.as_mut() else {
            self.clip_grads()?;
            return self.optimizer.step();
        };
        if self.clip_grad.is_some() {
            amp.loss_scaler.unscale_(&self.optimizer)?;
        }
        // After unscale_, so that clipping sees the true gradients.
        if let Some(norm) = clip_params(&self.optimizer, self.clip_grad.as_ref())? {
            self.grad_norm = Some(norm);
        }
        amp.loss_scaler.step(&mut self.optimizer)?;
        amp.loss_scaler.update(amp.static_scale)
    }

    /// `_clip_grad`, when `clip_grad` is configured.
    fn clip_grads(&mut self) -> ModelResult<()> {
        if let Some(norm) = clip_params(&self.optimizer, self.clip_grad.as_ref())? {
            self.grad_norm = Some(norm);
        }
        Ok(())
    }

    pub fn zero_grad(&mut self) {
        self.optimizer.zero_grad();
    }

    /// The total gradient norm of the last clipped step (`grad_norm` in the
    /// log; only with norm clipping), on the device.
    pub fn grad_norm(&self) -> Option<&Tensor> {
        self.grad_norm.as_ref()
    }

    /// `get_lr()`: `base_lr` (several groups only) and each group's lr.
    pub fn get_lr(&self) -> LrInfo {
        LrInfo {
            base_lr: self.base_param_settings.as_ref().map(|b| b.lr),
            lr: self.optimizer.groups.iter().map(|g| g.lr).collect(),
        }
    }

    /// The learning rates schedulers set, in MMEngine's `param_groups`
    /// order: every group, then the base settings when present.
    pub fn lr_slots(&mut self) -> Vec<LrSlot<'_>> {
        let mut slots: Vec<LrSlot<'_>> = self
            .optimizer
            .groups
            .iter_mut()
            .map(|g| LrSlot {
                lr: &mut g.lr,
                initial_lr: &mut g.initial_lr,
            })
            .collect();
        if let Some(b) = self.base_param_settings.as_mut() {
            slots.push(LrSlot {
                lr: &mut b.lr,
                initial_lr: &mut b.initial_lr,
            });
        }
        slots
    }

    /// `Runner.scale_lr` (`auto_scale_lr`): multiplies every lr slot,
    /// the base settings included, by `factor`; call it before building the
    /// schedulers.
    pub fn scale_lr(&mut self, factor: f64) {
        for slot in self.lr_slots() {
            *slot.lr *= factor;
        }
    }

    /// MMEngine's `OptimWrapper.state_dict()`: the optimizer's state dict,
    /// plus `base_param_settings` (lr, weight_decay, initial_lr) with
    /// several groups, plus `loss_scaler` (the GradScaler's) with AMP. The
    /// accumulation count is not part of it (the loop sets it again from the
    /// resumed iteration).
    pub fn state_dict(&self) -> ModelResult<Value> {
        let mut sd = self.optimizer.state_dict()?;
        if let (Value::Dict(items), Some(b)) = (&mut sd, &self.base_param_settings) {
            let mut base = vec![
                (Value::Str("lr".into()), Value::Float(b.lr)),
                (
                    Value::Str("weight_decay".into()),
                    Value::Float(b.weight_decay),
                ),
            ];
            if let Some(i) = b.initial_lr {
                base.push((Value::Str("initial_lr".into()), Value::Float(i)));
            }
            items.push((Value::Str("base_param_settings".into()), Value::Dict(base)));
        }
        if let (Value::Dict(items), Some(amp)) = (&mut sd, &self.amp) {
            items.push((
                Value::Str("loss_scaler".into()),
                amp.loss_scaler.state_dict()?,
            ));
        }
        Ok(sd)
    }

    /// Restores [`Self::state_dict`]. An `AmpOptimWrapper` restores its
    /// loss scaler when the checkpoint has one (a plain `OptimWrapper`'s has
    /// not), as MMEngine does.
    pub fn load_state_dict(&mut self, value: &Value) -> ModelResult<()> {
        if let (Some(saved), Some(amp)) = (value.get("loss_scaler"), self.amp.as_mut()) {
            amp.loss_scaler.load_state_dict(saved)?;
        }
        self.optimizer.load_state_dict(value)?;
        if let (Some(saved), Some(b)) = (
            value.get("base_param_settings"),
            self.base_param_settings.as_mut(),
        ) {
            let float = |k: &str| match saved.get(k) {
                Some(Value::Float(x)) => Some(*x),
                Some(Value::Int(i)) => Some(*i as f64),
                _ => None,
            };
            b.lr = float("lr").unwrap_or(b.lr);
            b.weight_decay = float("weight_decay").unwrap_or(b.weight_decay);
            b.initial_lr = float("initial_lr");
        }
        Ok(())
    }
}
