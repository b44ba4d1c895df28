//! `detc-engine test`: MMDetection's `tools/test.py` — the `TestLoop` over
//! `test_dataloader` with the trained weights of a checkpoint, the
//! `test_evaluator` metrics logged as MMEngine logs them, (with `--out`)
//! the detections written as COCO results files that `detc eval` reads, and
//! (with `--show-dir`) every test image drawn with its ground truth and
//! predictions. On a terminal a progress bar shows the loop's ETA.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use detc::data::samplers::Shard;
use detc::evaluation::metric::CocoMetric;
use detc::checkpoint::Value as Pickled;
use detc::registry::data::CocoMetricConfig;
use detc::visualization::show_dir::save_jpeg;
use detc::visualization::{RecordsByPath, TestDrawing};
use serde_json::Value;
use tch::{nn, Device};

use super::data::{eval_dataset, DataParts};
use super::evaluate::{evaluate, EvalProgress};
use super::logging::progress::ProgressBar;
use super::logging::{Level, LogContext, LogProcessor, Mode, RunLog, ScalarHub};
use super::work_dir::{LocalTime, WorkDir};
use crate::models::data_preprocessors::DetDataPreprocessor;
use crate::models::detectors;
use crate::models::weights::{load_state_dict, Shapes};

/// `detc-engine test` arguments (the light `detc test` resolves the work dir).
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// The checkpoint with the trained weights (`.pth` or safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The work dir; the log goes to `WORK_DIR/<timestamp>/`.
    #[arg(long)]
    pub work_dir: PathBuf,
    /// Write the detections as COCO results: `OUT.bbox.json` (and
    /// `OUT.segm.json` with masks), `OUT` without its `.json`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Draw every test image (ground truth left, predictions right) into
    /// `WORK_DIR/<timestamp>/SHOW_DIR/`.
    #[arg(long)]
    pub show_dir: Option<PathBuf>,
    /// `cpu` or `cuda` (default: cuda when the engine sees a GPU).
    #[arg(long)]
    pub device: Option<String>,
}

/// The device of `--device`, else CUDA when available.
pub fn device(name: Option<&str>) -> Result<Device, String> {
    match name {
        None => Ok(Device::cuda_if_available()),
        Some("cpu") => Ok(Device::Cpu),
        Some("cuda") if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        Some("cuda") => {
            Err("--device cuda: the engine sees no CUDA device (see `detc env`)".into())
        }
        Some(other) => Err(format!("--device {other}: expected `cpu` or `cuda`")),
    }
}

/// The `CocoMetric` of an evaluator section (one dict, or a list of one:
/// MMEngine would run every metric of a longer list, which is refused here
/// rather than evaluated in part).
pub fn coco_metric_config(section: &Value, name: &str) -> Result<CocoMetricConfig, String> {
    let first = match section {
        Value::Array(items) if items.len() > 1 => {
            return Err(format!(
                "{name}: {} metrics; detc evaluates one CocoMetric (use its `metric: [bbox, segm]` for both)",
                items.len()
            ))
        }
        Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    match first.get("type").and_then(Value::as_str) {
        Some("CocoMetric") => {}
        other => {
            return Err(format!(
                "{name}: detc evaluates with CocoMetric, not {other:?}"
            ))
        }
    }
    let mut cfg = first;
    cfg.as_object_mut().map(|o| o.remove("type"));
    serde_json::from_value(cfg).map_err(|e| format!("{name}: {e}"))
}

/// A model of the config with a checkpoint's weights, on `device`.
pub struct Trained {
    pub model: detectors::Detector,
    pub pre: DetDataPreprocessor,
    /// MMEngine's warning when the checkpoint's keys and the model's differ.
    pub warning: Option<String>,
    /// The checkpoint's `meta.dataset_meta.classes`, when it has them.
    pub classes: Option<Vec<String>>,
}

impl Trained {
    /// Builds `config.model`, loads `checkpoint` into it and moves it to
    /// `device`; errors are the user's (exit 1).
    pub fn load(config: &Value, checkpoint: &Path, device: Device) -> Result<Trained, String> {
        let model_cfg = config.get("model").ok_or("the config has no `model:` section")?;
        let mut vs = nn::VarStore::new(Device::Cpu);
        let model = detectors::build(model_cfg, vs.root()).map_err(|e| e.to_string())?;
        // A URL resolves to torch's hub cache, as MMEngine downloads it there.
        let file = match checkpoint.to_str() {
            Some(spec) => crate::models::weights::resolve_checkpoint(spec).map_err(|e| e.message)?,
            None => checkpoint.to_path_buf(),
        };
        let ckpt = detc::checkpoint::load(&file).map_err(|e| e.to_string())?;
        // A test of weights that do not fit the model can only mislead:
        // refused, where MMEngine warns.
        let report = load_state_dict(&vs, "", &ckpt.state_dict, Shapes::Refuse)
            .map_err(|e| format!("{}: {e}", checkpoint.display()))?;
        vs.set_device(device);
        crate::engine::memory_format::apply_config(config, &vs).map_err(|e| e.to_string())?;
        let pre_cfg = model
            .data_preprocessor()
            .ok_or("model.data_preprocessor is needed (DetDataPreprocessor)")?;
        let pre = DetDataPreprocessor::new(pre_cfg, device).map_err(|e| e.to_string())?;
        let classes = match ckpt.other.get("meta").and_then(|m| m.get("dataset_meta")).and_then(|d| d.get("classes")) {
            Some(Pickled::List(items) | Pickled::Tuple(items)) => {
                items.iter().map(|c| c.as_str().map(String::from)).collect()
            }
            _ => None,
        };
        // The model's tensors are the store's variables themselves: dropping
        // the store leaves them in place.
        Ok(Trained { model, pre, warning: report.warning(), classes })
    }
}

/// Runs the test loop; returns the exit code.
pub fn test(config: &Value, args: &TestArgs) -> i32 {
    match run(config, args) {
        Ok(()) => 0,
        Err((code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

fn run(config: &Value, args: &TestArgs) -> Result<(), (i32, String)> {
    let input = |m: String| (1, m);
    let runtime = |m: String| (3, m);
    let device = device(args.device.as_deref()).map_err(input)?;
    let Trained { model, pre, warning, .. } = Trained::load(config, &args.checkpoint, device).map_err(input)?;
    let section = config
        .get("test_dataloader")
        .ok_or_else(|| input("the config has no `test_dataloader`".into()))?;
    let cwd = std::env::current_dir().map_err(|e| runtime(e.to_string()))?;
    let mut data = DataParts::build("test_dataloader", section, &cwd, Shard::SINGLE, 0)
        .map_err(|e| input(e.to_string()))?;
    let mut metric_cfg = coco_metric_config(
        config.get("test_evaluator").unwrap_or(&Value::Null),
        "test_evaluator",
    )
    .map_err(input)?;
    if let Some(out) = &args.out {
        metric_cfg.outfile_prefix = Some(out_prefix(out));
    }
    let mut metric =
        CocoMetric::new(&metric_cfg, data.dataset.classes()).map_err(|e| input(e.to_string()))?;

    let ts = LocalTime::now().timestamp();
    let drawing = TestDrawing::from_config(
        config,
        args.show_dir.as_deref(),
        &args.work_dir.join(&ts),
        data.dataset.classes(),
    )
    .map_err(input)?;
    let records = drawing.as_ref().map(|_| RecordsByPath::of(eval_dataset(&data.dataset)));
    let work_dir = WorkDir::create(&args.work_dir, &ts)
        .map_err(|e| runtime(format!("{}: {e}", args.work_dir.display())))?;
    let mut log = RunLog::open_run(&work_dir, config)
        .map_err(|e| runtime(format!("{}: {e}", work_dir.log_dir().display())))?;
    let write_err = |e: std::io::Error| runtime(format!("writing the log: {e}"));
    log.add_config(config).map_err(write_err)?;
    if let Some(warning) = warning {
        log.log(
            Level::Warning,
            &format!("{}: {warning}", args.checkpoint.display()),
        )
        .map_err(write_err)?;
    }
    log.info(&format!(
        "Load checkpoint from {}",
        args.checkpoint.display()
    ))
    .map_err(write_err)?;
    let processor = log_processor(config).map_err(input)?;
    let mut hub = ScalarHub::new(processor.history_len(1, data.len()));
    let interval = logger_interval(config);
    let ctx = |batch_idx: usize, len: usize, eta: Option<f64>| LogContext {
        mode: Mode::Test,
        batch_idx,
        dataloader_len: len,
        epoch: 0,
        iter: 0,
        max_epochs: 0,
        max_iters: 0,
        has_train_loop: false,
        eta,
        memory_mb: crate::engine::native::cuda_peak_memory_mb(device),
    };
    let mut log_failure = None;
    let mut bar = ProgressBar::new(data.len() as u64, "test");
    // `after_test_iter`: every image, into `test_out_dir` or to the
    // visualizer's backends as `test_img` at step 1, 2, ...
    let mut drawn = 0usize;
    let mut draw_failure = None;
    let mut draw = |p: &EvalProgress<'_>, log: &mut RunLog| -> Result<(), String> {
        let (Some(drawing), Some(records)) = (&drawing, &records) else {
            return Ok(());
        };
        for (meta, pred) in p.metas.iter().zip(p.outputs) {
            let info = records.get(meta)?;
            let image = drawing.draw(info, pred)?;
            drawn += 1;
            match drawing.dir() {
                Some(dir) => save_jpeg(dir, info, &image)?,
                None => log
                    .add_image("test_img", &image, drawn as u64)
                    .map_err(|e| format!("writing a drawing: {e}"))?,
            }
        }
        Ok(())
    };
    let results = evaluate(&model, &pre, &mut data, &mut metric, None, |p| {
        if let Err(e) = draw(p, &mut log) {
            draw_failure = Some(e);
            return ControlFlow::Break(());
        }
        hub.update("test/data_time", p.data_time);
        hub.update("test/time", p.time);
        let mean = hub
            .get("test/time")
            .and_then(|b| b.mean(None))
            .unwrap_or(0.0);
        let eta = mean * (p.total - p.index - 1) as f64;
        bar.set(p.index as u64 + 1, Some(eta));
        if (p.index + 1) % interval == 0 {
            let line = processor
                .log_after_iter(&hub, &ctx(p.index, p.total, Some(eta)))
                .1;
            if let Err(e) = bar.suspend(|| log.info(&line)) {
                log_failure.get_or_insert(e);
            }
        }
        ControlFlow::Continue(())
    });
    if let Some(e) = draw_failure {
        return Err(input(format!("DetVisualizationHook: {e}")));
    }
    let results = results
        .map_err(|e| runtime(e.to_string()))?
        .expect("one process computes its metric");
    bar.finish();
    if let Some(e) = log_failure {
        return Err(write_err(e));
    }
    for line in &results.log {
        log.info(line).map_err(write_err)?;
    }
    for (key, value) in &results.values {
        hub.update(&format!("test/{key}"), *value);
    }
    let (tag, line) = processor.log_after_epoch(&hub, &ctx(data.len() - 1, data.len(), None));
    log.info(&line).map_err(write_err)?;
    log.add_scalars(&tag, 0).map_err(write_err)?;
    for file in &results.files {
        log.info(&format!("results written to {}", file.display()))
            .map_err(write_err)?;
    }
    match drawing.as_ref().map(TestDrawing::dir) {
        Some(Some(dir)) => log.info(&format!("{drawn} images drawn in {}", dir.display())),
        Some(None) => log.info(&format!("{drawn} images drawn for the visualizer's backends")),
        None => Ok(()),
    }
    .map_err(write_err)?;
    Ok(())
}

/// `--out results.json` → the prefix `results` (CocoMetric appends `.bbox.json`, `.segm.json`).
fn out_prefix(out: &Path) -> String {
    let s = out.to_string_lossy();
    s.strip_suffix(".json").unwrap_or(&s).to_string()
}

/// The config's `log_processor` (MMEngine's defaults when absent).
pub fn log_processor(config: &Value) -> Result<LogProcessor, String> {
    match config.get("log_processor") {
        None | Some(Value::Null) => Ok(LogProcessor::new(10, true)),
        Some(v) => {
            let mut v = v.clone();
            v.as_object_mut().map(|o| o.remove("type"));
            let cfg = serde_json::from_value(v).map_err(|e| format!("log_processor: {e}"))?;
            LogProcessor::from_config(&cfg).map_err(|e| e.to_string())
        }
    }
}

/// `default_hooks.logger.interval` (MMEngine's default 10).
pub fn logger_interval(config: &Value) -> usize {
    config
        .pointer("/default_hooks/logger/interval")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .max(1) as usize
}
