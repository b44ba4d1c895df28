//! `detc run CONFIG`: MMDetection's `tools/train.py`. Compiles and checks the
//! config here (no libtorch in this process), then hands the resolved config
//! to `detc-engine run`, which trains.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A source config or an expanded one, and overrides.
    #[command(flatten)]
    config: super::ConfigArgs,
    /// The work dir (default: the config's `work_dir`, else `./work_dirs/<config stem>`).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Resume: alone, from the work dir's newest checkpoint (`last_checkpoint`); with a path, from that file.
    #[arg(long, num_args = 0..=1, value_name = "CHECKPOINT")]
    resume: Option<Option<PathBuf>>,
    /// Mixed precision: `optim_wrapper.type=AmpOptimWrapper` with `loss_scale=dynamic`
    /// (float16 autocast on CUDA, bfloat16 on the CPU).
    #[arg(long)]
    amp: bool,
    /// Scale the learning rate by the batch size (`auto_scale_lr.base_batch_size`).
    #[arg(long)]
    auto_scale_lr: bool,
    /// `cpu` or `cuda` (default: cuda when the engine sees a GPU).
    #[arg(long)]
    device: Option<String>,
}

/// What `--amp` sets.
const AMP_OPTIONS: [&str; 2] = [
    "optim_wrapper.type=AmpOptimWrapper",
    "optim_wrapper.loss_scale=dynamic",
];

pub fn exec(mut args: Args) -> std::io::Result<i32> {
    if args.amp {
        // mmdet tools/train.py: `cfg.optim_wrapper.type = 'AmpOptimWrapper'` and
        // `loss_scale = 'dynamic'`, after the --cfg-options; as overrides they
        // are checked with the rest of the config.
        args.config
            .cfg_options
            .extend(AMP_OPTIONS.map(String::from));
    }
    let Some(tree) = super::compile_checked(&args.config) else {
        return Ok(super::EXIT_INPUT);
    };
    let work_dir = super::run_work_dir(&tree, args.work_dir.as_deref(), &args.config);
    let stem = args
        .config
        .file
        .file_stem()
        .map(|s| s.to_os_string())
        .unwrap_or_else(|| "config".into());
    let mut engine_args: Vec<std::ffi::OsString> = vec![
        "run".into(),
        "--work-dir".into(),
        work_dir.into_os_string(),
        "--config-stem".into(),
        stem,
    ];
    match args.resume {
        Some(Some(path)) => engine_args.extend(["--resume-from".into(), path.into_os_string()]),
        Some(None) => engine_args.push("--resume".into()),
        None => {}
    }
    if args.auto_scale_lr {
        engine_args.push("--auto-scale-lr".into());
    }
    if let Some(device) = args.device {
        engine_args.extend(["--device".into(), device.into()]);
    }
    super::run_engine(&tree, &engine_args)
}
