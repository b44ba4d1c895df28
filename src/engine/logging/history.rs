//! The logged scalar histories (`mmengine.logging.HistoryBuffer` and the
//! `log_scalars` half of `MessageHub`): one bounded buffer per key, in the
//! order keys were first logged (which is the order of the log line).
//!
//! Smoothing must print the digits MMEngine prints, so `mean` sums the window
//! the way numpy's `ndarray.sum` does (pairwise, 8 accumulators, blocks of
//! 128) rather than left to right.

use std::collections::VecDeque;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// MMEngine's `HistoryBuffer.max_length`: the most values any history keeps.
pub const MMENGINE_MAX_LENGTH: usize = 1_000_000;

/// The values (and their counts) logged under one key, newest last, at most
/// `max_length` of them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryBuffer {
    values: VecDeque<f64>,
    counts: VecDeque<u64>,
    max_length: usize,
}

/// Which statistic a custom log entry reports (`HistoryBuffer.statistics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// Weighted mean: sum of values / sum of counts.
    Mean,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// The newest value.
    Current,
}

impl HistoryBuffer {
    /// An empty history keeping at most `max_length` (at least 1) values.
    pub fn new(max_length: usize) -> Self {
        HistoryBuffer {
            values: VecDeque::new(),
            counts: VecDeque::new(),
            max_length: max_length.max(1),
        }
    }

    /// Appends `value` logged `count` times (`HistoryBuffer.update`).
    pub fn update(&mut self, value: f64, count: u64) {
        self.values.push_back(value);
        self.counts.push_back(count);
        while self.values.len() > self.max_length {
            self.values.pop_front();
            self.counts.pop_front();
        }
    }

    /// Number of values held.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True before the first `update`.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The newest value (`current()`), `None` before the first update.
    pub fn current(&self) -> Option<f64> {
        self.values.back().copied()
    }

    /// numpy's `_log_history[-window:]`: `window` 0 or past the length means all.
    fn window(&self, window: Option<usize>) -> (Vec<f64>, u64) {
        let n = self.values.len();
        let w = match window {
            Some(w) if w > 0 && w < n => w,
            _ => n,
        };
        let values: Vec<f64> = self.values.iter().skip(n - w).copied().collect();
        let counts = self.counts.iter().skip(n - w).sum();
        (values, counts)
    }

    /// Mean of the newest `window` values weighted by their counts (`mean(window)`);
    /// `None` means the whole history.
    pub fn mean(&self, window: Option<usize>) -> Option<f64> {
        if self.is_empty() {
            return None;
        }
        let (values, counts) = self.window(window);
        Some(numpy_sum(&values) / counts as f64)
    }

    /// `statistics(method, window_size=window)`; `Current` ignores the window.
    pub fn statistic(&self, method: Statistic, window: Option<usize>) -> Option<f64> {
        if self.is_empty() {
            return None;
        }
        let (values, _) = self.window(window);
        // numpy's max/min propagate NaN; fold with an explicit NaN check to match.
        let pick = |better: fn(f64, f64) -> bool| {
            values
                .iter()
                .copied()
                .fold(None, |acc: Option<f64>, v| match acc {
                    Some(a) if a.is_nan() => Some(a),
                    Some(_) if v.is_nan() => Some(v),
                    Some(a) => Some(if better(v, a) { v } else { a }),
                    None => Some(v),
                })
        };
        match method {
            Statistic::Mean => self.mean(window),
            Statistic::Current => self.current(),
            Statistic::Max => pick(|v, a| v > a),
            Statistic::Min => pick(|v, a| v < a),
        }
    }
}

/// numpy's float64 `add.reduce` of a contiguous array (pairwise_sum in
/// numpy/core/src/umath/loops_utils.h.src), so means round as MMEngine's do.
pub fn numpy_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |acc, v| acc + v)
    } else if n <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for v in &a[i..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&a[..n2]) + numpy_sum(&a[n2..])
    }
}

/// The logged scalars of a run, keyed `train/loss`, `val/data_time`, …
/// (`MessageHub.log_scalars`), in first-logged order.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarHub {
    buffers: IndexMap<String, HistoryBuffer>,
    max_length: usize,
}

/// One key's history in a [`HubState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BufferState {
    /// The key, e.g. `train/loss`.
    pub key: String,
    /// Values, oldest first.
    pub values: Vec<f64>,
    /// Their counts.
    pub counts: Vec<u64>,
}

/// What a checkpoint stores so that a resumed run smooths exactly as the
/// uninterrupted one: every key (in order) with its retained history.
/// Keep the floats binary (a pickle `float`, a `serde_json::Value`): parsed
/// back from JSON text by serde_json without `float_roundtrip`, a value can
/// come back one ulp off and change a printed digit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HubState {
    /// Keys in first-logged order.
    pub buffers: Vec<BufferState>,
}

impl ScalarHub {
    /// A hub whose histories keep `max_length` values each: at least the
    /// smoothing window (see `LogProcessor::history_len`).
    pub fn new(max_length: usize) -> Self {
        ScalarHub {
            buffers: IndexMap::new(),
            max_length: max_length.max(1),
        }
    }

    /// Logs `value` under `key` once (`update_scalar(key, value)`).
    pub fn update(&mut self, key: &str, value: f64) {
        self.update_counted(key, value, 1);
    }

    /// Logs `value` under `key`, weighing `count` in means.
    pub fn update_counted(&mut self, key: &str, value: f64, count: u64) {
        let max_length = self.max_length;
        self.buffers
            .entry(key.to_string())
            .or_insert_with(|| HistoryBuffer::new(max_length))
            .update(value, count);
    }

    /// The history of `key`.
    pub fn get(&self, key: &str) -> Option<&HistoryBuffer> {
        self.buffers.get(key)
    }

    /// All histories in first-logged order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &HistoryBuffer)> {
        self.buffers.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The state a checkpoint keeps (`MessageHub.state_dict()['log_scalars']`).
    pub fn state(&self) -> HubState {
        let buffers = self
            .buffers
            .iter()
            .map(|(key, b)| BufferState {
                key: key.clone(),
                values: b.values.iter().copied().collect(),
                counts: b.counts.iter().copied().collect(),
            })
            .collect();
        HubState { buffers }
    }

    /// Restores the histories of `state` (replacing same-named ones), keeping
    /// this hub's `max_length`.
    pub fn load_state(&mut self, state: &HubState) {
        for b in &state.buffers {
            let mut buffer = HistoryBuffer::new(self.max_length);
            for (v, c) in b.values.iter().zip(&b.counts) {
                buffer.update(*v, *c);
            }
            self.buffers.insert(b.key.clone(), buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_state_round_trip() {
        let mut hub = ScalarHub::new(3);
        for v in [1.0, 2.0, 3.0, 4.0] {
            hub.update("train/loss", v);
        }
        let b = hub.get("train/loss").unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b.mean(Some(2)), Some(3.5));
        assert_eq!(b.mean(None), Some(3.0));
        assert_eq!(b.statistic(Statistic::Max, Some(10)), Some(4.0));
        let mut back = ScalarHub::new(3);
        back.load_state(&hub.state());
        assert_eq!(back, hub);
    }
}
