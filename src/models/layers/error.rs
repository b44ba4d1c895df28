//! The error the model code returns: which component, and what went wrong
//! (a config value it cannot build, a shape it cannot take, a libtorch error).

use std::fmt;

/// An error from building or running a model component.
#[derive(Debug)]
pub struct ModelError {
    /// The component (`ResNet`, `FPN`, `RoIAlign`, a state-dict key, ...).
    pub component: String,
    pub message: String,
}

impl ModelError {
    pub fn new(component: impl Into<String>, message: impl Into<String>) -> Self {
        ModelError {
            component: component.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.component, self.message)
    }
}

impl std::error::Error for ModelError {}

impl From<tch::TchError> for ModelError {
    fn from(e: tch::TchError) -> Self {
        ModelError::new("libtorch", e.to_string())
    }
}

pub type ModelResult<T> = Result<T, ModelError>;
