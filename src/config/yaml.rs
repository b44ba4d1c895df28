//! Loads one YAML (or JSON, a subset of YAML 1.2) file into a spanned [`Node`]
//! tree.
//!
//! Hand-written on top of granit-parser's event stream because no maintained
//! YAML crate gives both exact byte spans and key order (see
//! `docs/config-language.md`). Scalars follow the YAML 1.2 core schema; the
//! differences from PyYAML (which MMEngine uses) are documented there.
//! `{{_base_.a.b}}` references are found in the raw text first, as MMEngine
//! does, and become [`Value::Reference`] nodes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use granit_parser::{Event, Parser, ScalarStyle, Span as YSpan, StructureStyle};

use super::diagnostic::{Diagnostic, Result};
use super::placeholders::{self, Marks};
use super::source::{SourceId, Span};
use super::value::{Map, Node, Value};

/// Caps that keep hostile input (alias bombs, deep nesting) bounded.
const MAX_NODES: usize = 1_000_000;
pub(crate) const MAX_DEPTH: usize = 200;

/// Parses `text` (the content of source `id`) into a tree: by the fast path
/// for plain config YAML (`yaml_fast.rs`), else by the general event parser.
/// `file` (absolute, as MMEngine sees it) gives `{{ fileDirname }}` & co.
pub fn parse(id: SourceId, text: &str, file: Option<&Path>) -> Result<Node> {
    let Marked { text, mut refs, placeholders } = mark(id, text, file)?;
    let mut root = match super::yaml_fast::parse(id, &text, &mut refs) {
        Some(parsed) => {
            for (start, end) in parsed.comments {
                refs.iter_mut().filter(|(at, _)| (start..end).contains(*at)).for_each(|(_, used)| *used = true);
            }
            check_references_used(id, &text, &refs)?;
            parsed.root
        }
        None => parse_general(id, &text, refs.into_keys().map(|at| (at, false)).collect())?,
    };
    if !placeholders.is_empty() {
        placeholders.apply(&mut root);
    }
    Ok(root)
}

/// The general path: any YAML, through granit-parser's events.
pub fn parse_general(id: SourceId, text: &str, refs: HashMap<usize, bool>) -> Result<Node> {
    let mut builder = Builder { id, refs, frames: vec![], anchors: HashMap::new(), nodes: 0, root: None };
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| {
            let at = e.marker().byte_offset().unwrap_or(0);
            vec![Diagnostic::error("detc::config::yaml_syntax", format!("invalid YAML: {}", e.info()))
                .label(Span::new(id, at, at), "here")]
        })?;
        builder.event(event, span)?;
    }
    check_references_used(id, text, &builder.refs)?;
    match builder.root {
        Some(root) if matches!(root.value, Value::Map(_)) => Ok(root),
        Some(root) => Err(vec![Diagnostic::error(
            "detc::config::not_a_mapping",
            format!("a config file must be a mapping, found {}", root.kind()),
        )
        .label(root.span, "expected `key: value` lines")]),
        None => Err(vec![Diagnostic::error("detc::config::empty_file", "the config file is empty")
            .label(Span::new(id, 0, 0), "expected a mapping")
            .help("write at least one `key: value` line, or `{}`")]),
    }
}

/// A marked reference that did not become a value (nor sits in a comment)
/// was inside a longer string.
fn check_references_used(id: SourceId, text: &str, refs: &HashMap<usize, bool>) -> Result<()> {
    if let Some(start) = refs.iter().filter(|(_, used)| !**used).map(|(s, _)| *s).min() {
        let end = text[start..].find("}\"").map_or(start, |i| start + i + 2);
        return Err(vec![Diagnostic::error(
            "detc::config::embedded_reference",
            "a `{{_base_...}}` reference must be a whole value",
        )
        .label(Span::new(id, start, end), "inside a longer string or quoted text")
        .help("write the reference alone as the value, e.g. `key: {{_base_.a.b}}`")]);
    }
    Ok(())
}

/// The dotted path of a marked reference's text `{ _base_.a.b }`: `a.b`.
pub(crate) fn reference_path(text: &str) -> String {
    let path = text.trim().trim_start_matches('{').trim_end_matches('}').trim();
    path.trim_start_matches("_base_.").to_string()
}

/// A file's text with its `{{ }}` placeholders marked in place.
struct Marked<'t> {
    text: Cow<'t, str>,
    /// Offsets of `_base_` references, and whether each became a value.
    refs: HashMap<usize, bool>,
    placeholders: Marks,
}

/// Rewrites each `{{ _base_.a.b }}` to `"{ _base_.a.b }"` (same length, so
/// spans stay exact; the parser then sees a quoted scalar), and marks the
/// other placeholders of `placeholders.rs`.
fn mark<'t>(id: SourceId, text: &'t str, file: Option<&Path>) -> Result<Marked<'t>> {
    let bytes = text.as_bytes();
    let mut marked: Option<Vec<u8>> = None;
    let mut placeholders = Marks::default();
    let mut refs = HashMap::new();
    let mut from = 0;
    // `find(char)` is a memchr; most `{` open flow mappings, not references.
    while let Some(i) = text[from..].find('{').map(|i| i + from) {
        from = i + 1;
        if bytes.get(i + 1) != Some(&b'{') {
            continue;
        }
        from = i + 2;
        let Some(close) = find_double_brace(text, i + 2) else { break };
        let inner = text[i + 2..close].trim();
        let path_ok = inner.strip_prefix("_base_.").is_some_and(|p| {
            !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.')
        });
        if path_ok {
            let out = marked.get_or_insert_with(|| bytes.to_vec());
            out[i] = b'"';
            out[close + 1] = b'"';
            refs.insert(i, false);
            from = close + 2;
            continue;
        }
        let span = Span::new(id, i, close + 2);
        match file.and_then(|f| placeholders::value_of(&text[i + 2..close], f, span)) {
            Some(Ok(value)) => {
                let out = marked.get_or_insert_with(|| bytes.to_vec());
                out[i..i + 2].copy_from_slice(b"~~");
                out[close..close + 2].copy_from_slice(b"~~");
                placeholders.push(format!("~~{}~~", &text[i + 2..close]), value);
                from = close + 2;
            }
            Some(Err(diag)) => return Err(vec![diag]),
            None => {}
        }
    }
    let text = match marked {
        Some(out) => Cow::Owned(String::from_utf8(out).expect("replacing ASCII braces keeps UTF-8")),
        None => Cow::Borrowed(text),
    };
    Ok(Marked { text, refs, placeholders })
}

/// The offset of the next `}}` at or after `from`.
fn find_double_brace(text: &str, mut from: usize) -> Option<usize> {
    while let Some(j) = text[from..].find('}').map(|j| j + from) {
        if text.as_bytes().get(j + 1) == Some(&b'}') {
            return Some(j);
        }
        from = j + 1;
    }
    None
}

enum Frame {
    List { items: Vec<Node>, start: usize, flow: bool, anchor: usize },
    Map { map: Map, key: Option<(String, Span)>, merges: Vec<Node>, start: usize, flow: bool, anchor: usize },
}

struct Builder {
    id: SourceId,
    refs: HashMap<usize, bool>,
    frames: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    root: Option<Node>,
}

impl Builder {
    fn span(&self, s: &YSpan) -> Span {
        let start = s.start.byte_offset().unwrap_or(0);
        let end = s.end.byte_offset().unwrap_or(start);
        Span::new(self.id, start, end.max(start))
    }

    fn error(&self, span: Span, code: &'static str, message: String, label: &str) -> Vec<Diagnostic> {
        vec![Diagnostic::error(code, message).label(span, label)]
    }

    fn event(&mut self, event: Event, yspan: YSpan) -> Result<()> {
        let span = self.span(&yspan);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            // MMEngine substitutes references in comments too, harmlessly.
            Event::Comment(..) => {
                self.refs.iter_mut().filter(|(at, _)| (span.start..span.end).contains(*at)).for_each(|(_, used)| *used = true);
                Ok(())
            }
            Event::DocumentStart(..) => match self.root {
                Some(_) => Err(self.error(span, "detc::config::multiple_documents",
                    "a config file holds one YAML document".into(), "a second document starts here")),
                None => Ok(()),
            },
            Event::Scalar(text, style, anchor, tag) => {
                if self.expecting_key() {
                    return self.set_key(text.into_owned(), span);
                }
                let value = self.scalar(&text, style, tag.as_deref().map(|t| t.to_string()), span)?;
                self.complete(Node::new(value, span), anchor)
            }
            Event::SequenceStart(style, anchor, _) => {
                self.open(span)?;
                let flow = style == StructureStyle::Flow;
                self.frames.push(Frame::List { items: vec![], start: span.start, flow, anchor });
                Ok(())
            }
            Event::MappingStart(style, anchor, _) => {
                self.open(span)?;
                let flow = style == StructureStyle::Flow;
                self.frames.push(Frame::Map { map: Map::default(), key: None, merges: vec![], start: span.start, flow, anchor });
                Ok(())
            }
            Event::SequenceEnd => match self.frames.pop() {
                Some(Frame::List { items, start, flow, anchor }) => {
                    // A block collection spans its first to its last value (the
                    // parser's markers sit at the next token, or at the dash).
                    let (start, end) = match (flow, items.first(), items.last()) {
                        (false, Some(first), Some(last)) => (first.span.start, last.span.end),
                        _ => (start, span.end),
                    };
                    let node = Node::new(Value::List(items), Span::new(self.id, start, end.max(start)));
                    self.complete(node, anchor)
                }
                _ => unreachable!("the parser balances sequence events"),
            },
            Event::MappingEnd => match self.frames.pop() {
                Some(Frame::Map { map, merges, start, flow, anchor, .. }) => {
                    let first_key = map.iter().next().map(|(_, e)| e.key_span.start);
                    let last_end = map.iter().last().map(|(_, e)| e.node.span.end);
                    let (start, end) = match (flow, first_key, last_end) {
                        (false, Some(a), Some(b)) => (a, b),
                        _ => (start, span.end),
                    };
                    let map = apply_merge_keys(merges, map);
                    let node = Node::new(Value::Map(map), Span::new(self.id, start, end.max(start)));
                    self.complete(node, anchor)
                }
                _ => unreachable!("the parser balances mapping events"),
            },
            Event::Alias(id) => {
                if self.expecting_key() {
                    return Err(self.error(span, "detc::config::complex_key", "an alias cannot be a key".into(), "here"));
                }
                let node = self.anchors.get(&id).cloned().ok_or_else(|| {
                    self.error(span, "detc::config::unknown_alias", "alias to an unknown anchor".into(), "here")
                })?;
                self.nodes += count_nodes(&node);
                if self.nodes > MAX_NODES {
                    return Err(self.error(span, "detc::config::too_large",
                        format!("the file expands to more than {MAX_NODES} values through aliases"), "this alias"));
                }
                self.complete(node, 0)
            }
            _ => Ok(()),
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.frames.last(), Some(Frame::Map { key: None, .. }))
    }

    fn set_key(&mut self, key: String, span: Span) -> Result<()> {
        if let Some(Frame::Map { map, key: slot, .. }) = self.frames.last_mut() {
            if map.contains_key(&key) {
                let first = map.entry(&key).map(|e| e.key_span).unwrap_or(span);
                return Err(vec![Diagnostic::error("detc::config::duplicate_key", format!("duplicate key `{key}`"))
                    .label(span, "defined again here")
                    .label(first, "first defined here")
                    .help("remove one of them; PyYAML would silently keep the last")]);
            }
            *slot = Some((key, span));
        }
        Ok(())
    }

    /// A collection starts: it may not be a key, and nesting is bounded.
    fn open(&mut self, span: Span) -> Result<()> {
        if self.expecting_key() {
            return Err(self.error(span, "detc::config::complex_key",
                "keys must be plain scalars, not lists or mappings".into(), "here"));
        }
        if self.frames.len() >= MAX_DEPTH {
            return Err(self.error(span, "detc::config::too_deep",
                format!("values nest deeper than {MAX_DEPTH} levels"), "here"));
        }
        Ok(())
    }

    fn complete(&mut self, node: Node, anchor: usize) -> Result<()> {
        self.nodes += 1;
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.frames.last_mut() {
            None => self.root = Some(node),
            Some(Frame::List { items, .. }) => items.push(node),
            Some(Frame::Map { map, key, merges, .. }) => {
                let (k, key_span) = key.take().expect("a value follows its key");
                if k == "<<" {
                    merges.push(node);
                } else {
                    map.insert(k, key_span, node);
                }
            }
        }
        Ok(())
    }

    fn scalar(&mut self, text: &str, style: ScalarStyle, tag: Option<String>, span: Span) -> Result<Value> {
        if style == ScalarStyle::DoubleQuoted {
            if let Some(used) = self.refs.get_mut(&span.start) {
                *used = true;
                return Ok(Value::Reference(reference_path(text)));
            }
        }
        if let Some(tag) = tag {
            return self.tagged(text, &tag, span);
        }
        if style != ScalarStyle::Plain {
            return Ok(Value::Str(text.to_string()));
        }
        self.plain(text, span)
    }

    fn tagged(&self, text: &str, tag: &str, span: Span) -> Result<Value> {
        let suffix = tag.rsplit([':', '!']).next().unwrap_or(tag);
        match suffix {
            "str" => Ok(Value::Str(text.to_string())),
            "int" | "float" | "bool" | "null" => self.plain(text, span),
            _ => Err(self.error(span, "detc::config::unsupported_tag",
                format!("unsupported YAML tag `{tag}`"), "detc reads plain YAML data only")),
        }
    }

    /// YAML 1.2 core schema resolution of a plain scalar.
    fn plain(&self, text: &str, span: Span) -> Result<Value> {
        match resolve_plain(text) {
            Ok(v) => Ok(v),
            Err(msg) => Err(vec![Diagnostic::error("detc::config::unsupported_number", msg)
                .label(span, "here")
                .help("use a large finite number (e.g. 1.0e+9) instead of `.inf`, or quote it to make it a string")]),
        }
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
pub fn resolve_plain(text: &str) -> std::result::Result<Value, String> {
    Ok(match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ if is_infinite_or_nan(text) => {
            return Err(format!("`{text}` (infinity or NaN) is not supported in detc configs"));
        }
        _ => {
            if let Some(i) = parse_int(text) {
                return i.map(Value::Int).ok_or_else(|| format!("integer `{text}` is out of range"));
            }
            if is_core_float(text) {
                match text.parse::<f64>() {
                    Ok(f) if f.is_finite() => return Ok(Value::Float(f)),
                    _ => return Err(format!("float `{text}` is out of range")),
                }
            }
            Value::Str(text.to_string())
        }
    })
}

fn is_infinite_or_nan(text: &str) -> bool {
    let t = text.trim_start_matches(['-', '+']);
    matches!(t, ".inf" | ".Inf" | ".INF") || matches!(text, ".nan" | ".NaN" | ".NAN")
}

/// `Some(Some(i))` for a core-schema integer, `Some(None)` when it overflows.
fn parse_int(text: &str) -> Option<Option<i64>> {
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    if let Some(hex) = text.strip_prefix("0x") {
        return digits(hex, 16).then(|| i64::from_str_radix(hex, 16).ok());
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return digits(oct, 8).then(|| i64::from_str_radix(oct, 8).ok());
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    digits(unsigned, 10).then(|| text.parse::<i64>().ok())
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_core_float(text: &str) -> bool {
    let t = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => all_digits(int) && all_digits(frac) && !(int.is_empty() && frac.is_empty()),
        None => !mantissa.is_empty() && all_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

/// YAML 1.1 merge keys (`<<: *base`), as PyYAML applies them: merged entries
/// first, the mapping's own entries override them.
fn apply_merge_keys(merges: Vec<Node>, own: Map) -> Map {
    if merges.is_empty() {
        return own;
    }
    let mut out = Map::default();
    for merge in merges {
        let sources = match merge.value {
            Value::List(items) => items,
            other => vec![Node::new(other, merge.span)],
        };
        for source in sources {
            if let Value::Map(m) = source.value {
                for (k, e) in m {
                    if !out.contains_key(&k) {
                        out.insert(k, e.key_span, e.node);
                    }
                }
            }
        }
    }
    for (k, e) in own {
        out.insert(k, e.key_span, e.node);
    }
    out
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.value {
        Value::List(items) => items.iter().map(count_nodes).sum(),
        Value::Map(m) => m.iter().map(|(_, e)| count_nodes(&e.node)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Node {
        parse(SourceId(0), text, None).unwrap_or_else(|d| panic!("{d:?}"))
    }

    #[test]
    fn scalars_follow_yaml_1_2_core() {
        let n = load("a: 1\nb: 2.5e-05\nc: 1e-4\nd: ~\ne: True\nf: '3'\ng: None\nh: 0x10\ni:\n");
        let m = n.as_map().unwrap();
        assert_eq!(m.get("a").unwrap().value, Value::Int(1));
        assert_eq!(m.get("b").unwrap().value, Value::Float(2.5e-5));
        assert_eq!(m.get("c").unwrap().value, Value::Float(1e-4));
        assert_eq!(m.get("d").unwrap().value, Value::Null);
        assert_eq!(m.get("e").unwrap().value, Value::Bool(true));
        assert_eq!(m.get("f").unwrap().value, Value::Str("3".into()));
        assert_eq!(m.get("g").unwrap().value, Value::Str("None".into()));
        assert_eq!(m.get("h").unwrap().value, Value::Int(16));
        assert_eq!(m.get("i").unwrap().value, Value::Null);
    }

    #[test]
    fn spans_are_exact_bytes() {
        let text = "ключ: é\nlr: fast # comment\n";
        let n = load(text);
        let lr = n.as_map().unwrap().get("lr").unwrap();
        assert_eq!(&text[lr.span.start..lr.span.end], "fast");
    }

    #[test]
    fn references_become_reference_nodes() {
        let text = "a: {{_base_.x.y}}\nb: [{{ _base_.z }}, 2]\n";
        let n = load(text);
        let a = n.as_map().unwrap().get("a").unwrap();
        assert_eq!(a.value, Value::Reference("x.y".into()));
        assert_eq!(&text[a.span.start..a.span.end], "{{_base_.x.y}}");
    }

    #[test]
    fn embedded_reference_is_an_error() {
        assert!(parse(SourceId(0), "a: foo{{_base_.x}}\n", None).is_err());
    }

    #[test]
    fn rejects_inf_and_duplicates_and_alias_bombs() {
        assert!(parse(SourceId(0), "a: .inf\n", None).is_err());
        assert!(parse(SourceId(0), "a: 1\na: 2\n", None).is_err());
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        assert!(parse(SourceId(0), &bomb, None).is_err());
    }

    #[test]
    fn merge_keys_apply() {
        let n = load("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n");
        let c = n.as_map().unwrap().get("c").unwrap().to_json();
        assert_eq!(c, serde_json::json!({"x": 1, "y": 3}));
    }

    /// The fast path builds exactly the tree (values and spans) the general
    /// path builds, on every YAML file in the repository and on edge cases;
    /// and it does take every bundled config.
    #[test]
    fn fast_path_agrees_with_the_general_path() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut texts: Vec<(String, String)> = vec![];
        for dir in ["configs", "tests/fixtures"] {
            collect_yaml(&root.join(dir), &mut texts);
        }
        let cases = [
            "a:\n  b: 1   # c\n  'q': \"x\"\nl:\n- 1\n- k: v\n  j: [1, {z: 2}]\nn:\nm: {}\ne: []\nlast: x\n",
            "a: [ 1 , 2 ,]\nb: {x: 1, 'y': [a, b], z: {}}\nc: it's\nd: 'it''s'\ne: -1\nf: -.5\ng: http://x.y/z\n",
            "k:   # comment {{_base_.x}}\n  - a: 1\n    b:\n      - x\n  - 2\nr: {{_base_.y}}\ns: [{{_base_.z}}]\n",
            "  indented: 1\n  root: [x]\n",
            "a: 1\n  b: 2\n", "a: b: c\n", "- 1\n", "a: [1,\n 2]\n", "a: &x 1\nb: *x\n", "a: |\n  text\n",
            "a: 1\na: 2\n", "a: 'unterminated\n", "a: \"esc\\n\"\n", "a:\n-\n", "a: 1 #c\nb: 2# not a comment\n",
        ];
        texts.extend(cases.iter().map(|c| ("<case>".to_string(), c.to_string())));
        let mut fast_taken = 0;
        for (name, text) in &texts {
            let Marked { text: marked, mut refs, .. } = mark(SourceId(0), text, None).unwrap();
            let Some(parsed) = crate::config::yaml_fast::parse(SourceId(0), &marked, &mut refs) else { continue };
            fast_taken += 1;
            let general = parse_general(SourceId(0), &marked, refs.keys().map(|k| (*k, false)).collect());
            assert_eq!(Ok(parsed.root), general, "{name}:\n{text}");
        }
        assert!(fast_taken > 50, "the fast path took only {fast_taken} files");
        for (name, text) in texts.iter().filter(|(n, _)| n.contains("/configs/")) {
            let Marked { text: marked, mut refs, .. } = mark(SourceId(0), text, None).unwrap();
            assert!(crate::config::yaml_fast::parse(SourceId(0), &marked, &mut refs).is_some(), "{name} takes the slow path");
        }
    }

    /// Mutated config files (bytes deleted, inserted, replaced by YAML
    /// punctuation): the fast path never panics, and whatever it accepts the
    /// general path reads identically; the rest it leaves to the general path.
    #[test]
    fn fast_path_agrees_on_mutated_files() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut texts = vec![];
        collect_yaml(&root.join("configs"), &mut texts);
        let alphabet = b": -#[]{},'\"\n\tx1._*&!|>";
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut taken, mut total) = (0, 0);
        for (name, text) in &texts {
            for _ in 0..300 {
                let mut bytes = text.clone().into_bytes();
                for _ in 0..1 + next(3) {
                    let at = next(bytes.len());
                    let c = alphabet[next(alphabet.len())];
                    match next(3) {
                        0 => drop(bytes.remove(at)),
                        1 => bytes.insert(at, c),
                        _ => bytes[at] = c,
                    }
                }
                let Ok(mutated) = String::from_utf8(bytes) else { continue };
                total += 1;
                let Ok(Marked { text: marked, mut refs, .. }) = mark(SourceId(0), &mutated, None) else { continue };
                let Some(parsed) = crate::config::yaml_fast::parse(SourceId(0), &marked, &mut refs) else { continue };
                taken += 1;
                let general = parse_general(SourceId(0), &marked, refs.keys().map(|k| (*k, false)).collect());
                assert_eq!(Ok(parsed.root), general, "{name} mutated:\n{mutated}");
            }
        }
        assert!(taken > total / 4, "the fast path took only {taken} of {total} mutated files");
    }

    fn collect_yaml(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                collect_yaml(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
}
