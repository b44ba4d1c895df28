//! The config value tree: YAML/JSON data in which every node remembers the
//! span that set it, with map keys kept in order.

use std::collections::HashMap;

use super::source::Span;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    /// Where this value was written (the file that set it, or `<cfg-options>`).
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    Map(Map),
    /// `{{_base_.a.b}}` before it is resolved against the bases (never in a resolved tree).
    Reference(String),
}

/// An ordered mapping; each entry keeps its key's span for diagnostics.
///
/// Config mappings are small (most hold under ten keys), so entries live in
/// one vector searched linearly; a hash index is added only past
/// [`INDEX_FROM`] keys, keeping large (or hostile) mappings linear to build.
/// One allocation per mapping instead of a hash map's two made parsing
/// noticeably faster (docs/benchmarks.md).
#[derive(Debug, Clone, Default)]
pub struct Map {
    entries: Vec<(String, Entry)>,
    index: Option<HashMap<String, usize, foldhash::fast::RandomState>>,
}

/// Size from which a [`Map`] keeps a hash index of its keys.
const INDEX_FROM: usize = 24;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key_span: Span,
    pub node: Node,
}

impl PartialEq for Map {
    fn eq(&self, other: &Map) -> bool {
        self.entries == other.entries
    }
}

impl Map {
    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| k == key),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.node)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        let i = self.position(key)?;
        Some(&mut self.entries[i].1.node)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    /// Sets `key`; an existing key keeps its position (as a Python dict does).
    pub fn insert(&mut self, key: String, key_span: Span, node: Node) {
        let entry = Entry { key_span, node };
        if let Some(i) = self.position(&key) {
            self.entries[i].1 = entry;
            return;
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), self.entries.len());
        }
        self.entries.push((key, entry));
        if self.index.is_none() && self.entries.len() >= INDEX_FROM {
            self.reindex();
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        let i = self.position(key)?;
        let (_, entry) = self.entries.remove(i);
        if self.index.is_some() {
            self.reindex();
        }
        Some(entry)
    }

    fn reindex(&mut self) {
        self.index = Some(self.entries.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect());
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter().map(|(k, e)| (k, e))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Entry)> {
        self.entries.iter_mut().map(|(k, e)| (&*k, e))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl IntoIterator for Map {
    type Item = (String, Entry);
    type IntoIter = std::vec::IntoIter<(String, Entry)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl Node {
    pub fn new(value: Value, span: Span) -> Node {
        Node { value, span }
    }

    pub fn as_map(&self) -> Option<&Map> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Looks up a dotted path of map keys and list indices.
    pub fn at_path<'a>(&'a self, path: &[&str]) -> Option<&'a Node> {
        path.iter().try_fold(self, |node, key| match &node.value {
            Value::Map(m) => m.get(key),
            Value::List(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
    }

    /// What a message calls this value's type, in YAML words.
    pub fn kind(&self) -> &'static str {
        self.value.kind()
    }

    /// The value as JSON (types kept: ints stay ints). Non-finite floats are
    /// rejected when loading, so every float here is representable.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null | Value::Reference(_) => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::List(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, e)| (k.clone(), e.node.to_json())).collect()),
        }
    }
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Reference(_) => "a reference",
        }
    }
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}
