//! `detc infer CONFIG CHECKPOINT INPUT...`: MMDetection's `demo/image_demo.py`.
//! The config is compiled and checked and the inputs listed here (files as
//! given, folders' JPEG files in name order); `detc-engine infer` predicts,
//! draws each image as `OUT_DIR/vis/<name>.png` and writes every prediction
//! to `OUT_DIR/predictions.json` (COCO style, with scores).

use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// A source config or an expanded one, and overrides (put `--cfg-options` last).
    #[command(flatten)]
    config: super::ConfigArgs,
    /// The checkpoint with the trained weights (`.pth` or safetensors).
    checkpoint: PathBuf,
    /// Images (JPEG) and folders of images.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Where `vis/` (the drawings) and `predictions.json` go.
    #[arg(long, default_value = "outputs")]
    out_dir: PathBuf,
    /// Draw predictions scoring above this (image_demo's `--pred-score-thr`); the JSON has all.
    #[arg(long, default_value_t = 0.3)]
    score_thr: f32,
    /// `cpu` or `cuda` (default: cuda when the engine sees a GPU).
    #[arg(long)]
    device: Option<String>,
}

/// File name extensions read as images (detc decodes JPEG).
const JPEG_EXTENSIONS: &[&str] = &["jpg", "jpeg", "JPG", "JPEG"];

pub fn exec(args: Args) -> std::io::Result<i32> {
    let images = match list_images(&args.inputs) {
        Ok(images) => images,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(super::EXIT_INPUT);
        }
    };
    let Some(tree) = super::compile_checked(&args.config, super::Checks::Model) else {
        return Ok(super::EXIT_INPUT);
    };
    let mut engine_args = vec![
        "infer".into(),
        "--checkpoint".into(),
        args.checkpoint.into_os_string(),
        "--out-dir".into(),
        args.out_dir.into_os_string(),
        "--score-thr".into(),
        args.score_thr.to_string().into(),
    ];
    if let Some(device) = args.device {
        engine_args.extend(["--device".into(), device.into()]);
    }
    engine_args.push("--".into());
    engine_args.extend(images.into_iter().map(PathBuf::into_os_string));
    super::run_engine(&tree, &engine_args)
}

/// The images of `inputs`: a file as given, a folder's JPEG files sorted by
/// name (not recursing, as `DetInferencer`). A missing input, or no image at
/// all, is an error.
fn list_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut images = vec![];
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| format!("cannot list `{}`: {e}", input.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && is_jpeg(p))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "`{}` holds no JPEG images (*.jpg, *.jpeg)",
                    input.display()
                ));
            }
            found.sort();
            images.extend(found);
        } else if input.is_file() {
            images.push(input.clone());
        } else {
            return Err(format!("`{}`: no such image or folder", input.display()));
        }
    }
    Ok(images)
}

fn is_jpeg(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| JPEG_EXTENSIONS.contains(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_give_their_jpeg_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.jpg", "a.jpeg", "notes.txt", "c.JPG"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let single = dir.path().join("notes.txt");
        let got = list_images(&[dir.path().to_path_buf(), single.clone()]).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.jpeg", "b.jpg", "c.JPG", "notes.txt"]);
        let missing = list_images(&[dir.path().join("nope")]).unwrap_err();
        assert!(missing.contains("no such image or folder"), "{missing}");
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        assert!(list_images(&[dir.path().join("empty")])
            .unwrap_err()
            .contains("holds no JPEG images"));
    }
}
