//! `detc eval`: evaluates a COCO results file against ground truth, offline.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Ground-truth COCO annotation JSON.
    #[arg(long)]
    pub ann: PathBuf,
    /// Detections as a COCO results JSON (a list of `{image_id, category_id, score, bbox|segmentation}`).
    #[arg(long)]
    pub results: PathBuf,
    /// What to evaluate: `bbox`, `segm`, or both.
    #[arg(long, num_args = 1.., default_value = "bbox")]
    pub metric: Vec<String>,
    /// `text` (pycocotools' summary) or `json` (one object keyed by metric).
    #[arg(long, default_value = "text")]
    pub format: String,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    let _ = args;
    eprintln!("error: `detc eval` is not built yet");
    Ok(super::EXIT_RUNTIME)
}
