//! `detc eval`: evaluates a COCO results file against ground truth, offline,
//! as `COCO(gt).loadRes(results)` + `COCOeval(...).evaluate/accumulate/summarize`.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::evaluation::coco::{CocoError, CocoGt};
use crate::evaluation::cocoeval::{self, IouType, Params};

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

/// The names of the 12 stats in `--format json`, in pycocotools' order.
pub const STAT_NAMES: [&str; 12] = [
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
];

pub fn exec(args: Args) -> std::io::Result<i32> {
    let mut kinds = Vec::new();
    for m in &args.metric {
        match m.as_str() {
            "bbox" => kinds.push(IouType::Bbox),
            "segm" => kinds.push(IouType::Segm),
            other => {
                eprintln!("error: unknown metric `{other}`; expected `bbox` or `segm`");
                return Ok(super::EXIT_USAGE);
            }
        }
    }
    let json = match args.format.as_str() {
        "text" => false,
        "json" => true,
        other => {
            eprintln!("error: unknown format `{other}`; expected `text` or `json`");
            return Ok(super::EXIT_USAGE);
        }
    };
    match run(&args, &kinds, json) {
        Ok(out) => {
            super::print_stdout(&out)?;
            Ok(super::EXIT_OK)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(super::EXIT_INPUT)
        }
    }
}

/// Loads both files once and evaluates each metric; returns what to print.
fn run(args: &Args, kinds: &[IouType], json: bool) -> Result<String, CocoError> {
    let gt = CocoGt::from_file(&args.ann)?;
    let dt = gt.load_results_file(&args.results)?;
    let mut text = String::new();
    let mut obj = Map::new();
    for &kind in kinds {
        let eval = cocoeval::evaluate(&gt, &dt, &Params::new(kind, &gt)).map_err(|e| {
            CocoError(format!(
                "{} evaluation of {} against {}: {e}",
                kind.name(),
                args.results.display(),
                args.ann.display()
            ))
        })?;
        let summary = eval.summarize()?;
        if json {
            let stats: Map<String, Value> = STAT_NAMES
                .iter()
                .zip(&summary.stats)
                .map(|(k, v)| (k.to_string(), Value::from(*v)))
                .collect();
            obj.insert(kind.name().to_string(), Value::Object(stats));
        } else {
            text.push_str(&format!("Evaluate annotation type *{}*\n", kind.name()));
            for line in &summary.lines {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    if json {
        text = Value::Object(obj).to_string() + "\n";
    }
    Ok(text)
}
