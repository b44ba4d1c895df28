//! A fast path for the YAML that configs are made of: block mappings and
//! sequences, one-line flow collections, plain and quoted one-line scalars,
//! comments. It builds the same tree, with the same spans, as the general
//! path in `yaml.rs` — and gives up (returns `None`) on anything else
//! (anchors, tags, block scalars, multi-line scalars or flow collections,
//! tabs, documents markers, duplicate keys, any syntax error), so the general
//! path handles every such file and reports its errors. Why: the general
//! event parser costs ~30 ns a byte, most of a resolve (docs/benchmarks.md);
//! this path is several times faster. `yaml::tests` checks both paths agree
//! on every YAML file in the repository.

use std::collections::HashMap;

use super::source::{SourceId, Span};
use super::value::{Map, Node, Value};
use super::yaml::{reference_path, resolve_plain, MAX_DEPTH};

/// The tree, and the byte ranges of comments (references there are harmless).
pub struct Parsed {
    pub root: Node,
    pub comments: Vec<(usize, usize)>,
}

/// Parses `text` (references already marked) or gives up.
pub fn parse(id: SourceId, text: &str, refs: &mut HashMap<usize, bool>) -> Option<Parsed> {
    let mut p = Fast { id, text, lines: vec![], next: 0, comments: vec![], refs, depth: 0 };
    p.split_lines()?;
    let first = p.lines.first()?.clone();
    if first.starts_item(text) {
        return None; // a top-level list: the general path reports it
    }
    let root = p.map(first.indent, first.start + first.indent)?;
    if p.next != p.lines.len() {
        return None;
    }
    Some(Parsed { root, comments: p.comments })
}

/// A line with content: where it starts and ends (without the newline) and its indentation.
#[derive(Clone)]
struct Line {
    start: usize,
    end: usize,
    indent: usize,
}

impl Line {
    fn content<'t>(&self, text: &'t str) -> &'t str {
        &text[self.start + self.indent..self.end]
    }
    fn starts_item(&self, text: &str) -> bool {
        let c = self.content(text);
        c == "-" || c.starts_with("- ")
    }
}

struct Fast<'t, 'r> {
    id: SourceId,
    text: &'t str,
    lines: Vec<Line>,
    /// Index of the next unconsumed line.
    next: usize,
    comments: Vec<(usize, usize)>,
    refs: &'r mut HashMap<usize, bool>,
    depth: usize,
}

impl Fast<'_, '_> {
    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.id, start, end)
    }

    /// Splits the text into content lines (SIMD newline search: a `str`
    /// line iterator or a byte loop cost a fifth of the parse), giving up on
    /// tabs and carriage returns.
    fn split_lines(&mut self) -> Option<()> {
        let bytes = self.text.as_bytes();
        if memchr::memchr2(b'\t', b'\r', bytes).is_some() {
            return None;
        }
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
        for end in ends {
            let line = &bytes[start..end];
            let indent = line.iter().position(|b| *b != b' ').unwrap_or(line.len());
            match line.get(indent) {
                None => {}
                Some(b'#') => self.comments.push((start + indent, end)),
                Some(_) => {
                    let content = &line[indent..];
                    if content.starts_with(b"---") || content.starts_with(b"...") || content.starts_with(b"%") {
                        return None;
                    }
                    self.lines.push(Line { start, end, indent });
                }
            }
            start = end + 1;
        }
        Some(())
    }

    /// A block mapping whose keys sit at column `col`; the first key starts at `first`.
    fn map(&mut self, col: usize, first: usize) -> Option<Node> {
        self.enter()?;
        let mut map = Map::default();
        let mut pos = first;
        let mut last_end;
        loop {
            let line = self.lines[self.next].clone();
            self.next += 1;
            let (key, key_span, after_colon) = self.key(pos, line.end)?;
            if key == "<<" || map.contains_key(&key) {
                return None;
            }
            let value = self.value_after_key(after_colon, &line, col)?;
            last_end = value.span.end;
            map.insert(key, key_span, value);
            match self.lines.get(self.next) {
                Some(l) if l.indent == col && !l.starts_item(self.text) => pos = l.start + col,
                Some(l) if l.indent > col => return None,
                _ => break,
            }
        }
        self.depth -= 1;
        let start = map.iter().next().map(|(_, e)| e.key_span.start)?;
        Some(Node::new(Value::Map(map), self.span(start, last_end)))
    }

    /// A block sequence whose `-` sit at column `col`, from the current line.
    fn seq(&mut self, col: usize) -> Option<Node> {
        self.enter()?;
        let mut items = vec![];
        while let Some(line) = self.lines.get(self.next).cloned() {
            if line.indent != col || !line.starts_item(self.text) {
                break;
            }
            let dash = line.start + col;
            let pos = skip_spaces(self.text, dash + 1, line.end);
            let item = if pos >= line.end || self.comment_at(pos, line.end) {
                self.next += 1;
                self.block_below(col, dash + 1, false)?
            } else if self.looks_like_key(pos, line.end) {
                self.map(pos - line.start, pos)?
            } else {
                self.next += 1;
                self.inline_to_end(pos, line.end)?
            };
            items.push(item);
        }
        self.depth -= 1;
        let start = items.first()?.span.start;
        let end = items.last()?.span.end;
        Some(Node::new(Value::List(items), self.span(start, end)))
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth < MAX_DEPTH).then_some(())
    }

    /// What follows `key:` on `line` (at `pos`): an inline value, or a block below.
    fn value_after_key(&mut self, pos: usize, line: &Line, col: usize) -> Option<Node> {
        let pos = skip_spaces(self.text, pos, line.end);
        if pos >= line.end || self.comment_at(pos, line.end) {
            return self.block_below(col, pos.min(line.end), true);
        }
        self.inline_to_end(pos, line.end)
    }

    /// The block under a `key:` or `-` with nothing after it; null when there is none.
    /// `empty_at` is where the general parser puts the empty scalar.
    fn block_below(&mut self, col: usize, empty_at: usize, after_key: bool) -> Option<Node> {
        let colon = if after_key { self.text[..empty_at].rfind(':')? } else { empty_at };
        match self.lines.get(self.next).cloned() {
            Some(l) if l.indent > col => {
                if l.starts_item(self.text) { self.seq(l.indent) } else { self.map(l.indent, l.start + l.indent) }
            }
            // `key:` followed by `- item` at the same indentation.
            Some(l) if after_key && l.indent == col && l.starts_item(self.text) => self.seq(col),
            _ if after_key => Some(Node::new(Value::Null, self.span(colon, colon))),
            _ => None, // an empty `-` item: left to the general path
        }
    }

    /// A one-line value from `pos`, then only spaces or a comment up to `end`.
    fn inline_to_end(&mut self, pos: usize, end: usize) -> Option<Node> {
        let (node, after) = match self.text.as_bytes()[pos] {
            b'[' | b'{' => self.flow(pos, end)?,
            b'"' | b'\'' => self.quoted(pos, end)?,
            _ => self.plain_block(pos, end)?,
        };
        let rest = skip_spaces(self.text, after, end);
        if rest < end && !(rest > after && self.comment_at(rest, end)) {
            return None;
        }
        Some(node)
    }

    /// Records a comment if one starts at `pos`.
    fn comment_at(&mut self, pos: usize, end: usize) -> bool {
        let is = self.text.as_bytes()[pos] == b'#';
        if is {
            self.comments.push((pos, end));
        }
        is
    }

    /// A mapping key at `pos`: its text, span, and the offset after its colon.
    fn key(&mut self, pos: usize, end: usize) -> Option<(String, Span, usize)> {
        let bytes = self.text.as_bytes();
        let (text, span_end) = match bytes[pos] {
            b'"' | b'\'' => {
                let (value, close) = quoted_text(self.text, pos, end)?;
                (value, close)
            }
            _ => {
                let stop = find_colon(self.text, pos, end)?;
                let raw = self.text[pos..stop].trim_end_matches(' ');
                if raw.is_empty() || !plain_start_ok(raw) || raw.bytes().any(|b| b == b'#') {
                    return None;
                }
                (raw.to_string(), pos + raw.len())
            }
        };
        if bytes.get(span_end) != Some(&b':') {
            return None;
        }
        let after = span_end + 1;
        if after < end && bytes[after] != b' ' {
            return None;
        }
        Some((text, self.span(pos, span_end), after))
    }

    fn looks_like_key(&self, pos: usize, end: usize) -> bool {
        match self.text.as_bytes()[pos] {
            b'[' | b'{' | b'#' => false,
            b'"' | b'\'' => quoted_text(self.text, pos, end)
                .is_some_and(|(_, close)| self.text.as_bytes().get(close) == Some(&b':')),
            _ => find_colon(self.text, pos, end).is_some(),
        }
    }

    /// A plain scalar in block context: up to ` #` or the end of the line.
    fn plain_block(&mut self, pos: usize, end: usize) -> Option<(Node, usize)> {
        let bytes = self.text.as_bytes();
        let mut stop = end;
        for i in pos..end {
            match bytes[i] {
                b'#' if i > pos && bytes[i - 1] == b' ' => {
                    stop = i;
                    break;
                }
                // `a: b: c` is not a plain scalar; the general path reports it.
                b':' if i + 1 == end || bytes[i + 1] == b' ' => return None,
                _ => {}
            }
        }
        let raw = self.text[pos..stop].trim_end_matches(' ');
        if !plain_start_ok(raw) {
            return None;
        }
        let value = resolve_plain(raw).ok()?;
        Some((Node::new(value, self.span(pos, pos + raw.len())), pos + raw.len()))
    }

    /// A quoted scalar (a marked `{{_base_...}}` reference becomes a reference).
    fn quoted(&mut self, pos: usize, end: usize) -> Option<(Node, usize)> {
        let (text, close) = quoted_text(self.text, pos, end)?;
        let value = match self.refs.get_mut(&pos) {
            Some(used) if self.text.as_bytes()[pos] == b'"' => {
                *used = true;
                Value::Reference(reference_path(&text))
            }
            _ => Value::Str(text),
        };
        Some((Node::new(value, self.span(pos, close)), close))
    }

    /// A one-line flow collection `[...]` or `{...}` at `pos`.
    fn flow(&mut self, pos: usize, end: usize) -> Option<(Node, usize)> {
        self.enter()?;
        let bytes = self.text.as_bytes();
        let is_map = bytes[pos] == b'{';
        let close = if is_map { b'}' } else { b']' };
        let mut i = skip_spaces(self.text, pos + 1, end);
        let mut items = vec![];
        let mut map = Map::default();
        loop {
            if i >= end {
                return None;
            }
            if bytes[i] == close {
                break;
            }
            if is_map {
                let (key, key_span, after) = self.flow_key(i, end)?;
                if key == "<<" || map.contains_key(&key) {
                    return None;
                }
                let (value, after) = self.flow_value(skip_spaces(self.text, after, end), end)?;
                map.insert(key, key_span, value);
                i = after;
            } else {
                let (item, after) = self.flow_value(i, end)?;
                items.push(item);
                i = after;
            }
            i = skip_spaces(self.text, i, end);
            match bytes.get(i) {
                Some(b',') => i = skip_spaces(self.text, i + 1, end),
                Some(c) if *c == close => break,
                _ => return None,
            }
        }
        self.depth -= 1;
        let span = self.span(pos, i + 1);
        let value = if is_map { Value::Map(map) } else { Value::List(items) };
        Some((Node::new(value, span), i + 1))
    }

    fn flow_key(&mut self, pos: usize, end: usize) -> Option<(String, Span, usize)> {
        let bytes = self.text.as_bytes();
        let (text, key_end) = match bytes[pos] {
            b'"' | b'\'' => quoted_text(self.text, pos, end)?,
            _ => {
                let stop = find_byte(self.text, pos, end, b":,[]{}#")?;
                let raw = self.text[pos..stop].trim_end_matches(' ');
                if raw.is_empty() || !plain_start_ok(raw) {
                    return None;
                }
                (raw.to_string(), pos + raw.len())
            }
        };
        let colon = skip_spaces(self.text, key_end, end);
        // `{a: 1}` only: the colon right after the key and a space after it.
        if colon != key_end || bytes.get(colon) != Some(&b':') || bytes.get(colon + 1) != Some(&b' ') {
            return None;
        }
        Some((text, self.span(pos, key_end), colon + 1))
    }

    fn flow_value(&mut self, pos: usize, end: usize) -> Option<(Node, usize)> {
        match *self.text.as_bytes().get(pos)? {
            b'[' | b'{' => self.flow(pos, end),
            b'"' | b'\'' => self.quoted(pos, end),
            _ => {
                let stop = find_byte(self.text, pos, end, b",[]{}#:")?;
                if matches!(self.text.as_bytes()[stop], b'[' | b'{' | b'#' | b':') {
                    return None;
                }
                let raw = self.text[pos..stop].trim_end_matches(' ');
                if raw.is_empty() || !plain_start_ok(raw) {
                    return None;
                }
                let value = resolve_plain(raw).ok()?;
                Some((Node::new(value, self.span(pos, pos + raw.len())), pos + raw.len()))
            }
        }
    }
}

fn skip_spaces(text: &str, mut pos: usize, end: usize) -> usize {
    while pos < end && text.as_bytes()[pos] == b' ' {
        pos += 1;
    }
    pos
}

/// The offset of the `:` ending a plain key on this line (`: ` or `:` at the end).
fn find_colon(text: &str, pos: usize, end: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    (pos..end).find(|&i| bytes[i] == b':' && (i + 1 == end || bytes[i + 1] == b' '))
}

/// The first byte in `pos..end` that is one of `stops`.
fn find_byte(text: &str, pos: usize, end: usize, stops: &[u8]) -> Option<usize> {
    let bytes = text.as_bytes();
    (pos..end).find(|&i| stops.contains(&bytes[i]))
}

/// Whether a plain scalar may start like this (no YAML indicator).
fn plain_start_ok(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    match bytes.first() {
        None => false,
        Some(b'-' | b'?' | b':') => bytes.get(1).is_some_and(|c| *c != b' '),
        Some(c) => !b"&*!|>%@`,[]{}#'\"".contains(c),
    }
}

/// A one-line quoted scalar at `pos`: its value and the offset after the closing quote.
/// Only the simplest escapes are taken; anything else goes to the general path.
fn quoted_text(text: &str, pos: usize, end: usize) -> Option<(String, usize)> {
    let quote = text.as_bytes()[pos];
    let body = &text[pos + 1..end];
    if quote == b'\'' {
        let mut out = String::new();
        let mut i = 0;
        loop {
            let j = body[i..].find('\'')? + i;
            out.push_str(&body[i..j]);
            if body.as_bytes().get(j + 1) == Some(&b'\'') {
                out.push('\'');
                i = j + 2;
            } else {
                return Some((out, pos + 1 + j + 1));
            }
        }
    }
    let close = body.find('"')?;
    let inner = &body[..close];
    if inner.contains('\\') {
        return None;
    }
    Some((inner.to_string(), pos + 1 + close + 1))
}
