//! The `detc` command line: clap definitions and dispatch. Each subcommand
//! lives in its own module; `main` owns the exit codes of DESIGN.md.

mod check;
mod env;
mod expand;
mod graph;
mod run;
mod schema;

use clap::{Parser, Subcommand};

/// Exit codes (DESIGN.md): 0 success, 1 bad input, 2 usage, 3 runtime failure.
pub const EXIT_OK: i32 = 0;
pub const EXIT_INPUT: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_RUNTIME: i32 = 3;

#[derive(Parser)]
#[command(name = "detc", version, about = "Train MMDetection-style detection models from checked YAML configs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config: inheritance, overrides, components, module graph.
    Check(check::Args),
    /// Print the fully resolved config.
    Expand(expand::Args),
    /// Print the JSON Schema of detc configs.
    Schema(schema::Args),
    /// Print the model's module graph as DOT.
    Graph(graph::Args),
    /// Report libtorch and the devices the engine sees.
    Env(env::Args),
    /// Check a config, then train it in the engine.
    Run(run::Args),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Check(args) => check::exec(args),
        Command::Expand(args) => expand::exec(args),
        Command::Schema(args) => schema::exec(args),
        Command::Graph(args) => graph::exec(args),
        Command::Env(args) => env::exec(args),
        Command::Run(args) => run::exec(args),
    };
    match result {
        Ok(code) => code,
        // `detc expand ... | head` closes the pipe early: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_RUNTIME
        }
    }
}

/// Writes to stdout, letting a closed pipe surface as `BrokenPipe`.
fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// The engine binary: `DETC_ENGINE` if set, else `detc-engine` beside this executable.
pub fn engine_path() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("DETC_ENGINE") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name("detc-engine")
}
