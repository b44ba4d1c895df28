//! `detc bench CONFIG`: images per second of training and inference on the
//! config's data, the train step split by phase, and peak memory. The config
//! is compiled and checked here; `detc-engine bench` runs real steps (no
//! hooks, a throw-away work dir) after a warm-up, in one process or, with
//! `--gpus N` / `--nproc N`, in a data-parallel job started as `detc run`
//! starts one (the report, from rank 0, counts the images of every rank).
//! `--synthetic` benchmarks on generated images where the dataset is absent.

use crate::dist::{Plan, Topology, DEFAULT_PORT};

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
    /// Benchmark N GPUs of this machine, one worker each, as `detc run --gpus N`.
    #[arg(long, value_name = "N", conflicts_with = "nproc", value_parser = clap::value_parser!(u32).range(1..))]
    gpus: Option<u32>,
    /// N workers on this machine (with `--device cpu`: over Gloo), as `detc run --nproc N`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    nproc: Option<u32>,
    /// Generated shapes images at the config's scale (square, the short side
    /// of the largest scale its training pipeline resizes to) instead of its dataset.
    #[arg(long)]
    synthetic: bool,
}

pub fn exec(mut args: Args) -> std::io::Result<i32> {
    if args.gpus.is_some() {
        match args.device.as_deref() {
            Some("cpu") => {
                eprintln!(
                    "error: `--gpus` benchmarks GPUs; for CPU workers use `--nproc N --device cpu`"
                );
                return Ok(super::EXIT_USAGE);
            }
            Some(_) => {}
            None => args.device = Some("cuda".into()),
        }
    }
    let nproc = args.gpus.or(args.nproc).unwrap_or(1);
    if args.amp {
        args.config
            .cfg_options
            .extend(super::run::AMP_OPTIONS.map(String::from));
    }
    let Some(tree) = super::compile_checked(&args.config, super::Checks::Runner) else {
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
    if args.synthetic {
        engine_args.push("--synthetic".into());
    }
    if let Some(device) = args.device {
        engine_args.extend(["--device".into(), device.into()]);
    }
    if nproc == 1 {
        return super::run_engine(&tree, &engine_args);
    }
    let plan = Plan::Local {
        topology: Topology {
            nnodes: 1,
            node_rank: 0,
            nproc,
            master_addr: "127.0.0.1".into(),
            master_port: DEFAULT_PORT,
        },
        explicit_port: false,
    };
    Ok(super::run_engines(&tree, &engine_args, &plan))
}
