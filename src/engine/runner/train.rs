//! The train loops (MMEngine's `EpochBasedTrainLoop` and
//! `IterBasedTrainLoop`), the train step and validation. The loops only
//! move through the data and call the hook stages; the hooks record, log,
//! step the schedulers and save.

use std::ops::ControlFlow;

use detc::data::loader::Batch;
use detc::data::PackedSample;
use indexmap::IndexMap;
use tch::{Device, Kind, Tensor};

use super::build::Runner;
use super::loop_cfg::LoopKind;
use super::state::Position;
use super::bench::{Phase, StepTimes};
use super::{input, runtime, Failure, RunState};
use crate::engine::data::DataParts;
use crate::engine::evaluate::evaluate;
use crate::engine::native;
use crate::engine::hooks::{Hook, HookResult, TrainIter, ValEpoch};
use crate::engine::logging::progress::ProgressBar;
use crate::engine::preempt::{self, EXIT_PREEMPTED};
use crate::models::detectors;
use crate::models::layers::ModelError;

impl Runner {
    /// `train_loop.run()`: `before_train`, the loop, `after_train` (also
    /// after a failure; the first failure is returned).
    pub fn train(&mut self, data: &mut DataParts) -> Result<(), Failure> {
        if self.state.shape.train_len == 0 {
            return Err(input("train_dataloader has no batches (empty dataset?)"));
        }
        let (done, max_iters) = (self.state.position.iter, self.state.shape.max_iters);
        self.state.wrapper.initialize_count_status(done, max_iters);
        self.call(|h, s| h.before_train(s))?;
        let trained = match self.loop_cfg.kind {
            LoopKind::EpochBased { .. } => self.run_epochs(data),
            LoopKind::IterBased { .. } => self.run_iters(data),
        };
        let finished = self.call(|h, s| h.after_train(s));
        trained.and(finished)?;
        let message = format!("training done; work dir {}", self.state.work_dir.display());
        self.state.info(&message)
    }

    /// Calls one hook stage on every hook, in priority order.
    fn call(
        &mut self,
        stage: impl FnMut(&mut dyn Hook, &mut RunState) -> HookResult,
    ) -> HookResult {
        self.hooks.call(&mut self.state, stage)
    }

    /// `EpochBasedTrainLoop.run`: each epoch, then validation when due.
    fn run_epochs(&mut self, data: &mut DataParts) -> Result<(), Failure> {
        let max_epochs = self.state.shape.max_epochs;
        while self.state.epoch < max_epochs {
            self.run_epoch(data)?;
            self.state.epoch += 1;
            if self.val.is_some() && self.loop_cfg.validates_after(self.state.epoch, max_epochs) {
                self.validate()?;
            }
        }
        Ok(())
    }

    /// `EpochBasedTrainLoop.run_epoch`: the epoch's batches from the
    /// position on (mid-epoch after a resume).
    fn run_epoch(&mut self, data: &mut DataParts) -> Result<(), Failure> {
        self.call(|h, s| h.before_train_epoch(s))?;
        let (epoch, first) = (self.state.epoch, self.state.position.batch as usize);
        let batches = data.batches(self.state.sampler_epoch, first);
        let label = format!("Epoch(train) [{}]", epoch + 1);
        self.state.bar = self
            .is_main()
            .then(|| ProgressBar::new(self.state.shape.train_len, &label));
        for batch in data.loader.epoch(epoch, batches, first) {
            let batch = batch.map_err(input)?;
            let batch_idx = batch.position as u64;
            self.run_iter(batch, batch_idx)?;
            self.show_progress(batch_idx + 1);
            self.stop_if_preempted()?;
        }
        self.state.bar = None;
        self.state.position = Position {
            epoch: epoch + 1,
            iter: self.state.iter,
            batch: 0,
        };
        self.call(|h, s| h.after_train_epoch(s))
    }

    /// `IterBasedTrainLoop.run`: one endless stream of batches (a pass over
    /// the data rolls over into the next, the sampler re-seeded for it, as
    /// MMEngine's `_InfiniteDataloaderIterator`), validation when due. The
    /// whole run is one epoch for the hooks. A resumed run starts its
    /// stream at the saved pass and batch: nothing is replayed.
    fn run_iters(&mut self, data: &mut DataParts) -> Result<(), Failure> {
        self.call(|h, s| h.before_train_epoch(s))?;
        let max_iters = self.state.shape.max_iters;
        self.state.bar = self
            .is_main()
            .then(|| ProgressBar::new(max_iters, "Iter(train)"));
        while self.state.iter < max_iters {
            let Position {
                epoch: pass,
                batch: first,
                ..
            } = self.state.position;
            self.state.sampler_epoch = pass;
            let batches = data.batches(pass, first as usize);
            let mut stream = data.loader.epoch(pass, batches, first as usize);
            while self.state.iter < max_iters {
                let Some(batch) = stream.next() else { break };
                let batch = batch.map_err(input)?;
                self.run_iter(batch, self.state.iter)?;
                self.show_progress(self.state.iter);
                self.stop_if_preempted()?;
                if self.val.is_some() && self.loop_cfg.validates_after(self.state.iter, max_iters) {
                    self.validate()?;
                }
            }
            if self.state.iter < max_iters {
                // The pass is over: the next one starts at its first batch.
                self.state.position = Position {
                    epoch: pass + 1,
                    iter: self.state.iter,
                    batch: 0,
                };
            }
        }
        self.state.bar = None;
        self.call(|h, s| h.after_train_epoch(s))
    }

    /// Moves the progress bar to `done`, with IterTimerHook's ETA.
    /// Rank 0 (or the only process): it alone logs and draws.
    fn is_main(&self) -> bool {
        self.dist.as_ref().is_none_or(|d| d.rank() == 0)
    }

    fn show_progress(&mut self, done: u64) {
        let eta = self.state.eta;
        if let Some(bar) = self.state.bar.as_mut() {
            bar.set(done, eta);
        }
    }

    /// After an iteration in which any rank got SIGTERM: the checkpoint of
    /// this position (written by rank 0's CheckpointHook), then a stop with
    /// [`EXIT_PREEMPTED`] that `--resume` continues from exactly.
    fn stop_if_preempted(&mut self) -> Result<(), Failure> {
        if !self.state.preempted {
            return Ok(());
        }
        self.state.bar = None;
        self.call(|h, s| h.on_preempt(s))?;
        let p = self.state.position;
        if !self.is_main() {
            return Err((EXIT_PREEMPTED, String::new()));
        }
        Err((
            EXIT_PREEMPTED,
            format!(
                "stopped by SIGTERM after iteration {} (epoch {}, batch {}); `detc run CONFIG --resume` \
                 continues from the checkpoint saved",
                p.iter,
                p.epoch + 1,
                p.batch
            ),
        ))
    }

    /// `run_iter`: `before_train_iter`, the train step, `after_train_iter`.
    /// `batch_idx` is MMEngine's: the index in the epoch, or the iteration.
    fn run_iter(&mut self, batch: Batch, batch_idx: u64) -> Result<(), Failure> {
        let iter = TrainIter {
            batch_idx,
            data_time: batch.data_time.as_secs_f64(),
        };
        let in_pass = batch.position as u64;
        self.call(|h, s| h.before_train_iter(s, &iter))?;
        let step = match self.train_step(batch.samples) {
            Ok(step) => step,
            Err(failure) => return Err(self.cause_of(failure)),
        };
        self.unread.push(step);
        // The losses stay on the device until an iteration needs them: one
        // copy then for all the steps since (a read at every step would make
        // the host wait for the device there).
        let log_vars = if self.reads_train_values(&iter) {
            let steps = std::mem::take(&mut self.unread);
            self.read_train_values(steps)?
        } else {
            vec![]
        };
        self.state.position = Position {
            epoch: self.state.position.epoch,
            iter: self.state.iter + 1,
            batch: in_pass + 1,
        };
        self.call(|h, s| h.after_train_iter(s, &iter, &log_vars))?;
        self.state.iter += 1;
        Ok(())
    }

    /// Whether the losses of the steps so far are read after this one: for
    /// a hook that logs or saves the message hub at this iteration (its
    /// schedule counts on every rank, as the read is collective), before
    /// validation, at the end of an epoch or of the run, before a
    /// preempted run stops, and at least every [`MAX_UNREAD`] steps, so
    /// that a non-finite loss stops the run at most that late.
    fn reads_train_values(&self, iter: &TrainIter) -> bool {
        let s = &self.state;
        let next = s.iter + 1;
        let end_of_epoch = match self.loop_cfg.kind {
            LoopKind::EpochBased { .. } => iter.batch_idx + 1 == s.shape.train_len,
            LoopKind::IterBased { .. } => self.val.is_some() && self.loop_cfg.validates_after(next, s.shape.max_iters),
        };
        s.preempted
            || end_of_epoch
            || next == s.shape.max_iters
            || self.unread.len() >= MAX_UNREAD
            || self.hooks.read_train_values(s, iter)
    }

    /// The logged values of `steps` (`loss`, then each term, per step in
    /// order), in one copy from the device; in a job of several, means over
    /// the ranks (MMEngine's parse_losses). Each step's grad norm goes to
    /// the message hub. The first step whose loss is not finite stops the
    /// run, unless dynamic loss scaling skips such steps.
    pub(super) fn read_train_values(&mut self, steps: Vec<UnreadStep>) -> Result<Vec<(String, f64)>, Failure> {
        if steps.is_empty() {
            return Ok(vec![]);
        }
        let mut values = host_values(&steps).map_err(runtime)?;
        if let Some(d) = self.dist.as_ref() {
            values = d.mean_all(&values).map_err(runtime)?;
        }
        if let Some(message) = self.stopped_by(&steps, &values, None) {
            return Err(runtime(message));
        }
        let mut values = values.into_iter();
        let mut rows = Vec::with_capacity(values.len());
        for step in steps {
            let row: Vec<f64> = values.by_ref().take(step.width()).collect();
            // OptimWrapper's own message-hub record, made during the step in MMEngine.
            if step.grad_norm.is_some() {
                self.state.hub.update("train/grad_norm", row[row.len() - 1]);
            }
            let keys = std::iter::once("loss".to_string()).chain(step.keys);
            rows.extend(keys.zip(row));
        }
        Ok(rows)
    }

    /// A failed step's error, or the non-finite loss (or refused RoIs) of
    /// an unread step before it, the likelier cause (the weights it left
    /// may be NaN). This rank's values only: the others may not reach a
    /// collective read.
    fn cause_of(&mut self, failure: Failure) -> Failure {
        let steps = std::mem::take(&mut self.unread);
        let failed = Some(self.state.iter);
        let stopped = match host_values(&steps) {
            Ok(values) => self.stopped_by(&steps, &values, failed),
            Err(_) => None,
        };
        match stopped {
            Some(message) => runtime(format!("{message}\n(the run then failed: {})", failure.1)),
            None => failure,
        }
    }

    /// Why `steps` (read into `values`) stop the run: the first non-finite
    /// loss, and RoIAlign's refusal of a step's RoIs, which that step's loss
    /// shows as NaN (the check is settled here, as the losses are read, so
    /// that no step waits for the device). `failed`: the iteration (0-based)
    /// of a step that failed after them, which may hold the refusal.
    fn stopped_by(&self, steps: &[UnreadStep], values: &[f64], failed: Option<u64>) -> Option<String> {
        let refused = native::roi_align::settle_checks().err().map(|e| e.message);
        let diverged = self.first_divergence(steps, values);
        match (diverged, refused) {
            (Some(diverged), Some(why)) => {
                Some(format!("{diverged}\n(RoIAlign refused the RoIs of that step or a later one: {why})"))
            }
            (None, Some(why)) => Some(refused_rois(&self.state, steps, failed, &why)),
            (diverged, None) => diverged,
        }
    }

    /// The message for the first of `steps` whose loss in `values` (the
    /// steps' rows, concatenated) is not finite, unless dynamic loss scaling
    /// (`AmpOptimWrapper`) skips such steps.
    fn first_divergence(&self, steps: &[UnreadStep], values: &[f64]) -> Option<String> {
        let s = &self.state;
        if s.wrapper.amp().is_some_and(|a| a.loss_scaler.is_enabled() && a.static_scale.is_none()) {
            return None;
        }
        let mut rows = values;
        for step in steps {
            let (row, rest) = rows.split_at(step.width());
            if !row[0].is_finite() {
                return Some(diverged(s, step, row));
            }
            rows = rest;
        }
        None
    }

    /// `model.train_step`: forward, losses, backward and the optimizer step;
    /// returns `loss` and each loss term, still on the device.
    fn train_step(&mut self, samples: Vec<PackedSample>) -> Result<UnreadStep, Failure> {
        self.timed_train_step(samples, &mut StepTimes::off())
    }

    /// [`Self::train_step`], marking the end of each phase in `times`
    /// (`detc bench`; a no-op recorder in training).
    pub(super) fn timed_train_step(
        &mut self,
        samples: Vec<PackedSample>,
        times: &mut StepTimes,
    ) -> Result<UnreadStep, Failure> {
        times.start();
        let s = &mut self.state;
        tch::manual_seed(iter_seed(s.seed, s.iter));
        // BaseModel.train_step: preprocessing and the forward pass inside
        // the wrapper's context (autocast for an AmpOptimWrapper).
        let (pre, model, dist) = (&self.pre, &self.model, self.dist.as_ref());
        // MMDetection's reduce_mean: the losses' avg_factor is the mean over ranks.
        let reduce_mean = |n: f64| match dist {
            Some(d) => d.mean(n).map_err(|e| ModelError::new("reduce_mean", e.message)),
            None => Ok(n),
        };
        // DDP: a step that ends an accumulation window reduces its gradients.
        let sync = s.wrapper.should_sync();
        let ddp = |e: crate::engine::native::NativeError| runtime(format!("DistributedDataParallel: {}", e.message));
        if let Some(d) = dist {
            d.before_forward(sync).map_err(ddp)?;
        }
        // MMEngine's RuntimeInfoHook: the model may read the epoch (TOOD's assignment).
        model.set_epoch(s.epoch);
        let mut losses = s.wrapper.optim_context(|| {
            let det = pre.forward(samples, true).map_err(input)?;
            crate::engine::profile::section("preprocess");
            model.loss(&det, &reduce_mean).map_err(runtime)
        })?;
        inject_nan(&mut losses, s.iter + 1);
        let total = detectors::parse_losses(&losses).map_err(runtime)?;
        let values = device_values(&total, &losses).map_err(runtime)?;
        // SIGTERM on any rank stops every rank after this step: a host
        // number (Gloo on the CPU), not waiting for the device.
        let mut flag = vec![if preempt::requested() { 1.0 } else { 0.0 }];
        if let Some(d) = dist {
            flag = d.mean_all(&flag).map_err(runtime)?;
        }
        s.preempted |= flag[0] > 0.0;
        if let Some(d) = dist {
            d.before_backward(&total, sync).map_err(ddp)?;
        }
        times.mark(Phase::Forward);
        // The gradients are averaged during backward; what is left of the
        // all-reduce when backward ends is waited for inside it.
        s.wrapper
            .update_params_then(&total, || {
                times.mark(Phase::Backward);
                times.mark(Phase::AllReduce);
            })
            .map_err(runtime)?;
        times.mark(Phase::Optimizer);
        let grad_norm = match s.wrapper.grad_norm() {
            Some(g) => Some(g.f_to_kind(Kind::Double).and_then(|g| g.f_reshape([1])).map_err(runtime)?),
            None => None,
        };
        Ok(UnreadStep {
            epoch: s.position.epoch,
            iter: s.iter,
            keys: losses.into_keys().collect(),
            values,
            grad_norm,
        })
    }

    /// `ValLoop.run`: predicts the val set and evaluates it; the hooks
    /// record and log each batch and the metrics, and save the best.
    fn validate(&mut self) -> Result<(), Failure> {
        let Runner {
            model,
            pre,
            val,
            hooks,
            state,
            dist,
            ..
        } = self;
        let Some((data, metric)) = val.as_mut() else {
            return Ok(());
        };
        hooks.call(state, |h, s| h.before_val_epoch(s))?;
        let mut failed = None;
        let results = tch::no_grad(|| {
            // A failed hook does not stop this rank's loop: the others would
            // wait for it at the gather.
            evaluate(model, pre, data, metric, dist.as_ref(), |p| {
                if failed.is_none() {
                    failed = hooks.call(state, |h, s| h.after_val_iter(s, p)).err();
                }
                ControlFlow::Continue(())
            })
        });
        if let Some(failure) = failed {
            return Err(failure);
        }
        // Only rank 0 computes the metric; the others pass on no values.
        let results = results.map_err(runtime)?.unwrap_or_default();
        for line in &results.log {
            state.info(line)?;
        }
        let epoch = ValEpoch {
            len: data.len(),
            metrics: &results.values,
        };
        hooks.call(state, |h, s| h.after_val_epoch(s, &epoch))
    }
}

/// Steps whose losses may stay unread on the device, at most (MMDetection's
/// CheckInvalidLossHook checks the loss at this interval).
const MAX_UNREAD: usize = 50;

/// One train step's logged values, not yet read from the device.
pub(super) struct UnreadStep {
    /// The run's position at the step (0-based).
    epoch: u64,
    iter: u64,
    /// The loss terms, in the model's order.
    keys: Vec<String>,
    /// `loss` (the total), then each term's mean, in float64: one per key and one more.
    values: Tensor,
    /// The clipped gradients' total norm (float64, one element), with norm clipping.
    grad_norm: Option<Tensor>,
}

impl UnreadStep {
    /// How many numbers the step's row holds: `values`, then the grad norm.
    fn width(&self) -> usize {
        self.keys.len() + 1 + usize::from(self.grad_norm.is_some())
    }
}

/// `[total, each entry of losses]` (each entry's mean, as MMEngine's
/// `parse_losses` logs it) as one vector, detached, on the device.
fn device_values(total: &Tensor, losses: &IndexMap<String, Tensor>) -> Result<Tensor, tch::TchError> {
    // float32 as `loss.item()` reads a float32 loss; a float64 model's in full.
    let kind = crate::models::layers::reduction_kind(total.kind());
    let mut parts = vec![total.f_detach()?.f_to_kind(kind)?.f_reshape([1])?];
    for v in losses.values() {
        parts.push(v.f_detach()?.f_mean(kind)?.f_reshape([1])?);
    }
    Tensor::f_cat(&parts, 0)?.f_to_kind(Kind::Double)
}

/// The rows of `steps` ([`UnreadStep::width`] numbers each, in order) as
/// host numbers, in one copy.
fn host_values(steps: &[UnreadStep]) -> Result<Vec<f64>, tch::TchError> {
    if steps.is_empty() {
        return Ok(vec![]);
    }
    let parts: Vec<&Tensor> = steps
        .iter()
        .flat_map(|s| std::iter::once(&s.values).chain(&s.grad_norm))
        .collect();
    let all = Tensor::f_cat(&parts, 0)?.f_to_device(Device::Cpu)?;
    Vec::<f64>::try_from(&all)
}

/// The message of a run stopped by a non-finite loss: where, which term
/// first, every term's value, the checkpoint to go back to, and what to try.
fn diverged(s: &RunState, step: &UnreadStep, values: &[f64]) -> String {
    let terms: Vec<(&String, f64)> = step.keys.iter().zip(values[1..].iter().copied()).collect();
    let culprit = terms
        .iter()
        .find(|(_, v)| !v.is_finite())
        .map_or_else(|| "the sum of the terms".to_string(), |(k, v)| format!("`{k}` is {v}"));
    let all: Vec<String> = terms.iter().map(|(k, v)| format!("{k}: {v:.4}")).collect();
    let last = last_checkpoint(s);
    format!(
        "the loss is {} at epoch {} iteration {}: {culprit} ({}); {last}. Training diverged: lower \
         `optim_wrapper.optimizer.lr`, add `optim_wrapper.clip_grad`, or check the data of this batch",
        values[0],
        step.epoch + 1,
        step.iter + 1,
        all.join(", ")
    )
}

/// Where a stopped run can go back to, as its messages say it.
fn last_checkpoint(s: &RunState) -> String {
    std::fs::read_to_string(s.work_dir.join("last_checkpoint"))
        .map_or_else(|_| "no checkpoint was saved yet".to_string(), |p| format!("the last checkpoint is {}", p.trim()))
}

/// The message of a run stopped by RoIAlign's refusal of the RoIs of one of
/// `steps` (whose losses were finite: dynamic loss scaling skips the NaN a
/// refused call leaves) or of the step that then `failed` (its iteration,
/// 0-based): which steps, why, and what to try.
fn refused_rois(s: &RunState, steps: &[UnreadStep], failed: Option<u64>, why: &str) -> String {
    let first = steps.first().map(|a| a.iter).or(failed).unwrap_or(s.iter);
    let last = failed.or(steps.last().map(|b| b.iter)).unwrap_or(s.iter);
    let span = if first == last {
        format!("iteration {}", last + 1)
    } else {
        format!("iterations {} to {}", first + 1, last + 1)
    };
    format!(
        "RoIAlign refused the RoIs of a step at {span} (epoch {}): {why}; {}. Training diverged: lower \
         `optim_wrapper.optimizer.lr`, add `optim_wrapper.clip_grad`, or check the data of these batches",
        s.position.epoch + 1,
        last_checkpoint(s)
    )
}

/// Fault injection for the tests: `DETC_TEST_NAN_AT=<iteration>:<loss term>`
/// makes that term NaN at that (1-based) iteration, through the graph. Read
/// once per process, as the checkpoint writer's pause is.
fn inject_nan(losses: &mut IndexMap<String, Tensor>, iteration: u64) {
    static AT: std::sync::OnceLock<Option<(u64, String)>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| {
        let spec = std::env::var("DETC_TEST_NAN_AT").ok()?;
        let (at, term) = spec.split_once(':')?;
        Some((at.parse().ok()?, term.to_string()))
    });
    if let Some((_, term)) = at.as_ref().filter(|(at, _)| *at == iteration) {
        if let Some(t) = losses.get_mut(term) {
            *t = &*t * f64::NAN;
        }
    }
}

/// libtorch's seed for iteration `iter` (splitmix64 of the run seed and the iteration).
fn iter_seed(seed: u64, iter: u64) -> i64 {
    let mut z = seed.wrapping_add(iter.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}
