//! `SGD`, `Adam` and `AdamW` with torch.optim's update rules, on tch tensors.
//!
//! Hand-written rather than tch's `nn::Optimizer`: that one cannot give each
//! parameter its own learning rate and weight decay (MMEngine's paramwise
//! groups), cannot expose or restore its state (exact resume), and its
//! update rules are not torch.optim's. A step takes the path torch.optim
//! takes (`foreach=None`): for CUDA parameters torch 2.11's multi-tensor
//! updates (`_multi_tensor_sgd` / `_multi_tensor_adam`, through
//! `engine::native::optim`: one libtorch call per operation over a group,
//! equal to torch bit for bit), for CPU parameters the single-tensor updates
//! (`_single_tensor_sgd` / `_single_tensor_adam`), written here with the
//! same operations in the same order; torch fuses `a.add(b, alpha=s)` into
//! one rounding where these round twice, so they agree with torch to the
//! last bit or two. `foreach: true|false` in the optimizer config picks a
//! path, as in torch. The scalar factors are computed in f64 as Python
//! computes them.

use tch::{Kind, Tensor};

use detc::registry::engine::optim::{AdamConfig, AdamWConfig, SGDConfig};

use crate::engine::native::optim::{adam_foreach, sgd_foreach, AdamStep, SgdStep};
use crate::engine::native::NativeResult;
use crate::models::layers::{ModelError, ModelResult};

/// Which update rule, with its group-independent hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum OptimizerKind {
    /// `torch.optim.SGD`.
    Sgd {
        momentum: f64,
        dampening: f64,
        nesterov: bool,
        maximize: bool,
    },
    /// `torch.optim.Adam` (`decoupled: false`, L2 decay added to the
    /// gradient) or `torch.optim.AdamW` (`decoupled: true`).
    Adam {
        betas: [f64; 2],
        eps: f64,
        amsgrad: bool,
        maximize: bool,
        decoupled: bool,
    },
}

impl OptimizerKind {
    /// The optimizer's torch class name (`SGD`, `Adam`, `AdamW`).
    pub fn type_name(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd { .. } => "SGD",
            OptimizerKind::Adam {
                decoupled: false, ..
            } => "Adam",
            OptimizerKind::Adam {
                decoupled: true, ..
            } => "AdamW",
        }
    }
}

/// The optimizer's defaults: what a group gets unless paramwise settings
/// override it (`optimizer.defaults` in torch).
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerSpec {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub weight_decay: f64,
    /// Whether the config set `weight_decay` (MMEngine's `base_wd` is None
    /// otherwise, and paramwise decay multipliers do not apply).
    pub weight_decay_given: bool,
    /// torch's `foreach`: the multi-tensor path when true, the single-tensor
    /// one when false, and when None the multi-tensor path for CUDA
    /// parameters (torch's `_default_to_fused_or_foreach`).
    pub foreach: Option<bool>,
}

impl OptimizerSpec {
    /// Reads an `optim_wrapper.optimizer` config dict (`type: SGD|Adam|AdamW`).
    pub fn from_cfg(cfg: &serde_json::Value) -> ModelResult<Self> {
        use crate::models::losses::{cfg_type, parse_cfg};
        let ty = cfg_type(cfg, "optimizer")?;
        let weight_decay_given = cfg.get("weight_decay").is_some_and(|v| !v.is_null());
        let spec = match ty {
            "SGD" => {
                let c: SGDConfig = parse_cfg(cfg, ty)?;
                if c.nesterov && (c.momentum <= 0.0 || c.dampening != 0.0) {
                    return Err(ModelError::new(
                        "SGD",
                        "Nesterov momentum requires a momentum and zero dampening",
                    ));
                }
                OptimizerSpec {
                    kind: OptimizerKind::Sgd {
                        momentum: c.momentum,
                        dampening: c.dampening,
                        nesterov: c.nesterov,
                        maximize: c.maximize,
                    },
                    lr: c.lr,
                    weight_decay: c.weight_decay,
                    weight_decay_given,
                    foreach: None,
                }
            }
            "Adam" => {
                let c: AdamConfig = parse_cfg(cfg, ty)?;
                Self::adam(
                    c.lr,
                    c.betas,
                    c.eps,
                    c.weight_decay,
                    c.amsgrad,
                    c.maximize,
                    false,
                )
            }
            "AdamW" => {
                let c: AdamWConfig = parse_cfg(cfg, ty)?;
                Self::adam(
                    c.lr,
                    c.betas,
                    c.eps,
                    c.weight_decay,
                    c.amsgrad,
                    c.maximize,
                    true,
                )
            }
            other => {
                return Err(ModelError::new(
                    "optimizer",
                    format!("`{other}` is not supported (SGD, Adam, AdamW are)"),
                ))
            }
        };
        let flag = |key: &str| cfg.get(key).and_then(serde_json::Value::as_bool);
        if flag("fused") == Some(true) {
            return Err(ModelError::new(
                ty,
                "`fused: true` (torch's fused kernels) is not built into detc; leave it null: \
                 CUDA parameters get the multi-tensor (foreach) path",
            ));
        }
        // torch takes the single-tensor path for a differentiable optimizer.
        let foreach = if flag("differentiable") == Some(true) {
            Some(false)
        } else {
            flag("foreach")
        };
        Ok(OptimizerSpec {
            weight_decay_given,
            foreach,
            ..spec
        })
    }

    fn adam(
        lr: f64,
        betas: [f64; 2],
        eps: f64,
        weight_decay: f64,
        amsgrad: bool,
        maximize: bool,
        decoupled: bool,
    ) -> Self {
        OptimizerSpec {
            kind: OptimizerKind::Adam {
                betas,
                eps,
                amsgrad,
                maximize,
                decoupled,
            },
            lr,
            weight_decay,
            weight_decay_given: true,
            foreach: None,
        }
    }
}

/// One parameter group: its tensors and their shared hyper-parameters, as
/// `optimizer.param_groups[i]` in torch.
#[derive(Debug)]
pub struct ParamGroup {
    /// Leaf tensors that require grad.
    pub params: Vec<Tensor>,
    /// Their state-dict names (for logs and checks; not part of the state).
    pub names: Vec<String>,
    pub lr: f64,
    pub weight_decay: f64,
    /// `initial_lr`, recorded by the first parameter scheduler (MMEngine
    /// `group.setdefault('initial_lr', group['lr'])`).
    pub initial_lr: Option<f64>,
}

/// Per-parameter optimizer state (torch's `optimizer.state[p]`).
#[derive(Debug, Default)]
pub struct ParamState {
    /// Number of steps taken (Adam's `step`; torch keeps it as a float32 scalar tensor).
    pub step: f64,
    /// SGD's `momentum_buffer`.
    pub momentum_buffer: Option<Tensor>,
    /// Adam's `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq` (amsgrad).
    pub exp_avg: Option<Tensor>,
    pub exp_avg_sq: Option<Tensor>,
    pub max_exp_avg_sq: Option<Tensor>,
}

/// An optimizer over parameter groups.
#[derive(Debug)]
pub struct Optimizer {
    pub spec: OptimizerSpec,
    pub groups: Vec<ParamGroup>,
    /// `state[g][i]` belongs to `groups[g].params[i]`.
    pub state: Vec<Vec<ParamState>>,
    /// Resets gradients to None (see [`Optimizer::zero_grad`]).
    grad_reset: Option<tch::COptimizer>,
}

impl Optimizer {
    /// An optimizer over `groups`; their `lr`/`weight_decay` are already set
    /// (from the spec's defaults or paramwise settings).
    pub fn new(spec: OptimizerSpec, groups: Vec<ParamGroup>) -> Self {
        let state = groups
            .iter()
            .map(|g| g.params.iter().map(|_| ParamState::default()).collect())
            .collect();
        let grad_reset = grad_resetter(&groups).ok();
        Optimizer {
            spec,
            groups,
            state,
            grad_reset,
        }
    }

    /// Sets every gradient to None (torch's `zero_grad(set_to_none=True)`,
    /// what MMEngine calls), so that a parameter without a gradient in the
    /// next iteration is skipped by `step`, as torch skips it (no decay, no
    /// momentum). tch cannot reset `.grad` itself; libtorch's C++ optimizer
    /// `zero_grad` does, so a C++ SGD holding the same tensors is kept for
    /// this one call (it never steps).
    pub fn zero_grad(&mut self) {
        if let Some(reset) = &self.grad_reset {
            if reset.zero_grad().is_ok() {
                return;
            }
        }
        for g in &mut self.groups {
            for p in &mut g.params {
                let grad = p.grad();
                if grad.defined() {
                    let _ = tch::no_grad(|| grad.detach().zero_());
                }
            }
        }
    }

    /// One update of every parameter that has a gradient (`optimizer.step()`),
    /// a group at a time, on the path torch takes (see the module docs).
    pub fn step(&mut self) -> ModelResult<()> {
        let kind = self.spec.kind.clone();
        let name = kind.type_name();
        let foreach = self.spec.foreach;
        tch::no_grad(|| -> ModelResult<()> {
            // Groups of one (lr, weight_decay) on the multi-tensor path step
            // in one call: each tensor's arithmetic is the same, with a
            // fraction of the kernel launches (MMEngine's paramwise_cfg makes
            // a group per parameter).
            let mut batches: Vec<((u64, u64), Vec<Entry<'_>>)> = Vec::new();
            for (group, states) in self.groups.iter_mut().zip(self.state.iter_mut()) {
                let multi = multi_tensor(foreach, &group.params);
                let rule = Rule::new(&kind, group.lr, group.weight_decay);
                for (p, st) in group.params.iter_mut().zip(states.iter_mut()) {
                    // torch skips a parameter without a gradient (no decay, no state).
                    let grad = p.grad();
                    if !grad.defined() {
                        continue;
                    }
                    if !multi {
                        match &rule {
                            Rule::Sgd(h) => sgd_update(p, &grad, st, h)?,
                            Rule::Adam(h) => adam_update(p, &grad, st, h)?,
                        }
                        continue;
                    }
                    let key = (group.lr.to_bits(), group.weight_decay.to_bits());
                    let entry = Entry { param: p.shallow_clone(), state: st, grad };
                    match batches.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, batch)) => batch.push(entry),
                        None => batches.push((key, vec![entry])),
                    }
                }
            }
            for ((lr, weight_decay), mut batch) in batches {
                match Rule::new(&kind, f64::from_bits(lr), f64::from_bits(weight_decay)) {
                    Rule::Sgd(h) => sgd_group(&mut batch, &h),
                    Rule::Adam(h) => adam_group(&mut batch, &h)?,
                }
                .map_err(|e| ModelError::new(name, e.message))?;
            }
            Ok(())
        })
    }
}

/// Whether a group steps on the multi-tensor path: `foreach` when given,
/// else when every parameter is on CUDA (torch's `_default_to_fused_or_foreach`).
pub(crate) fn multi_tensor(foreach: Option<bool>, params: &[Tensor]) -> bool {
    foreach.unwrap_or_else(|| params.iter().all(|p| p.device().is_cuda()))
}

/// A group's update rule with its hyper-parameters, for either path.
enum Rule {
    Sgd(SgdStep),
    Adam(AdamStep),
}

impl Rule {
    fn new(kind: &OptimizerKind, lr: f64, weight_decay: f64) -> Rule {
        match *kind {
            OptimizerKind::Sgd {
                momentum,
                dampening,
                nesterov,
                maximize,
            } => Rule::Sgd(SgdStep {
                lr,
                weight_decay,
                momentum,
                dampening,
                nesterov,
                maximize,
            }),
            OptimizerKind::Adam {
                betas,
                eps,
                amsgrad,
                maximize,
                decoupled,
            } => Rule::Adam(AdamStep {
                lr,
                betas,
                weight_decay,
                eps,
                amsgrad,
                maximize,
                decoupled,
            }),
        }
    }
}

/// A libtorch optimizer over every parameter, used only for its
/// set-to-none `zero_grad`.
fn grad_resetter(groups: &[ParamGroup]) -> Result<tch::COptimizer, tch::TchError> {
    let mut reset = tch::COptimizer::sgd(0.0, 0.0, 0.0, 0.0, false)?;
    for p in groups.iter().flat_map(|g| g.params.iter()) {
        reset.add_parameters(p, 0)?;
    }
    Ok(reset)
}

/// A parameter with a gradient, its state and that gradient, for a
/// multi-tensor step.
struct Entry<'a> {
    param: Tensor,
    state: &'a mut ParamState,
    grad: Tensor,
}

/// `_multi_tensor_adam` over parameters of one `lr` and `weight_decay`
/// that have a gradient; their state is created on their first step, as
/// torch creates it.
fn adam_group(batch: &mut [Entry<'_>], h: &AdamStep) -> ModelResult<NativeResult<()>> {
    for e in batch.iter_mut() {
        begin_adam_step(&e.param, e.state, h.amsgrad)?;
    }
    let of = |f: fn(&ParamState) -> Option<&Tensor>| -> Vec<&Tensor> {
        batch.iter().filter_map(|e| f(e.state)).collect()
    };
    let p: Vec<&Tensor> = batch.iter().map(|e| &e.param).collect();
    let g: Vec<&Tensor> = batch.iter().map(|e| &e.grad).collect();
    let steps: Vec<f64> = batch.iter().map(|e| e.state.step).collect();
    Ok(adam_foreach(
        &p,
        &g,
        &of(|s| s.exp_avg.as_ref()),
        &of(|s| s.exp_avg_sq.as_ref()),
        &of(|s| s.max_exp_avg_sq.as_ref()),
        &steps,
        h,
    ))
}

/// `_multi_tensor_sgd` over parameters of one `lr` and `weight_decay` that
/// have a gradient; a momentum buffer is made on its parameter's first step.
fn sgd_group(batch: &mut [Entry<'_>], h: &SgdStep) -> NativeResult<()> {
    let mut bufs: Vec<Option<Tensor>> = batch.iter_mut().map(|e| e.state.momentum_buffer.take()).collect();
    let p: Vec<&Tensor> = batch.iter().map(|e| &e.param).collect();
    let g: Vec<&Tensor> = batch.iter().map(|e| &e.grad).collect();
    let result = sgd_foreach(&p, &g, &mut bufs, h);
    for (e, buf) in batch.iter_mut().zip(bufs) {
        e.state.momentum_buffer = buf;
    }
    result
}

/// Mirrors torch `_single_tensor_sgd` for one parameter.
fn sgd_update(p: &mut Tensor, grad: &Tensor, st: &mut ParamState, h: &SgdStep) -> ModelResult<()> {
    let mut g = if h.maximize {
        grad.f_neg()?
    } else {
        grad.shallow_clone()
    };
    if h.weight_decay != 0.0 {
        // grad.add(param, alpha=weight_decay)
        g = g.f_add(&p.f_mul_scalar(h.weight_decay)?)?;
    }
    if h.momentum != 0.0 {
        let buf = match st.momentum_buffer.take() {
            None => g.f_detach()?.copy(),
            Some(mut buf) => {
                // buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                let _ = buf.f_mul_scalar_(h.momentum)?;
                let _ = buf.f_add_(&g.f_mul_scalar(1.0 - h.dampening)?)?;
                buf
            }
        };
        g = if h.nesterov {
            g.f_add(&buf.f_mul_scalar(h.momentum)?)?
        } else {
            buf.shallow_clone()
        };
        st.momentum_buffer = Some(buf);
    }
    // param.add_(grad, alpha=-lr)
    let _ = p.f_add_(&g.f_mul_scalar(-h.lr)?)?;
    Ok(())
}

/// A parameter's Adam state, made on its first step as torch makes it (zeros
/// like the parameter), and the step counted.
fn begin_adam_step(p: &Tensor, st: &mut ParamState, amsgrad: bool) -> ModelResult<()> {
    if st.exp_avg.is_none() {
        st.exp_avg = Some(p.f_zeros_like()?);
        st.exp_avg_sq = Some(p.f_zeros_like()?);
    }
    if amsgrad && st.max_exp_avg_sq.is_none() {
        st.max_exp_avg_sq = Some(p.f_zeros_like()?);
    }
    // torch keeps `step` as a float32 tensor and reads it back with `.item()`.
    st.step = ((st.step + 1.0) as f32) as f64;
    Ok(())
}

/// Mirrors torch `_single_tensor_adam` (not capturable, not differentiable)
/// for one parameter; AdamW is its `decoupled_weight_decay=True` branch.
fn adam_update(
    p: &mut Tensor,
    grad: &Tensor,
    st: &mut ParamState,
    h: &AdamStep,
) -> ModelResult<()> {
    let [beta1, beta2] = h.betas;
    let mut g = if h.maximize {
        grad.f_neg()?
    } else {
        grad.shallow_clone()
    };
    begin_adam_step(p, st, h.amsgrad)?;
    if h.weight_decay != 0.0 {
        if h.decoupled {
            let _ = p.f_mul_scalar_(1.0 - h.lr * h.weight_decay)?;
        } else {
            g = g.f_add(&p.f_mul_scalar(h.weight_decay)?)?;
        }
    }
    let missing = || {
        ModelError::new(
            if h.decoupled { "AdamW" } else { "Adam" },
            "state is incomplete",
        )
    };
    let exp_avg = st.exp_avg.as_mut().ok_or_else(missing)?;
    let exp_avg_sq = st.exp_avg_sq.as_mut().ok_or_else(missing)?;
    let _ = exp_avg.f_lerp_(&g, 1.0 - beta1)?;
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    let _ = exp_avg_sq.f_mul_scalar_(beta2)?;
    let _ = exp_avg_sq.f_add_(&g.f_mul(&g)?.f_mul_scalar(1.0 - beta2)?)?;

    let bias_correction1 = 1.0 - beta1.powf(st.step);
    let bias_correction2 = 1.0 - beta2.powf(st.step);
    let step_size = h.lr / bias_correction1;
    let bias_correction2_sqrt = bias_correction2.powf(0.5);
    let second = if h.amsgrad {
        let max_sq = st.max_exp_avg_sq.as_mut().ok_or_else(missing)?;
        let m = max_sq.f_maximum(exp_avg_sq)?;
        max_sq.f_copy_(&m)?;
        max_sq.shallow_clone()
    } else {
        exp_avg_sq.shallow_clone()
    };
    // denom = (v.sqrt() / bias_correction2_sqrt).add_(eps)
    let denom = second
        .f_sqrt()?
        .f_div_scalar(bias_correction2_sqrt)?
        .f_add_scalar(h.eps)?;
    // param.addcdiv_(exp_avg, denom, value=-step_size)
    let _ = p.f_add_(&exp_avg.f_div(&denom)?.f_mul_scalar(-step_size)?)?;
    Ok(())
}

/// The dtype torch's Adam keeps `step` in (`_get_scalar_dtype()`).
pub(crate) const STEP_KIND: Kind = Kind::Float;
