//! `detc data`: tools for datasets that need no tensors.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write the synthetic shapes dataset (COCO JSON and JPEG images) to OUT.
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
    #[arg(long, default_value_t = 128)]
    pub size: u32,
    /// Random seed: the same seed writes the same files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    match args.command {
        Command::Shapes(_) => {
            eprintln!("error: `detc data shapes` is not built yet");
            Ok(super::EXIT_RUNTIME)
        }
    }
}
