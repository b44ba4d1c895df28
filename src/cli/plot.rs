//! `detc plot WORK_DIR...`: the curves of logged keys as a PNG, one panel per
//! key and one line per work dir (MMDetection's `analyze_logs.py plot_curve`).
//! The points come from every run folder's `vis_data/scalars.json`; a
//! resumed run's records replace the earlier run's at the same step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::visualization::plot::{render, Panel, Series};

#[derive(clap::Args)]
pub struct Args {
    /// Work dirs of `detc run` (or MMDetection); several overlay for comparison.
    #[arg(required = true)]
    work_dirs: Vec<PathBuf>,
    /// The keys to plot, one panel each (default: `loss` and the COCO mAPs logged).
    #[arg(long, num_args = 1.., value_name = "KEY")]
    keys: Vec<String>,
    /// The PNG to write.
    #[arg(long, default_value = "curves.png")]
    out: PathBuf,
}

/// The records of a work dir: step, then the key's value, per key.
type Curves = BTreeMap<String, BTreeMap<u64, f64>>;

pub fn exec(args: Args) -> std::io::Result<i32> {
    let mut runs = Vec::new();
    for dir in &args.work_dirs {
        match read_curves(dir) {
            Ok(curves) => runs.push((dir, curves)),
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(super::EXIT_INPUT);
            }
        }
    }
    let keys = if args.keys.is_empty() {
        default_keys(&runs)
    } else {
        args.keys.clone()
    };
    let mut panels = Vec::new();
    for key in &keys {
        let series: Vec<Series> = runs
            .iter()
            .filter_map(|(dir, curves)| {
                let points = curves.get(key)?;
                Some(Series {
                    label: dir.display().to_string(),
                    points: points.iter().map(|(&step, &v)| (step as f64, v)).collect(),
                })
            })
            .collect();
        if series.is_empty() {
            let known: Vec<&String> = runs.iter().flat_map(|(_, c)| c.keys()).collect();
            let hint =
                crate::config::diagnostic::did_you_mean(key, known.iter().map(|k| k.as_str()))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
            eprintln!("error: no work dir logged `{key}`{hint}");
            return Ok(super::EXIT_INPUT);
        }
        panels.push(Panel {
            title: key.clone(),
            x_label: x_label(key).into(),
            series,
        });
    }
    let png = crate::visualization::png::encode(&render(&panels));
    std::fs::write(&args.out, png).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot write `{}`: {e}", args.out.display()),
        )
    })?;
    println!(
        "wrote {} ({} panel{}: {})",
        args.out.display(),
        panels.len(),
        if panels.len() == 1 { "" } else { "s" },
        keys.join(", ")
    );
    Ok(super::EXIT_OK)
}

/// Training records are logged at the iteration; validation metrics at the
/// epoch (MMEngine's `log_metric_by_epoch`, its default).
fn x_label(key: &str) -> &'static str {
    if key.contains('/') {
        "epoch"
    } else {
        "iter"
    }
}

/// `loss`, then every `coco/<kind>_mAP` some run logged.
fn default_keys(runs: &[(&PathBuf, Curves)]) -> Vec<String> {
    let mut keys = vec!["loss".to_string()];
    for kind in ["bbox", "segm"] {
        let key = format!("coco/{kind}_mAP");
        if runs.iter().any(|(_, c)| c.contains_key(&key)) {
            keys.push(key);
        }
    }
    keys
}

/// Every numeric key of every `<run>/vis_data/scalars.json` under `dir`,
/// run folders in name (timestamp) order.
fn read_curves(dir: &Path) -> Result<Curves, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the work dir `{}`: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path().join("vis_data/scalars.json"))
        .filter(|p| p.is_file())
        .collect();
    if files.is_empty() {
        return Err(format!(
            "`{}` holds no `<timestamp>/vis_data/scalars.json`: give the work dir of a `detc run`",
            dir.display()
        ));
    }
    files.sort();
    let mut curves = Curves::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let record: Map<String, Value> = serde_json::from_str(line)
                .map_err(|e| format!("{}:{}: not a JSON record: {e}", file.display(), n + 1))?;
            let Some(step) = record.get("step").and_then(Value::as_u64) else {
                continue;
            };
            for (key, value) in record.iter().filter(|(k, _)| k.as_str() != "step") {
                if let Some(v) = value.as_f64() {
                    curves.entry(key.clone()).or_default().insert(step, v);
                }
            }
        }
    }
    Ok(curves)
}
