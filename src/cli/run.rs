//! `detc run CONFIG`: MMDetection's `tools/train.py`. Compiles and checks the
//! config here (no libtorch in this process), then hands the resolved config
//! to `detc-engine run`, which trains: one engine, or one per worker of a
//! multi-process job (`--gpus N`, `--nproc N`, `--launcher`; see `crate::dist`).

use std::path::PathBuf;

use crate::config::value::Node;
use crate::dist::{Plan, Topology, DEFAULT_PORT};

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
    /// Train on N GPUs of this machine: one worker per GPU (NCCL); implies `--device cuda`.
    #[arg(long, value_name = "N", conflicts_with = "nproc", value_parser = clap::value_parser!(u32).range(1..))]
    gpus: Option<u32>,
    /// Start N workers on this machine (with `--device cpu`: N CPU workers over Gloo).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    nproc: Option<u32>,
    /// The machines of the job; each runs this command with its own `--node-rank`.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    nnodes: u32,
    /// This machine's place among the `--nnodes` (0: the master, which hosts the rendezvous).
    #[arg(long, value_name = "RANK", default_value_t = 0)]
    node_rank: u32,
    /// The master node's address, as the other nodes reach it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    master_addr: String,
    /// The rendezvous port on the master (default: 29500; on one machine, a free port when 29500 is taken).
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// Who starts the workers: `none` (this command), `pytorch` (torchrun started this process
    /// as one worker) or `slurm` (srun did); the last two read the ranks from the environment.
    #[arg(long, value_enum, default_value_t = Launcher::None)]
    launcher: Launcher,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Launcher {
    None,
    Pytorch,
    Slurm,
}

/// What `--amp` sets.
pub(super) const AMP_OPTIONS: [&str; 2] = [
    "optim_wrapper.type=AmpOptimWrapper",
    "optim_wrapper.loss_scale=dynamic",
];

pub fn exec(mut args: Args) -> std::io::Result<i32> {
    let plan = match plan(&mut args) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(super::EXIT_USAGE);
        }
    };
    if args.amp {
        // mmdet tools/train.py: `cfg.optim_wrapper.type = 'AmpOptimWrapper'` and
        // `loss_scale = 'dynamic'`, after the --cfg-options; as overrides they
        // are checked with the rest of the config.
        args.config
            .cfg_options
            .extend(AMP_OPTIONS.map(String::from));
    }
    let Some(tree) = super::compile_checked(&args.config, super::Checks::Runner) else {
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
    match args.resume.or_else(|| config_resume(&tree)) {
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
    let plan = match plan {
        None => return super::run_engine(&tree, &engine_args),
        Some(Plan::Slurm { .. }) => Plan::Slurm {
            port: dist_cfg_port(&tree),
        },
        Some(plan) => plan,
    };
    Ok(super::run_engines(&tree, &engine_args, &plan))
}

/// The config's `resume: true`, where no `--resume` flag overrides it (as
/// MMDetection's `tools/train.py` keeps `cfg.resume`): from `load_from`
/// when it is set, else from the work dir's newest checkpoint (MMEngine's
/// `Runner.load_or_resume`).
fn config_resume(tree: &Node) -> Option<Option<PathBuf>> {
    let json = tree.to_json();
    if json.get("resume").and_then(|r| r.as_bool()) != Some(true) {
        return None;
    }
    Some(
        json.get("load_from")
            .and_then(|l| l.as_str())
            .map(PathBuf::from),
    )
}

/// `env_cfg.dist_cfg.port` (a Slurm job's master port, as MMEngine's).
fn dist_cfg_port(tree: &Node) -> Option<u16> {
    let port = tree
        .at_path(&["env_cfg", "dist_cfg", "port"])?
        .value
        .as_int()?;
    u16::try_from(port).ok()
}

/// The multi-process job the flags ask for; `None` for today's single engine.
/// `--gpus` sets `--device cuda`.
fn plan(args: &mut Args) -> Result<Option<Plan>, String> {
    if let Some(gpus) = args.gpus {
        match args.device.as_deref() {
            Some("cpu") => {
                return Err(
                    "`--gpus` trains on GPUs; for CPU workers use `--nproc N --device cpu`".into(),
                )
            }
            Some(_) => {}
            None => args.device = Some("cuda".into()),
        }
        args.nproc = Some(gpus);
    }
    let nproc = args.nproc.unwrap_or(1);
    if args.launcher != Launcher::None {
        if args.gpus.is_some() || args.nproc.is_some() || args.nnodes != 1 || args.node_rank != 0 {
            return Err(
                "with `--launcher pytorch|slurm` the launcher starts the workers: \
                        drop `--gpus`, `--nproc`, `--nnodes` and `--node-rank`"
                    .into(),
            );
        }
        return Ok(Some(if args.launcher == Launcher::Pytorch {
            Plan::Pytorch
        } else {
            // The port comes from the config, once it is compiled.
            Plan::Slurm { port: None }
        }));
    }
    if args.node_rank >= args.nnodes {
        return Err(format!(
            "`--node-rank {}` must be below `--nnodes {}`",
            args.node_rank, args.nnodes
        ));
    }
    if nproc == 1 && args.nnodes == 1 {
        return Ok(None);
    }
    let topology = Topology {
        nnodes: args.nnodes,
        node_rank: args.node_rank,
        nproc,
        master_addr: args.master_addr.clone(),
        master_port: args.port.unwrap_or(DEFAULT_PORT),
    };
    Ok(Some(Plan::Local {
        topology,
        explicit_port: args.port.is_some(),
    }))
}
