//! `detc data`: tools for datasets that need no tensors.

use std::path::PathBuf;

use crate::data::shapes::{self, ShapesOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write the synthetic shapes dataset (COCO JSON and JPEG images) to OUT.
    ///
    /// Writes OUT/annotations/instances_{train,val}.json and OUT/{train,val}/NNNNNN.jpg,
    /// overwriting files of those names and leaving anything else in OUT alone.
    Shapes(ShapesArgs),
}

#[derive(clap::Args)]
pub struct ShapesArgs {
    /// Output folder.
    pub out: PathBuf,
    /// Number of training images.
    #[arg(long, default_value_t = 64)]
    pub train: u32,
    /// Number of validation images.
    #[arg(long, default_value_t = 16)]
    pub val: u32,
    /// Image size in pixels (images are square).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(i64::from(shapes::MIN_SIZE)..=8192))]
    pub size: u32,
    /// Random seed: the same seed writes the same files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    match args.command {
        Command::Shapes(a) => shapes(a),
    }
}

fn shapes(a: ShapesArgs) -> std::io::Result<i32> {
    let opts = ShapesOptions {
        train: a.train,
        val: a.val,
        size: a.size,
        seed: a.seed,
    };
    match shapes::write_dataset(&a.out, &opts) {
        Ok(s) => {
            println!(
                "wrote {} train images ({} objects) and {} val images ({} objects) of {}x{} px, {} classes, to {} in {:.2} s",
                s.train_images,
                s.train_annotations,
                s.val_images,
                s.val_annotations,
                a.size,
                a.size,
                shapes::CLASSES.len(),
                a.out.display(),
                s.seconds
            );
            Ok(super::EXIT_OK)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(super::EXIT_RUNTIME)
        }
    }
}
