//! Scheduler state for checkpoints (MMEngine's `_ParamScheduler.state_dict`,
//! the instance attributes without the optimizer).

use detc::checkpoint::Value;

use super::ParamScheduler;
use crate::models::layers::{ModelError, ModelResult};

fn key(k: &str) -> Value {
    Value::Str(k.to_string())
}

fn floats(xs: &[f64]) -> Value {
    Value::List(xs.iter().map(|x| Value::Float(*x)).collect())
}

/// One scheduler's state with MMEngine's attribute names: `type`, `begin`,
/// `end`, `by_epoch`, `last_step`, `_global_step`, `base_values`,
/// `_last_value`, `param_name`.
pub fn scheduler_state(s: &ParamScheduler) -> Value {
    Value::Dict(vec![
        (key("type"), Value::Str(s.type_name.clone())),
        (key("param_name"), key("lr")),
        (key("begin"), Value::Int(s.begin)),
        (key("end"), Value::Int(s.end)),
        (key("by_epoch"), Value::Bool(s.by_epoch)),
        (key("last_step"), Value::Int(s.last_step)),
        (key("_global_step"), Value::Int(s.global_step)),
        (key("base_values"), floats(&s.base_values)),
        (key("_last_value"), floats(&s.last_value)),
    ])
}

pub(super) fn load_scheduler_state(s: &mut ParamScheduler, v: &Value) -> ModelResult<()> {
    let err = |m: String| ModelError::new(format!("param_scheduler state ({})", s.type_name), m);
    if let Some(t) = v.get("type").and_then(Value::as_str) {
        if t != s.type_name {
            return Err(err(format!(
                "the checkpoint has a `{t}` where the config has a `{}`",
                s.type_name
            )));
        }
    }
    let int = |k: &str| {
        v.get(k)
            .and_then(Value::as_int)
            .ok_or_else(|| err(format!("`{k}` is missing")))
    };
    let float_list = |k: &str| -> ModelResult<Vec<f64>> {
        match v.get(k) {
            Some(Value::List(xs)) => xs
                .iter()
                .map(|x| match x {
                    Value::Float(f) => Ok(*f),
                    Value::Int(i) => Ok(*i as f64),
                    _ => Err(err(format!("`{k}` holds a non-number"))),
                })
                .collect(),
            _ => Err(err(format!("`{k}` is missing"))),
        }
    };
    s.begin = int("begin")?;
    s.end = int("end")?;
    s.last_step = int("last_step")?;
    s.global_step = int("_global_step")?;
    if let Some(Value::Bool(b)) = v.get("by_epoch") {
        s.by_epoch = *b;
    }
    let base = float_list("base_values")?;
    if base.len() != s.base_values.len() {
        return Err(err(format!(
            "{} base values in the checkpoint, {} param groups now",
            base.len(),
            s.base_values.len()
        )));
    }
    s.base_values = base;
    s.last_value = float_list("_last_value")?;
    Ok(())
}
