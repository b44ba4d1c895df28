//! The training run: setup, the epoch loop, validation and checkpoints.

use std::path::Path;
use std::time::Instant;

use detc::checkpoint::TensorData;
use detc::data::samplers::Shard;
use detc::evaluation::metric::CocoMetric;
use detc::registry::engine::{CheckpointHookConfig, LoggerHookConfig};
use detc::registry::models::common::OneOrMany;
use detc::registry::refs::{OptimWrapperCfg, ParamSchedulerCfg};
use indexmap::IndexMap;
use serde_json::{json, Value};
use tch::{nn, Device, Kind, Tensor};

use super::state::{self, Position, TrainState};
use super::RunArgs;
use crate::engine::checkpoint_hook::{CheckpointHook, CheckpointHookState, Progress, SaveRequest};
use crate::engine::data::DataParts;
use crate::engine::evaluate::evaluate;
use crate::engine::logging::{
    HubState, Level, LogContext, LogProcessor, LoggerPolicy, Mode, RunLog, ScalarHub,
};
use crate::engine::optim::{
    build_optim_wrapper, is_norm_param_name, named_trainable, OptimWrapper,
};
use crate::engine::schedulers::{ScheduleContext, Schedulers};
use crate::engine::test_loop::{coco_metric_config, device, log_processor};
use crate::engine::work_dir::{latest_checkpoint, LocalTime, WorkDir};
use crate::models::data_preprocessors::DetDataPreprocessor;
use crate::models::detectors::{self, Detector, SparseRCNN};
use crate::models::weights::load_state_dict;

type Failure = (i32, String);

fn input(m: impl std::fmt::Display) -> Failure {
    (1, m.to_string())
}

fn runtime(m: impl std::fmt::Display) -> Failure {
    (3, m.to_string())
}

/// Runs training; returns the exit code.
pub fn run(config: &Value, args: &RunArgs) -> i32 {
    if crate::engine::run::report_unbuildable(config, "") {
        return 1;
    }
    if config
        .pointer("/default_hooks/visualization/draw")
        .and_then(Value::as_bool)
        == Some(true)
    {
        eprintln!("error: default_hooks.visualization.draw: drawing predictions is not supported yet; set it to false");
        return 1;
    }
    match Runner::build(config, args).and_then(|(mut r, mut data)| r.train(&mut data)) {
        Ok(()) => 0,
        Err((code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

/// The train loop's settings (`train_cfg`).
struct LoopCfg {
    max_epochs: u64,
    val_interval: u64,
    val_begin: u64,
}

fn loop_cfg(config: &Value) -> Result<LoopCfg, Failure> {
    let cfg = config
        .get("train_cfg")
        .ok_or_else(|| input("the config has no `train_cfg`"))?;
    let ty = cfg.get("type").and_then(Value::as_str);
    let by_epoch = cfg.get("by_epoch").and_then(Value::as_bool);
    if !(ty == Some("EpochBasedTrainLoop") || (ty.is_none() && by_epoch == Some(true))) {
        return Err(input("train_cfg: detc trains with EpochBasedTrainLoop (IterBasedTrainLoop is not supported yet)"));
    }
    let u = |k: &str, d: u64| cfg.get(k).and_then(Value::as_u64).unwrap_or(d);
    Ok(LoopCfg {
        max_epochs: u("max_epochs", 0).max(1),
        val_interval: u("val_interval", 1).max(1),
        val_begin: u("val_begin", 1),
    })
}

fn typed<T: serde::de::DeserializeOwned>(v: Option<&Value>, name: &str) -> Result<T, Failure> {
    let mut v = v.cloned().unwrap_or_else(|| json!({}));
    v.as_object_mut().map(|o| o.remove("type"));
    serde_json::from_value(v).map_err(|e| input(format!("{name}: {e}")))
}

struct Runner {
    vs: nn::VarStore,
    model: SparseRCNN,
    pre: DetDataPreprocessor,
    /// Batches per epoch of the train dataloader.
    train_len: u64,
    classes: Vec<String>,
    val: Option<(DataParts, CocoMetric)>,
    wrapper: OptimWrapper,
    schedulers: Schedulers,
    ckpt_hook: CheckpointHook,
    logger: LoggerPolicy,
    processor: LogProcessor,
    hub: ScalarHub,
    log: RunLog,
    lp: LoopCfg,
    seed: u64,
    position: Position,
}

impl Runner {
    fn build(config: &Value, args: &RunArgs) -> Result<(Self, DataParts), Failure> {
        let device = device(args.device.as_deref()).map_err(input)?;
        let lp = loop_cfg(config)?;
        let model_cfg = config
            .get("model")
            .ok_or_else(|| input("the config has no `model:` section"))?;
        let mut vs = nn::VarStore::new(Device::Cpu);
        let resume_from = match (&args.resume_from, args.resume) {
            (Some(p), _) => Some(p.clone()),
            (None, true) => latest_checkpoint(&args.work_dir).map_err(runtime)?,
            (None, false) => None,
        };
        let resumed = match &resume_from {
            Some(path) => Some((path.clone(), state::load(path).map_err(input)?)),
            None => None,
        };
        // A resumed run keeps its seed, which fixes every random stream.
        let seed = match &resumed {
            Some((_, (_, st))) => st.seed,
            None => config
                .pointer("/randomness/seed")
                .and_then(Value::as_u64)
                .unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_nanos() as u64)
                }),
        };
        tch::manual_seed(seed as i64);
        let Detector::Sparse(model) = detectors::build(model_cfg, vs.root()).map_err(input)?;
        let ts = LocalTime::now().timestamp();
        let work = WorkDir::create(&args.work_dir, &ts)
            .map_err(|e| runtime(format!("{}: {e}", args.work_dir.display())))?;
        let text = serde_json::to_string_pretty(config).unwrap_or_default();
        work.dump_config(&args.config_stem, "json", &text)
            .map_err(runtime)?;
        let mut log =
            RunLog::open(&work.log_file(), &work.scalars_file(), true).map_err(runtime)?;
        let info = |log: &mut RunLog, m: &str| log.info(m).map_err(runtime);
        info(
            &mut log,
            &format!(
                "detc {} · device {device:?} · seed {seed}",
                env!("CARGO_PKG_VERSION")
            ),
        )?;
        if let Some(report) = model.init_weights(&vs).map_err(input)? {
            if let Some(w) = report.warning() {
                log.log(Level::Warning, &w).map_err(runtime)?;
            }
        }
        if let Some(path) = config.get("load_from").and_then(Value::as_str) {
            let ckpt = detc::checkpoint::load(Path::new(path)).map_err(input)?;
            let report = load_state_dict(&vs, "", &ckpt.state_dict)
                .map_err(|e| input(format!("load_from {path}: {e}")))?;
            info(&mut log, &format!("Load checkpoint from {path}"))?;
            if let Some(w) = report.warning() {
                log.log(Level::Warning, &w).map_err(runtime)?;
            }
        }
        vs.set_device(device);
        let pre_cfg = model
            .data_preprocessor
            .as_ref()
            .ok_or_else(|| input("model.data_preprocessor is needed"))?;
        let pre = DetDataPreprocessor::new(pre_cfg, device).map_err(input)?;
        let cwd = std::env::current_dir().map_err(runtime)?;
        let section = config
            .get("train_dataloader")
            .ok_or_else(|| input("the config has no `train_dataloader`"))?;
        let train = DataParts::build("train_dataloader", section, &cwd, Shard::SINGLE, seed)
            .map_err(input)?;
        let val = match (config.get("val_dataloader"), config.get("val_evaluator")) {
            (Some(s), Some(e)) if !s.is_null() && !e.is_null() => {
                let data = DataParts::build("val_dataloader", s, &cwd, Shard::SINGLE, seed)
                    .map_err(input)?;
                let metric_cfg = coco_metric_config(e, "val_evaluator").map_err(input)?;
                let metric = CocoMetric::new(&metric_cfg, data.dataset.classes()).map_err(input)?;
                Some((data, metric))
            }
            _ => None,
        };
        let optim_cfg: OptimWrapperCfg = typed_ref(config.get("optim_wrapper"), "optim_wrapper")?;
        let mut wrapper = build_optim_wrapper(&optim_cfg, named_trainable(&vs, is_norm_param_name))
            .map_err(input)?;
        if args.auto_scale_lr
            || config
                .pointer("/auto_scale_lr/enable")
                .and_then(Value::as_bool)
                == Some(true)
        {
            let base = config
                .pointer("/auto_scale_lr/base_batch_size")
                .and_then(Value::as_u64)
                .unwrap_or(16) as f64;
            let batch = section
                .get("batch_size")
                .and_then(Value::as_u64)
                .unwrap_or(1) as f64;
            let factor = batch / base;
            wrapper.scale_lr(factor);
            info(&mut log, &format!("LR is set based on batch size of {} and the current batch size is {batch}. Scaling the original LR by {factor}.", base as u64))?;
        }
        let epoch_length = train.len() as u64;
        let ctx = ScheduleContext {
            epoch_length,
            max_epochs: lp.max_epochs,
            max_iters: epoch_length * lp.max_epochs,
        };
        let sched_cfg: Option<OneOrMany<ParamSchedulerCfg>> = match config.get("param_scheduler") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value(v.clone())
                    .map_err(|e| input(format!("param_scheduler: {e}")))?,
            ),
        };
        let schedulers =
            Schedulers::build(sched_cfg.as_ref(), &ctx, &mut wrapper).map_err(input)?;
        let ckpt_cfg: CheckpointHookConfig = typed(
            config.pointer("/default_hooks/checkpoint"),
            "default_hooks.checkpoint",
        )?;
        let ckpt_hook = CheckpointHook::new(&ckpt_cfg, &args.work_dir).map_err(input)?;
        let logger_cfg: LoggerHookConfig = typed(
            config.pointer("/default_hooks/logger"),
            "default_hooks.logger",
        )?;
        let processor = log_processor(config).map_err(input)?;
        let longest_eval = val.as_ref().map_or(1, |(d, _)| d.len());
        let hub = ScalarHub::new(processor.history_len(train.len(), longest_eval));
        let mut runner = Runner {
            vs,
            model,
            pre,
            train_len: train.len() as u64,
            classes: train.dataset.classes().to_vec(),
            val,
            wrapper,
            schedulers,
            ckpt_hook,
            logger: LoggerPolicy::from_config(&logger_cfg),
            processor,
            hub,
            log,
            lp,
            seed,
            position: Position {
                epoch: 0,
                iter: 0,
                batch: 0,
            },
        };
        if args.resume && resume_from.is_none() {
            runner.info("Did not find last_checkpoint to be resumed.")?;
        }
        let resumed = match resumed {
            Some((path, (sd, st))) => Some(runner.resume(&path, &sd, st)?),
            None => None,
        };
        let out = runner.ckpt_hook.before_train(resumed).map_err(input)?;
        for m in &out.messages {
            runner.info(m)?;
        }
        Ok((runner, train))
    }

    fn info(&mut self, message: &str) -> Result<(), Failure> {
        self.log.info(message).map_err(runtime)
    }

    /// Restores weights, optimizer, schedulers, log buffers and position.
    fn resume(
        &mut self,
        path: &Path,
        sd: &IndexMap<String, TensorData>,
        st: TrainState,
    ) -> Result<CheckpointHookState, Failure> {
        load_state_dict(&self.vs, "", sd)
            .map_err(|e| input(format!("resume {}: {e}", path.display())))?;
        if let Some(o) = &st.optimizer {
            self.wrapper.load_state_dict(o).map_err(input)?;
        }
        if let Some(s) = &st.param_schedulers {
            self.schedulers.load_state_dict(s).map_err(input)?;
        }
        if let Ok(hub) = serde_json::from_value::<HubState>(st.message_hub["log_scalars"].clone()) {
            self.hub.load_state(&hub);
        }
        self.position = st.position;
        self.info(&format!(
            "resumed from {}: epoch {}, iter {}",
            path.display(),
            st.position.epoch,
            st.position.iter
        ))?;
        Ok(serde_json::from_value(st.message_hub["checkpoint_hook"].clone()).unwrap_or_default())
    }

    fn progress(&self, epoch: u64, iter: u64) -> Progress {
        Progress {
            epoch,
            iter,
            max_epochs: self.lp.max_epochs,
            max_iters: self.train_len * self.lp.max_epochs,
        }
    }

    fn train(&mut self, train: &mut DataParts) -> Result<(), Failure> {
        let len = self.train_len;
        if len == 0 {
            return Err(input("train_dataloader has no batches (empty dataset?)"));
        }
        let max_iters = len * self.lp.max_epochs;
        self.wrapper
            .initialize_count_status(self.position.iter, max_iters);
        let session_start_iter = self.position.iter;
        let session_start = Instant::now();
        while self.position.epoch < self.lp.max_epochs {
            let epoch = self.position.epoch;
            let first = self.position.batch as usize;
            let batches = train.batches(epoch, first);
            let mut last = Instant::now();
            let mut outcome: Result<(), Failure> = Ok(());
            let mut epoch_iter = train.loader.epoch(epoch, batches, first);
            #[allow(clippy::while_let_on_iterator)]
            while let Some(batch) = epoch_iter.next() {
                let batch = batch.map_err(input)?;
                let batch_idx = batch.position as u64;
                let iter = self.position.iter;
                // RuntimeInfoHook.before_train_iter, then IterTimerHook's data_time.
                let lr = self.wrapper.get_lr();
                if let Some(base) = lr.base_lr {
                    self.hub.update("train/base_lr", base);
                }
                self.hub
                    .update("train/lr", lr.lr.first().copied().unwrap_or(0.0));
                self.hub
                    .update("train/data_time", batch.data_time.as_secs_f64());
                tch::manual_seed(iter_seed(self.seed, iter));
                let det = self.pre.forward(batch.samples, true).map_err(input)?;
                let losses = self.model.loss(&det, &|n| Ok(n)).map_err(runtime)?;
                let total = detectors::parse_losses(&losses).map_err(runtime)?;
                // One device-to-host copy for the total and every logged term.
                let values = host_values(&total, &losses).map_err(runtime)?;
                let value = values[0];
                if !value.is_finite() {
                    return Err(runtime(format!("the loss is {value} at epoch {} iteration {}: training diverged (lower the learning rate or check the data)", epoch + 1, iter + 1)));
                }
                self.wrapper.update_params(&total).map_err(runtime)?;
                if let Some(g) = self.wrapper.grad_norm() {
                    self.hub.update("train/grad_norm", g);
                }
                self.hub.update("train/loss", value);
                for (k, v) in losses.keys().zip(&values[1..]) {
                    self.hub.update(&format!("train/{k}"), *v);
                }
                let now = Instant::now();
                self.hub.update("train/time", (now - last).as_secs_f64());
                last = now;
                if self.logger.log_train_iter(batch_idx, len) {
                    let done = (iter + 1 - session_start_iter) as f64;
                    let eta = session_start.elapsed().as_secs_f64() / done
                        * (max_iters - iter - 1) as f64;
                    let ctx = self.log_ctx(
                        Mode::Train,
                        batch_idx as usize,
                        len as usize,
                        epoch,
                        iter,
                        Some(eta),
                    );
                    let (tag, line) = self.processor.log_after_iter(&self.hub, &ctx);
                    self.log.info(&line).map_err(runtime)?;
                    self.log
                        .add_scalars(&tag, LoggerPolicy::train_step(iter))
                        .map_err(runtime)?;
                }
                self.schedulers.step_iter(&mut self.wrapper);
                self.position = Position {
                    epoch,
                    iter: iter + 1,
                    batch: batch_idx + 1,
                };
                let p = self.progress(epoch, iter);
                outcome = self.checkpoint(|hook, save| hook.after_train_iter(p, save));
                if outcome.is_err() {
                    break;
                }
            }
            drop(epoch_iter);
            outcome?;
            self.schedulers.step_epoch(&mut self.wrapper);
            self.position = Position {
                epoch: epoch + 1,
                iter: self.position.iter,
                batch: 0,
            };
            let p = self.progress(epoch, self.position.iter);
            self.checkpoint(|hook, save| hook.after_train_epoch(p, save))?;
            let done = epoch + 1;
            if self.val.is_some()
                && done >= self.lp.val_begin
                && (done.is_multiple_of(self.lp.val_interval) || done == self.lp.max_epochs)
            {
                self.validate()?;
            }
        }
        self.info(&format!(
            "training done; work dir {}",
            self.ckpt_hook.out_dir().display()
        ))
    }

    fn log_ctx(
        &self,
        mode: Mode,
        batch_idx: usize,
        len: usize,
        epoch: u64,
        iter: u64,
        eta: Option<f64>,
    ) -> LogContext {
        LogContext {
            mode,
            batch_idx,
            dataloader_len: len,
            epoch,
            iter,
            max_epochs: self.lp.max_epochs,
            max_iters: self.train_len * self.lp.max_epochs,
            has_train_loop: true,
            eta,
            memory_mb: None,
        }
    }

    /// `ValLoop.run`: metrics logged and passed to the checkpoint hook (`save_best`).
    fn validate(&mut self) -> Result<(), Failure> {
        let Some((mut data, mut metric)) = self.val.take() else {
            return Ok(());
        };
        let (epoch, iter) = (self.position.epoch, self.position.iter);
        let (max_epochs, max_iters) = (self.lp.max_epochs, self.train_len * self.lp.max_epochs);
        let mut lines = Vec::new();
        let hub = &mut self.hub;
        let processor = &self.processor;
        let logger = self.logger;
        let ctx = |b: usize, n: usize, eta: Option<f64>| LogContext {
            mode: Mode::Val,
            batch_idx: b,
            dataloader_len: n,
            epoch,
            iter,
            max_epochs,
            max_iters,
            has_train_loop: true,
            eta,
            memory_mb: None,
        };
        let results = tch::no_grad(|| {
            evaluate(&self.model, &self.pre, &mut data, &mut metric, |p| {
                hub.update("val/data_time", p.data_time);
                hub.update("val/time", p.time);
                if logger.log_eval_iter(p.index as u64) {
                    let mean = hub
                        .get("val/time")
                        .and_then(|b| b.mean(None))
                        .unwrap_or(0.0);
                    lines.push(
                        processor
                            .log_after_iter(
                                hub,
                                &ctx(
                                    p.index,
                                    p.total,
                                    Some(mean * (p.total - p.index - 1) as f64),
                                ),
                            )
                            .1,
                    );
                }
            })
        });
        let total = data.len();
        self.val = Some((data, metric));
        let results = results.map_err(runtime)?;
        for line in lines.iter().chain(&results.log) {
            self.info(line)?;
        }
        for (k, v) in &results.values {
            self.hub.update(&format!("val/{k}"), *v);
        }
        let (tag, line) = self
            .processor
            .log_after_epoch(&self.hub, &ctx(total.saturating_sub(1), total, None));
        self.info(&line)?;
        self.log
            .add_scalars(&tag, self.logger.val_step(epoch, iter, true))
            .map_err(runtime)?;
        let p = self.progress(epoch, iter);
        let metrics = results.values.clone();
        self.checkpoint(|hook, save| hook.after_val_epoch(p, &metrics, save))
    }

    /// Runs a checkpoint-hook event with this run's atomic save.
    fn checkpoint(
        &mut self,
        event: impl FnOnce(
            &mut CheckpointHook,
            &mut crate::engine::checkpoint_hook::SaveFn<'_>,
        ) -> Result<
            crate::engine::checkpoint_hook::Outcome,
            crate::engine::checkpoint_hook::CheckpointHookError,
        >,
    ) -> Result<(), Failure> {
        let classes = &self.classes;
        let (vs, wrapper, schedulers, hub, position, seed) = (
            &self.vs,
            &self.wrapper,
            &self.schedulers,
            &self.hub,
            self.position,
            self.seed,
        );
        let mut save = |req: &SaveRequest<'_>| -> std::io::Result<()> {
            let other = |e: crate::models::layers::ModelError| std::io::Error::other(e.to_string());
            let st = TrainState {
                position,
                seed,
                optimizer: if req.include_optimizer {
                    Some(wrapper.state_dict().map_err(other)?)
                } else {
                    None
                },
                param_schedulers: if req.include_param_scheduler {
                    Some(schedulers.state_dict())
                } else {
                    None
                },
                message_hub: json!({
                    "log_scalars": serde_json::to_value(hub.state()).unwrap_or(Value::Null),
                    "checkpoint_hook": serde_json::to_value(req.hook_state).unwrap_or(Value::Null),
                }),
            };
            state::save(req.path, vs, &st, classes)
        };
        let out = event(&mut self.ckpt_hook, &mut save).map_err(runtime)?;
        for m in &out.messages {
            self.info(m)?;
        }
        for path in &out.saved {
            self.info(&format!("Saving checkpoint at {}", path.display()))?;
        }
        Ok(())
    }
}

fn typed_ref<T: serde::de::DeserializeOwned>(v: Option<&Value>, name: &str) -> Result<T, Failure> {
    let v = v.ok_or_else(|| input(format!("the config has no `{name}`")))?;
    serde_json::from_value(v.clone()).map_err(|e| input(format!("{name}: {e}")))
}

/// `[total, each entry of losses]` as host numbers (each entry's mean, as
/// MMEngine's `parse_losses` logs it), copied from the device in one go.
fn host_values(
    total: &Tensor,
    losses: &IndexMap<String, Tensor>,
) -> Result<Vec<f64>, tch::TchError> {
    let mut parts = vec![total.f_detach()?.f_to_kind(Kind::Float)?.f_reshape([1])?];
    for v in losses.values() {
        parts.push(v.f_detach()?.f_mean(Kind::Float)?.f_reshape([1])?);
    }
    let all = Tensor::f_cat(&parts, 0)?.f_to_device(Device::Cpu)?;
    Ok(Vec::<f32>::try_from(&all)?
        .into_iter()
        .map(f64::from)
        .collect())
}

/// libtorch's seed for iteration `iter` (splitmix64 of the run seed and the iteration).
fn iter_seed(seed: u64, iter: u64) -> i64 {
    let mut z = seed.wrapping_add(iter.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}
