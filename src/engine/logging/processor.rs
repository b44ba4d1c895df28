//! `LogProcessor` (mmengine/runner/log_processor.py): turns the logged scalar
//! histories into the text line users read and the `tag` record that goes to
//! `vis_data/scalars.json`, with MMEngine's exact layout:
//!
//! ```text
//! Epoch(train)  [1][ 50/7330]  base_lr: 1.0000e-04 lr: 1.0000e-05  eta: 1 day, 2:03:04  time: 0.5451  data_time: 0.0148  memory: 14765  grad_norm: 45.8713  loss: 37.4994  s0.loss_cls: 0.5150
//! Iter(train) [  50/90000]  lr: 1.0000e-04  eta: …
//! Epoch(val) [1][50/50]    coco/bbox_mAP: 0.3700  data_time: 0.0100  time: 0.0200
//! ```
//!
//! The items follow the order the keys were first logged, as in MMEngine: the
//! runner logs, per iteration, `train/base_lr` (only with several param
//! groups) and `train/lr`, then `train/data_time`, `train/grad_norm` (only
//! with `clip_grad`), `train/loss` and each loss term, then `train/time`.

use indexmap::IndexMap;

use super::history::{HistoryBuffer, ScalarHub, Statistic, MMENGINE_MAX_LENGTH};
use super::pyfmt;
use detc::registry::engine::{
    LogCustomConfig, LogMethod, LogProcessorConfig, WindowName, WindowSize,
};

/// Which loop is logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training iterations.
    Train,
    /// Validation.
    Val,
    /// Testing.
    Test,
}

impl Mode {
    /// `train`, `val` or `test`: the key prefix and the header word.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Train => "train",
            Mode::Val => "val",
            Mode::Test => "test",
        }
    }
}

/// A value of a log record: smoothed scalars are floats, `epoch`/`iter`/`memory` ints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TagValue {
    /// A smoothed or current scalar (numpy float64 in MMEngine).
    Float(f64),
    /// A counter or the memory in MB.
    Int(i64),
}

/// The record of one log event, in MMEngine's key order.
pub type Tag = IndexMap<String, TagValue>;

/// Where the run is when a line is logged: what MMEngine's `LogProcessor` reads
/// from the runner and its message hub.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogContext {
    /// The logging loop.
    pub mode: Mode,
    /// Index of the current batch in the current loop (0-based).
    pub batch_idx: usize,
    /// `len(dataloader)` of the current loop.
    pub dataloader_len: usize,
    /// `runner.epoch`: epochs completed (during training, the current 0-based epoch).
    pub epoch: u64,
    /// `runner.iter`: iterations completed before the current one.
    pub iter: u64,
    /// `runner.max_epochs`.
    pub max_epochs: u64,
    /// `runner.max_iters`.
    pub max_iters: u64,
    /// False for `detc test` (no train loop: epoch and iter log as 0).
    pub has_train_loop: bool,
    /// Remaining seconds (`message_hub` info `eta`, set by the iteration timer).
    pub eta: Option<f64>,
    /// Peak CUDA memory in MB since the last report; `None` off CUDA (no `memory:` item).
    pub memory_mb: Option<u64>,
}

/// Error in a `log_processor` config that detc cannot honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfigError(pub String);

impl std::fmt::Display for LogConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "log_processor: {}", self.0)
    }
}

impl std::error::Error for LogConfigError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    Iters(usize),
    Epoch,
    Global,
}

#[derive(Debug, Clone, PartialEq)]
struct CustomLog {
    data_src: String,
    log_name: String,
    method: Statistic,
    window: Option<Window>,
}

/// MMEngine's `LogProcessor(window_size, by_epoch, custom_cfg, num_digits, mean_pattern)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogProcessor {
    window_size: usize,
    by_epoch: bool,
    num_digits: usize,
    /// `mean_pattern` as its alternatives: `.*(loss|time|…).*` matches keys containing one.
    mean_keys: Vec<String>,
    custom: Vec<CustomLog>,
}

impl LogProcessor {
    /// `LogProcessor(window_size, by_epoch)` with the default `mean_pattern` and 4 digits.
    pub fn new(window_size: usize, by_epoch: bool) -> Self {
        LogProcessor {
            window_size,
            by_epoch,
            num_digits: 4,
            mean_keys: ["loss", "time", "data_time", "grad_norm"]
                .map(String::from)
                .to_vec(),
            custom: vec![],
        }
    }

    /// Builds from the config's `log_processor` section.
    pub fn from_config(cfg: &LogProcessorConfig) -> Result<Self, LogConfigError> {
        let window_size = match cfg.window_size {
            WindowSize::Iters(n) => n as usize,
            WindowSize::Named(_) => {
                return Err(LogConfigError(
                    "`window_size` must be a number of iterations".into(),
                ))
            }
        };
        if cfg.log_with_hierarchy {
            return Err(LogConfigError(
                "`log_with_hierarchy: true` is not supported by detc yet".into(),
            ));
        }
        let mut p = LogProcessor::new(window_size, cfg.by_epoch);
        p.num_digits = cfg.num_digits as usize;
        p.mean_keys = parse_mean_pattern(&cfg.mean_pattern)?;
        for c in cfg.custom_cfg.iter().flatten() {
            p.custom.push(custom_log(c, cfg.by_epoch)?);
        }
        let mut names: Vec<&str> = p.custom.iter().map(|c| c.log_name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(LogConfigError(format!(
                "`custom_cfg` names `{}` twice",
                w[0]
            )));
        }
        Ok(p)
    }

    /// How many values each history must keep for this processor's windows to
    /// see what MMEngine's (1,000,000-long) histories see: the window, the
    /// longest val/test loop + 1 (the epoch mean of `time`), the train loop
    /// for custom `epoch` windows, everything for `global`/unbounded ones.
    pub fn history_len(&self, train_len: usize, longest_eval_len: usize) -> usize {
        let mut n = self.window_size.max(longest_eval_len + 1);
        for c in &self.custom {
            match c.window {
                Some(Window::Iters(w)) => n = n.max(w),
                Some(Window::Epoch) => n = n.max(train_len),
                Some(Window::Global) | None if c.method != Statistic::Current => {
                    n = MMENGINE_MAX_LENGTH
                }
                _ => {}
            }
        }
        n
    }

    /// The line and record after a train/val/test iteration (`get_log_after_iter`).
    pub fn log_after_iter(&self, hub: &ScalarHub, ctx: &LogContext) -> (Tag, String) {
        let mut log_tag = self.collect(hub, ctx, &self.custom, ctx.batch_idx);
        let mut tag = log_tag.clone();
        let prefix = format!("{}/", ctx.mode.as_str());
        let mut lr_items = vec![];
        for (key, value) in &tag {
            if key.ends_with("lr") {
                let key = key.strip_prefix(&prefix).unwrap_or(key);
                log_tag.shift_remove(key);
                lr_items.push(format!(
                    "{key}: {}",
                    pyfmt::exp(value_f64(value), self.num_digits)
                ));
            }
        }
        let mut line = self.iter_header(ctx, &mut tag);
        let iter = if ctx.has_train_loop {
            ctx.iter as i64 + 1
        } else {
            0
        };
        tag.insert("iter".into(), TagValue::Int(iter));
        line += &format!("{}  ", lr_items.join(" "));
        if let (Some(eta), Some(&time), Some(&data_time)) =
            (ctx.eta, log_tag.get("time"), log_tag.get("data_time"))
        {
            let d = self.num_digits;
            line += &format!(
                "eta: {}  time: {}  data_time: {}  ",
                pyfmt::timedelta(eta),
                pyfmt::fixed(value_f64(&time), d),
                pyfmt::fixed(value_f64(&data_time), d)
            );
            log_tag.shift_remove("time");
            log_tag.shift_remove("data_time");
        }
        if let Some(memory) = ctx.memory_mb {
            line += &format!("memory: {memory}  ");
            tag.insert("memory".into(), TagValue::Int(memory as i64));
        }
        if ctx.mode != Mode::Test {
            let items: Vec<String> = log_tag
                .iter()
                // MMEngine's filter compares prefix-stripped names with `val/loss`.
                .filter(|(name, _)| ctx.mode == Mode::Train || name.starts_with("val/loss"))
                .map(|(name, v)| format!("{name}: {}", self.value_str(v)))
                .collect();
            line += &items.join("  ");
        }
        (tag, line)
    }

    /// `Epoch(train)  [e][ i/n]  ` and friends; adds `epoch` to `tag` where MMEngine does.
    fn iter_header(&self, ctx: &LogContext, tag: &mut Tag) -> String {
        let mode = ctx.mode.as_str();
        let n = ctx.dataloader_len;
        if self.by_epoch {
            let cur = rjust(&(ctx.batch_idx + 1).to_string(), n.to_string().len());
            if ctx.mode == Mode::Test {
                return format!("Epoch({mode}) [{cur}/{n}]  ");
            }
            let epoch = self.epoch_of(ctx);
            let epoch_str = if ctx.has_train_loop {
                rjust(&format!("[{epoch}]"), ctx.max_epochs.to_string().len() + 3)
            } else {
                format!("[{epoch}]")
            };
            tag.insert("epoch".into(), TagValue::Int(epoch as i64));
            format!("Epoch({mode}){epoch_str}[{cur}/{n}]  ")
        } else if ctx.mode == Mode::Train {
            let cur = rjust(&(ctx.iter + 1).to_string(), ctx.max_iters.to_string().len());
            format!("Iter({mode}) [{cur}/{}]  ", ctx.max_iters)
        } else {
            let cur = rjust(&(ctx.batch_idx + 1).to_string(), n.to_string().len());
            format!("Iter({mode}) [{cur}/{n}]  ")
        }
    }

    /// `_get_epoch`: the 1-based epoch in training; `runner.epoch` (already
    /// advanced) during validation, 0 without a train loop.
    fn epoch_of(&self, ctx: &LogContext) -> u64 {
        match ctx.mode {
            Mode::Train => ctx.epoch + 1,
            _ if ctx.has_train_loop => ctx.epoch,
            _ => 0,
        }
    }

    /// The line and record after a val/test epoch, with the metrics
    /// (`get_log_after_epoch`). As `LoggerHook` does, the `epoch` windows of
    /// `time`/`data_time` span `dataloader_len + 1` values.
    pub fn log_after_epoch(&self, hub: &ScalarHub, ctx: &LogContext) -> (Tag, String) {
        let mode = ctx.mode.as_str();
        let n = ctx.dataloader_len;
        let mut line = match (self.by_epoch, ctx.mode) {
            (true, Mode::Val) => format!("Epoch({mode}) [{}][{n}/{n}]  ", self.epoch_of(ctx)),
            (true, _) => format!("Epoch({mode}) [{n}/{n}]  "),
            (false, _) => format!("Iter({mode}) [{n}/{n}]  "),
        };
        let prefix = format!("{mode}/");
        let mut custom = self.custom.clone();
        for key in ["time", "data_time"] {
            if !custom
                .iter()
                .any(|c| c.data_src.strip_prefix(&prefix).unwrap_or(&c.data_src) == key)
            {
                custom.push(CustomLog {
                    data_src: key.into(),
                    log_name: key.into(),
                    method: Statistic::Mean,
                    window: Some(Window::Epoch),
                });
            }
        }
        let collected = self.collect(hub, ctx, &custom, n);
        let (mut tag, mut time_tag) = (Tag::new(), Tag::new());
        for (key, value) in collected {
            let is_time = ["time", "data_time"].contains(&key.as_str())
                || key == format!("{mode}/time")
                || key == format!("{mode}/data_time");
            if is_time {
                time_tag.insert(key, value)
            } else {
                tag.insert(key, value)
            };
        }
        line += "  ";
        let items: Vec<String> = tag
            .iter()
            .chain(&time_tag)
            .map(|(name, v)| format!("{name}: {}", self.value_str(v)))
            .collect();
        line += &items.join("  ");
        tag.extend(time_tag);
        (tag, line)
    }

    /// `_collect_scalars`: each key of this mode, smoothed when it matches
    /// `mean_pattern`, then the custom statistics.
    fn collect(
        &self,
        hub: &ScalarHub,
        ctx: &LogContext,
        custom: &[CustomLog],
        batch_idx: usize,
    ) -> Tag {
        let mode = ctx.mode.as_str();
        let prefix = format!("{mode}/");
        let mut mode_hist: IndexMap<&str, &HistoryBuffer> = IndexMap::new();
        for (key, buffer) in hub.iter() {
            if key.starts_with(mode) {
                mode_hist.insert(key.strip_prefix(&prefix).unwrap_or(key), buffer);
            }
        }
        let mut tag = Tag::new();
        for (key, buffer) in &mode_hist {
            let value = if self.mean_keys.iter().any(|k| key.contains(k.as_str())) {
                buffer.mean(Some(self.window_size))
            } else {
                buffer.current()
            };
            if let Some(v) = value {
                tag.insert(key.to_string(), TagValue::Float(v));
            }
        }
        for c in custom {
            if let Some(buffer) = mode_hist.get(c.data_src.as_str()) {
                let window = c.window.map(|w| match w {
                    Window::Iters(n) => n,
                    Window::Epoch => batch_idx + 1,
                    Window::Global => ctx.iter as usize + 1,
                });
                if let Some(v) = buffer.statistic(c.method, window) {
                    tag.insert(c.log_name.clone(), TagValue::Float(v));
                }
            }
        }
        tag
    }

    fn value_str(&self, v: &TagValue) -> String {
        match v {
            TagValue::Float(x) => pyfmt::fixed(*x, self.num_digits),
            TagValue::Int(i) => i.to_string(),
        }
    }
}

fn value_f64(v: &TagValue) -> f64 {
    match v {
        TagValue::Float(x) => *x,
        TagValue::Int(i) => *i as f64,
    }
}

fn rjust(s: &str, width: usize) -> String {
    format!("{s:>width$}")
}

/// `.*(a|b|c).*` (what `re.search` reduces to a substring test); other regexes
/// are refused rather than misread.
fn parse_mean_pattern(pattern: &str) -> Result<Vec<String>, LogConfigError> {
    let inner = pattern.strip_prefix(".*").unwrap_or(pattern);
    let inner = inner.strip_suffix(".*").unwrap_or(inner);
    let inner = inner
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(inner);
    let alts: Vec<String> = inner.split('|').map(String::from).collect();
    let plain = |a: &String| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_alphanumeric() || "_-/@ ".contains(c))
    };
    if alts.iter().all(plain) {
        Ok(alts)
    } else {
        Err(LogConfigError(format!(
            "`mean_pattern` `{pattern}` is not of the form `.*(name|name).*`, the only form detc supports"
        )))
    }
}

fn custom_log(c: &LogCustomConfig, by_epoch: bool) -> Result<CustomLog, LogConfigError> {
    let method = match c.method_name {
        Some(LogMethod::Mean) => Statistic::Mean,
        Some(LogMethod::Min) => Statistic::Min,
        Some(LogMethod::Max) => Statistic::Max,
        Some(LogMethod::Current) => Statistic::Current,
        None => {
            return Err(LogConfigError(format!(
                "`custom_cfg` entry `{}` needs `method_name`",
                c.data_src
            )))
        }
    };
    let window = match c.window_size {
        None => None,
        Some(WindowSize::Iters(n)) => Some(Window::Iters(n as usize)),
        Some(WindowSize::Named(WindowName::Epoch)) if !by_epoch => {
            return Err(LogConfigError(
                "a `custom_cfg` window cannot be `epoch` when `by_epoch` is false".into(),
            ))
        }
        Some(WindowSize::Named(WindowName::Epoch)) => Some(Window::Epoch),
        Some(WindowSize::Named(WindowName::Global)) => Some(Window::Global),
    };
    Ok(CustomLog {
        data_src: c.data_src.clone(),
        log_name: c.log_name.clone().unwrap_or(c.data_src.clone()),
        method,
        window,
    })
}
