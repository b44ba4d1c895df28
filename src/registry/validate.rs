//! Checks a resolved config against the registry's schemas and reports every
//! problem at once, each at the span of the value in the file that set it.
//!
//! Hand-written over the JSON Schema that schemars generates (rather than a
//! general validator) because detc needs what those cannot give: spans of
//! keys, dispatch on each dict's `type` through the registry, "did you mean"
//! for keys and types, and one precise error instead of a failed `oneOf`.
//! It understands the subset of JSON Schema the config structs produce.

use std::sync::OnceLock;

use serde_json::{Map as JsonMap, Value as Json};

use std::collections::HashMap;

use super::refs::ROLE_KEYWORD;
use super::root::{RootConfig, HELPER_VARIABLES};
use super::schema_index::{self, Id, Index};
use super::{lookup, of_role, Role};
use crate::config::diagnostic::{did_you_mean, Diagnostic, Diagnostics, Result};
use crate::config::value::{Map, Node, Value};

/// The generated schemas: every definition, the root, and each component's `$ref`.
pub struct Schemas {
    pub defs: JsonMap<String, Json>,
    pub root: Json,
    pub components: Vec<(&'static str, Json)>,
}

/// Generates (once) the schemas of the root and of every registered component.
pub fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
        let root = generator.subschema_for::<RootConfig>().to_value();
        let components = super::all().iter().map(|c| (c.name, (c.schema)(&mut generator).to_value())).collect();
        Schemas { defs: generator.take_definitions(true), root, components }
    })
}

/// The compiled form of [`schemas`], built once.
struct Compiled {
    index: Index,
    root: Id,
    components: HashMap<&'static str, Id>,
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let s = schemas();
        let mut index = Index::new(&s.defs);
        let root = index.compile(&s.root);
        let components = s.components.iter().map(|(name, schema)| (*name, index.compile(schema))).collect();
        Compiled { index, root, components }
    })
}

/// Validates a whole resolved config.
pub fn check(tree: &Node) -> Result<()> {
    let c = compiled();
    let mut v = Validator { index: &c.index, components: &c.components, errors: vec![] };
    v.root(tree, c.root);
    if v.errors.is_empty() { Ok(()) } else { Err(v.errors) }
}

struct Validator {
    index: &'static Index,
    components: &'static HashMap<&'static str, Id>,
    errors: Diagnostics,
}

impl Validator {
    fn schema(&self, id: Id) -> &'static schema_index::Compiled {
        &self.index.nodes[id]
    }

    /// The top level: known sections are checked; other keys are helper
    /// variables unless they look like a misspelt section.
    fn root(&mut self, tree: &Node, root: Id) {
        let schema = self.schema(root);
        let Value::Map(map) = &tree.value else { return };
        for (key, entry) in map.iter() {
            match schema.property(key) {
                Some(sub) => self.value(&entry.node, sub),
                None if HELPER_VARIABLES.contains(&key.as_str()) => {}
                None => {
                    let sections = schema.properties.iter().map(|(k, _)| *k);
                    if let Some(s) = did_you_mean(key, sections) {
                        self.errors.push(Diagnostic::error("detc::check::unknown_section", format!("unknown section `{key}`"))
                            .label(entry.key_span, "not a config section")
                            .help(format!("did you mean `{s}`?")));
                    }
                }
            }
        }
    }

    fn value(&mut self, node: &Node, id: Id) {
        let schema = self.schema(id);
        if let Some(role) = schema.role {
            return self.component(node, role);
        }
        if !schema.any_of.is_empty() {
            return self.any_of(node, id);
        }
        if schema.types.is_some_and(|t| !type_matches(node, t)) {
            self.push_wrong_type(node, &self.describe(id));
            // A key that must stay null says why in its description.
            if schema.types == Some(schema_index::types::NULL) {
                self.explain_last(schema.json);
            }
            return;
        }
        if let Some(options) = schema.enum_values.filter(|options| !options.iter().any(|o| same_value(o, node))) {
            self.push_wrong_type(node, &self.describe(id));
            // So does a key that must stay off (null or false).
            if options.iter().all(|o| o.is_null() || *o == Json::Bool(false)) {
                self.explain_last(schema.json);
            }
            return;
        }
        if schema.const_value.is_some_and(|c| !same_value(c, node)) {
            // So does a key with one allowed value.
            self.push_wrong_type(node, &self.describe(id));
            return self.explain_last(schema.json);
        }
        match &node.value {
            Value::Int(_) | Value::Float(_) => self.range(node, schema),
            Value::Map(map) => self.map(node, map, schema, None),
            Value::List(items) => self.list(node, items, schema),
            _ => {}
        }
    }

    /// A dict that names a component of `role` by its `type`.
    fn component(&mut self, node: &Node, role: Role) {
        let Value::Map(map) = &node.value else {
            return self.push_wrong_type(node, &format!("a `{}` config (a mapping with a `type`)", role.as_str()));
        };
        let Some(type_entry) = map.entry("type") else {
            let names: Vec<&str> = of_role(role).map(|c| c.name).take(6).collect();
            self.errors.push(Diagnostic::error("detc::check::missing_type", format!("`{}` config has no `type`", role.as_str()))
                .label(node.span, "this mapping needs a `type` key")
                .help(format!("set `type` to one of: {}", names.join(", "))));
            return;
        };
        let type_node = &type_entry.node;
        let Some(name) = type_node.as_str() else {
            return self.push_wrong_type(type_node, "a component name (a string)");
        };
        let Some(component) = lookup(name) else {
            let same_role = of_role(role).map(|c| c.name);
            let suggestion = did_you_mean(name, same_role).or_else(|| did_you_mean(name, super::all().iter().map(|c| c.name)));
            let mut diag = Diagnostic::error("detc::check::unknown_type", format!("unknown {} type `{name}`", role.as_str()))
                .label(type_node.span, "not a registered component");
            diag = match suggestion {
                Some(s) => diag.help(format!("did you mean `{s}`?")),
                None => diag.help(format!("registered {} types: {}", role.as_str(),
                    of_role(role).map(|c| c.name).collect::<Vec<_>>().join(", "))),
            };
            self.errors.push(diag);
            return;
        };
        if component.role != role {
            self.errors.push(Diagnostic::error("detc::check::wrong_role",
                format!("`{name}` is a {}, but a {} is expected here", component.role.as_str(), role.as_str()))
                .label(type_node.span, format!("a {}", component.role.as_str())));
            return;
        }
        let schema = self.schema(self.components[name]);
        self.map(node, map, schema, Some("type"));
    }

    fn map(&mut self, node: &Node, map: &Map, schema: &'static schema_index::Compiled, skip: Option<&str>) {
        for (key, entry) in map.iter() {
            if Some(key.as_str()) == skip {
                continue;
            }
            match (schema.property(key), schema.additional) {
                (Some(sub), _) | (None, Some(sub)) => self.value(&entry.node, sub),
                (None, None) if schema.closed => {
                    let known = schema.properties.iter().map(|(k, _)| *k);
                    let mut diag = Diagnostic::error("detc::check::unknown_key", format!("unknown key `{key}`"))
                        .label(entry.key_span, "not a field of this config");
                    if key == crate::config::merge::DELETE_KEY {
                        diag = diag.help("`_delete_` only has an effect when a base file defines this mapping; remove it");
                    } else if let Some(s) = did_you_mean(key, known) {
                        diag = diag.help(format!("did you mean `{s}`?"));
                    } else if !schema.properties.is_empty() {
                        let names: Vec<&str> = schema.properties.iter().map(|(k, _)| *k).collect();
                        diag = diag.help(format!("known keys: {}", names.join(", ")));
                    }
                    self.errors.push(diag);
                }
                (None, None) => {}
            }
        }
        for name in &schema.required {
            if !map.contains_key(name) {
                let at = map.entry("type").map_or(node.span, |e| e.node.span);
                let mut diag = Diagnostic::error("detc::check::missing_field", format!("missing required field `{name}`"))
                    .label(at, format!("this config needs `{name}`"));
                let description = schema.property(name).and_then(|id| self.index.resolve(self.schema(id).json).get("description"));
                if let Some(d) = description.and_then(Json::as_str) {
                    diag = diag.help(format!("`{name}`: {d}"));
                }
                self.errors.push(diag);
            }
        }
    }

    fn list(&mut self, node: &Node, items: &[Node], schema: &'static schema_index::Compiled) {
        for (i, item) in items.iter().enumerate() {
            if let Some(sub) = schema.prefix_items.get(i).copied().or(schema.items) {
                self.value(item, sub);
            }
        }
        let (min, max) = (schema.min_items, schema.max_items);
        let n = items.len() as u64;
        if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
            let want = match (min, max) {
                (Some(a), Some(b)) if a == b => format!("exactly {a} items"),
                (Some(a), Some(b)) => format!("{a} to {b} items"),
                (Some(a), None) => format!("at least {a} items"),
                (None, Some(b)) => format!("at most {b} items"),
                _ => unreachable!(),
            };
            self.errors.push(Diagnostic::error("detc::check::out_of_range", format!("expected {want}, found {n}"))
                .label(node.span, "this list"));
        }
    }

    fn range(&mut self, node: &Node, schema: &schema_index::Compiled) {
        let x = match node.value {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
            _ => return,
        };
        let violated = [
            schema.minimum.filter(|&m| x < m).map(|m| format!("at least {}", show(m))),
            schema.maximum.filter(|&m| x > m).map(|m| format!("at most {}", show(m))),
            schema.exclusive_minimum.filter(|&m| x <= m).map(|m| format!("greater than {}", show(m))),
            schema.exclusive_maximum.filter(|&m| x >= m).map(|m| format!("less than {}", show(m))),
        ];
        if let Some(want) = violated.into_iter().flatten().next() {
            self.errors.push(Diagnostic::error("detc::check::out_of_range", format!("value `{}` is out of range", show(x)))
                .label(node.span, format!("must be {want}")));
        }
    }

    /// `anyOf`/`oneOf`: fine if one branch accepts the value; otherwise report
    /// the errors of the branch whose shape fits, or a plain "expected".
    fn any_of(&mut self, node: &Node, id: Id) {
        let mut fitting = vec![];
        for &branch in &self.schema(id).any_of {
            let mut sub = Validator { index: self.index, components: self.components, errors: vec![] };
            sub.value(node, branch);
            if sub.errors.is_empty() {
                return;
            }
            if self.shape_fits(node, branch) {
                fitting.push(sub.errors);
            }
        }
        if let (1, Some(errors)) = (fitting.len(), fitting.last_mut()) {
            self.errors.append(errors);
        } else if let Some(role) = self.untyped_mapping_for_role(node, id) {
            // A mapping without `type` where only components may stand.
            self.component(node, role);
        } else {
            self.push_wrong_type(node, &self.describe(id));
        }
    }

    /// Whether `node` has the broad shape a branch wants (mapping, list, scalar
    /// kind), looking through nested `anyOf`s such as `Option<A | Vec<A>>`.
    /// A mapping fits a component branch when it has a `type`, and a plain
    /// struct branch when it has none (MMEngine's `type`-less loop forms).
    fn shape_fits(&self, node: &Node, id: Id) -> bool {
        let schema = self.schema(id);
        if schema.role.is_some() {
            return matches!(&node.value, Value::Map(m) if m.contains_key("type"));
        }
        if !schema.any_of.is_empty() {
            return schema.any_of.iter().any(|&b| self.shape_fits(node, b));
        }
        if let (Value::Map(map), Some(props)) = (&node.value, schema.json["properties"].as_object()) {
            if map.contains_key("type") && !props.contains_key("type") {
                return false;
            }
        }
        match schema.types {
            Some(t) => type_matches(node, t),
            None => schema.enum_values.is_some() || schema.const_value.is_some(),
        }
    }

    /// The role of the only component branch of `id`, when `node` is a mapping
    /// without `type` and no other branch takes mappings.
    fn untyped_mapping_for_role(&self, node: &Node, id: Id) -> Option<Role> {
        let Value::Map(map) = &node.value else { return None };
        if map.contains_key("type") {
            return None;
        }
        let mut roles = vec![];
        let mut other_objects = false;
        self.branch_kinds(id, &mut roles, &mut other_objects);
        (roles.len() == 1 && !other_objects).then(|| roles[0])
    }

    fn branch_kinds(&self, id: Id, roles: &mut Vec<Role>, other_objects: &mut bool) {
        let schema = self.schema(id);
        if let Some(role) = schema.role {
            roles.push(role);
        } else if !schema.any_of.is_empty() {
            schema.any_of.iter().for_each(|&b| self.branch_kinds(b, roles, other_objects));
        } else if schema.types.is_none_or(|t| t & schema_index::types::OBJECT != 0) {
            *other_objects = true;
        }
    }

    fn describe(&self, id: Id) -> String {
        describe(self.schema(id).json, self.index)
    }

    /// The schema's description as the help of the last error.
    fn explain_last(&mut self, schema: &Json) {
        let Some(why) = schema["description"].as_str() else { return };
        if let Some(last) = self.errors.pop() {
            self.errors.push(last.help(why));
        }
    }

    fn push_wrong_type(&mut self, node: &Node, expected: &str) {
        let found = match &node.value {
            Value::Str(s) => format!("the string `{s}`"),
            Value::Int(i) => format!("the integer `{i}`"),
            Value::Float(f) => format!("the float `{}`", show(*f)),
            Value::Bool(b) => format!("`{b}`"),
            other => other.kind().to_string(),
        };
        self.errors.push(Diagnostic::error("detc::check::wrong_type", format!("expected {expected}, found {found}"))
            .label(node.span, format!("expected {expected}")));
    }
}

fn show(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { format!("{x}") }
}

fn type_matches(node: &Node, allowed: u8) -> bool {
    use schema_index::types::*;
    let bits = match &node.value {
        Value::Map(_) => OBJECT,
        Value::List(_) => ARRAY,
        Value::Str(_) => STRING,
        Value::Int(_) => INTEGER | NUMBER,
        // JSON Schema counts 2.0 as an integer; a float with no fraction where
        // an int is expected is what the user meant.
        Value::Float(f) if f.fract() == 0.0 => INTEGER | NUMBER,
        Value::Float(_) => NUMBER,
        Value::Bool(_) => BOOLEAN,
        Value::Null => NULL,
        Value::Reference(_) => 0,
    };
    bits & allowed != 0
}

/// Whether a schema constant equals a config value; numbers compare by
/// value (1 == 1.0). Scalars are compared without building JSON.
fn same_value(expected: &Json, node: &Node) -> bool {
    match (expected, &node.value) {
        (Json::Null, Value::Null) => true,
        (Json::Bool(a), Value::Bool(b)) => a == b,
        (Json::String(a), Value::Str(b)) => a == b,
        (Json::Number(a), Value::Int(b)) => a.as_f64() == Some(*b as f64),
        (Json::Number(a), Value::Float(b)) => a.as_f64() == Some(*b),
        (Json::Array(_) | Json::Object(_), Value::List(_) | Value::Map(_)) => *expected == node.to_json(),
        _ => false,
    }
}

/// "an integer", "one of `pytorch`, `caffe`", "a `Loss` config or null", ...
fn describe(schema: &'static Json, index: &Index) -> String {
    let schema = index.resolve(schema);
    if let Some(role) = schema.get(ROLE_KEYWORD).and_then(Json::as_str) {
        return format!("a `{role}` config (a mapping with a `type`)");
    }
    if let Some(options) = schema.get("enum").and_then(Json::as_array) {
        let shown: Vec<String> = options.iter().map(|o| format!("`{}`", o.as_str().map_or(o.to_string(), str::to_string))).collect();
        return format!("one of {}", shown.join(", "));
    }
    if let Some(c) = schema.get("const") {
        return format!("`{}`", c.as_str().map_or(c.to_string(), str::to_string));
    }
    if let Some(branches) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Json::as_array) {
        let mut parts: Vec<String> = branches.iter().map(|b| describe(b, index)).collect();
        parts.dedup();
        return parts.join(" or ");
    }
    let word = |t: &str| match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean (true/false)",
        "null" => "null",
        _ => "a value",
    };
    let bounds: Vec<String> = [("minimum", "at least"), ("exclusiveMinimum", "greater than"), ("maximum", "at most"), ("exclusiveMaximum", "less than")]
        .iter()
        .filter_map(|(k, words)| schema.get(*k).and_then(Json::as_f64).map(|b| format!("{words} {}", show(b))))
        .collect();
    let bounds = if bounds.is_empty() { String::new() } else { format!(" ({})", bounds.join(", ")) };
    match schema.get("type") {
        Some(Json::String(t)) => format!("{}{bounds}", word(t)),
        Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).map(word).collect::<Vec<_>>().join(" or "),
        _ => "a value".into(),
    }
}
