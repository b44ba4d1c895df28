//! Which components of a resolved config the engine can build: those without
//! a builder are all named before anything runs.

use serde_json::Value;

use crate::models::has_builder;
use detc::registry::lookup;

/// Components of `config` (by config path) that the engine cannot build yet.
pub fn unbuildable(config: &Value) -> Vec<(String, String)> {
    let mut missing = vec![];
    walk(config, String::new(), &mut missing);
    missing
}

/// Prints the components of `value` (found at `prefix`) without a builder,
/// aligned; returns whether there were any (then nothing may run).
pub fn report_unbuildable(value: &Value, prefix: &str) -> bool {
    let missing = unbuildable(value);
    if missing.is_empty() {
        return false;
    }
    eprintln!(
        "error: {} component(s) of this config have no builder in detc yet; nothing was run:",
        missing.len()
    );
    let paths: Vec<String> = missing.iter().map(|(p, _)| join(prefix, p)).collect();
    let width = paths.iter().map(String::len).max().unwrap_or(0);
    for (path, (_, name)) in paths.iter().zip(&missing) {
        eprintln!("  {path:<width$}  {name}");
    }
    true
}

fn walk(value: &Value, path: String, missing: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map.get("type").and_then(Value::as_str) {
                if lookup(name).is_some() && !has_builder(name) {
                    missing.push((path.clone(), name.to_string()));
                }
            }
            for (k, v) in map {
                walk(v, join(&path, k), missing);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, join(&path, &i.to_string()), missing);
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The builder table only names registered components (the two tables agree);
    /// every registered component is either built or reported by `unbuildable`.
    #[test]
    fn builders_are_registered_components() {
        for name in crate::models::BUILDERS {
            assert!(lookup(name).is_some(), "builder `{name}` has no registered config");
        }
        for component in detc::registry::all() {
            let config = serde_json::json!({"x": {"type": component.name}});
            assert_eq!(unbuildable(&config).is_empty(), has_builder(component.name), "{}", component.name);
        }
    }
}
