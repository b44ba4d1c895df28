//! `detc-engine`: the process that links libtorch. The light `detc` binary
//! starts it (one per worker) with an already resolved config; users do not
//! normally call it directly.

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
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Env => println!("{}", detc::engine::env::report().to_string_pretty()),
    }
}
