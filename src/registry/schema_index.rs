//! The registry's JSON Schemas compiled once into a flat index the validator
//! walks: `$ref`s resolved to ids, keywords read into fields. Walking JSON
//! maps directly cost a hash lookup per keyword per value checked; this is
//! what keeps `detc check` well under a millisecond on a full config.

use std::collections::HashMap;

use serde_json::Value as Json;

use super::refs::ROLE_KEYWORD;
use super::Role;

pub type Id = usize;

/// Bit set of JSON types a schema allows.
pub mod types {
    pub const OBJECT: u8 = 1;
    pub const ARRAY: u8 = 2;
    pub const STRING: u8 = 4;
    pub const INTEGER: u8 = 8;
    pub const NUMBER: u8 = 16;
    pub const BOOLEAN: u8 = 32;
    pub const NULL: u8 = 64;
}

/// One compiled schema.
pub struct Compiled {
    /// The JSON it came from, for messages ("expected ...") and descriptions.
    pub json: &'static Json,
    pub role: Option<Role>,
    /// `anyOf`/`oneOf` branches; when present, the other fields are unused.
    pub any_of: Vec<Id>,
    /// Allowed types; `None` allows any.
    pub types: Option<u8>,
    pub enum_values: Option<&'static [Json]>,
    pub const_value: Option<&'static Json>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: Option<f64>,
    pub exclusive_maximum: Option<f64>,
    pub properties: Vec<(&'static str, Id)>,
    /// `additionalProperties: false`.
    pub closed: bool,
    pub additional: Option<Id>,
    pub required: Vec<&'static str>,
    pub items: Option<Id>,
    pub prefix_items: Vec<Id>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
}

impl Compiled {
    pub fn property(&self, key: &str) -> Option<Id> {
        self.properties.iter().find(|(k, _)| *k == key).map(|(_, id)| *id)
    }
}

pub struct Index {
    pub nodes: Vec<Compiled>,
    by_address: HashMap<usize, Id>,
    defs: &'static serde_json::Map<String, Json>,
}

impl Index {
    pub fn new(defs: &'static serde_json::Map<String, Json>) -> Index {
        Index { nodes: vec![], by_address: HashMap::new(), defs }
    }

    /// Follows `$ref`s to the schema that holds keywords.
    pub fn resolve(&self, mut schema: &'static Json) -> &'static Json {
        while let Some(r) = schema.get("$ref").and_then(Json::as_str) {
            match r.strip_prefix("#/$defs/").and_then(|name| self.defs.get(name)) {
                Some(def) => schema = def,
                None => break,
            }
        }
        schema
    }

    /// Compiles `schema` (memoised by address, so shared definitions compile once).
    pub fn compile(&mut self, schema: &'static Json) -> Id {
        let schema = self.resolve(schema);
        let address = schema as *const Json as usize;
        if let Some(&id) = self.by_address.get(&address) {
            return id;
        }
        let id = self.nodes.len();
        self.by_address.insert(address, id);
        self.nodes.push(Compiled {
            json: schema,
            role: None,
            any_of: vec![],
            types: None,
            enum_values: None,
            const_value: None,
            minimum: None,
            maximum: None,
            exclusive_minimum: None,
            exclusive_maximum: None,
            properties: vec![],
            closed: false,
            additional: None,
            required: vec![],
            items: None,
            prefix_items: vec![],
            min_items: None,
            max_items: None,
        });
        // One pass over the keywords (each `get` on a JSON map is a hash lookup).
        let Some(object) = schema.as_object() else { return id };
        for (keyword, value) in object {
            match keyword.as_str() {
                ROLE_KEYWORD => self.nodes[id].role = value.as_str().and_then(Role::from_name),
                "anyOf" | "oneOf" => {
                    let branches = value.as_array().map(|bs| bs.iter().map(|b| self.compile(b)).collect());
                    self.nodes[id].any_of = branches.unwrap_or_default();
                }
                "type" => self.nodes[id].types = Some(type_bits(value)),
                "enum" => self.nodes[id].enum_values = value.as_array().map(Vec::as_slice),
                "const" => self.nodes[id].const_value = Some(value),
                "minimum" => self.nodes[id].minimum = value.as_f64(),
                "maximum" => self.nodes[id].maximum = value.as_f64(),
                "exclusiveMinimum" => self.nodes[id].exclusive_minimum = value.as_f64(),
                "exclusiveMaximum" => self.nodes[id].exclusive_maximum = value.as_f64(),
                "properties" => {
                    let props = value.as_object().map(|ps| ps.iter().map(|(k, v)| (k.as_str(), self.compile(v))).collect());
                    self.nodes[id].properties = props.unwrap_or_default();
                }
                "additionalProperties" => match value {
                    Json::Bool(false) => self.nodes[id].closed = true,
                    Json::Object(_) => self.nodes[id].additional = Some(self.compile(value)),
                    _ => {}
                },
                "required" => {
                    self.nodes[id].required = value.as_array().map(|r| r.iter().filter_map(Json::as_str).collect()).unwrap_or_default();
                }
                "items" if value.is_object() => self.nodes[id].items = Some(self.compile(value)),
                "prefixItems" => {
                    let prefix = value.as_array().map(|ps| ps.iter().map(|p| self.compile(p)).collect());
                    self.nodes[id].prefix_items = prefix.unwrap_or_default();
                }
                "minItems" => self.nodes[id].min_items = value.as_u64(),
                "maxItems" => self.nodes[id].max_items = value.as_u64(),
                _ => {}
            }
        }
        id
    }
}

fn type_bits(types: &Json) -> u8 {
    let one = |t: &str| match t {
        "object" => types::OBJECT,
        "array" => types::ARRAY,
        "string" => types::STRING,
        "integer" => types::INTEGER,
        "number" => types::NUMBER,
        "boolean" => types::BOOLEAN,
        "null" => types::NULL,
        _ => 0,
    };
    match types {
        Json::String(t) => one(t),
        Json::Array(ts) => ts.iter().filter_map(Json::as_str).map(one).fold(0, |a, b| a | b),
        _ => 0xff,
    }
}
