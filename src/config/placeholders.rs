//! MMEngine's other `{{ }}` placeholders, substituted in a file's text before
//! it is parsed, as `Config.fromfile` does:
//!
//! - predefined variables of the file itself: `{{ fileDirname }}`,
//!   `{{ fileBasename }}`, `{{ fileBasenameNoExtension }}`, `{{ fileExtname }}`
//!   (e.g. `work_dir: ./work_dirs/{{ fileBasenameNoExtension }}`);
//! - environment variables with a default: `{{$DATA_ROOT:data/coco/}}`.
//!
//! To keep every span exact, a placeholder is not replaced in the text: its
//! braces become `~~` (same length, ordinary in plain and quoted scalars
//! alike), and the marked text is replaced inside string values after parsing.

use std::path::Path;

use super::diagnostic::Diagnostic;
use super::source::Span;
use super::value::{Node, Value};

/// Marked placeholders of one file: (marked text, its value).
#[derive(Debug, Default)]
pub struct Marks(Vec<(String, String)>);

/// The value of the placeholder whose text between `{{` and `}}` is `inner`,
/// `None` if it is not one of these placeholders.
pub fn value_of(inner: &str, file: &Path, span: Span) -> Option<Result<String, Diagnostic>> {
    let name = inner.trim();
    let path = file.to_string_lossy().replace('\\', "/");
    let base = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = file.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let predefined = match name {
        "fileDirname" => Some(Path::new(&path).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()),
        "fileBasename" => Some(base.clone()),
        "fileBasenameNoExtension" => Some(base.strip_suffix(&ext).unwrap_or(&base).to_string()),
        "fileExtname" => Some(ext.clone()),
        _ => None,
    };
    if let Some(value) = predefined {
        return Some(Ok(value));
    }
    env_value(inner, span)
}

/// `$NAME:default`, optionally quoted inside the braces (MMEngine's pattern).
fn env_value(inner: &str, span: Span) -> Option<Result<String, Diagnostic>> {
    let body = inner.trim().trim_matches(['\'', '"']).trim();
    let (name, default) = body.strip_prefix('$')?.split_once(':')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let value = std::env::var(name).ok().unwrap_or_else(|| default.trim().to_string());
    if value.is_empty() {
        return Some(Err(Diagnostic::error("detc::config::unset_variable",
            format!("environment variable `{name}` is not set and has no default"))
            .label(span, "this placeholder")
            .help(format!("set `{name}`, or give a default: `{{{{${name}:value}}}}`"))));
    }
    Some(Ok(value))
}

impl Marks {
    pub fn push(&mut self, marked: String, value: String) {
        self.0.push((marked, value));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replaces the marked placeholders in every string value of `node`.
    pub fn apply(&self, node: &mut Node) {
        match &mut node.value {
            Value::Str(s) => {
                for (marked, value) in &self.0 {
                    if s.contains(marked.as_str()) {
                        *s = s.replace(marked.as_str(), value);
                    }
                }
            }
            Value::List(items) => items.iter_mut().for_each(|n| self.apply(n)),
            Value::Map(map) => map.iter_mut().for_each(|(_, e)| self.apply(&mut e.node)),
            _ => {}
        }
    }
}
