//! The optimizer's state in torch's `optimizer.state_dict()` layout, as a
//! checkpoint [`Value`]:
//!
//! ```text
//! {'state': {0: {'momentum_buffer': T}                              # SGD
//!            0: {'step': T(), 'exp_avg': T, 'exp_avg_sq': T,
//!                ['max_exp_avg_sq': T]}, ...},                      # Adam(W)
//!  'param_groups': [{'lr': .., 'weight_decay': .., <hyper-params>,
//!                    ['initial_lr': ..], 'params': [0, 1, ...]}, ...]}
//! ```
//!
//! Parameters are numbered across groups in order, as torch does, and a
//! parameter without state (no step taken yet) has no entry. The runner
//! puts the value under `optimizer` in a checkpoint's meta (`save_pth`
//! writes the tensors as torch does); `torch.load` reads it back as the
//! same dict MMEngine saves. Tensors are copied to the CPU bit for bit.

use tch::{Device, Kind, Tensor};

use detc::checkpoint::{DType, TensorData, Value};

use super::optimizers::{Optimizer, OptimizerKind, ParamState, STEP_KIND};
use crate::models::layers::{ModelError, ModelResult};
use crate::models::weights::to_tensor;

/// A CPU copy of `t` as checkpoint tensor data.
pub fn tensor_data(t: &Tensor) -> ModelResult<TensorData> {
    let dtype = match t.kind() {
        Kind::Float => DType::F32,
        Kind::Double => DType::F64,
        Kind::Half => DType::F16,
        Kind::BFloat16 => DType::BF16,
        Kind::Int64 => DType::I64,
        Kind::Int => DType::I32,
        other => {
            return Err(ModelError::new(
                "optimizer state",
                format!("unsupported dtype {other:?}"),
            ))
        }
    };
    let t = t.f_to_device(Device::Cpu)?.f_contiguous()?;
    let numel = t.numel();
    let mut data = vec![0u8; numel * dtype.size()];
    t.f_copy_data_u8(&mut data, numel)?;
    TensorData::new(dtype, t.size(), data).map_err(|m| ModelError::new("optimizer state", m))
}

fn s(k: &str) -> Value {
    Value::Str(k.to_string())
}

fn tensor_value(t: &Tensor) -> ModelResult<Value> {
    Ok(Value::Tensor(tensor_data(t)?))
}

/// One parameter's state entries, or None before its first step.
fn param_state(kind: &OptimizerKind, st: &ParamState) -> ModelResult<Option<Value>> {
    let mut items = Vec::new();
    match kind {
        OptimizerKind::Sgd { .. } => {
            let Some(buf) = &st.momentum_buffer else {
                return Ok(None);
            };
            items.push((s("momentum_buffer"), tensor_value(buf)?));
        }
        OptimizerKind::Adam { .. } => {
            let (Some(m), Some(v)) = (&st.exp_avg, &st.exp_avg_sq) else {
                return Ok(None);
            };
            let step = Tensor::from(st.step).to_kind(STEP_KIND);
            items.push((s("step"), tensor_value(&step)?));
            items.push((s("exp_avg"), tensor_value(m)?));
            items.push((s("exp_avg_sq"), tensor_value(v)?));
            if let Some(mx) = &st.max_exp_avg_sq {
                items.push((s("max_exp_avg_sq"), tensor_value(mx)?));
            }
        }
    }
    Ok(Some(Value::Dict(items)))
}

/// The group-independent hyper-parameters, with torch's key names.
fn hyper_items(kind: &OptimizerKind) -> Vec<(Value, Value)> {
    match *kind {
        OptimizerKind::Sgd {
            momentum,
            dampening,
            nesterov,
            maximize,
        } => vec![
            (s("momentum"), Value::Float(momentum)),
            (s("dampening"), Value::Float(dampening)),
            (s("nesterov"), Value::Bool(nesterov)),
            (s("maximize"), Value::Bool(maximize)),
            (s("foreach"), Value::None),
            (s("differentiable"), Value::Bool(false)),
            (s("fused"), Value::None),
        ],
        OptimizerKind::Adam {
            betas,
            eps,
            amsgrad,
            maximize,
            decoupled,
        } => vec![
            (
                s("betas"),
                Value::Tuple(vec![Value::Float(betas[0]), Value::Float(betas[1])]),
            ),
            (s("eps"), Value::Float(eps)),
            (s("amsgrad"), Value::Bool(amsgrad)),
            (s("maximize"), Value::Bool(maximize)),
            (s("foreach"), Value::None),
            (s("capturable"), Value::Bool(false)),
            (s("differentiable"), Value::Bool(false)),
            (s("fused"), Value::None),
            (s("decoupled_weight_decay"), Value::Bool(decoupled)),
        ],
    }
}

impl Optimizer {
    /// torch's `optimizer.state_dict()` (see the module doc).
    pub fn state_dict(&self) -> ModelResult<Value> {
        let mut state = Vec::new();
        let mut groups = Vec::new();
        let mut index = 0i64;
        for (group, states) in self.groups.iter().zip(&self.state) {
            let mut ids = Vec::new();
            for st in states {
                if let Some(v) = param_state(&self.spec.kind, st)? {
                    state.push((Value::Int(index), v));
                }
                ids.push(Value::Int(index));
                index += 1;
            }
            let mut items = vec![
                (s("lr"), Value::Float(group.lr)),
                (s("weight_decay"), Value::Float(group.weight_decay)),
            ];
            items.extend(hyper_items(&self.spec.kind));
            if let Some(initial) = group.initial_lr {
                items.push((s("initial_lr"), Value::Float(initial)));
            }
            items.push((s("params"), Value::List(ids)));
            groups.push(Value::Dict(items));
        }
        Ok(Value::Dict(vec![
            (s("state"), Value::Dict(state)),
            (s("param_groups"), Value::List(groups)),
        ]))
    }

    /// Restores a [`Optimizer::state_dict`] value: each group's `lr`,
    /// `weight_decay` and `initial_lr`, and each parameter's state, copied
    /// to the parameter's device and dtype. The group and parameter counts
    /// must match.
    pub fn load_state_dict(&mut self, value: &Value) -> ModelResult<()> {
        let err = |m: String| ModelError::new("optimizer state", m);
        let Some(Value::List(groups)) = value.get("param_groups") else {
            return Err(err("no `param_groups` list".into()));
        };
        if groups.len() != self.groups.len() {
            return Err(err(format!(
                "the checkpoint has {} param groups, the optimizer {}",
                groups.len(),
                self.groups.len()
            )));
        }
        let state = match value.get("state") {
            Some(Value::Dict(items)) => items.as_slice(),
            _ => return Err(err("no `state` dict".into())),
        };
        let mut index = 0i64;
        for (g, saved) in groups.iter().enumerate() {
            let float = |k: &str| match saved.get(k) {
                Some(Value::Float(x)) => Some(*x),
                Some(Value::Int(i)) => Some(*i as f64),
                _ => None,
            };
            let n = match saved.get("params") {
                Some(Value::List(ids)) => ids.len(),
                _ => return Err(err(format!("param group {g} has no `params`"))),
            };
            if n != self.groups[g].params.len() {
                return Err(err(format!(
                    "param group {g} has {n} parameters in the checkpoint, {} in the model",
                    self.groups[g].params.len()
                )));
            }
            let group = &mut self.groups[g];
            group.lr = float("lr").ok_or_else(|| err(format!("param group {g} has no `lr`")))?;
            group.weight_decay = float("weight_decay").unwrap_or(group.weight_decay);
            group.initial_lr = float("initial_lr");
            for i in 0..n {
                let entry = state
                    .iter()
                    .find(|(k, _)| k.as_int() == Some(index))
                    .map(|(_, v)| v);
                let like = &group.params[i];
                self.state[g][i] = match entry {
                    None => ParamState::default(),
                    Some(v) => read_param_state(v, like)?,
                };
                index += 1;
            }
        }
        Ok(())
    }
}

/// One parameter's state from its saved dict, on `like`'s device and dtype.
fn read_param_state(v: &Value, like: &Tensor) -> ModelResult<ParamState> {
    let tensor = |k: &str| -> ModelResult<Option<Tensor>> {
        match v.get(k) {
            Some(Value::Tensor(t)) => {
                let t = to_tensor(t)?;
                if t.size() != like.size() {
                    return Err(ModelError::new(
                        "optimizer state",
                        format!(
                            "`{k}` has shape {:?}, the parameter {:?}",
                            t.size(),
                            like.size()
                        ),
                    ));
                }
                // Copied onto the parameter's device, in its dtype and its
                // memory layout (channels-last weights), which the
                // multi-tensor updates need to take their fast path.
                let mut laid_out = like.f_empty_like()?;
                laid_out.f_copy_(&t)?;
                Ok(Some(laid_out))
            }
            _ => Ok(None),
        }
    };
    let step = match v.get("step") {
        Some(Value::Tensor(t)) => to_tensor(t)?.f_double_value(&[])?,
        Some(Value::Float(x)) => *x,
        Some(Value::Int(i)) => *i as f64,
        _ => 0.0,
    };
    Ok(ParamState {
        step,
        momentum_buffer: tensor("momentum_buffer")?,
        exp_avg: tensor("exp_avg")?,
        exp_avg_sq: tensor("exp_avg_sq")?,
        max_exp_avg_sq: tensor("max_exp_avg_sq")?,
    })
}
