//! Matching a checkpoint's state dict against a model's parameter names, as
//! MMEngine's `load_state_dict` reports it: missing and unexpected keys are
//! listed (a warning in MMEngine), and shape mismatches — also a warning in
//! MMEngine — are errors in detc, naming the key and both shapes.

use std::fmt;

use indexmap::IndexMap;

use super::TensorData;

/// How a checkpoint's names and shapes differ from a model's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyReport {
    /// Model names absent from the checkpoint, in model order. BatchNorm's
    /// `num_batches_tracked` is never reported, as MMEngine ignores it.
    pub missing: Vec<String>,
    /// Checkpoint names the model does not have, in checkpoint order.
    pub unexpected: Vec<String>,
    /// Names present in both with different shapes, in model order.
    pub mismatched: Vec<ShapeMismatch>,
}

/// One name whose shapes differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub key: String,
    pub checkpoint: Vec<i64>,
    pub model: Vec<i64>,
}

impl fmt::Display for ShapeMismatch {
    /// torch's wording (`nn.Module._load_from_state_dict`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "size mismatch for {}: copying a param with shape {:?} from checkpoint, the shape in current model is {:?}",
            self.key, self.checkpoint, self.model
        )
    }
}

/// Compares `model` (names and shapes, in the model's state-dict order) with
/// a loaded `checkpoint`.
pub fn compare<'a>(
    model: impl IntoIterator<Item = (&'a str, &'a [i64])>,
    checkpoint: &IndexMap<String, TensorData>,
) -> KeyReport {
    let mut report = KeyReport::default();
    let mut seen = std::collections::HashSet::new();
    for (name, shape) in model {
        seen.insert(name);
        match checkpoint.get(name) {
            None if name.ends_with("num_batches_tracked") => {}
            None => report.missing.push(name.to_string()),
            Some(t) if t.shape != shape => report.mismatched.push(ShapeMismatch {
                key: name.to_string(),
                checkpoint: t.shape.clone(),
                model: shape.to_vec(),
            }),
            Some(_) => {}
        }
    }
    report.unexpected = checkpoint
        .keys()
        .filter(|k| !seen.contains(k.as_str()))
        .cloned()
        .collect();
    report
}

impl KeyReport {
    /// Whether names and shapes all match.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// MMEngine's warning for shape mismatches (torch's messages, for a load
    /// that skipped those parameters), unexpected and missing keys
    /// (`mmengine/runner/checkpoint.py` `load_state_dict`), or `None` when
    /// there are none.
    pub fn warning(&self) -> Option<String> {
        let mut lines = vec!["The model and loaded state dict do not match exactly\n".to_string()];
        lines.extend(self.mismatched.iter().map(|m| m.to_string()));
        if !self.unexpected.is_empty() {
            lines.push(format!(
                "unexpected key in source state_dict: {}\n",
                self.unexpected.join(", ")
            ));
        }
        if !self.missing.is_empty() {
            lines.push(format!(
                "missing keys in source state_dict: {}\n",
                self.missing.join(", ")
            ));
        }
        (lines.len() > 1).then(|| lines.join("\n"))
    }
}
