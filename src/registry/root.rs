//! The top-level sections of a config, as MMEngine's `Runner` reads them.
//!
//! Every section is optional here: a base file alone (`_base_/datasets/…`)
//! holds only some of them; whether a resolved config has what a command
//! needs is checked by that command. `RootConfig` does not deny unknown keys:
//! MMDetection configs define top-level helper variables (`train_pipeline`,
//! `data_root`, …) that `{{_base_.x}}` references and `--cfg-options` reach;
//! the validator decides what to say about keys that are neither a section
//! nor a [`HELPER_VARIABLES`] name.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::models::common::{AnyObject, BackendArgs, OneOrMany};
use super::refs::{
    BatchSamplerCfg, DataPreprocessorCfg, DataSamplerCfg, DatasetCfg, DetectorCfg, EvaluatorCfg, HookCfg,
    LogProcessorCfg, LoopCfg, OptimWrapperCfg, ParamSchedulerCfg, VisualizerCfg,
};

/// Top-level variables MMDetection configs commonly define for reuse and
/// reference (`{{_base_.train_pipeline}}`) that are not runtime sections.
pub const HELPER_VARIABLES: &[&str] = &[
    "train_pipeline",
    "test_pipeline",
    "val_pipeline",
    "tta_pipeline",
    "tta_model",
    "data_root",
    "dataset_type",
    "backend_args",
    "backend",
    "file_client_args",
    "train_ann",
    "val_ann",
    "test_ann",
    "custom_keys",
    "img_scale",
    "img_scales",
    "image_size",
    "img_norm_cfg",
    "num_stages",
    "num_proposals",
    "num_classes",
    "num_levels",
    "metainfo",
    "classes",
    "albu_train_transforms",
    "batch_augments",
    "max_epochs",
    "max_iters",
    "base_lr",
    "lr",
    "interval",
    "val_interval",
    "train_batch_size_per_gpu",
    "train_num_workers",
    "norm_cfg",
    "conv_cfg",
    "checkpoint",
    "pretrained",
    "vis_backends",
    "model_wrapper_cfg",
    "custom_imports",
];

/// A dataloader section (`train_dataloader`, `val_dataloader`, `test_dataloader`):
/// MMEngine builds the dataset, sampler and collate function, and passes the
/// remaining keys to `torch.utils.data.DataLoader`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataLoaderConfig {
    /// Samples per batch on each GPU (the total batch is this times the number of processes).
    #[schemars(range(min = 1))]
    pub batch_size: u32,
    /// Loader worker processes; 0 loads in the main process.
    #[serde(default)]
    pub num_workers: u32,
    /// Keep the workers alive between epochs (ignored when `num_workers` is 0).
    #[serde(default)]
    pub persistent_workers: bool,
    /// Drop the last incomplete batch.
    #[serde(default)]
    pub drop_last: bool,
    /// Accepted as MMEngine's; detc copies each batch to the GPU straight
    /// from the loader's memory (a page-locked copy cost more than it saved).
    #[serde(default)]
    pub pin_memory: bool,
    /// Sample order, e.g. `{type: DefaultSampler, shuffle: true}`.
    pub sampler: DataSamplerCfg,
    /// Groups samples into batches, e.g. `{type: AspectRatioBatchSampler}`; plain batching when null.
    #[serde(default)]
    pub batch_sampler: Option<BatchSamplerCfg>,
    /// The dataset, e.g. `{type: CocoDataset, …}`.
    pub dataset: DatasetCfg,
    /// Collate function; `pseudo_collate` when null.
    #[serde(default)]
    pub collate_fn: Option<CollateFnConfig>,
    /// Worker init function (`{type: worker_init_fn, …}`); MMEngine's seeding one when null.
    #[serde(default)]
    pub worker_init_fn: Option<AnyObject>,
    /// Stop each epoch after this many batches (for quick runs).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub num_batch_per_epoch: Option<u32>,
    /// Batches loaded in advance by each worker.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub prefetch_factor: Option<u32>,
    /// Seconds to wait for a batch from the workers; 0 waits forever.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub timeout: f64,
}

/// A registered collate function name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CollateFnType {
    /// Lists of samples, no stacking (MMEngine's default; the data preprocessor stacks).
    PseudoCollate,
    /// `torch.utils.data.default_collate`-style stacking.
    DefaultCollate,
}

/// A dataloader's `collate_fn`: `{type: pseudo_collate}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollateFnConfig {
    /// `pseudo_collate` or `default_collate`.
    pub r#type: CollateFnType,
}

/// `default_hooks`: the runner's standard hooks by name. Setting one to null
/// disables it; other names add hooks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct DefaultHooks {
    /// Publishes runtime information (`RuntimeInfoHook`); always registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_info: Option<HookCfg>,
    /// Iteration timing (`IterTimerHook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<HookCfg>,
    /// Logging (`LoggerHook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logger: Option<HookCfg>,
    /// Parameter scheduler stepping (`ParamSchedulerHook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_scheduler: Option<HookCfg>,
    /// Checkpointing (`CheckpointHook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<HookCfg>,
    /// Sampler epoch seeding (`DistSamplerSeedHook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler_seed: Option<HookCfg>,
    /// Prediction drawing (`DetVisualizationHook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visualization: Option<HookCfg>,
}

/// Start method of worker processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MpStartMethod {
    /// Fork the parent (Linux default; fast).
    Fork,
    /// Start a fresh interpreter.
    Spawn,
    /// Fork from a clean server process.
    Forkserver,
}

fn default_fork() -> MpStartMethod {
    MpStartMethod::Fork
}

/// `env_cfg.mp_cfg`: multiprocessing settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MpConfig {
    /// `fork`, `spawn` or `forkserver`.
    #[serde(default = "default_fork")]
    pub mp_start_method: MpStartMethod,
    /// OpenCV threads per process (0 disables OpenCV's own threading).
    #[serde(default)]
    pub opencv_num_threads: u32,
}

/// A `torch.distributed` backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DistBackend {
    /// NVIDIA collectives (GPUs).
    Nccl,
    /// Gloo (CPU, or GPUs without NCCL).
    Gloo,
    /// MPI.
    Mpi,
    /// Huawei Ascend.
    Hccl,
    /// Cambricon MLU.
    Cncl,
    /// Moore Threads MUSA.
    Mccl,
}

fn default_nccl() -> DistBackend {
    DistBackend::Nccl
}

/// Library that initialises the process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InitBackend {
    /// `torch.distributed.init_process_group`.
    Torch,
    /// DeepSpeed.
    Deepspeed,
    /// Colossal-AI.
    Colossalai,
}

fn default_torch() -> InitBackend {
    InitBackend::Torch
}

/// `env_cfg.dist_cfg`: process-group settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DistConfig {
    /// Communication backend.
    #[serde(default = "default_nccl")]
    pub backend: DistBackend,
    /// Which library initialises the process group.
    #[serde(default = "default_torch")]
    pub init_backend: InitBackend,
    /// Seconds a collective may wait before failing.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub timeout: Option<u64>,
    /// Master port (Slurm launcher); `MASTER_PORT` or 29500 when null.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
}

/// `env_cfg`: process environment set up before the run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Let cuDNN benchmark convolution algorithms (faster for fixed input sizes).
    #[serde(default)]
    pub cudnn_benchmark: bool,
    /// Lay the convolutions' weights, and so their activations, out channels-last in memory (`model.to(memory_format=torch.channels_last)`): faster convolutions on tensor cores and with oneDNN on the CPU; the same values up to the last bits (detc's own; see docs/runtime.md).
    #[serde(default)]
    pub channels_last: bool,
    /// Multiprocessing settings.
    #[serde(default)]
    pub mp_cfg: Option<MpConfig>,
    /// Distributed settings.
    #[serde(default)]
    pub dist_cfg: Option<DistConfig>,
    /// Soft limit of open files (`RLIMIT_NOFILE`) to raise to.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub resource_limit: Option<u64>,
}

/// `randomness`: seeding and determinism.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomnessConfig {
    /// Random seed; drawn at random (and logged) when null.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub seed: Option<i64>,
    /// Offset the seed by the process rank: no effect in detc, whose per-sample streams already differ by sample (see docs/runtime.md).
    #[serde(default)]
    pub diff_rank_seed: bool,
    /// Deterministic cuDNN kernels and no cuDNN autotuning (slower); torch's deterministic-algorithms check stays off (see docs/runtime.md).
    #[serde(default)]
    pub deterministic: bool,
}

/// `auto_scale_lr`: scale the learning rate linearly with the total batch size.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoScaleLrConfig {
    /// Scale `lr` by `total batch size / base_batch_size` (`--auto-scale-lr` also enables it).
    #[serde(default)]
    pub enable: bool,
    /// Total batch size the configured `lr` was tuned for (8 GPUs x 2 images = 16 for the 1x schedules).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub base_batch_size: Option<u32>,
}

/// Logging threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Everything.
    Debug,
    /// Progress (the default).
    Info,
    /// Warnings and errors.
    Warning,
    /// Errors only.
    Error,
    /// Fatal errors only.
    Critical,
}

/// How the processes of a run were started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Launcher {
    /// A single, non-distributed process.
    None,
    /// torchrun / `--gpus N` (RANK, WORLD_SIZE, … from the environment).
    Pytorch,
    /// Slurm `srun`.
    Slurm,
    /// `mpirun`.
    Mpi,
}

/// The runtime sections a config's top level may hold, as MMEngine's `Runner`
/// reads them. All optional: a base file alone is partial.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct RootConfig {
    /// The detector, e.g. `{type: QueryInst, backbone: …, neck: …, rpn_head: …, roi_head: …}`.
    #[serde(default)]
    pub model: Option<DetectorCfg>,
    /// Data preprocessor merged into `model.data_preprocessor`.
    #[serde(default)]
    pub data_preprocessor: Option<DataPreprocessorCfg>,
    /// Training data.
    #[serde(default)]
    pub train_dataloader: Option<DataLoaderConfig>,
    /// Validation data.
    #[serde(default)]
    pub val_dataloader: Option<DataLoaderConfig>,
    /// Test data.
    #[serde(default)]
    pub test_dataloader: Option<DataLoaderConfig>,
    /// Validation metric(s), e.g. `{type: CocoMetric, metric: bbox}`.
    #[serde(default)]
    pub val_evaluator: Option<OneOrMany<EvaluatorCfg>>,
    /// Test metric(s).
    #[serde(default)]
    pub test_evaluator: Option<OneOrMany<EvaluatorCfg>>,
    /// Training loop, e.g. `{type: EpochBasedTrainLoop, max_epochs: 12, val_interval: 1}`,
    /// or MMEngine's form without `type`: `{by_epoch: true, max_epochs: 12}`.
    #[serde(default)]
    pub train_cfg: Option<TrainLoopSpec>,
    /// Validation loop, e.g. `{type: ValLoop}`; `{}` (no `type`) means `ValLoop`.
    #[serde(default)]
    pub val_cfg: Option<EvalLoopSpec>,
    /// Test loop, e.g. `{type: TestLoop}`; `{}` (no `type`) means `TestLoop`.
    #[serde(default)]
    pub test_cfg: Option<EvalLoopSpec>,
    /// Optimizer wrapper, e.g. `{type: OptimWrapper, optimizer: {type: SGD, lr: 0.02}}`.
    #[serde(default)]
    pub optim_wrapper: Option<OptimWrapperCfg>,
    /// Learning-rate schedule: one scheduler or a list applied together.
    #[serde(default)]
    pub param_scheduler: Option<OneOrMany<ParamSchedulerCfg>>,
    /// The standard hooks by name (`timer`, `logger`, `param_scheduler`, `checkpoint`, `sampler_seed`, `visualization`).
    #[serde(default)]
    pub default_hooks: Option<DefaultHooks>,
    /// Extra hooks.
    #[serde(default)]
    pub custom_hooks: Option<Vec<HookCfg>>,
    /// Process environment: cuDNN, multiprocessing, distributed backend.
    #[serde(default)]
    pub env_cfg: Option<EnvConfig>,
    /// Log formatting and smoothing, e.g. `{type: LogProcessor, window_size: 50}`.
    #[serde(default)]
    pub log_processor: Option<LogProcessorCfg>,
    /// Logging threshold.
    #[serde(default)]
    pub log_level: Option<LogLevel>,
    /// Checkpoint whose weights initialise the model (not the optimizer); none when null.
    #[serde(default)]
    pub load_from: Option<String>,
    /// Resume training: from `load_from` if set, else from the work dir's `last_checkpoint`.
    #[serde(default)]
    pub resume: Option<bool>,
    /// Run output folder; `./work_dirs/<config name>` when null.
    #[serde(default)]
    pub work_dir: Option<String>,
    /// Seeding and determinism.
    #[serde(default)]
    pub randomness: Option<RandomnessConfig>,
    /// Automatic learning-rate scaling with the total batch size.
    #[serde(default)]
    pub auto_scale_lr: Option<AutoScaleLrConfig>,
    /// Registry scope of unqualified type names (`mmdet`).
    #[serde(default)]
    pub default_scope: Option<String>,
    /// Visualizer, e.g. `{type: DetLocalVisualizer, vis_backends: [{type: LocalVisBackend}]}`.
    #[serde(default)]
    pub visualizer: Option<VisualizerCfg>,
    /// How the processes were started; set by the launcher.
    #[serde(default)]
    pub launcher: Option<Launcher>,
    /// File backend arguments shared by the data sections; local files when null.
    #[serde(default)]
    pub backend_args: Option<BackendArgs>,
    /// Name of the experiment: the LoggerHook's `Exp name: <name>_<timestamp>` line (every
    /// `interval_exp_name` iterations and at each epoch's end); the config file's name when null.
    #[serde(default)]
    pub experiment_name: Option<String>,
}

/// The top-level keys [`RootConfig`] types, in declaration order (a test
/// keeps this list and the struct in step).
pub const SECTIONS: &[&str] = &[
    "model",
    "data_preprocessor",
    "train_dataloader",
    "val_dataloader",
    "test_dataloader",
    "val_evaluator",
    "test_evaluator",
    "train_cfg",
    "val_cfg",
    "test_cfg",
    "optim_wrapper",
    "param_scheduler",
    "default_hooks",
    "custom_hooks",
    "env_cfg",
    "log_processor",
    "log_level",
    "load_from",
    "resume",
    "work_dir",
    "randomness",
    "auto_scale_lr",
    "default_scope",
    "visualizer",
    "launcher",
    "backend_args",
    "experiment_name",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_match_root_config() {
        let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
        let schema = generator.root_schema_for::<RootConfig>();
        let props: Vec<&str> = schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(props, SECTIONS);
        // No `additionalProperties: false`: helper variables are allowed.
        assert!(schema.get("additionalProperties").is_none());
    }

    #[test]
    fn helper_variables_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for name in HELPER_VARIABLES {
            assert!(seen.insert(name), "duplicate helper variable `{name}`");
        }
    }
}

/// `train_cfg`: a loop named by `type`, or MMEngine's `type`-less form, which
/// its `Runner` turns into `EpochBasedTrainLoop` (`by_epoch: true`) or
/// `IterBasedTrainLoop` (`by_epoch: false`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TrainLoopSpec {
    /// `{type: EpochBasedTrainLoop, ...}` or another registered loop.
    Typed(LoopCfg),
    /// `{by_epoch: ..., max_epochs | max_iters: ..., ...}`.
    ByEpoch(UntypedTrainLoopConfig),
}

/// MMEngine's `train_cfg` without `type`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UntypedTrainLoopConfig {
    /// `true`: `EpochBasedTrainLoop` (needs `max_epochs`); `false`: `IterBasedTrainLoop` (needs `max_iters`).
    pub by_epoch: bool,
    /// Number of training epochs (with `by_epoch: true`).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_epochs: Option<u32>,
    /// Number of training iterations (with `by_epoch: false`).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_iters: Option<u64>,
    /// First epoch or iteration after which validation runs.
    #[serde(default)]
    pub val_begin: Option<u32>,
    /// Validate every this many epochs or iterations.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub val_interval: Option<u32>,
    /// `(from, new_val_interval)` pairs that change `val_interval` during training.
    #[serde(default)]
    pub dynamic_intervals: Option<Vec<(u64, u32)>>,
}

/// `val_cfg` / `test_cfg`: a loop named by `type`, or `{}` (MMEngine's
/// `ValLoop` / `TestLoop` with these arguments).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum EvalLoopSpec {
    /// `{type: ValLoop}`, `{type: TestLoop}` or another registered loop.
    Typed(LoopCfg),
    /// The default loop's arguments, without `type`.
    Default(UntypedEvalLoopConfig),
}

/// MMEngine's `val_cfg` / `test_cfg` without `type`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UntypedEvalLoopConfig {
    /// Must be false: evaluation in fp16 autocast is not supported yet (it runs in float32).
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub fp16: bool,
}
