//! `detc-engine`: the process that links libtorch. The light `detc` binary
//! starts it (one per worker) with an already resolved config; users do not
//! normally call it directly.

// The engine's modules live in `src/engine` and `src/models` (the layout of
// DESIGN.md) but belong to this binary alone: the library stays free of tch.
#[path = "../../engine/mod.rs"]
mod engine;
#[path = "../../models/mod.rs"]
mod models;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "detc-engine", version, about = "detc's libtorch engine (started by `detc`)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the libtorch build and the devices it sees, as JSON.
    Env,
    /// Train on a resolved config read as JSON from stdin (sent by `detc run`).
    Run,
    /// Print the model's module tree and state dict for a resolved config on stdin (sent by `detc summary`).
    Summary(detc::cli::summary::render::Options),
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Env => println!("{}", engine::env::report().to_string_pretty()),
        Command::Run => {
            let config: serde_json::Value = match serde_json::from_reader(std::io::stdin().lock()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: the resolved config on stdin is not JSON: {e}");
                    std::process::exit(2);
                }
            };
            std::process::exit(engine::run::run(&config));
        }
        Command::Summary(opts) => {
            let config: serde_json::Value = match serde_json::from_reader(std::io::stdin().lock()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: the resolved config on stdin is not JSON: {e}");
                    std::process::exit(2);
                }
            };
            std::process::exit(engine::summary::summary(&config, &opts));
        }
    }
}
