//! `detc test CONFIG CHECKPOINT`: MMDetection's `tools/test.py`. The config
//! is compiled and checked here; `detc-engine test` runs the test loop with
//! the checkpoint's weights and logs the `test_evaluator` metrics; `--out`
//! and `--show-dir` also write the detections and drawings of them.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A source config or an expanded one, and overrides.
    #[command(flatten)]
    config: super::ConfigArgs,
    /// The checkpoint with the trained weights (`.pth` or safetensors).
    checkpoint: PathBuf,
    /// The work dir (default: the config's `work_dir`, else `./work_dirs/<config stem>`).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Also write the detections as COCO results (`OUT.bbox.json`, `OUT.segm.json`) for `detc eval`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw every test image (ground truth left, predictions scoring above
    /// `default_hooks.visualization.score_thr` right) as `WORK_DIR/<timestamp>/SHOW_DIR/<image name>`.
    #[arg(long)]
    show_dir: Option<PathBuf>,
    /// `cpu` or `cuda` (default: cuda when the engine sees a GPU).
    #[arg(long)]
    device: Option<String>,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    let Some(tree) = super::compile_checked(&args.config, super::Checks::Runner) else {
        return Ok(super::EXIT_INPUT);
    };
    let work_dir = super::run_work_dir(&tree, args.work_dir.as_deref(), &args.config);
    let mut engine_args = vec![
        "test".into(),
        "--checkpoint".into(),
        args.checkpoint.into_os_string(),
        "--work-dir".into(),
        work_dir.into_os_string(),
    ];
    if let Some(out) = args.out {
        engine_args.extend(["--out".into(), out.into_os_string()]);
    }
    if let Some(dir) = args.show_dir {
        engine_args.extend(["--show-dir".into(), dir.into_os_string()]);
    }
    if let Some(device) = args.device {
        engine_args.extend(["--device".into(), device.into()]);
    }
    super::run_engine(&tree, &engine_args)
}
