//! The JSON Schema (draft 2020-12) that `detc schema` prints and editors use.
//!
//! It is the validator's schema made lenient for partial files: nothing is
//! required (a base file alone, or a child that overrides one field, is
//! valid), and each role becomes `if type == X then <X's schema>` branches so
//! an editor checks a dict once it names its `type`.

use serde_json::{json, Map as JsonMap, Value as Json};

use super::refs::ROLE_KEYWORD;
use super::validate::schemas;
use super::{of_role, ALL_ROLES};

pub fn editor_schema() -> Json {
    let s = schemas();
    let mut defs: JsonMap<String, Json> = s.defs.clone();
    for (_, reference) in &s.components {
        // Components' structs leave `type` to the registry; the editor schema allows it.
        if let Some(def) = def_name(reference).and_then(|d| defs.get_mut(d)) {
            if let Some(props) = def.get_mut("properties").and_then(Json::as_object_mut) {
                props.entry("type").or_insert(json!({"type": "string"}));
            }
        }
    }
    for role in ALL_ROLES {
        let branches: Vec<Json> = of_role(*role)
            .map(|c| {
                let reference = &s.components.iter().find(|(n, _)| *n == c.name).expect("registered").1;
                json!({
                    "if": {"properties": {"type": {"const": c.name}}, "required": ["type"]},
                    "then": reference,
                })
            })
            .collect();
        let names: Vec<&str> = of_role(*role).map(|c| c.name).collect();
        defs.insert(role.as_str().to_string(), json!({
            "description": format!("A `{}` component: a mapping whose `type` names it.", role.as_str()),
            "type": "object",
            "properties": {"type": {"enum": names}},
            "allOf": branches,
        }));
    }
    let mut root = s.defs.get(def_name(&s.root).unwrap_or("RootConfig")).cloned().unwrap_or(json!({}));
    if let Some(obj) = root.as_object_mut() {
        obj.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
        obj.insert("$id".into(), json!("https://detc.dev/schema/detc.schema.json"));
        obj.insert("title".into(), json!("detc config"));
        let mut props = obj.get("properties").cloned().unwrap_or(json!({}));
        if let Some(p) = props.as_object_mut() {
            p.insert("_base_".into(), json!({
                "description": "Base config files (relative paths) this file inherits from.",
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            }));
        }
        obj.insert("properties".into(), props);
        obj.insert("$defs".into(), Json::Object(defs));
    }
    strip(&mut root);
    root
}

fn def_name(reference: &Json) -> Option<&str> {
    reference.get("$ref")?.as_str()?.strip_prefix("#/$defs/")
}

/// Removes `required` (partial files) and detc's private keyword, and lets
/// every closed mapping carry `_delete_` (it replaces the base's mapping).
fn strip(value: &mut Json) {
    match value {
        Json::Object(obj) => {
            let in_if = obj.contains_key("if");
            obj.remove(ROLE_KEYWORD);
            if obj.get("additionalProperties") == Some(&Json::Bool(false)) {
                let props = obj.entry("properties").or_insert(json!({}));
                if let Some(p) = props.as_object_mut() {
                    p.insert(crate::config::merge::DELETE_KEY.into(), json!({
                        "description": "Replace the base file's mapping instead of merging into it.",
                        "type": "boolean",
                    }));
                }
            }
            for (k, v) in obj.iter_mut() {
                if k != "if" {
                    strip(v);
                }
            }
            if !in_if {
                obj.remove("required");
            }
        }
        Json::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}
