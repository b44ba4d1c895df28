//! Setting a run up from the resolved config (MMEngine's `Runner.__init__`
//! and `load_or_resume`): hooks, seed, model, work dir and log, data,
//! optimizer wrapper, schedulers, and the state of a resumed checkpoint.

use std::path::{Path, PathBuf};

use detc::checkpoint::TensorData;
use detc::data::samplers::Shard;
use detc::evaluation::metric::CocoMetric;
use detc::registry::models::common::OneOrMany;
use detc::registry::refs::{OptimWrapperCfg, ParamSchedulerCfg};
use indexmap::IndexMap;
use serde_json::Value;
use tch::{nn, Device, Kind};

use super::loop_cfg::{LoopCfg, LoopKind};
use super::run_state::{LoopShape, RunState};
use super::state::{self, Position, TrainState};
use super::{input, runtime, Failure, RunArgs};
use crate::engine::data::DataParts;
use crate::engine::dist::{Dist, DistSettings};
use crate::engine::hooks::{build_hooks, HookContext, Hooks};
use crate::engine::logging::{experiment_name, Level, RunLog, ScalarHub};
use crate::engine::memory_format;
use crate::engine::native;
use crate::engine::optim::{build_optim_wrapper, is_norm_param_name, named_trainable};
use crate::engine::schedulers::{ScheduleContext, Schedulers};
use crate::engine::test_loop::{coco_metric_config, device, log_processor};
use crate::engine::work_dir::{latest_checkpoint, LocalTime, WorkDir};
use crate::models::data_preprocessors::DetDataPreprocessor;
use crate::models::detectors::{self, Detector};
use crate::models::weights::{load_state_dict, Shapes};

/// The runner: the model, the validation data, the hooks and the state they share.
pub struct Runner {
    pub(super) model: Detector,
    pub(super) pre: DetDataPreprocessor,
    pub(super) val: Option<(DataParts, CocoMetric)>,
    pub(super) hooks: Hooks,
    pub(super) state: RunState,
    pub(super) loop_cfg: LoopCfg,
    /// The job's process group, for a worker of several.
    pub(super) dist: Option<Dist>,
    /// The train steps whose losses are still on the device, oldest first.
    pub(super) unread: Vec<super::train::UnreadStep>,
}

/// The hooks that write files or draw; on ranks other than 0 they are left out.
const WRITING_HOOKS: [&str; 3] = ["LoggerHook", "CheckpointHook", "DetVisualizationHook"];

type Resumed = (
    std::path::PathBuf,
    (IndexMap<String, TensorData>, TrainState),
);

impl Runner {
    /// Builds the run; returns it with the train data (iterated beside it).
    pub fn build(config: &Value, args: &RunArgs) -> Result<(Self, DataParts), Failure> {
        let requested = device(args.device.as_deref()).map_err(input)?;
        let settings = DistSettings::from_config(config, requested.is_cuda()).map_err(input)?;
        let dist = Dist::from_env(&settings).map_err(runtime)?;
        let (rank, world_size) = dist.as_ref().map_or((0, 1), |d| (d.rank(), d.world_size()));
        let is_main = rank == 0;
        if requested.is_cuda() {
            // MMEngine's env_cfg.cudnn_benchmark (torch.backends.cudnn.benchmark).
            let benchmark = config.pointer("/env_cfg/cudnn_benchmark").and_then(Value::as_bool);
            tch::Cuda::cudnn_set_benchmark(benchmark.unwrap_or(false));
        }
        // MMEngine's `randomness.deterministic`: deterministic cuDNN kernels,
        // no autotuning. (It also turns on torch.use_deterministic_algorithms,
        // which would stop a run at RoIAlign's backward on CUDA, an
        // atomic-add kernel that MMCV's own op shares without the check.)
        let deterministic =
            config.pointer("/randomness/deterministic").and_then(Value::as_bool) == Some(true);
        if deterministic {
            native::set_cudnn_deterministic(true).map_err(runtime)?;
        }
        let device = match (requested, &dist) {
            // Worker r uses visible device LOCAL_RANK, as torchrun's workers do.
            (Device::Cuda(_), Some(d)) => Device::Cuda(d.local_rank),
            (device, _) => device,
        };
        let loop_cfg = LoopCfg::from_config(config)?;
        let kind = train_kind(config).map_err(input)?;
        let roi_align_sampled = native::roi_align::check_implementation_setting().map_err(input)?;
        let nms_on_host = crate::models::ops::nms::check_implementation_setting().map_err(input)?;
        let mask_targets_on_host =
            crate::models::ops::masks::mask_target::check_implementation_setting().map_err(input)?;
        let processor = log_processor(config).map_err(input)?;
        // Hooks first: a config they refuse stops the run before anything is written.
        let ctx = HookContext {
            work_dir: &args.work_dir,
            processor: &processor,
            config,
        };
        let mut hooks = build_hooks(config, &ctx).map_err(input)?;
        if !is_main {
            // Rank 0 alone logs, saves checkpoints and draws (MMEngine's master_only).
            hooks.retain(|name| !WRITING_HOOKS.contains(&name));
        }
        let model_cfg = config
            .get("model")
            .ok_or_else(|| input("the config has no `model:` section"))?;
        let mut vs = nn::VarStore::new(Device::Cpu);
        let (resumed, fallback_note): (Option<Resumed>, Option<String>) = match (&args.resume_from, args.resume) {
            (Some(path), _) => (Some((path.clone(), state::load(path).map_err(input)?)), None),
            (None, true) => match latest_checkpoint(&args.work_dir).map_err(runtime)? {
                Some(newest) => {
                    let (resumed, note) = load_newest_good(&newest)?;
                    (Some(resumed), note)
                }
                None => (None, None),
            },
            (None, false) => (None, None),
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
        let model = detectors::build(model_cfg, vs.root()).map_err(input)?;
        let ts = LocalTime::now().timestamp();
        let given_name = config.get("experiment_name").and_then(Value::as_str);
        let experiment_name = experiment_name(given_name.unwrap_or(&args.config_stem), &ts);
        let mut log = if is_main {
            let work = WorkDir::create(&args.work_dir, &ts)
                .map_err(|e| runtime(format!("{}: {e}", args.work_dir.display())))?;
            let text = serde_json::to_string_pretty(config).unwrap_or_default();
            work.dump_config(&args.config_stem, "json", &text)
                .map_err(runtime)?;
            let mut log = RunLog::open_run(&work, config).map_err(runtime)?;
            log.add_config(config).map_err(runtime)?;
            log.set_echo(!args.quiet);
            log
        } else {
            RunLog::discard()
        };
        let info = |log: &mut RunLog, m: &str| log.info(m).map_err(runtime);
        let version = env!("CARGO_PKG_VERSION");
        info(
            &mut log,
            &format!("detc {version} · device {device:?} · seed {seed}"),
        )?;
        if world_size > 1 {
            info(&mut log, &format!("Distributed training: {world_size} processes (c10d, gloo)"))?;
        }
        let table = hooks.info_table();
        info(
            &mut log,
            &format!("Hooks will be executed in the following order:\n{table}"),
        )?;
        for report in model.init_weights(&vs).map_err(input)? {
            if let Some(w) = report.warning() {
                log.log(Level::Warning, &w).map_err(runtime)?;
            }
        }
        if let Some(path) = config.get("load_from").and_then(Value::as_str) {
            let file = crate::models::weights::resolve_checkpoint(path).map_err(|e| input(format!("load_from: {}", e.message)))?;
            let ckpt = detc::checkpoint::load(&file).map_err(input)?;
            // MMEngine loads `load_from` with strict=False: a head of
            // another size (fine-tuning on other classes) keeps its init.
            let report = load_state_dict(&vs, "", &ckpt.state_dict, Shapes::Skip)
                .map_err(|e| input(format!("load_from {path}: {e}")))?;
            info(&mut log, &format!("Load checkpoint from {path}"))?;
            if let Some(w) = report.warning() {
                log.log(Level::Warning, &w).map_err(runtime)?;
            }
        }
        vs.set_device(device);
        if kind == Kind::Double {
            vs.double();
            info(&mut log, "Training in float64 (DETC_DTYPE=float64)")?;
        }
        if let Some(n) = memory_format::apply_config(config, &vs).map_err(runtime)? {
            info(&mut log, &format!("Channels-last memory format (env_cfg.channels_last): {n} convolution weights"))?;
        }
        if let Device::Cuda(index) = device {
            info(&mut log, &roi_align_line(index, roi_align_sampled))?;
            info(&mut log, &nms_line(index, nms_on_host))?;
            info(&mut log, &mask_targets_line(index, mask_targets_on_host))?;
        }
        let pre_cfg = model
            .data_preprocessor()
            .ok_or_else(|| input("model.data_preprocessor is needed"))?;
        let pre = DetDataPreprocessor::new(pre_cfg, device).map_err(input)?.with_kind(kind);
        let cwd = std::env::current_dir().map_err(runtime)?;
        let section = config
            .get("train_dataloader")
            .ok_or_else(|| input("the config has no `train_dataloader`"))?;
        let shard = Shard::new(rank, world_size).map_err(input)?;
        let train =
            DataParts::build("train_dataloader", section, &cwd, shard, seed).map_err(input)?;
        let val = build_val(config, &cwd, shard, seed)?;
        let optim_cfg: OptimWrapperCfg = typed_ref(config.get("optim_wrapper"), "optim_wrapper")?;
        let mut wrapper = build_optim_wrapper(&optim_cfg, named_trainable(&vs, is_norm_param_name))
            .map_err(input)?;
        if let Some(message) = auto_scale_lr(config, args, section, world_size as u64)? {
            wrapper.scale_lr(message.0);
            info(&mut log, &message.1)?;
        }
        let shape = loop_shape(&loop_cfg, train.len() as u64);
        let ctx = ScheduleContext {
            epoch_length: shape.train_len,
            max_epochs: shape.max_epochs,
            max_iters: shape.max_iters,
        };
        let sched_cfg: Option<OneOrMany<ParamSchedulerCfg>> = match config.get("param_scheduler") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value(v.clone())
                    .map_err(|e| input(format!("param_scheduler: {e}")))?,
            ),
        };
        let mut schedulers =
            Schedulers::build(sched_cfg.as_ref(), &ctx, &mut wrapper).map_err(input)?;
        for line in schedulers.take_log() {
            info(&mut log, &line)?;
        }
        let longest_eval = val.as_ref().map_or(1, |(d, _)| d.len());
        let hub = ScalarHub::new(processor.history_len(train.len(), longest_eval));
        let state = RunState {
            vs,
            wrapper,
            schedulers,
            hub,
            eta: None,
            log,
            shape,
            epoch: 0,
            iter: 0,
            position: Position {
                epoch: 0,
                iter: 0,
                batch: 0,
            },
            sampler_epoch: 0,
            seed,
            classes: train.dataset.classes().to_vec(),
            work_dir: args.work_dir.clone(),
            resumed_hub: None,
            bar: None,
            preempted: false,
            experiment_name,
            ema: None,
            resumed_ema: None,
            train_pipelines: train.pipelines.clone(),
        };
        let mut runner = Runner {
            model,
            pre,
            val,
            hooks,
            state,
            loop_cfg,
            dist,
            unread: vec![],
        };
        if args.resume && resumed.is_none() {
            runner
                .state
                .info("Did not find last_checkpoint to be resumed.")?;
        }
        if let Some(note) = fallback_note {
            runner.state.log.log(Level::Warning, &note).map_err(runtime)?;
        }
        if let Some((path, (sd, st))) = resumed {
            runner.resume(&path, &sd, st)?;
        }
        if let Some(d) = runner.dist.as_mut() {
            // DDP's start: every rank begins from rank 0's weights and buffers,
            // and the gradients are reduced during backward from now on.
            d.broadcast_weights(&runner.state.vs).map_err(runtime)?;
            let params = runner.state.wrapper.params();
            d.reduce_gradients_of(&params).map_err(runtime)?;
            let batch = section.get("batch_size").and_then(Value::as_u64).unwrap_or(1);
            let message = format!(
                "effective batch size {} ({world_size} {} x train_dataloader.batch_size {batch})",
                world_size as u64 * batch,
                if world_size == 1 { "process" } else { "processes" },
            );
            runner.state.info(&message)?;
            let groups = if settings.nccl {
                "NCCL for CUDA tensors, Gloo for host values"
            } else {
                "Gloo"
            };
            let timeout = settings.timeout.as_secs();
            runner.state.info(&format!("process group: {groups} (collective timeout {timeout} s)"))?;
        }
        Ok((runner, train))
    }

    /// Restores weights, optimizer, schedulers, log buffers and position.
    fn resume(
        &mut self,
        path: &Path,
        sd: &IndexMap<String, TensorData>,
        st: TrainState,
    ) -> Result<(), Failure> {
        let s = &mut self.state;
        // With EMAHook, as its `after_load_checkpoint`: the trained weights
        // come from `ema_state_dict` and the file's `state_dict` is the average.
        let weights = match &st.ema {
            Some(ema) if self.hooks.has("EMAHook") => {
                s.resumed_ema = Some((sd.clone(), ema.steps));
                &ema.weights
            }
            _ => sd,
        };
        load_state_dict(&s.vs, "", weights, Shapes::Refuse)
            .map_err(|e| input(format!("resume {}: {e}", path.display())))?;
        if let Some(o) = &st.optimizer {
            s.wrapper.load_state_dict(o).map_err(input)?;
        }
        if let Some(sc) = &st.param_schedulers {
            s.schedulers.load_state_dict(sc).map_err(input)?;
        }
        if let Ok(hub) = serde_json::from_value(st.message_hub["log_scalars"].clone()) {
            s.hub.load_state(&hub);
        }
        let p = st.position;
        s.position = p;
        s.iter = p.iter;
        // In an IterBasedTrainLoop `runner.epoch` stays 0; `p.epoch` counts passes over the data.
        s.epoch = if s.shape.by_epoch { p.epoch } else { 0 };
        s.resumed_hub = Some(st.message_hub);
        let at = if s.shape.by_epoch {
            format!("epoch {}, iter {}", p.epoch, p.iter)
        } else {
            format!("iter {}", p.iter)
        };
        s.info(&format!("resumed from {}: {at}", path.display()))
    }
}

/// `--resume` without a path: the newest checkpoint (`last_checkpoint`)
/// if it loads, else the newest of the others in its folder that does
/// (`best_*` aside, newest first by modification time), with a warning that
/// names both. A newest checkpoint is unreadable after bit rot, or a copy or
/// a disk that failed; the zip's CRC-32 of every entry, checked on reading,
/// finds the corruption. None loading is an error listing each one's reason.
fn load_newest_good(newest: &Path) -> Result<(Resumed, Option<String>), Failure> {
    let first_error = match state::load(newest) {
        Ok(loaded) => return Ok(((newest.to_path_buf(), loaded), None)),
        Err(e) => e.to_string(),
    };
    let folder = newest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(folder)
        .map_err(|e| runtime(format!("{}: {e}", folder.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            p.as_path() != newest && name.ends_with(".pth") && !name.starts_with("best_") && !name.starts_with('.')
        })
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    others.sort_by(|a, b| b.cmp(a));
    let mut errors = vec![format!("{}: {first_error}", newest.display())];
    for (_, path) in others {
        match state::load(&path) {
            Ok(loaded) => {
                let note = format!(
                    "the newest checkpoint {} cannot be loaded ({first_error}); resuming from the previous good one, {}",
                    newest.display(),
                    path.display()
                );
                return Ok(((path, loaded), Some(note)));
            }
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    Err(input(format!("no checkpoint in {} can be resumed from:\n  {}", folder.display(), errors.join("\n  "))))
}

/// Which RoIAlign runs on CUDA (compiling the kernels now, so that a
/// failure shows before the first step).
fn roi_align_line(device: usize, sampled: bool) -> String {
    if sampled {
        let var = native::roi_align::IMPLEMENTATION_VAR;
        return format!("RoIAlign: grid_sampler_2d ({var}=sampled)");
    }
    match native::roi_align::cuda_kernels(device) {
        Ok(target) => format!("RoIAlign: CUDA kernels, compiled by NVRTC for {target}"),
        Err(why) => format!("RoIAlign: grid_sampler_2d ({why})"),
    }
}

/// How NMS runs on CUDA device `device` (the kernels load with RoIAlign's).
fn nms_line(device: usize, on_host: bool) -> String {
    if on_host {
        let var = crate::models::ops::nms::IMPLEMENTATION_VAR;
        return format!("NMS: sweep on the host ({var}=host)");
    }
    match native::roi_align::cuda_kernels(device) {
        Ok(target) => format!("NMS: CUDA kernels, compiled by NVRTC for {target}"),
        Err(why) => format!("NMS: sweep on the host ({why})"),
    }
}

/// How bitmap mask targets are made on CUDA device `device` (the kernel
/// loads with RoIAlign's).
fn mask_targets_line(device: usize, on_host: bool) -> String {
    if on_host {
        let var = crate::models::ops::masks::mask_target::IMPLEMENTATION_VAR;
        return format!("Mask targets: on the host ({var}=host)");
    }
    match native::roi_align::cuda_kernels(device) {
        Ok(target) => format!("Mask targets: CUDA kernel, compiled by NVRTC for {target}"),
        Err(why) => format!("Mask targets: on the host ({why})"),
    }
}

/// The dtype the model trains in: float32, or float64 with
/// `DETC_DTYPE=float64` (for checking the arithmetic of a setup, e.g. that
/// N processes train the same model as one, free of float32 rounding).
fn train_kind(config: &Value) -> Result<Kind, String> {
    let value = std::env::var("DETC_DTYPE").unwrap_or_default();
    match value.as_str() {
        "" | "float32" => Ok(Kind::Float),
        "float64" => {
            let wrapper = config.pointer("/optim_wrapper/type").and_then(Value::as_str);
            if wrapper == Some("AmpOptimWrapper") {
                return Err("DETC_DTYPE=float64 cannot be combined with an AmpOptimWrapper (mixed precision); \
                            unset one of them"
                    .into());
            }
            Ok(Kind::Double)
        }
        other => Err(format!(
            "DETC_DTYPE={other:?} is not a training dtype; use float32 (the default) or float64"
        )),
    }
}

/// `val_dataloader` (this rank's shard) with its `CocoMetric`, when the
/// config has both.
fn build_val(
    config: &Value,
    cwd: &Path,
    shard: Shard,
    seed: u64,
) -> Result<Option<(DataParts, CocoMetric)>, Failure> {
    match (config.get("val_dataloader"), config.get("val_evaluator")) {
        (Some(s), Some(e)) if !s.is_null() && !e.is_null() => {
            let data = DataParts::build("val_dataloader", s, cwd, shard, seed).map_err(input)?;
            let metric_cfg = coco_metric_config(e, "val_evaluator").map_err(input)?;
            let metric = CocoMetric::new(&metric_cfg, data.dataset.classes()).map_err(input)?;
            Ok(Some((data, metric)))
        }
        _ => Ok(None),
    }
}

/// `Runner.scale_lr`: the factor and the message, when `auto_scale_lr` is on:
/// the total batch size (every process's) over `base_batch_size`, which
/// must be given (MMEngine asserts it; `tools/train.py --auto-scale-lr`
/// refuses a config without it).
fn auto_scale_lr(
    config: &Value,
    args: &RunArgs,
    train_section: &Value,
    world_size: u64,
) -> Result<Option<(f64, String)>, Failure> {
    let enabled = config
        .pointer("/auto_scale_lr/enable")
        .and_then(Value::as_bool)
        == Some(true);
    if !(args.auto_scale_lr || enabled) {
        return Ok(None);
    }
    let base = config
        .pointer("/auto_scale_lr/base_batch_size")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            input(
                "auto_scale_lr.base_batch_size is needed to scale the learning rate: the total \
                 batch size the configured lr was tuned for (16 for MMDetection's 1x schedules, \
                 8 GPUs x 2 images)",
            )
        })?;
    let batch = train_section
        .get("batch_size")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        * world_size;
    let factor = batch as f64 / base as f64;
    Ok(Some((factor, format!("LR is set based on batch size of {base} and the current batch size is {batch}. Scaling the original LR by {factor}."))))
}

/// The loop's counters' bounds: an `IterBasedTrainLoop` is one epoch long, as MMEngine.
fn loop_shape(cfg: &LoopCfg, train_len: u64) -> LoopShape {
    match cfg.kind {
        LoopKind::EpochBased { max_epochs } => LoopShape {
            by_epoch: true,
            max_epochs,
            max_iters: train_len * max_epochs,
            train_len,
        },
        LoopKind::IterBased { max_iters } => LoopShape {
            by_epoch: false,
            max_epochs: 1,
            max_iters,
            train_len,
        },
    }
}

fn typed_ref<T: serde::de::DeserializeOwned>(v: Option<&Value>, name: &str) -> Result<T, Failure> {
    let v = v.ok_or_else(|| input(format!("the config has no `{name}`")))?;
    serde_json::from_value(v.clone()).map_err(|e| input(format!("{name}: {e}")))
}
