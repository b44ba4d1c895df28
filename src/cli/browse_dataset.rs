//! `detc browse-dataset CONFIG`: MMDetection's
//! `tools/analysis_tools/browse_dataset.py`. The first `--num` samples of a
//! dataloader's dataset go through its configured pipeline, with the random
//! streams `detc run` gives epoch 0 under the config's seed, and are drawn
//! as the model would get them (resized, flipped, padded) with their
//! ground-truth boxes, labels and masks, one PNG per sample.

use std::path::PathBuf;

use serde_json::Value;

use crate::data::dataset::Dataset;
use crate::data::transforms::Pipeline;
use crate::data::{sample_rng, Masks, PackedInstances, Sample};
use crate::evaluation::mask::Rle;
use crate::visualization::{draw_instances, DrawStyle, Instances, RgbImage};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: super::ConfigArgs,
    /// Which dataloader's dataset and pipeline: `train`, `val` or `test`.
    #[arg(long, value_parser = ["train", "val", "test"], default_value = "train")]
    split: String,
    /// How many samples, from the first.
    #[arg(long, default_value_t = 16)]
    num: usize,
    /// Where the pictures go.
    #[arg(long, default_value = "browse_dataset")]
    out_dir: PathBuf,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    let Some(tree) = super::compile_checked(&args.config, super::Checks::Model) else {
        return Ok(super::EXIT_INPUT);
    };
    match browse(&tree.to_json(), &args) {
        Ok(written) => {
            println!("wrote {written} pictures to {}", args.out_dir.display());
            Ok(super::EXIT_OK)
        }
        Err(message) => {
            eprintln!("error: {message}");
            Ok(super::EXIT_INPUT)
        }
    }
}

fn browse(config: &Value, args: &Args) -> Result<usize, String> {
    let loader = format!("{}_dataloader", args.split);
    let dataset_cfg = config
        .pointer(&format!("/{loader}/dataset"))
        .filter(|d| !d.is_null())
        .ok_or_else(|| format!("the config has no `{loader}.dataset`"))?;
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    let dataset = Dataset::from_config(dataset_cfg, &cwd, &format!("{loader}.dataset")).map_err(|e| e.message)?;
    // Each dataset of a wrapper has its own pipeline.
    let pipelines = dataset
        .leaves()
        .iter()
        .map(|leaf| {
            let steps = leaf.config.get("pipeline").and_then(Value::as_array).map_or(&[][..], |v| v);
            Pipeline::from_config(steps).map_err(|e| format!("{}.pipeline: {e}", leaf.path))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let style = DrawStyle::from_config(config, &loader, dataset.classes())?;
    let seed = config
        .pointer("/randomness/seed")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("cannot create `{}`: {e}", args.out_dir.display()))?;

    let mut written = 0;
    for index in 0..args.num.min(dataset.len()) {
        let (leaf, record) = dataset.locate(index);
        let info = dataset.get(index);
        let mut rng = sample_rng(seed, 0, index);
        // A sample the pipeline filters out (no annotation left) is skipped.
        let Some(packed) = pipelines[leaf]
            .apply_with(Sample::new(info.clone(), record), &mut rng, &dataset.leaves()[leaf].data)
            .map_err(|e| e.message)?
        else {
            continue;
        };
        let image = RgbImage::from_bgr(&packed.inputs);
        let gt = instances(&packed.gt_instances, image.height, image.width);
        let drawn = draw_instances(&image, &gt, &style);
        let stem = info.img_path.file_stem().map_or_else(
            || format!("{index:06}"),
            |s| s.to_string_lossy().into_owned(),
        );
        let out = args.out_dir.join(format!("{stem}.png"));
        std::fs::write(&out, crate::visualization::png::encode(&drawn))
            .map_err(|e| format!("cannot write `{}`: {e}", out.display()))?;
        written += 1;
    }
    Ok(written)
}

/// The packed ground truth as drawable instances, masks rasterised at the
/// image's (padded) size.
fn instances(gt: &PackedInstances, height: usize, width: usize) -> Instances {
    let masks = gt.masks.as_ref().map(|masks| match masks {
        Masks::Bitmap {
            data,
            count,
            height: h,
            width: w,
        } if (*h, *w) == (height, width) => data
            .chunks_exact(h * w)
            .take(*count)
            .map(<[u8]>::to_vec)
            .collect(),
        Masks::Polygons {
            polygons,
            height: h,
            width: w,
        } if (*h, *w) == (height, width) => polygons
            .iter()
            .map(|p| Rle::from_polygons(p, height as u32, width as u32).to_row_major())
            .collect(),
        // Masks of another size than the image: not drawn.
        _ => vec![vec![0; height * width]; gt.bboxes.len()],
    });
    Instances {
        bboxes: gt.bboxes.clone(),
        labels: gt.labels.iter().map(|&l| l.max(0) as usize).collect(),
        scores: None,
        masks,
    }
}
