//! `detc bench CONFIG`: images per second of training and inference on the
//! config's data, the train step split by phase, and peak memory. The config
//! is compiled and checked here; `detc-engine bench` runs real steps (no
//! hooks, a throw-away work dir) after a warm-up.

#[derive(clap::Args)]
pub struct Args {
    /// A source config or an expanded one, and overrides (put `--cfg-options` last).
    #[command(flatten)]
    config: super::ConfigArgs,
    /// Timed iterations (train steps, then inference batches).
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Mixed precision, as `detc run --amp`.
    #[arg(long)]
    amp: bool,
    /// Print one JSON object (for scripts) instead of the table.
    #[arg(long)]
    json: bool,
    /// `cpu` or `cuda` (default: cuda when the engine sees a GPU).
    #[arg(long)]
    device: Option<String>,
}

pub fn exec(mut args: Args) -> std::io::Result<i32> {
    if args.amp {
        args.config
            .cfg_options
            .extend(super::run::AMP_OPTIONS.map(String::from));
    }
    let Some(tree) = super::compile_checked(&args.config) else {
        return Ok(super::EXIT_INPUT);
    };
    let mut engine_args: Vec<std::ffi::OsString> = vec![
        "bench".into(),
        "--iters".into(),
        args.iters.to_string().into(),
        "--warmup".into(),
        args.warmup.to_string().into(),
    ];
    if args.json {
        engine_args.push("--json".into());
    }
    if let Some(device) = args.device {
        engine_args.extend(["--device".into(), device.into()]);
    }
    super::run_engine(&tree, &engine_args)
}
