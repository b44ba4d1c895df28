//! Hook priorities (mmengine/runner/priority.py): 0 (first) to 100 (last),
//! written as a number or a name, and shown in the hooks table as MMEngine
//! shows them (`Priority(p).name`, else `p` as written).

use detc::registry::engine::{Priority, PriorityName};
use serde_json::Value;

/// A hook's priority: its value and the label of the hooks table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookPriority {
    value: u32,
    label: String,
}

impl HookPriority {
    /// A named priority (the class defaults).
    pub fn named(name: PriorityName) -> Self {
        HookPriority::from(Priority::Name(name))
    }

    /// Parses a config's `priority` (a number 0–100 or a name such as `VERY_LOW`);
    /// `at` names the key in errors.
    pub fn parse(value: &Value, at: &str) -> Result<Self, String> {
        let p: Priority = serde_json::from_value(value.clone()).map_err(|_| {
            format!("{at}: expected 0 to 100 or a name (HIGHEST, VERY_HIGH, HIGH, ABOVE_NORMAL, NORMAL, BELOW_NORMAL, LOW, VERY_LOW, LOWEST), got {value}")
        })?;
        match p {
            Priority::Value(v) if v > 100 => Err(format!("{at}: a priority is 0 to 100, got {v}")),
            p => Ok(HookPriority::from(p)),
        }
    }

    /// 0 (runs first) to 100 (runs last).
    pub fn value(&self) -> u32 {
        self.value
    }

    /// `VERY_LOW` for a name or a number with a name (90), else the number.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl From<Priority> for HookPriority {
    fn from(p: Priority) -> Self {
        match p {
            Priority::Name(name) => HookPriority {
                value: name_value(name),
                label: name_label(name),
            },
            Priority::Value(value) => HookPriority {
                value,
                label: NAMES
                    .iter()
                    .find(|n| name_value(**n) == value)
                    .map_or_else(|| value.to_string(), |n| name_label(*n)),
            },
        }
    }
}

const NAMES: [PriorityName; 9] = [
    PriorityName::Highest,
    PriorityName::VeryHigh,
    PriorityName::High,
    PriorityName::AboveNormal,
    PriorityName::Normal,
    PriorityName::BelowNormal,
    PriorityName::Low,
    PriorityName::VeryLow,
    PriorityName::Lowest,
];

fn name_value(name: PriorityName) -> u32 {
    match name {
        PriorityName::Highest => 0,
        PriorityName::VeryHigh => 10,
        PriorityName::High => 30,
        PriorityName::AboveNormal => 40,
        PriorityName::Normal => 50,
        PriorityName::BelowNormal => 60,
        PriorityName::Low => 70,
        PriorityName::VeryLow => 90,
        PriorityName::Lowest => 100,
    }
}

/// `VERY_LOW`: the name as the registry (and MMEngine) spells it.
fn name_label(name: PriorityName) -> String {
    serde_json::to_value(name)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_names_label_as_mmengine() {
        let p = |v: Value| HookPriority::parse(&v, "priority").unwrap();
        assert_eq!(
            (p(json!("VERY_LOW")).value(), p(json!("VERY_LOW")).label()),
            (90, "VERY_LOW")
        );
        assert_eq!(p(json!(90)).label(), "VERY_LOW");
        assert_eq!((p(json!(55)).value(), p(json!(55)).label()), (55, "55"));
        assert!(HookPriority::parse(&json!(101), "priority").is_err());
        assert!(HookPriority::parse(&json!("SOMETIMES"), "priority").is_err());
    }
}
