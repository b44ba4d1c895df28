//! `--cfg-options K=V [K=V ...]`, parsed with the grammar of MMEngine's
//! `DictAction` (`a.b=1`, `a=[1,2]`, `a=(1,2)`, `a=[(1,2),(3,4)]`, `a=1,2`,
//! `True`/`false`, `None`, ints, floats, quoted strings), then merged onto the
//! resolved config as `Config.merge_from_dict` does. The option text is a
//! source of its own (`<cfg-options>`) so errors put a caret under the bad part.
//!
//! As in DictAction, quotes at either end of a value are stripped and spaces
//! inside a value are removed; booleans are case-insensitive, `None` is not.

use super::diagnostic::{Diagnostic, Result};
use super::merge::merge;
use super::source::{SourceId, Sources, Span, CFG_OPTIONS};
use super::value::{Map, Node, Value};

/// One `KEY=VALUE` after parsing.
#[derive(Debug)]
pub struct Override {
    /// The dotted key, each part with its span.
    pub key: Vec<(String, Span)>,
    pub value: Node,
}

/// Adds the option text as a source and parses every option.
pub fn parse_all(options: &[String], sources: &mut Sources) -> Result<Vec<Override>> {
    let id = sources.add(CFG_OPTIONS.to_string(), None, options.join(" "));
    let mut offset = 0;
    let mut parsed = vec![];
    let mut errors = vec![];
    for option in options {
        match parse_one(id, option, offset) {
            Ok(o) => parsed.push(o),
            Err(e) => errors.extend(e),
        }
        offset += option.len() + 1;
    }
    if errors.is_empty() { Ok(parsed) } else { Err(errors) }
}

fn parse_one(id: SourceId, option: &str, offset: usize) -> Result<Override> {
    let Some(eq) = option.find('=') else {
        return Err(vec![Diagnostic::error("detc::config::bad_override", format!("`{option}` is not `KEY=VALUE`"))
            .label(Span::new(id, offset, offset + option.len()), "no `=` in this option")
            .help("write options as `--cfg-options model.backbone.depth=101 train_dataloader.batch_size=4`")]);
    };
    let mut key = vec![];
    let mut start = 0;
    for part in option[..eq].split('.') {
        let span = Span::new(id, offset + start, offset + start + part.len());
        if part.is_empty() {
            return Err(vec![Diagnostic::error("detc::config::bad_override", "empty key part in override")
                .label(if span.start == span.end { Span::new(id, span.start, span.start + 1) } else { span }, "expected a key name here")]);
        }
        key.push((part.to_string(), span));
        start += part.len() + 1;
    }
    let chars: Vec<(char, usize)> =
        option[eq + 1..].char_indices().map(|(i, c)| (c, offset + eq + 1 + i)).collect();
    let value = parse_iterable(id, &chars, offset + option.len())?;
    Ok(Override { key, value })
}

/// DictAction's `_parse_iterable`, over characters that remember their offsets.
fn parse_iterable(id: SourceId, val: &[(char, usize)], end_offset: usize) -> Result<Node> {
    let val: Vec<(char, usize)> = strip_quotes(val).iter().copied().filter(|(c, _)| *c != ' ').collect();
    let span = span_of(id, &val, end_offset);
    let (inner, is_list) = match (val.first().map(|c| c.0), val.last().map(|c| c.0)) {
        (Some('('), Some(')')) if val.len() >= 2 => (&val[1..val.len() - 1], true),
        (Some('['), Some(']')) if val.len() >= 2 => (&val[1..val.len() - 1], true),
        _ if !val.iter().any(|c| c.0 == ',') => return Ok(Node::new(parse_scalar(&val), span)),
        _ => (&val[..], false),
    };
    check_balanced(id, inner, span)?;
    // Unbracketed, with every comma inside brackets (`dict(a=1,b=2)`): the
    // value is one item, itself. DictAction recurses on it until Python's
    // recursion limit; say what to write instead.
    if !is_list && next_comma(inner) == inner.len() {
        let text: String = inner.iter().map(|c| c.0).collect();
        let help = if text.starts_with("dict(") {
            "DictAction has no `dict(...)`: set the keys one by one, e.g. `optim_wrapper.optimizer.type=SGD optim_wrapper.optimizer.lr=0.01`"
        } else {
            "a value with commas is a list: bracket it, e.g. `a=[1,2]`, or quote a string without commas"
        };
        return Err(vec![Diagnostic::error("detc::config::bad_override", "this override value cannot be parsed")
            .label(span, "not a number, a string, or a list")
            .help(help)]);
    }
    let mut items = vec![];
    let mut rest = inner;
    while !rest.is_empty() {
        let comma = next_comma(rest);
        let end = rest.get(comma).map_or(end_offset, |c| c.1);
        items.push(parse_iterable(id, &rest[..comma], end)?);
        rest = if comma < rest.len() { &rest[comma + 1..] } else { &[] };
    }
    Ok(Node::new(Value::List(items), span))
}

fn strip_quotes(val: &[(char, usize)]) -> &[(char, usize)] {
    let is_quote = |c: &(char, usize)| c.0 == '\'' || c.0 == '"';
    let start = val.iter().position(|c| !is_quote(c)).unwrap_or(val.len());
    let end = val.iter().rposition(|c| !is_quote(c)).map_or(start, |i| i + 1);
    &val[start..end.max(start)]
}

fn span_of(id: SourceId, val: &[(char, usize)], end_offset: usize) -> Span {
    match (val.first(), val.last()) {
        (Some(first), Some(last)) => Span::new(id, first.1, last.1 + last.0.len_utf8()),
        _ => Span::new(id, end_offset, end_offset),
    }
}

/// The first comma outside brackets, or the length.
fn next_comma(val: &[(char, usize)]) -> usize {
    let mut depth = 0i32;
    for (i, (c, _)) in val.iter().enumerate() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => return i,
            _ => {}
        }
    }
    val.len()
}

fn check_balanced(id: SourceId, val: &[(char, usize)], span: Span) -> Result<()> {
    let count = |ch: char| val.iter().filter(|c| c.0 == ch).count();
    if count('(') == count(')') && count('[') == count(']') {
        return Ok(());
    }
    // The first closing bracket with nothing open, else the last bracket left open.
    let mut open = vec![];
    let mut unmatched = None;
    for &(c, at) in val {
        if matches!(c, '(' | '[') {
            open.push((c, at));
        } else if matches!(c, ')' | ']') && open.pop().is_none() {
            unmatched = Some((c, at));
            break;
        }
    }
    let unmatched = unmatched.or(open.last().copied());
    let at = unmatched.map_or(span, |(c, at)| Span::new(id, at, at + c.len_utf8()));
    Err(vec![Diagnostic::error("detc::config::bad_override", "unbalanced brackets in override value")
        .label(at, "this bracket is not matched")
        .help("quote the whole option for the shell, e.g. `'a=[(1,2),(3,4)]'`")])
}

/// DictAction's `_parse_int_float_bool`: Python `int()`, then `float()`, then
/// `true`/`false` (any case), then `None`, else the string itself.
fn parse_scalar(val: &[(char, usize)]) -> Value {
    let text: String = val.iter().map(|c| c.0).collect();
    if let Some(i) = python_int(&text) {
        return Value::Int(i);
    }
    if let Some(f) = python_float(&text) {
        return Value::Float(f);
    }
    match text.to_ascii_lowercase().as_str() {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if text == "None" {
        return Value::Null;
    }
    Value::Str(text)
}

/// Python's `int(s)` for base 10: sign, digits, single underscores between digits.
fn python_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !valid_underscores(digits) || !digits.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    text.replace('_', "").parse().ok()
}

/// Python's `float(s)`, finite values only (infinity and NaN are rejected as
/// strings would be surprising; see `parse_all`'s caller).
fn python_float(text: &str) -> Option<f64> {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return Some(f64::NAN);
    }
    if !body.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+' | '_')) {
        return None;
    }
    let parts_ok = body.split(['.', 'e', 'E', '-', '+']).all(|p| p.is_empty() || valid_underscores(p));
    if !parts_ok {
        return None;
    }
    text.replace('_', "").parse::<f64>().ok()
}

fn valid_underscores(digits: &str) -> bool {
    !digits.is_empty() && !digits.starts_with('_') && !digits.ends_with('_') && !digits.contains("__")
}

/// Applies parsed overrides to `config` as `merge_from_dict` does.
pub fn apply(config: Node, overrides: Vec<Override>) -> Result<Node> {
    if overrides.is_empty() {
        return Ok(config);
    }
    let mut tree = Map::default();
    let mut errors = vec![];
    for o in overrides {
        if let Value::Float(f) = o.value.value {
            if !f.is_finite() {
                errors.push(Diagnostic::error("detc::config::unsupported_number", "infinity and NaN are not supported in detc configs")
                    .label(o.value.span, "here")
                    .help("use a large finite number instead"));
                continue;
            }
        }
        if let Err(e) = insert_dotted(&mut tree, &o.key, o.value) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    merge(tree, config)
}

fn insert_dotted(tree: &mut Map, key: &[(String, Span)], value: Node) -> std::result::Result<(), Diagnostic> {
    let ((last, last_span), parents) = key.split_last().expect("keys have at least one part");
    let mut map = tree;
    for (part, span) in parents {
        if !map.contains_key(part) {
            map.insert(part.clone(), *span, Node::new(Value::Map(Map::default()), *span));
        }
        map = match &mut map.get_mut(part).expect("just inserted").value {
            Value::Map(m) => m,
            _ => {
                return Err(Diagnostic::error("detc::config::bad_override",
                    format!("`{part}` is given a value by another option and cannot also hold keys"))
                    .label(*span, "here"));
            }
        };
    }
    map.insert(last.clone(), *last_span, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(option: &str) -> serde_json::Value {
        let mut sources = Sources::default();
        let o = parse_all(&[option.to_string()], &mut sources).unwrap();
        o[0].value.to_json()
    }

    #[test]
    fn dict_action_grammar() {
        use serde_json::json;
        assert_eq!(parse("a=1"), json!(1));
        assert_eq!(parse("a=1.5"), json!(1.5));
        assert_eq!(parse("a=1e-4"), json!(1e-4));
        assert_eq!(parse("a=True"), json!(true));
        assert_eq!(parse("a=false"), json!(false));
        assert_eq!(parse("a=None"), json!(null));
        assert_eq!(parse("a=none"), json!("none"));
        assert_eq!(parse("a=[1,2]"), json!([1, 2]));
        assert_eq!(parse("a=(1,2)"), json!([1, 2]));
        assert_eq!(parse("a=[(1,2),(3,4)]"), json!([[1, 2], [3, 4]]));
        assert_eq!(parse("a=1,2,3"), json!([1, 2, 3]));
        assert_eq!(parse("a=[]"), json!([]));
        assert_eq!(parse("a='abc'"), json!("abc"));
        assert_eq!(parse("a=['x', 'y']"), json!(["x", "y"]));
        assert_eq!(parse("a=hello world"), json!("helloworld"));
        assert_eq!(parse("a=1_000"), json!(1000));
        assert_eq!(parse("a="), json!(""));
    }

    /// `dict(...)` and `f(a,b)` are one unbracketed item equal to the whole
    /// value, on which DictAction recurses without end: a diagnostic, no overflow.
    #[test]
    fn call_syntax_is_an_error_not_a_recursion() {
        for option in ["a=dict(type=SGD,lr=0.1)", "a=f(1,2)", "a=[dict(b=1,c=2)]"] {
            let mut sources = Sources::default();
            let errors = parse_all(&[option.to_string()], &mut sources).unwrap_err();
            assert_eq!(errors.len(), 1, "{option}");
        }
        assert_eq!(parse("a=dict(b=1)"), serde_json::json!("dict(b=1)"));
    }

    #[test]
    fn unbalanced_brackets_point_at_the_bracket() {
        let mut sources = Sources::default();
        let err = parse_all(&["x=1".into(), "a=[(1,2),(3,4]".into()], &mut sources).unwrap_err();
        let span = err[0].labels[0].span;
        assert_eq!(&sources.get(span.source).text[span.start..span.end], "(");
        assert_eq!(span.start, 13);
    }
}
