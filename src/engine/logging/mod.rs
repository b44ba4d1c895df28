//! Training logs as MMEngine writes them: the smoothed scalar histories
//! (`history`), the formatted log lines (`processor`), when to log
//! (`logger_hook`), the text log with its `MM/DD HH:MM:SS - detc - INFO - `
//! prefix, the `vis_data/scalars.json` records
//! (`LocalVisBackend.add_scalars`), and a progress bar for terminals (`progress`).
//!
//! The logger name is `detc` where MMEngine writes `mmengine`; the rest of
//! the prefix is MMEngine's (`%(asctime)s - %(name)s - %(levelname)s - `,
//! `datefmt='%m/%d %H:%M:%S'`), so tools that parse MMEngine logs by field
//! position keep working.

// The runner wires these in; until it lands the binary reads only part of them.
#![allow(dead_code, unused_imports)]

pub mod history;
pub mod logger_hook;
pub mod processor;
pub mod progress;
pub mod pyfmt;
pub mod tensorboard;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use history::{HistoryBuffer, HubState, ScalarHub, Statistic};
pub use logger_hook::{experiment_name, LoggerPolicy};
pub use processor::{LogConfigError, LogContext, LogProcessor, Mode, Tag, TagValue};

use detc::visualization::RgbImage;

use crate::engine::work_dir::{LocalTime, WorkDir};

/// Logger name in the line prefix (MMEngine writes `mmengine`).
pub const LOGGER_NAME: &str = "detc";

/// Severity of a log line, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Progress (every log line of the loops).
    Info,
    /// Something the user should look at.
    Warning,
    /// The run is failing.
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

/// `11/28 12:00:00 - detc - INFO - ` for a line logged at `time`.
pub fn line_prefix(level: Level, time: &LocalTime) -> String {
    format!(
        "{:02}/{:02} {:02}:{:02}:{:02} - {LOGGER_NAME} - {} - ",
        time.month,
        time.day,
        time.hour,
        time.minute,
        time.second,
        level.as_str()
    )
}

/// The config's `log_level` (MMLogger's level, for the console and the
/// file alike; INFO when unset): the lowest severity written, `None` for
/// `CRITICAL`, above anything detc logs.
pub fn min_level(config: &serde_json::Value) -> Option<Level> {
    match config.get("log_level").and_then(|l| l.as_str()) {
        Some("WARNING") => Some(Level::Warning),
        Some("ERROR") => Some(Level::Error),
        Some("CRITICAL") => None,
        _ => Some(Level::Info),
    }
}

/// One `scalars.json` line: `json.dumps({**tag, 'step': step})` (a `step`
/// already in `tag` wins, as `setdefault` does), without the newline.
pub fn scalars_record(tag: &Tag, step: u64) -> String {
    let mut items: Vec<String> = tag
        .iter()
        .map(|(k, v)| {
            let v = match v {
                TagValue::Float(x) => pyfmt::float_repr(*x),
                TagValue::Int(i) => i.to_string(),
            };
            format!("{}: {v}", pyfmt::json_str(k))
        })
        .collect();
    if !tag.contains_key("step") {
        items.push(format!("\"step\": {step}"));
    }
    format!("{{{}}}", items.join(", "))
}

/// The text log and what the visualizer's backends record of one run (rank
/// 0): `<ts>.log` (also echoed to stdout) and `vis_data/scalars.json`, both
/// appended; the config and drawn images (`add_config`, `add_image`).
pub struct RunLog {
    /// None on the ranks other than 0, which write nothing.
    text: Option<File>,
    scalars: Option<File>,
    /// `LocalVisBackend`'s files for the config and images, when it is a backend.
    local: Option<LocalFiles>,
    /// `TensorboardVisBackend`'s event file, when configured.
    events: Option<tensorboard::EventWriter>,
    echo: bool,
    /// The config's `log_level`: lines below it are not written; `None`
    /// (`CRITICAL`) writes none of detc's.
    min_level: Option<Level>,
}

impl RunLog {
    /// Opens (creating) `log_file` and `scalars_file` for appending; `echo`
    /// also prints each line on stdout.
    pub fn open(log_file: &Path, scalars_file: &Path, echo: bool) -> io::Result<Self> {
        let append = |p: &Path| OpenOptions::new().create(true).append(true).open(p);
        Ok(RunLog {
            text: Some(append(log_file)?),
            scalars: Some(append(scalars_file)?),
            local: None,
            events: None,
            echo,
            min_level: Some(Level::Info),
        })
    }

    /// The log of a rank other than 0: MMEngine logs on rank 0 only.
    pub fn discard() -> Self {
        RunLog {
            text: None,
            scalars: None,
            local: None,
            events: None,
            echo: false,
            min_level: Some(Level::Info),
        }
    }

    /// The log of a run (or test) in `work`: its text log and
    /// `scalars.json`, and a TensorBoard event file when `config`'s
    /// visualizer has a `TensorboardVisBackend`.
    pub fn open_run(work: &WorkDir, config: &serde_json::Value) -> io::Result<Self> {
        let local = local_files(config, &work.vis_dir());
        let mut log = Self::open(&work.log_file(), &scalars_file(work, local.as_ref())?, true)?;
        log.min_level = min_level(config);
        log.local = local;
        if let Some(dir) = tensorboard::event_dir(config, &work.vis_dir()) {
            log.events = Some(tensorboard::EventWriter::create(&dir)?);
        }
        Ok(log)
    }

    /// Whether lines are also printed on stdout.
    pub fn set_echo(&mut self, echo: bool) {
        self.echo = echo;
    }

    /// Writes `message` with the prefix of `level` at the current local time.
    pub fn log(&mut self, level: Level, message: &str) -> io::Result<()> {
        if self.min_level.is_none_or(|min| level < min) {
            return Ok(());
        }
        let line = format!("{}{message}\n", line_prefix(level, &LocalTime::now()));
        if self.echo {
            print!("{line}");
        }
        match self.text.as_mut() {
            Some(text) => text.write_all(line.as_bytes()),
            None => Ok(()),
        }
    }

    /// `log(Level::Info, message)`.
    pub fn info(&mut self, message: &str) -> io::Result<()> {
        self.log(Level::Info, message)
    }

    /// `Visualizer.add_config`: `LocalVisBackend` writes the config to its
    /// `config_save_file`, as Python when it ends in `.py` (the default,
    /// `config.py`; MMEngine's `Config.fromfile` reads it back), else as JSON;
    /// `TensorboardVisBackend` adds the Python text as the text `config`.
    pub fn add_config(&mut self, config: &serde_json::Value) -> io::Result<()> {
        let python = detc::config::emit::to_python(config);
        if let Some(events) = self.events.as_mut() {
            events.add_text("config", &python)?;
        }
        let Some(local) = &self.local else { return Ok(()) };
        let text = if local.config_file.extension().is_some_and(|e| e == "py") {
            python
        } else {
            serde_json::to_string_pretty(config).unwrap_or_default() + "\n"
        };
        if let Some(dir) = local.config_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::engine::work_dir::write_atomic(&local.config_file, text.as_bytes())
    }

    /// `Visualizer.add_image`: `LocalVisBackend` writes `{name}_{step}.png`
    /// into its `img_save_dir`, `TensorboardVisBackend` an image summary.
    pub fn add_image(&mut self, name: &str, image: &RgbImage, step: u64) -> io::Result<()> {
        if !self.keeps_images() {
            return Ok(());
        }
        let png = detc::visualization::png::encode(image);
        if let Some(events) = self.events.as_mut() {
            events.add_image(name, &png, (image.height, image.width), step)?;
        }
        let Some(local) = &self.local else { return Ok(()) };
        std::fs::create_dir_all(&local.image_dir)?;
        std::fs::write(local.image_dir.join(format!("{name}_{step}.png")), png)
    }

    /// Whether an image given to [`Self::add_image`] is written anywhere.
    pub fn keeps_images(&self) -> bool {
        self.local.is_some() || self.events.is_some()
    }

    /// Appends one `scalars.json` record (LoggerHook: `step = runner.iter + 1`
    /// after a train iteration; the epoch (or iteration) after validation).
    pub fn add_scalars(&mut self, tag: &Tag, step: u64) -> io::Result<()> {
        if let Some(events) = self.events.as_mut() {
            events.add_scalars(tag, step)?;
        }
        match self.scalars.as_mut() {
            Some(scalars) => writeln!(scalars, "{}", scalars_record(tag, step)),
            None => Ok(()),
        }
    }
}

/// Where `LocalVisBackend` writes the scalars, the config and images: its
/// folder, its `scalar_save_file`, `config_save_file` and `img_save_dir`
/// (`_init_env`).
struct LocalFiles {
    scalars_file: PathBuf,
    config_file: PathBuf,
    image_dir: PathBuf,
}

/// The `LocalVisBackend`'s files; MMEngine's default visualizer (one
/// `LocalVisBackend` in the run's `vis_data`) when the config has no
/// `visualizer`; `None` when its visualizer has no `LocalVisBackend`.
fn local_files(config: &serde_json::Value, run_vis_dir: &Path) -> Option<LocalFiles> {
    let default = serde_json::Value::Object(Default::default());
    let (dir, backend) = match config.get("visualizer") {
        None | Some(serde_json::Value::Null) => (run_vis_dir.to_path_buf(), &default),
        Some(_) => backend_dir(config, "LocalVisBackend", run_vis_dir)?,
    };
    let name = |key: &str, default: &str| dir.join(backend.get(key).and_then(|n| n.as_str()).unwrap_or(default));
    Some(LocalFiles {
        scalars_file: name("scalar_save_file", "scalars.json"),
        config_file: name("config_save_file", "config.py"),
        image_dir: name("img_save_dir", "vis_image"),
    })
}

/// The folder of a `vis_backends` entry of `type_name` in the config's
/// visualizer: its `save_dir`, else the visualizer's `save_dir`/vis_data,
/// else the run's `vis_data` (MMEngine's `Visualizer` fills a backend's
/// `save_dir` the same way); with it, the backend's config. `None` without
/// such a backend.
pub(crate) fn backend_dir<'a>(
    config: &'a serde_json::Value,
    type_name: &str,
    run_vis_dir: &Path,
) -> Option<(PathBuf, &'a serde_json::Value)> {
    let visualizer = config.get("visualizer")?;
    let backends = match visualizer.get("vis_backends")? {
        serde_json::Value::Array(list) => list.iter().collect::<Vec<_>>(),
        one => vec![one],
    };
    let backend = backends
        .into_iter()
        .find(|b| b.get("type").and_then(|t| t.as_str()) == Some(type_name))?;
    let own = backend.get("save_dir").and_then(|d| d.as_str());
    let shared = visualizer.get("save_dir").and_then(|d| d.as_str());
    let dir = match (own, shared) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(dir)) => Path::new(dir).join("vis_data"),
        (None, None) => run_vis_dir.to_path_buf(),
    };
    Some((dir, backend))
}

/// Where the scalar records go: the `LocalVisBackend`'s `scalar_save_file`
/// (`local`, see [`local_files`]), its folder created if needed; the run's
/// `vis_data/scalars.json` when the visualizer has no `LocalVisBackend`
/// (MMEngine then writes none; detc's plots and summaries read it).
fn scalars_file(work: &WorkDir, local: Option<&LocalFiles>) -> io::Result<PathBuf> {
    let Some(local) = local else {
        return Ok(work.scalars_file());
    };
    if let Some(dir) = local.scalars_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    Ok(local.scalars_file.clone())
}

#[cfg(test)]
mod tests;
