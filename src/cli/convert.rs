//! `detc convert CONFIG.py --out-dir DIR`: an MMDetection Python config tree
//! as detc YAML, one file per file, the `_base_` structure kept. The Python
//! files are evaluated by Python (`convert_mmdet.py`, run with the Python of
//! the user's MMDetection environment, which has MMEngine and PyYAML); the
//! files are written here, and none is overwritten with other content
//! unless `--force`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

/// The converter run in Python.
const SCRIPT: &str = include_str!("convert_mmdet.py");

#[derive(clap::Args)]
pub struct Args {
    /// The MMDetection config (`.py`); its `_base_` files are converted with it.
    config: PathBuf,
    /// Where the YAML tree goes, laid out as the Python tree (e.g. `queryinst/…`, `_base_/…`).
    #[arg(long)]
    out_dir: PathBuf,
    /// The Python that evaluates the configs (default: `$DETC_PYTHON`, else `python3`).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Overwrite files that exist with other content.
    #[arg(long)]
    force: bool,
}

#[derive(Deserialize)]
struct Converted {
    files: Vec<ConvertedFile>,
}

#[derive(Deserialize)]
struct ConvertedFile {
    source: PathBuf,
    target: PathBuf,
    yaml: String,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    let python = args
        .python
        .clone()
        .or_else(|| std::env::var_os("DETC_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| "python3".into());
    let out = match Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(&args.config)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!(
                "error: cannot run `{}`: {e}; pass --python with the Python of your MMDetection environment",
                python.display()
            );
            return Ok(super::EXIT_INPUT);
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    if !out.status.success() {
        if stderr.contains("No module named 'yaml'") {
            eprintln!("hint: pass --python with the Python of your MMDetection environment (it has PyYAML)");
        }
        return Ok(super::EXIT_INPUT);
    }
    let converted: Converted = match serde_json::from_slice(&out.stdout) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: the converter's output is not what detc expects: {e}");
            return Ok(super::EXIT_RUNTIME);
        }
    };
    let conflicts: Vec<PathBuf> = converted
        .files
        .iter()
        .map(|f| args.out_dir.join(&f.target))
        .zip(&converted.files)
        .filter(|(path, f)| differs(path, &f.yaml))
        .map(|(path, _)| path)
        .collect();
    if !conflicts.is_empty() && !args.force {
        eprintln!("error: these files exist with other content (nothing was written; --force overwrites them):");
        for path in conflicts {
            eprintln!("  {}", path.display());
        }
        return Ok(super::EXIT_INPUT);
    }
    for file in &converted.files {
        let path = args.out_dir.join(&file.target);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &file.yaml)?;
        println!("{} <- {}", path.display(), file.source.display());
    }
    if let Some(top) = converted.files.first() {
        println!(
            "next: detc check {}",
            args.out_dir.join(&top.target).display()
        );
    }
    Ok(super::EXIT_OK)
}

/// Whether `path` exists with content other than `text`.
fn differs(path: &Path, text: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|old| old != text)
}
