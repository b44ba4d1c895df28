//! `train_cfg`: which train loop, how long, and when to validate, as
//! `Runner.build_train_loop` reads it (`type: EpochBasedTrainLoop |
//! IterBasedTrainLoop`, or MMEngine's `by_epoch: true | false`).

use serde_json::Value;

use super::{input, Failure};

/// The train loop and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopKind {
    /// `EpochBasedTrainLoop(max_epochs)`.
    EpochBased { max_epochs: u64 },
    /// `IterBasedTrainLoop(max_iters)`: one endless stream of batches.
    IterBased { max_iters: u64 },
}

/// `train_cfg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopCfg {
    pub kind: LoopKind,
    /// Validate every this many epochs (iterations).
    pub val_interval: u64,
    /// No validation before this many epochs (iterations) are done.
    pub val_begin: u64,
    /// `dynamic_intervals`: `(from, val_interval)` in order; from `from`
    /// (counted as MMEngine's `calc_dynamic_intervals` does) on, validate
    /// every `val_interval`.
    pub dynamic_intervals: Vec<(u64, u64)>,
}

impl LoopCfg {
    /// Reads `train_cfg` of the resolved config.
    pub fn from_config(config: &Value) -> Result<Self, Failure> {
        let cfg = config
            .get("train_cfg")
            .filter(|c| c.is_object())
            .ok_or_else(|| input("the config has no `train_cfg`"))?;
        let ty = cfg.get("type").and_then(Value::as_str);
        let by_epoch = cfg.get("by_epoch").and_then(Value::as_bool);
        let iter_based = match (ty, by_epoch) {
            (Some(_), Some(_)) => {
                return Err(input(
                    "train_cfg: set `type` or `by_epoch`, not both (as MMEngine)",
                ))
            }
            (Some("EpochBasedTrainLoop"), None) | (None, Some(true)) => false,
            (Some("IterBasedTrainLoop"), None) | (None, Some(false)) => true,
            (Some(other), None) => {
                return Err(input(format!(
                    "train_cfg.type: detc trains with EpochBasedTrainLoop or IterBasedTrainLoop, not `{other}`"
                )))
            }
            (None, None) => {
                return Err(input(
                    "train_cfg: needs `type` (EpochBasedTrainLoop / IterBasedTrainLoop) or `by_epoch`",
                ))
            }
        };
        let dynamic_intervals = match cfg.get("dynamic_intervals") {
            None | Some(Value::Null) => vec![],
            Some(list) => dynamic_intervals(list)?,
        };
        let int = |k: &str| cfg.get(k).and_then(Value::as_u64);
        let kind = if iter_based {
            let max_iters = int("max_iters").filter(|&n| n > 0).ok_or_else(|| {
                input("train_cfg: IterBasedTrainLoop needs `max_iters` (1 or more)")
            })?;
            LoopKind::IterBased { max_iters }
        } else {
            LoopKind::EpochBased {
                max_epochs: int("max_epochs").unwrap_or(0).max(1),
            }
        };
        // MMEngine's defaults: every epoch, or every 1000 iterations.
        let default_interval = if iter_based { 1000 } else { 1 };
        Ok(LoopCfg {
            kind,
            val_interval: int("val_interval").unwrap_or(default_interval).max(1),
            val_begin: int("val_begin").unwrap_or(1),
            dynamic_intervals,
        })
    }

    /// Whether validation runs once `done` epochs (iterations) of `max` are
    /// done: MMEngine's loops decide the interval (`_decide_current_val_interval`:
    /// the last `dynamic_intervals` entry whose start is at most `done + 1`)
    /// and then validate at its multiples and at the end.
    pub fn validates_after(&self, done: u64, max: u64) -> bool {
        let interval = self
            .dynamic_intervals
            .iter()
            .take_while(|(from, _)| *from <= done + 1)
            .last()
            .map_or(self.val_interval, |&(_, every)| every);
        done >= self.val_begin && (done.is_multiple_of(interval) || done == max)
    }
}

/// `dynamic_intervals`: `[[from, interval], ...]` with `from` increasing
/// and every interval at least 1.
fn dynamic_intervals(list: &Value) -> Result<Vec<(u64, u64)>, Failure> {
    let bad = || input("train_cfg.dynamic_intervals: expected a list of [from, val_interval] pairs, `from` increasing, intervals of 1 or more");
    let items = list.as_array().ok_or_else(bad)?;
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(items.len());
    for item in items {
        let pair = item.as_array().filter(|p| p.len() == 2).ok_or_else(bad)?;
        let (from, every) = (pair[0].as_u64().ok_or_else(bad)?, pair[1].as_u64().filter(|&n| n > 0).ok_or_else(bad)?);
        if out.last().is_some_and(|&(prev, _)| prev > from) {
            return Err(bad());
        }
        out.push((from, every));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(train_cfg: Value) -> Result<LoopCfg, Failure> {
        LoopCfg::from_config(&json!({ "train_cfg": train_cfg }))
    }

    #[test]
    fn both_loops_and_mmengine_defaults() {
        let epochs = parse(json!({"type": "EpochBasedTrainLoop", "max_epochs": 12})).unwrap();
        assert_eq!(epochs.kind, LoopKind::EpochBased { max_epochs: 12 });
        assert_eq!((epochs.val_interval, epochs.val_begin), (1, 1));
        let iters = parse(json!({"by_epoch": false, "max_iters": 90000})).unwrap();
        assert_eq!(iters.kind, LoopKind::IterBased { max_iters: 90000 });
        assert_eq!((iters.val_interval, iters.val_begin), (1000, 1));
        // IterBasedTrainLoop: at 1000, 2000, …, and the last iteration.
        assert!(iters.validates_after(2000, 90000) && !iters.validates_after(2001, 90000));
        assert!(iters.validates_after(90000, 90000));
        assert!(
            parse(json!({"type": "IterBasedTrainLoop", "by_epoch": false, "max_iters": 9}))
                .is_err()
        );
        assert!(parse(json!({"type": "IterBasedTrainLoop"})).is_err());
    }

    /// RTMDet's `dynamic_intervals: [[280, 1]]` with `val_interval: 10` over
    /// 300 epochs: every 10th epoch, then from MMEngine's switch (decided
    /// with the epochs done plus one, so already after epoch 279) every epoch.
    #[test]
    fn dynamic_intervals_switch_as_mmengine() {
        let cfg = parse(json!({"type": "EpochBasedTrainLoop", "max_epochs": 300, "val_interval": 10,
                                "dynamic_intervals": [[280, 1]]}))
        .unwrap();
        let validated: Vec<u64> = (1..=300).filter(|&e| cfg.validates_after(e, 300)).collect();
        let mut want: Vec<u64> = (1..=27).map(|k| k * 10).collect();
        want.extend(279..=300);
        assert_eq!(validated, want);
        assert!(parse(json!({"type": "EpochBasedTrainLoop", "max_epochs": 3, "dynamic_intervals": [[2, 0]]})).is_err());
        assert!(parse(json!({"type": "EpochBasedTrainLoop", "max_epochs": 3, "dynamic_intervals": [[5, 1], [2, 1]]})).is_err());
    }
}
