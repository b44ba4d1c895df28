//! `CheckpointHook`'s file policy (mmengine/hooks/checkpoint_hook.py, 0.10.7):
//! when to save, under which name, which older files to delete, and the
//! `save_best` bookkeeping. The runner writes the bytes through a callback.
//!
//! One deliberate difference: MMEngine deletes the oldest kept checkpoint
//! (and the previous best) *before* writing the new one, so a crash mid-save
//! can leave no good checkpoint. detc writes the new file first (atomically,
//! through the callback), then `last_checkpoint` (atomically), and only then
//! deletes: the files left at the end are exactly MMEngine's, and nothing
//! saved is lost before its successor is on disk.
//!
//! The runner drives this hook on rank 0 only, with the counters MMEngine's
//! hooks see (`runner.epoch`, `runner.iter`: see [`Progress`]).

// The runner wires this in; until it lands the binary reads only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::work_dir::{write_atomic, LAST_CHECKPOINT};
use detc::registry::engine::{BestRule, CheckpointHookConfig};
use detc::registry::models::common::{OneOrMany, StrOrList};

/// MMEngine's `_default_greater_keys`.
const GREATER_KEYS: [&str; 10] = [
    "acc",
    "top",
    "AR@",
    "auc",
    "precision",
    "mAP",
    "mDice",
    "mIoU",
    "mAcc",
    "aAcc",
];
/// MMEngine's `_default_less_keys`.
const LESS_KEYS: [&str; 1] = ["loss"];

/// The runner's counters at a hook call, as MMEngine's hooks read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// `runner.epoch`: in `after_train_iter`/`after_train_epoch` the current
    /// 0-based epoch; in `after_val_epoch` the epochs completed.
    pub epoch: u64,
    /// `runner.iter`: in `after_train_iter` the current 0-based iteration; in
    /// `after_train_epoch`/`after_val_epoch` the iterations completed.
    pub iter: u64,
    /// `runner.max_epochs`.
    pub max_epochs: u64,
    /// `runner.max_iters`.
    pub max_iters: u64,
}

/// The hook's part of the checkpoint's `message_hub`, so that a resumed run
/// keeps deleting and comparing as the uninterrupted one would. Map keys are
/// MMEngine's runtime-info names: `best_score`/`best_ckpt` with one
/// `save_best` metric, `best_score_<metric>`/`best_ckpt_<metric>` with several.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointHookState {
    /// Steps (epochs or iterations) of the periodic checkpoints kept, oldest first.
    #[serde(default)]
    pub keep_ckpt_ids: Vec<u64>,
    /// Best score so far per metric.
    #[serde(default)]
    pub best_score: BTreeMap<String, f64>,
    /// Path of the best checkpoint per metric.
    #[serde(default)]
    pub best_ckpt: BTreeMap<String, String>,
    /// Path of the newest periodic checkpoint (MMEngine's `last_ckpt` info;
    /// informational: like MMEngine, a resumed hook does not act on it).
    #[serde(default)]
    pub last_ckpt: Option<String>,
}

/// What the runner must write for one save.
#[derive(Debug)]
pub struct SaveRequest<'a> {
    /// Where: write atomically (temporary file, fsync, rename).
    pub path: &'a Path,
    /// Include the optimizer state (false for best checkpoints).
    pub include_optimizer: bool,
    /// Include the parameter scheduler states (false for best checkpoints).
    pub include_param_scheduler: bool,
    /// `meta.epoch`: epochs completed at this checkpoint.
    pub epoch: u64,
    /// `meta.iter`: iterations completed at this checkpoint.
    pub iter: u64,
    /// The hook state to store in the checkpoint (already updated for this save).
    pub hook_state: &'a CheckpointHookState,
}

/// The callback that writes a checkpoint.
pub type SaveFn<'f> = dyn FnMut(&SaveRequest<'_>) -> io::Result<()> + 'f;

/// What one hook call did, for the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Files written (checkpoints; `last_checkpoint` is not listed).
    pub saved: Vec<PathBuf>,
    /// Files deleted.
    pub removed: Vec<PathBuf>,
    /// Log messages, MMEngine's wording.
    pub messages: Vec<String>,
}

/// Why the hook cannot run.
#[derive(Debug)]
pub enum CheckpointHookError {
    /// The `CheckpointHook` config is inconsistent.
    Config(String),
    /// `save_best` names a metric the evaluator did not return.
    MissingMetric {
        /// The `save_best` entry.
        metric: String,
        /// The metrics that were returned.
        available: Vec<String>,
    },
    /// Writing or deleting a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for CheckpointHookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointHookError::Config(msg) => write!(f, "CheckpointHook: {msg}"),
            CheckpointHookError::MissingMetric { metric, available } => write!(
                f,
                "CheckpointHook: `save_best` metric `{metric}` is not among the evaluation results ({}); \
                 set `default_hooks.checkpoint.save_best` to one of them",
                available.join(", ")
            ),
            CheckpointHookError::Io { path, source } => write!(
                f,
                "CheckpointHook: cannot write or remove {}: {source}; earlier checkpoints are intact \
                 (is the disk full? free space or set `work_dir` elsewhere, then `detc run --resume`)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CheckpointHookError {}

type Result<T> = std::result::Result<T, CheckpointHookError>;

/// The hook: its config, resolved, and the state it carries across saves.
#[derive(Debug, Clone)]
pub struct CheckpointHook {
    interval: i64,
    by_epoch: bool,
    save_optimizer: bool,
    save_param_scheduler: bool,
    max_keep_ckpts: i64,
    save_last: bool,
    save_begin: u64,
    /// Template around the one `{}`: (before, after).
    filename_tmpl: (String, String),
    work_dir: PathBuf,
    out_dir: PathBuf,
    /// `save_best` entries (`auto` until the first evaluation resolves it).
    key_indicators: Vec<String>,
    rules: Vec<Option<BestRule>>,
    greater_keys: Vec<String>,
    less_keys: Vec<String>,
    state: CheckpointHookState,
    /// This session's newest periodic checkpoint (MMEngine's `self.last_ckpt`).
    last_ckpt: Option<PathBuf>,
}

impl CheckpointHook {
    /// Checks `cfg` and resolves the checkpoint folder: `work_dir`, or
    /// `out_dir/<basename(work_dir)>` when `out_dir` is set and differs.
    pub fn new(cfg: &CheckpointHookConfig, work_dir: &Path) -> Result<Self> {
        let config = |m: String| CheckpointHookError::Config(m);
        if cfg.published_keys.is_some() {
            return Err(config(
                "`published_keys` is not supported by detc yet; remove it".into(),
            ));
        }
        let tmpl = cfg.filename_tmpl.clone().unwrap_or_else(|| {
            if cfg.by_epoch {
                "epoch_{}.pth"
            } else {
                "iter_{}.pth"
            }
            .to_string()
        });
        let filename_tmpl = match tmpl.split_once("{}") {
            Some((a, b)) if !a.contains(['{', '}']) && !b.contains(['{', '}']) => {
                (a.to_string(), b.to_string())
            }
            _ => {
                return Err(config(format!(
                    "`filename_tmpl` `{tmpl}` must contain `{{}}` exactly once"
                )))
            }
        };
        let work_str = work_dir.to_string_lossy();
        if let Some(uri) = cfg.out_dir.as_deref().filter(|o| o.contains("://")) {
            // MMEngine would write through the file backend of that scheme.
            return Err(config(format!(
                "`out_dir` `{uri}`: only local folders are supported (no storage backends)"
            )));
        }
        let out_dir = match &cfg.out_dir {
            // MMEngine compares the strings: a differently spelled same folder still gets the basename.
            Some(out) if out.as_str() != work_str => {
                let base = Path::new(work_str.trim_end_matches('/'))
                    .file_name()
                    .unwrap_or_default();
                Path::new(out).join(base)
            }
            _ => work_dir.to_path_buf(),
        };
        let key_indicators: Vec<String> = match &cfg.save_best {
            None => vec![],
            Some(StrOrList::One(s)) => vec![s.clone()],
            Some(StrOrList::List(v)) => v.clone(),
        };
        if key_indicators.len() > 1 && key_indicators.iter().any(|k| k == "auto") {
            return Err(config("`save_best` may hold `auto` only alone".into()));
        }
        let mut sorted = key_indicators.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != key_indicators.len() {
            return Err(config("`save_best` names a metric twice".into()));
        }
        let rules: Vec<Option<BestRule>> = match &cfg.rule {
            None => vec![None],
            Some(OneOrMany::One(r)) => vec![Some(*r)],
            Some(OneOrMany::Many(rs)) => rs.iter().copied().map(Some).collect(),
        };
        if !key_indicators.is_empty() && rules.len() != 1 && rules.len() != key_indicators.len() {
            return Err(config(format!(
                "`rule` has {} entries; give one, or one per `save_best` metric ({})",
                rules.len(),
                key_indicators.len()
            )));
        }
        let mut hook = CheckpointHook {
            interval: cfg.interval,
            by_epoch: cfg.by_epoch,
            save_optimizer: cfg.save_optimizer,
            save_param_scheduler: cfg.save_param_scheduler,
            max_keep_ckpts: cfg.max_keep_ckpts,
            save_last: cfg.save_last,
            save_begin: cfg.save_begin,
            filename_tmpl,
            work_dir: work_dir.to_path_buf(),
            out_dir,
            key_indicators: vec![],
            rules: vec![],
            greater_keys: cfg
                .greater_keys
                .clone()
                .unwrap_or_else(|| GREATER_KEYS.map(String::from).to_vec()),
            less_keys: cfg
                .less_keys
                .clone()
                .unwrap_or_else(|| LESS_KEYS.map(String::from).to_vec()),
            state: CheckpointHookState::default(),
            last_ckpt: None,
        };
        if !key_indicators.is_empty() {
            hook.init_rule(rules, key_indicators)?;
        }
        Ok(hook)
    }

    /// The folder checkpoints go to.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// The state to store in a checkpoint.
    pub fn state(&self) -> &CheckpointHookState {
        &self.state
    }

    /// `before_train`: takes the state of the checkpoint resumed from (if any)
    /// and deletes kept checkpoints beyond `max_keep_ckpts` (when it shrank).
    pub fn before_train(&mut self, resumed: Option<CheckpointHookState>) -> Result<Outcome> {
        let mut out = Outcome::default();
        out.messages.push(format!(
            "Checkpoints will be saved to {}.",
            self.out_dir.display()
        ));
        if let Some(state) = resumed {
            self.state = state;
        }
        if self.max_keep_ckpts > 0 {
            while self.state.keep_ckpt_ids.len() > self.max_keep_ckpts as usize {
                let step = self.state.keep_ckpt_ids.remove(0);
                remove_path(&self.ckpt_path(step), &mut out)?;
            }
        }
        Ok(out)
    }

    /// Whether `after_train_iter` saves at `p`.
    pub fn saves_after_iter(&self, p: Progress) -> bool {
        !self.by_epoch
            && (every_n(p.iter, self.interval, self.save_begin) || (self.save_last && p.iter + 1 == p.max_iters))
    }

    /// `after_train_iter`: iteration-based periodic and last saves.
    pub fn after_train_iter(&mut self, p: Progress, save: &mut SaveFn<'_>) -> Result<Outcome> {
        let mut out = Outcome::default();
        if self.saves_after_iter(p) {
            out.messages
                .push(format!("Saving checkpoint at {} iterations", p.iter + 1));
            self.save_with_step(p.iter + 1, (p.epoch, p.iter + 1), save, &mut out)?;
        }
        Ok(out)
    }

    /// `after_train_epoch`: epoch-based periodic and last saves.
    pub fn after_train_epoch(&mut self, p: Progress, save: &mut SaveFn<'_>) -> Result<Outcome> {
        let mut out = Outcome::default();
        if !self.by_epoch {
            return Ok(out);
        }
        if every_n(p.epoch, self.interval, self.save_begin)
            || (self.save_last && p.epoch + 1 == p.max_epochs)
        {
            out.messages
                .push(format!("Saving checkpoint at {} epochs", p.epoch + 1));
            self.save_with_step(p.epoch + 1, (p.epoch + 1, p.iter), save, &mut out)?;
        }
        Ok(out)
    }

    /// Outside the schedule: a checkpoint of the run's position after
    /// `p.iter` iterations (`iter_<n>.pth`, with the optimizer and scheduler
    /// states whatever the config says, so that it resumes exactly), named
    /// in `last_checkpoint`. The save before a preempted run stops; not one
    /// of the periodic checkpoints `max_keep_ckpts` counts. Nothing is
    /// written again when the schedule has just saved this position.
    pub fn save_now(&mut self, p: Progress, save: &mut SaveFn<'_>) -> Result<Outcome> {
        let mut out = Outcome::default();
        let path = self.out_dir.join(format!("iter_{}.pth", p.iter));
        if self.last_ckpt.as_deref() == Some(path.as_path()) {
            return Ok(out);
        }
        out.messages.push(format!("Saving checkpoint at {} iterations", p.iter));
        self.write(&path, true, true, (p.epoch, p.iter), save, &mut out)?;
        self.write_last_checkpoint(&path)?;
        self.last_ckpt = Some(path);
        Ok(out)
    }

    /// `after_val_epoch`: the `save_best` logic on the evaluation `metrics`
    /// (in the evaluator's order; `auto` takes the first).
    pub fn after_val_epoch(
        &mut self,
        p: Progress,
        metrics: &[(String, f64)],
        save: &mut SaveFn<'_>,
    ) -> Result<Outcome> {
        let mut out = Outcome::default();
        if metrics.is_empty() {
            out.messages.push(
                "Since `metrics` is an empty dict, the behavior to save the best checkpoint will be skipped in this \
                 evaluation."
                    .into(),
            );
            return Ok(out);
        }
        if self.key_indicators.is_empty() {
            return Ok(out);
        }
        let (cur_type, cur_time) = if self.by_epoch {
            ("epoch", p.epoch)
        } else {
            ("iter", p.iter)
        };
        let ckpt_filename = self.filename(cur_time);
        let meta = (p.epoch, p.iter);
        if self.key_indicators.iter().any(|k| k == "auto") {
            self.init_rule(self.rules.clone(), vec![metrics[0].0.clone()])?;
        }
        let single = self.key_indicators.len() == 1;
        let mut updated = false;
        for (key, rule) in self
            .key_indicators
            .clone()
            .into_iter()
            .zip(self.rules.clone())
        {
            let Some(&(_, score)) = metrics.iter().find(|(k, _)| *k == key) else {
                let available = metrics.iter().map(|(k, _)| k.clone()).collect();
                return Err(CheckpointHookError::MissingMetric {
                    metric: key,
                    available,
                });
            };
            let (score_key, ckpt_key) = if single {
                ("best_score".into(), "best_ckpt".into())
            } else {
                (format!("best_score_{key}"), format!("best_ckpt_{key}"))
            };
            let rule = rule.unwrap_or(BestRule::Greater); // init_rule resolved every rule
            let best = self
                .state
                .best_score
                .get(&score_key)
                .copied()
                .unwrap_or(match rule {
                    BestRule::Greater => f64::NEG_INFINITY,
                    BestRule::Less => f64::INFINITY,
                });
            let better = match rule {
                BestRule::Greater => score > best,
                BestRule::Less => score < best,
            };
            if !better {
                continue;
            }
            updated = true;
            self.state.best_score.insert(score_key, score);
            let previous = self.state.best_ckpt.get(&ckpt_key).map(PathBuf::from);
            let name = format!("best_{key}_{ckpt_filename}").replace('/', "_");
            let path = self.out_dir.join(&name);
            self.state
                .best_ckpt
                .insert(ckpt_key, path.to_string_lossy().into_owned());
            self.write(&path, false, false, meta, save, &mut out)?;
            if let Some(prev) = previous.filter(|prev| *prev != path) {
                if remove_path(&prev, &mut out)? {
                    out.messages.push(format!(
                        "The previous best checkpoint {} is removed",
                        prev.display()
                    ));
                }
            }
            out.messages
                .push(format!("The best checkpoint with {score:.4} {key} at {cur_time} {cur_type} is saved to {name}."));
        }
        // MMEngine saves the periodic checkpoint again so that it carries the new best.
        if updated && self.last_ckpt.is_some() {
            self.save_with_step(cur_time, meta, save, &mut out)?;
        }
        Ok(out)
    }

    /// `_save_checkpoint_with_step`, writing before deleting.
    fn save_with_step(
        &mut self,
        step: u64,
        meta: (u64, u64),
        save: &mut SaveFn<'_>,
        out: &mut Outcome,
    ) -> Result<()> {
        let mut expired = None;
        if self.max_keep_ckpts > 0 && self.state.keep_ckpt_ids.last() != Some(&step) {
            if self.state.keep_ckpt_ids.len() >= self.max_keep_ckpts as usize {
                expired = Some(self.state.keep_ckpt_ids.remove(0));
            }
            self.state.keep_ckpt_ids.push(step);
        }
        let path = self.ckpt_path(step);
        self.last_ckpt = Some(path.clone());
        self.state.last_ckpt = Some(path.to_string_lossy().into_owned());
        let (optimizer, scheduler) = (self.save_optimizer, self.save_param_scheduler);
        self.write(&path, optimizer, scheduler, meta, save, out)?;
        self.write_last_checkpoint(&path)?;
        if let Some(old) = expired
            .map(|s| self.ckpt_path(s))
            .filter(|old| *old != path)
        {
            remove_path(&old, out)?;
        }
        Ok(())
    }

    fn write(
        &self,
        path: &Path,
        include_optimizer: bool,
        include_param_scheduler: bool,
        (epoch, iter): (u64, u64),
        save: &mut SaveFn<'_>,
        out: &mut Outcome,
    ) -> Result<()> {
        let request = SaveRequest {
            path,
            include_optimizer,
            include_param_scheduler,
            epoch,
            iter,
            hook_state: &self.state,
        };
        save(&request).map_err(|source| CheckpointHookError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        out.saved.push(path.to_path_buf());
        Ok(())
    }

    /// `_init_rule`: one rule per metric, inferred from the name when not given.
    fn init_rule(&mut self, rules: Vec<Option<BestRule>>, keys: Vec<String>) -> Result<()> {
        let rules = if rules.len() == 1 {
            vec![rules[0]; keys.len()]
        } else {
            rules
        };
        let lower = |v: &[String]| v.iter().map(|k| k.to_lowercase()).collect::<Vec<_>>();
        let (greater, less) = (lower(&self.greater_keys), lower(&self.less_keys));
        let mut resolved = vec![];
        for (rule, key) in rules.into_iter().zip(&keys) {
            let rule = match rule {
                Some(r) => Some(r),
                None if key == "auto" => None,
                None => {
                    let lc = key.to_lowercase();
                    if greater.contains(&lc) {
                        Some(BestRule::Greater)
                    } else if less.contains(&lc) {
                        Some(BestRule::Less)
                    } else if greater.iter().any(|g| lc.contains(g.as_str())) {
                        Some(BestRule::Greater)
                    } else if less.iter().any(|l| lc.contains(l.as_str())) {
                        Some(BestRule::Less)
                    } else {
                        return Err(CheckpointHookError::Config(format!(
                            "cannot infer whether a greater or a smaller `{key}` is better; set `rule: greater` or `rule: less`"
                        )));
                    }
                }
            };
            resolved.push(rule);
        }
        self.rules = resolved;
        self.key_indicators = keys;
        Ok(())
    }

    fn filename(&self, step: u64) -> String {
        format!("{}{step}{}", self.filename_tmpl.0, self.filename_tmpl.1)
    }

    /// Names `path` in the work dir's `last_checkpoint` (what `--resume` reads).
    fn write_last_checkpoint(&self, path: &Path) -> Result<()> {
        let last = self.work_dir.join(LAST_CHECKPOINT);
        write_atomic(&last, path.to_string_lossy().as_bytes())
            .map_err(|source| CheckpointHookError::Io { path: last, source })
    }

    fn ckpt_path(&self, step: u64) -> PathBuf {
        self.out_dir.join(self.filename(step))
    }
}

/// `Hook.every_n_epochs` / `every_n_train_iters` with `start`.
fn every_n(counter: u64, n: i64, start: u64) -> bool {
    let dividend = counter as i64 + 1 - start as i64;
    n > 0 && dividend >= 0 && dividend % n == 0
}

/// Removes a checkpoint file (or a folder, as DeepSpeed saves); false when absent.
fn remove_path(path: &Path, out: &mut Outcome) -> Result<bool> {
    let io = |source| CheckpointHookError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.is_file() {
        std::fs::remove_file(path).map_err(io)?;
    } else if path.is_dir() {
        std::fs::remove_dir_all(path).map_err(io)?;
    } else {
        return Ok(false);
    }
    out.removed.push(path.to_path_buf());
    Ok(true)
}

#[cfg(test)]
pub(crate) mod tests;
