//! `LoggerHook`'s timing (mmengine/hooks/logger_hook.py): which iterations
//! get a log line, when the `Exp name:` line appears, and the `step` of each
//! `scalars.json` record. The lines themselves come from `LogProcessor`.
//!
//! `batch_idx` is what MMEngine's loops pass: the index in the epoch for
//! `EpochBasedTrainLoop`, the global iteration for `IterBasedTrainLoop`
//! (so its `end_of_epoch` fires once, at `iter + 1 == len(dataloader)`).

use detc::registry::engine::LoggerHookConfig;

/// `LoggerHook(interval, ignore_last, interval_exp_name, log_metric_by_epoch)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggerPolicy {
    /// Log every this many iterations of a loop.
    pub interval: u64,
    /// Skip the tail of an epoch shorter than `interval`.
    pub ignore_last: bool,
    /// Print `Exp name: …` every this many training iterations.
    pub interval_exp_name: u64,
    /// Record validation metrics at the epoch (true) or the iteration.
    pub log_metric_by_epoch: bool,
}

impl LoggerPolicy {
    /// From the config's `default_hooks.logger`.
    pub fn from_config(cfg: &LoggerHookConfig) -> Self {
        LoggerPolicy {
            interval: u64::from(cfg.interval.max(1)),
            ignore_last: cfg.ignore_last,
            interval_exp_name: u64::from(cfg.interval_exp_name.max(1)),
            log_metric_by_epoch: cfg.log_metric_by_epoch,
        }
    }

    /// `after_train_iter`: log this iteration? (`runner.iter` is `iter`.)
    pub fn log_train_iter(&self, batch_idx: u64, train_len: u64) -> bool {
        (batch_idx + 1).is_multiple_of(self.interval)
            || (batch_idx + 1 == train_len && (!self.ignore_last || train_len <= self.interval))
    }

    /// `after_train_iter`: print `Exp name: <experiment_name>` first?
    pub fn log_exp_name(&self, iter: u64, batch_idx: u64, train_len: u64) -> bool {
        (iter + 1).is_multiple_of(self.interval_exp_name) || batch_idx + 1 == train_len
    }

    /// `after_val_iter` / `after_test_iter`: log this batch?
    pub fn log_eval_iter(&self, batch_idx: u64) -> bool {
        (batch_idx + 1).is_multiple_of(self.interval)
    }

    /// The `step` of a training record: `runner.iter + 1`.
    pub fn train_step(iter: u64) -> u64 {
        iter + 1
    }

    /// The `step` of a validation record: `runner.epoch` or `runner.iter`
    /// (0 without a train loop).
    pub fn val_step(&self, epoch: u64, iter: u64, has_train_loop: bool) -> u64 {
        match (has_train_loop, self.log_metric_by_epoch) {
            (false, _) => 0,
            (true, true) => epoch,
            (true, false) => iter,
        }
    }
}

/// `Runner.experiment_name`: `<name>_<timestamp>`, the name being the
/// config's `experiment_name` or else the config file's stem.
pub fn experiment_name(name: &str, timestamp: &str) -> String {
    format!("{name}_{timestamp}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmengine_timing() {
        let cfg: LoggerHookConfig =
            serde_json::from_value(serde_json::json!({"interval": 50})).unwrap();
        let p = LoggerPolicy::from_config(&cfg);
        // 7330 batches: 50, 100, …, 7300; the 30-batch tail is skipped (ignore_last).
        assert!(
            p.log_train_iter(49, 7330)
                && !p.log_train_iter(50, 7330)
                && !p.log_train_iter(7329, 7330)
        );
        // An epoch shorter than the interval logs its last batch.
        assert!(p.log_train_iter(9, 10));
        let p = LoggerPolicy {
            ignore_last: false,
            ..p
        };
        assert!(p.log_train_iter(7329, 7330));
        assert!(
            p.log_exp_name(999, 5, 7330)
                && p.log_exp_name(3, 7329, 7330)
                && !p.log_exp_name(3, 5, 7330)
        );
        assert_eq!(p.val_step(3, 120, true), 3);
        assert_eq!(
            LoggerPolicy {
                log_metric_by_epoch: false,
                ..p
            }
            .val_step(3, 120, true),
            120
        );
        assert_eq!(
            experiment_name("queryinst_r50_fpn_1x_coco", "20261128_120000"),
            "queryinst_r50_fpn_1x_coco_20261128_120000"
        );
    }
}
