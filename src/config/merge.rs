//! Merging a child mapping onto its base, with MMEngine's `_merge_a_into_b`
//! semantics: mappings merge recursively, `_delete_: true` replaces the base
//! mapping, lists and scalars are replaced whole.
//!
//! detc extension (where MMEngine only raises): a mapping whose keys are list
//! indices or `'*'` merged onto a list edits those elements (`'*'`: every
//! element). `--cfg-options a.0.b=1` uses the same rule, as MMEngine's
//! `allow_list_keys` does.

use super::diagnostic::{Diagnostic, Result};
use super::value::{Map, Node, Value};

pub const DELETE_KEY: &str = "_delete_";

/// Merges `child` onto `base` and returns the result (base order first, new
/// keys appended, as a Python dict update does).
pub fn merge(child: Map, base: Node) -> Result<Node> {
    let mut base = base;
    let base_span = base.span;
    let mut errors = vec![];
    match &mut base.value {
        Value::Map(map) => {
            for (key, entry) in child {
                let Some(slot) = map.get_mut(&key) else {
                    map.insert(key, entry.key_span, entry.node);
                    continue;
                };
                // Merge in place: the base value is moved out, not copied.
                let old = std::mem::replace(slot, Node::new(Value::Null, entry.key_span));
                match merge_entry(entry.node, old) {
                    Ok(node) => map.insert(key, entry.key_span, node),
                    Err(e) => errors.extend(e),
                }
            }
        }
        Value::List(items) => {
            for (key, entry) in child {
                let indices: Vec<usize> = match key.as_str() {
                    "*" => (0..items.len()).collect(),
                    k if !k.is_empty() && k.chars().all(|c| c.is_ascii_digit()) => match k.parse::<usize>() {
                        Ok(i) if i < items.len() => vec![i],
                        _ => {
                            errors.push(Diagnostic::error("detc::config::index_out_of_range",
                                format!("index `{k}` is out of range for a list of {} items", items.len()))
                                .label(entry.key_span, "this index")
                                .label(base_span, "the list is set here"));
                            continue;
                        }
                    },
                    _ => {
                        errors.push(not_mergeable(&key, entry.key_span, base_span));
                        continue;
                    }
                };
                for i in indices {
                    match merge_entry(entry.node.clone(), items[i].clone()) {
                        Ok(node) => items[i] = node,
                        Err(e) => errors.extend(e),
                    }
                }
            }
        }
        _ => unreachable!("merge is only called on mappings and lists"),
    }
    if errors.is_empty() { Ok(base) } else { Err(errors) }
}

/// The value of one key after merging `new` onto the base's `old` value.
fn merge_entry(new: Node, old: Node) -> Result<Node> {
    let Value::Map(mut map) = new.value else { return Ok(new) };
    let delete = map.remove(DELETE_KEY).is_some_and(|e| truthy(&e.node.value));
    let new = Node::new(Value::Map(map), new.span);
    if delete {
        return Ok(new);
    }
    let Value::Map(map) = new.value else { unreachable!() };
    match &old.value {
        Value::Map(_) => merge(map, Node::new(old.value, new.span)),
        Value::List(_) if map.keys().all(|k| k == "*" || k.chars().all(|c| c.is_ascii_digit())) => {
            merge(map, old)
        }
        _ => {
            let key_span = map.iter().next().map_or(new.span, |(_, e)| e.key_span);
            Err(vec![Diagnostic::error("detc::config::merge_type",
                format!("cannot merge a mapping onto {}", old.kind()))
                .label(key_span, "this mapping")
                .label(old.span, format!("the base sets {} here", old.kind()))
                .help("add `_delete_: true` to the mapping to replace the base value instead of merging")])
        }
    }
}

fn not_mergeable(key: &str, key_span: super::source::Span, base_span: super::source::Span) -> Diagnostic {
    Diagnostic::error("detc::config::merge_type", format!("cannot merge key `{key}` into a list"))
        .label(key_span, "not a list index")
        .label(base_span, "the base sets a list here")
        .help("use list indices (`0`, `1`, ...) or `'*'` (every element) as keys, or `_delete_: true` to replace the list")
}

/// Python truthiness of a YAML scalar, as `if v.pop('_delete_')` reads it.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::List(l) => !l.is_empty(),
        Value::Map(m) => !m.is_empty(),
        Value::Reference(_) => true,
    }
}
