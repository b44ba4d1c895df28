//! Diagnostics are data: a stable code, a short headline, labelled spans in
//! the files that set the values, and a `help:` line. miette only renders them
//! (fancy on a terminal, plain in pipes and CI); `--format json` serialises them.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use serde::Serialize;

use super::source::{Sources, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Stable identifier, e.g. `detc::config::unknown_key`.
    pub code: &'static str,
    pub severity: Severity,
    /// Short lowercase headline, user values in backticks.
    pub message: String,
    /// The first label is the primary one.
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic { code, severity: Severity::Error, message: message.into(), labels: vec![], help: None }
    }

    pub fn label(mut self, span: Span, text: impl Into<String>) -> Diagnostic {
        self.labels.push(Label { span, text: text.into() });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
}

/// A list of diagnostics, the error type of every compiler stage.
pub type Diagnostics = Vec<Diagnostic>;

/// Shorthand for a stage's result.
pub type Result<T> = std::result::Result<T, Diagnostics>;

/// The closest candidate to `word`, if any is close enough to suggest.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// How to render diagnostics for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unicode and colour, for a terminal.
    Fancy,
    /// ASCII without colour, for pipes, CI and snapshot tests.
    Plain,
}

impl Style {
    /// Fancy on a terminal unless `NO_COLOR` is set.
    pub fn detect() -> Style {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            Style::Fancy
        } else {
            Style::Plain
        }
    }
}

/// Renders diagnostics as miette reports, one after another.
pub fn render(diags: &[Diagnostic], sources: &Sources, style: Style) -> String {
    let theme = match style {
        Style::Fancy => GraphicalTheme::unicode(),
        Style::Plain => GraphicalTheme::none(),
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
    let mut out = String::new();
    for diag in diags {
        let report = Rendered::new(diag, sources);
        if handler.render_report(&mut out, &report).is_err() {
            out.push_str(&format!("error: {}\n", diag.message));
        }
        out.push('\n');
    }
    out
}

/// A diagnostic in miette's terms: labels in the primary label's file are
/// shown inline; labels in other files become related reports.
#[derive(Debug)]
struct Rendered {
    code: &'static str,
    severity: Severity,
    message: String,
    help: Option<String>,
    source: Option<NamedSource<String>>,
    labels: Vec<LabeledSpan>,
    related: Vec<Rendered>,
}

impl Rendered {
    fn new(diag: &Diagnostic, sources: &Sources) -> Rendered {
        let primary = diag.labels.first().map(|l| l.span.source);
        let mut labels = vec![];
        let mut related = vec![];
        for label in &diag.labels {
            if Some(label.span.source) == primary {
                labels.push(labeled(label));
            } else {
                related.push(Rendered {
                    code: diag.code,
                    severity: diag.severity,
                    message: format!("see also `{}`", sources.location(label.span)),
                    help: None,
                    source: Some(named(sources, label.span)),
                    labels: vec![labeled(label)],
                    related: vec![],
                });
            }
        }
        Rendered {
            code: diag.code,
            severity: diag.severity,
            message: diag.message.clone(),
            help: diag.help.clone(),
            source: diag.labels.first().map(|l| named(sources, l.span)),
            labels,
            related,
        }
    }
}

fn labeled(label: &Label) -> LabeledSpan {
    let text = (!label.text.is_empty()).then(|| label.text.clone());
    LabeledSpan::new(text, label.span.start, label.span.end.saturating_sub(label.span.start))
}

fn named(sources: &Sources, span: Span) -> NamedSource<String> {
    let source = sources.get(span.source);
    NamedSource::new(source.name.clone(), source.text.to_string()).with_language("yaml")
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        Some(Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic)))
    }
}

/// One diagnostic as `--format json` prints it.
#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: &'a str,
    severity: Severity,
    message: &'a str,
    help: Option<&'a str>,
    labels: Vec<JsonLabel<'a>>,
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    byte_start: usize,
    byte_end: usize,
    text: &'a str,
}

/// Diagnostics as a JSON array, for editors and CI.
pub fn to_json(diags: &[Diagnostic], sources: &Sources) -> String {
    let items: Vec<JsonDiagnostic> = diags
        .iter()
        .map(|d| JsonDiagnostic {
            code: d.code,
            severity: d.severity,
            message: &d.message,
            help: d.help.as_deref(),
            labels: d
                .labels
                .iter()
                .map(|l| {
                    let (line, column) = sources.line_col(l.span.source, l.span.start);
                    let (end_line, end_column) = sources.line_col(l.span.source, l.span.end);
                    JsonLabel {
                        file: &sources.get(l.span.source).name,
                        line,
                        column,
                        end_line,
                        end_column,
                        byte_start: l.span.start,
                        byte_end: l.span.end,
                        text: &l.text,
                    }
                })
                .collect(),
        })
        .collect();
    serde_json::to_string_pretty(&items).unwrap_or_default()
}

