//! `detc summary CONFIG [--state-dict] [--format json]`: the model's module
//! tree with parameter counts, and its state-dict names and shapes.
//!
//! The config is compiled and checked here exactly as `detc run` does (a bad
//! config exits 1 before the engine starts); `detc-engine summary` then
//! builds the detector on the CPU (never a GPU) and prints what [`render`]
//! makes of its variables.

pub mod render;
mod tree;

use std::io::Write;
use std::process::{Command, Stdio};

use crate::config::emit;

#[derive(clap::Args)]
pub struct Args {
    /// A source config or an expanded one, and overrides.
    #[command(flatten)]
    config: super::ConfigArgs,
    #[command(flatten)]
    options: render::Options,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    let (sources, result) = super::compile(&args.config, true);
    let tree = match result {
        Ok(tree) => tree,
        Err(diags) => {
            super::report(&diags, &sources);
            return Ok(super::EXIT_INPUT);
        }
    };
    let engine = super::engine_path();
    let spawned = Command::new(&engine)
        .arg("summary")
        .args(args.options.to_args())
        .stdin(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            eprintln!("error: cannot start the engine `{}`: {e}", engine.display());
            return Ok(super::EXIT_RUNTIME);
        }
    };
    let sent = child
        .stdin
        .take()
        .expect("piped")
        .write_all(emit::to_json(&tree).as_bytes());
    let status = child.wait()?;
    // An engine that exits early closes its stdin; its exit status says why.
    if let Err(e) = sent {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e);
        }
    }
    Ok(match status.code() {
        Some(0) => super::EXIT_OK,
        Some(1) => super::EXIT_INPUT,
        _ => super::EXIT_RUNTIME,
    })
}
