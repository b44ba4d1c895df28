//! `detc summary CONFIG [--state-dict] [--format json]`: the model's module
//! tree with parameter counts, and its state-dict names and shapes.
//!
//! The config is compiled and checked here exactly as `detc run` does (a bad
//! config exits 1 before the engine starts); `detc-engine summary` then
//! builds the detector on the CPU (never a GPU) and prints what [`render`]
//! makes of its variables.

pub mod render;
mod tree;

#[derive(clap::Args)]
pub struct Args {
    /// A source config or an expanded one, and overrides.
    #[command(flatten)]
    config: super::ConfigArgs,
    #[command(flatten)]
    options: render::Options,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    let mut engine_args = vec!["summary".to_string()];
    engine_args.extend(args.options.to_args());
    super::compile_and_run_engine(&args.config, &engine_args)
}
