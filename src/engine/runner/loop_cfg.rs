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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopCfg {
    pub kind: LoopKind,
    /// Validate every this many epochs (iterations).
    pub val_interval: u64,
    /// No validation before this many epochs (iterations) are done.
    pub val_begin: u64,
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
        if cfg.get("dynamic_intervals").is_some_and(|v| !v.is_null()) {
            return Err(input(
                "train_cfg.dynamic_intervals: not supported yet; remove it",
            ));
        }
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
        })
    }

    /// Whether validation runs once `done` epochs (iterations) of `max` are done.
    pub fn validates_after(&self, done: u64, max: u64) -> bool {
        done >= self.val_begin && (done.is_multiple_of(self.val_interval) || done == max)
    }
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
}
