//! The source files (and the `--cfg-options` text) a config was read from, and
//! byte spans into them. Every value in the tree points back here.

use std::path::PathBuf;
use std::sync::Arc;

/// Index of a source in [`Sources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u32);

/// A byte range `start..end` in one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    pub source: SourceId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(source: SourceId, start: usize, end: usize) -> Span {
        Span { source, start, end }
    }
}

/// Name given to the source holding the `--cfg-options` text.
pub const CFG_OPTIONS: &str = "<cfg-options>";

#[derive(Debug)]
pub struct Source {
    /// What messages call it: the path as the user gave it, or `<cfg-options>`.
    pub name: String,
    /// The canonical path on disk, when it is a file.
    pub path: Option<PathBuf>,
    pub text: Arc<str>,
}

/// All sources of one compilation.
#[derive(Debug, Default)]
pub struct Sources {
    items: Vec<Source>,
}

impl Sources {
    pub fn add(&mut self, name: String, path: Option<PathBuf>, text: impl Into<Arc<str>>) -> SourceId {
        self.items.push(Source { name, path, text: text.into() });
        SourceId(self.items.len() as u32 - 1)
    }

    pub fn get(&self, id: SourceId) -> &Source {
        &self.items[id.0 as usize]
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, id: SourceId, offset: usize) -> (usize, usize) {
        let text = &self.get(id).text;
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// `file:line:col` of a span's start, as diagnostics print it.
    pub fn location(&self, span: Span) -> String {
        let (line, col) = self.line_col(span.source, span.start);
        format!("{}:{}:{}", self.get(span.source).name, line, col)
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}
