//! A one-line progress bar on stderr for a terminal, with the ETA the log
//! lines print (`eta: 0:01:23`), in the look of MMEngine's `ProgressBar`
//! (`[>>>>>     ] 12/100`). In a pipe or a file nothing is drawn: the log
//! lines alone tell the progress there.
//!
//! The bar is redrawn in place with `\r`; log lines printed through
//! [`ProgressBar::suspend`] clear it first and get it back after, so a line
//! never lands in the middle of the bar.

use std::io::{IsTerminal, Write};

use super::pyfmt;

/// Clears the terminal line the cursor is on and returns to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";
/// The bar never grows wider than this many marks.
const MAX_BAR: usize = 40;

/// Whether a bar is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// When stderr is a terminal (and `TERM` is not `dumb`).
    Auto,
    /// Never (forced off, e.g. for a quiet run).
    Never,
}

/// The text of the bar (without `\r`): `label [>>>>    ] done/total, eta: H:MM:SS`,
/// at most `width - 1` characters (the last column is left free so the
/// terminal never wraps). The marks shrink to fit; too narrow for four marks,
/// the bar is left out.
pub fn render(label: &str, done: u64, total: u64, eta_secs: Option<f64>, width: usize) -> String {
    let done = done.min(total);
    let count = format!("{done}/{total}");
    let eta = eta_secs
        .map(|s| format!(", eta: {}", pyfmt::timedelta(s.max(0.0))))
        .unwrap_or_default();
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("{label} ")
    };
    let fixed = label.chars().count() + count.chars().count() + eta.chars().count();
    // "[" + marks + "] "
    let room = width.saturating_sub(1 + fixed + 3);
    let line = if room >= 4 {
        let marks = room.min(MAX_BAR);
        let filled = if total == 0 {
            marks
        } else {
            (marks as u128 * done as u128 / total as u128) as usize
        };
        format!(
            "{label}[{}{}] {count}{eta}",
            ">".repeat(filled),
            " ".repeat(marks - filled)
        )
    } else {
        format!("{label}{count}{eta}")
    };
    line.chars().take(width.saturating_sub(1)).collect()
}

/// `$COLUMNS` when it is a positive number, else 80.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&c| c > 0)
        .unwrap_or(80)
}

/// A progress bar over `total` steps, redrawn on one line of stderr.
pub struct ProgressBar {
    label: String,
    total: u64,
    width: usize,
    /// `None` when the bar is off: every call is then a no-op.
    sink: Option<Box<dyn Write + Send>>,
    /// The text on screen now (empty when nothing is drawn).
    shown: String,
    done: u64,
    eta: Option<f64>,
}

impl ProgressBar {
    /// A bar on stderr, drawn only when stderr is a terminal.
    pub fn new(total: u64, label: &str) -> Self {
        Self::with_visibility(total, label, Visibility::Auto)
    }

    /// A bar on stderr with `visibility`; `Visibility::Never` forces it off.
    pub fn with_visibility(total: u64, label: &str, visibility: Visibility) -> Self {
        let terminal = std::io::stderr().is_terminal()
            && !matches!(std::env::var("TERM").as_deref(), Ok("dumb"));
        let on = visibility == Visibility::Auto && terminal;
        let sink: Option<Box<dyn Write + Send>> = if on {
            Some(Box::new(std::io::stderr()))
        } else {
            None
        };
        Self::build(total, label, terminal_width(), sink)
    }

    /// A bar drawn into `sink`, `width` columns wide, whatever `sink` is (for tests and tools).
    pub fn to_writer(total: u64, label: &str, width: usize, sink: Box<dyn Write + Send>) -> Self {
        Self::build(total, label, width, Some(sink))
    }

    fn build(total: u64, label: &str, width: usize, sink: Option<Box<dyn Write + Send>>) -> Self {
        ProgressBar {
            label: label.to_string(),
            total,
            width,
            sink,
            shown: String::new(),
            done: 0,
            eta: None,
        }
    }

    /// Whether anything is drawn.
    pub fn is_visible(&self) -> bool {
        self.sink.is_some()
    }

    /// Moves the bar to `done` of its total with the ETA in seconds (`None`
    /// until one is known); redraws only when the text changes.
    pub fn set(&mut self, done: u64, eta_secs: Option<f64>) {
        self.done = done;
        self.eta = eta_secs;
        self.draw();
    }

    /// Runs `f` (which prints a log line) with the bar cleared, then draws it again.
    pub fn suspend<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.clear();
        let out = f();
        self.draw();
        out
    }

    /// Clears the bar for good (the log line after the loop takes its place).
    pub fn finish(&mut self) {
        self.clear();
        self.sink = None;
    }

    fn draw(&mut self) {
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        let line = render(&self.label, self.done, self.total, self.eta, self.width);
        if line == self.shown {
            return;
        }
        // A failed write to the terminal is not worth failing the run for.
        let _ = write!(sink, "{CLEAR_LINE}{line}").and_then(|_| sink.flush());
        self.shown = line;
    }

    fn clear(&mut self) {
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        if !self.shown.is_empty() {
            let _ = sink
                .write_all(CLEAR_LINE.as_bytes())
                .and_then(|_| sink.flush());
            self.shown.clear();
        }
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn renders_marks_count_and_the_log_lines_eta() {
        assert_eq!(
            render("Epoch(test)", 5, 20, Some(83.7), 80),
            format!(
                "Epoch(test) [{}{}] 5/20, eta: 0:01:23",
                ">".repeat(10),
                " ".repeat(30)
            )
        );
        assert_eq!(
            render("", 0, 4, None, 80),
            format!("[{}] 0/4", " ".repeat(40))
        );
        assert_eq!(
            render("x", 9, 4, Some(0.0), 80),
            format!("x [{}] 4/4, eta: 0:00:00", ">".repeat(40))
        );
        assert_eq!(
            render("", 0, 0, None, 80),
            format!("[{}] 0/0", ">".repeat(40))
        );
    }

    #[test]
    fn narrow_terminals_shrink_then_drop_the_bar_and_never_wrap() {
        // 30 columns less the free last column, `train ` (6), `[] ` (3) and `1/10` (4): 16 marks.
        let line = render("train", 1, 10, None, 30);
        assert_eq!(line, format!("train [>{}] 1/10", " ".repeat(15)));
        assert_eq!(line.chars().count(), 29);
        assert_eq!(render("train", 1, 10, Some(3.0), 20), "train 1/10, eta: 0:");
        for width in 0..100 {
            assert!(
                render("Epoch(val)", 3, 1000, Some(12345.0), width)
                    .chars()
                    .count()
                    < width.max(1)
            );
        }
    }

    /// A `Write` whose bytes the test can read.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn redraws_in_place_and_clears_around_log_lines() {
        let out = Shared::default();
        let mut bar = ProgressBar::to_writer(2, "t", 30, Box::new(out.clone()));
        bar.set(1, None);
        bar.set(1, None); // unchanged: not drawn again
        let said = bar.suspend(|| "logged");
        assert_eq!(said, "logged");
        bar.finish();
        bar.set(2, None); // finished: nothing more
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let one = render("t", 1, 2, None, 30);
        assert_eq!(
            text,
            format!("{CLEAR_LINE}{one}{CLEAR_LINE}{CLEAR_LINE}{one}{CLEAR_LINE}")
        );
    }

    #[test]
    fn forced_off_draws_nothing() {
        let mut bar = ProgressBar::with_visibility(3, "t", Visibility::Never);
        assert!(!bar.is_visible());
        bar.set(1, Some(1.0));
        assert_eq!(bar.suspend(|| 7), 7);
        bar.finish();
    }
}
