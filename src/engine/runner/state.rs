//! What a training checkpoint holds beyond the weights, and how it goes in
//! and out of the `.pth`: MMEngine's layout (`meta`, `state_dict`,
//! `message_hub`, `optimizer`, `param_schedulers`) plus what detc needs for
//! an exact resume (the position in the epoch).

use std::path::Path;

use detc::checkpoint::{self, TensorData, Value};
use indexmap::IndexMap;
use serde_json::Value as Json;
use tch::nn::VarStore;

use crate::engine::optim::state::tensor_data;
use crate::models::layers::{ModelError, ModelResult};

/// Where the run is, as saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Epochs completed (`runner.epoch` after the epoch's last iteration);
    /// in an `IterBasedTrainLoop`, the passes over the data completed.
    pub epoch: u64,
    /// Iterations completed.
    pub iter: u64,
    /// Batches of the current epoch (pass) already trained (0 at a boundary).
    pub batch: u64,
}

/// Everything a checkpoint stores besides the weights.
pub struct TrainState {
    pub position: Position,
    pub seed: u64,
    pub optimizer: Option<Value>,
    pub param_schedulers: Option<Value>,
    /// The log smoothing buffers and the checkpoint hook's state, as JSON.
    pub message_hub: Json,
    /// `ema_state_dict` (EMAHook's): the trained weights and the update
    /// count; the file's `state_dict` then holds the average.
    pub ema: Option<crate::engine::ema::EmaCheckpoint>,
}

/// The model's variables (parameters and buffers) as CPU tensor data.
pub fn state_dict(vs: &VarStore) -> ModelResult<IndexMap<String, TensorData>> {
    let mut vars: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.into_iter()
        .map(|(k, t)| Ok((k, tensor_data(&t)?)))
        .collect()
}

/// Writes a checkpoint atomically: `sd` as its `state_dict`, and `ema` (an
/// `ema_state_dict`, EMAHook's) when given.
pub fn save(
    path: &Path,
    sd: &IndexMap<String, TensorData>,
    ema: Option<&Value>,
    state: &TrainState,
    dataset_classes: &[String],
) -> std::io::Result<()> {
    let io_err = |e: String| std::io::Error::other(e);
    let p = state.position;
    let meta = dict(vec![
        ("epoch", Value::Int(p.epoch as i64)),
        ("iter", Value::Int(p.iter as i64)),
        ("batch_in_epoch", Value::Int(p.batch as i64)),
        ("seed", Value::Int(state.seed as i64)),
        ("detc_version", Value::Str(env!("CARGO_PKG_VERSION").into())),
        (
            "dataset_meta",
            dict(vec![(
                "classes",
                Value::List(
                    dataset_classes
                        .iter()
                        .map(|c| Value::Str(c.clone()))
                        .collect(),
                ),
            )]),
        ),
    ]);
    let hub = from_json(&state.message_hub);
    let mut sections: Vec<(&str, &Value)> = vec![("meta", &meta), ("message_hub", &hub)];
    if let Some(o) = &state.optimizer {
        sections.push(("optimizer", o));
    }
    if let Some(s) = &state.param_schedulers {
        sections.push(("param_schedulers", s));
    }
    if let Some(e) = ema {
        sections.push(("ema_state_dict", e));
    }
    checkpoint::save_checkpoint(path, sd, &sections).map_err(|e| io_err(e.to_string()))
}

/// Reads a training checkpoint written by [`save`].
pub fn load(path: &Path) -> ModelResult<(IndexMap<String, TensorData>, TrainState)> {
    let err = |m: String| ModelError::new("resume", format!("{}: {m}", path.display()));
    let ckpt = checkpoint::load(path).map_err(|e| err(e.to_string()))?;
    let get = |key: &str| ckpt.other.get(key).cloned();
    let meta = get("meta").ok_or_else(|| err("no `meta`: not a training checkpoint".into()))?;
    let int = |key: &str| {
        meta.get(key)
            .and_then(Value::as_int)
            .map(|i| i as u64)
            .ok_or_else(|| err(format!("meta has no integer `{key}`")))
    };
    let position = Position {
        epoch: int("epoch")?,
        iter: int("iter")?,
        batch: int("batch_in_epoch").unwrap_or(0),
    };
    let state = TrainState {
        position,
        seed: int("seed")?,
        optimizer: get("optimizer"),
        param_schedulers: get("param_schedulers"),
        message_hub: get("message_hub")
            .map(|v| to_json(&v))
            .unwrap_or(Json::Null),
        ema: crate::engine::ema::ema_from_checkpoint(get("ema_state_dict").as_ref()).map_err(|e| err(e.to_string()))?,
    };
    Ok((ckpt.state_dict, state))
}

fn dict(items: Vec<(&str, Value)>) -> Value {
    Value::Dict(
        items
            .into_iter()
            .map(|(k, v)| (Value::Str(k.into()), v))
            .collect(),
    )
}

/// JSON into pickle values (floats stay binary f64, so they round-trip exactly).
pub fn from_json(v: &Json) -> Value {
    match v {
        Json::Null => Value::None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Str(s.clone()),
        Json::Array(a) => Value::List(a.iter().map(from_json).collect()),
        Json::Object(o) => Value::Dict(
            o.iter()
                .map(|(k, v)| (Value::Str(k.clone()), from_json(v)))
                .collect(),
        ),
    }
}

/// Pickle values back into JSON (the inverse of [`from_json`]).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Str(s) => Json::String(s.clone()),
        Value::List(a) | Value::Tuple(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Dict(items) => Json::Object(
            items
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Str(s) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        _ => Json::Null,
    }
}
