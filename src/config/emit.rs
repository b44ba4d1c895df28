//! Printing a resolved tree: block YAML that PyYAML and YAML 1.2 readers both
//! read back to the same values, or JSON with types kept. Deterministic, so
//! expanding an expanded file gives the same file. `--show-origin` appends
//! `# file:line` of the value's setter to each line.

use super::source::{Sources, CFG_OPTIONS};
use super::value::{Node, Value};

/// Block YAML. With `sources`, each scalar line carries its origin.
pub fn to_yaml(root: &Node, origins: Option<&Sources>) -> String {
    let mut out = String::new();
    match &root.value {
        Value::Map(m) if m.is_empty() => out.push_str("{}\n"),
        Value::Map(_) => write_map_body(&mut out, root, 0, origins),
        _ => {
            out.push_str(&inline(root));
            out.push('\n');
        }
    }
    out
}

/// JSON, pretty-printed, key order kept.
pub fn to_json(root: &Node) -> String {
    serde_json::to_string_pretty(&root.to_json()).expect("config values serialise") + "\n"
}

fn origin(node: &Node, origins: Option<&Sources>) -> String {
    let Some(sources) = origins else { return String::new() };
    let source = sources.get(node.span.source);
    if source.name == CFG_OPTIONS {
        return "  # --cfg-options".into();
    }
    let (line, _) = sources.line_col(node.span.source, node.span.start);
    format!("  # {}:{line}", source.name)
}

/// Writes a mapping's `key: value` lines at `indent`; with `after_dash` the
/// first key continues a `- ` line instead of starting its own.
fn write_map_body(out: &mut String, node: &Node, indent: usize, origins: Option<&Sources>) {
    write_map_lines(out, node, indent, origins, false);
}

fn write_map_lines(out: &mut String, node: &Node, indent: usize, origins: Option<&Sources>, after_dash: bool) {
    let Value::Map(map) = &node.value else { unreachable!() };
    for (i, (key, entry)) in map.iter().enumerate() {
        if !(after_dash && i == 0) {
            push_indent(out, indent);
        }
        push_scalar_string(out, key);
        out.push(':');
        write_value(out, &entry.node, indent, origins);
    }
}

fn push_indent(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Writes what follows `key:` (or `-`): inline for scalars and flat lists, a block otherwise.
fn write_value(out: &mut String, node: &Node, indent: usize, origins: Option<&Sources>) {
    match &node.value {
        Value::Map(m) if !m.is_empty() => {
            out.push('\n');
            write_map_body(out, node, indent + 2, origins);
        }
        Value::List(items) if !items.is_empty() && !is_flat(items) => {
            out.push('\n');
            for item in items {
                push_indent(out, indent + 2);
                out.push('-');
                match &item.value {
                    Value::Map(m) if !m.is_empty() => {
                        // First key on the dash line, the rest aligned under it.
                        out.push(' ');
                        write_map_lines(out, item, indent + 4, origins, true);
                    }
                    _ => write_value(out, item, indent + 2, origins),
                }
            }
        }
        _ => {
            out.push(' ');
            push_inline(out, node);
            if origins.is_some() {
                out.push_str(&origin(node, origins));
            }
            out.push('\n');
        }
    }
}

fn is_flat(items: &[Node]) -> bool {
    items.iter().all(|n| match &n.value {
        Value::List(inner) => is_flat(inner),
        Value::Map(m) => m.is_empty(),
        _ => true,
    })
}

/// A value in flow style.
fn inline(node: &Node) -> String {
    let mut out = String::new();
    push_inline(&mut out, node);
    out
}

fn push_inline(out: &mut String, node: &Node) {
    match &node.value {
        Value::Null | Value::Reference(_) => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&float_string(*f)),
        Value::Str(s) => push_scalar_string(out, s),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_inline(out, item);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, e)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_scalar_string(out, k);
                out.push_str(": ");
                push_inline(out, &e.node);
            }
            out.push('}');
        }
    }
}

/// A float both PyYAML (which needs a dot and a signed exponent) and YAML 1.2 read as a float.
pub fn float_string(f: f64) -> String {
    let s = format!("{f:?}");
    let (mantissa, exponent) = match s.split_once('e') {
        Some((m, e)) => (m.to_string(), Some(e.to_string())),
        None => (s, None),
    };
    let mantissa = if mantissa.contains('.') { mantissa } else { format!("{mantissa}.0") };
    match exponent {
        Some(e) if e.starts_with('-') => format!("{mantissa}e{e}"),
        Some(e) => format!("{mantissa}e+{e}"),
        None => mantissa,
    }
}

/// A string, plain when every reader takes it back as that same string, else double-quoted.
fn push_scalar_string(out: &mut String, s: &str) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else {
        out.push_str(&serde_json::to_string(s).expect("strings serialise"));
    }
}

fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    // Starting with a letter, `_` or `/`, a plain scalar is a number for no
    // reader; it is null or a boolean only as one of these words (YAML 1.2
    // core, plus PyYAML's YAML 1.1 `yes`/`on`/... and Python's `None`).
    const NOT_STRINGS: &[&str] = &["null", "true", "false", "yes", "no", "on", "off", "y", "n", "none"];
    (first.is_alphabetic() || first == '_' || first == '/')
        && !NOT_STRINGS.iter().any(|w| s.eq_ignore_ascii_case(w))
        && s.chars().all(|c| c.is_alphanumeric() || "_-./+()@:".contains(c))
        && !s.contains(": ")
        && !s.ends_with(':')
}

/// A resolved config (as the engine holds it) as an MMEngine Python config,
/// what `Config.dump` writes to a `.py` file: a `name = value` line per
/// top-level key, values as Python literals, `dict(k=v)` where every key is
/// a Python name (as MMEngine's `pretty_text`), so `Config.fromfile` reads
/// back the same dict. A top-level key that is no Python name cannot be
/// assigned; it becomes a comment saying so.
pub fn to_python(config: &serde_json::Value) -> String {
    let mut out = String::new();
    let serde_json::Value::Object(map) = config else {
        return format!("# not a mapping: {config}\n");
    };
    for (key, value) in map {
        if is_python_name(key) {
            out.push_str(key);
            out.push_str(" = ");
            write_python(&mut out, value, 0);
        } else {
            out.push_str(&format!("# {key:?} is not a Python name: see the JSON copy"));
        }
        out.push('\n');
    }
    out
}

/// An ASCII identifier that is not a keyword: usable as `dict(key=...)`.
fn is_python_name(key: &str) -> bool {
    const KEYWORDS: [&str; 35] = [
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class",
        "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global",
        "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return",
        "try", "while", "with", "yield",
    ];
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&key)
}

fn write_python(out: &mut String, value: &serde_json::Value, indent: usize) {
    use serde_json::Value as J;
    let pad = |out: &mut String, n: usize| out.extend(std::iter::repeat_n(' ', n));
    match value {
        J::Null => out.push_str("None"),
        J::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        // JSON numbers and double-quoted strings are Python literals as written.
        J::Number(_) | J::String(_) => out.push_str(&value.to_string()),
        J::Array(items) if items.iter().all(|v| !v.is_array() && !v.is_object()) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python(out, item, indent);
            }
            out.push(']');
        }
        J::Array(items) => {
            out.push_str("[\n");
            for item in items {
                pad(out, indent + 4);
                write_python(out, item, indent + 4);
                out.push_str(",\n");
            }
            pad(out, indent);
            out.push(']');
        }
        J::Object(map) if map.is_empty() => out.push_str("dict()"),
        J::Object(map) => {
            let names = map.keys().all(|k| is_python_name(k));
            out.push_str(if names { "dict(\n" } else { "{\n" });
            for (key, item) in map {
                pad(out, indent + 4);
                if names {
                    out.push_str(key);
                    out.push('=');
                } else {
                    out.push_str(&J::String(key.clone()).to_string());
                    out.push_str(": ");
                }
                write_python(out, item, indent + 4);
                out.push_str(",\n");
            }
            pad(out, indent);
            out.push(if names { ')' } else { '}' });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::SourceId;
    use crate::config::yaml::parse;

    #[test]
    fn round_trips() {
        let text = "a: 1\nb: [1, 2.5e-05, 'x y', null]\nc:\n  - type: A\n    k: {z: 1}\n  - [1, [2]]\nd: {}\ne: 'yes'\nf: '1e3'\ng: true\nh: 1.0e+20\n";
        let n = parse(SourceId(0), text, None).unwrap();
        let once = to_yaml(&n, None);
        let again = to_yaml(&parse(SourceId(0), &once, None).unwrap(), None);
        assert_eq!(once, again);
        assert_eq!(parse(SourceId(0), &once, None).unwrap().to_json(), n.to_json());
    }

    #[test]
    fn python_text_assigns_each_top_level_key() {
        let config = serde_json::json!({
            "model": {"type": "X", "x": [1, 2.5e-5, "it's \"q\"", null, true]},
            "pairs": [{"k": 1}, [2]],
            "classes": {"a-b": 1, "if": false},
            "empty": {},
            "not-a-name": 1,
        });
        let expected = "\
model = dict(
    type=\"X\",
    x=[1, 0.000025, \"it's \\\"q\\\"\", None, True],
)
pairs = [
    dict(
        k=1,
    ),
    [2],
]
classes = {
    \"a-b\": 1,
    \"if\": False,
}
empty = dict()
# \"not-a-name\" is not a Python name: see the JSON copy
";
        assert_eq!(to_python(&config), expected);
    }

    #[test]
    fn floats_have_a_dot() {
        assert_eq!(float_string(1e-5), "1.0e-5");
        assert_eq!(float_string(2.5e-5), "2.5e-5");
        assert_eq!(float_string(0.02), "0.02");
        assert_eq!(float_string(1e20), "1.0e+20");
        assert_eq!(float_string(3.0), "3.0");
    }
}
