//! The `detc` command line: clap definitions and dispatch. Each subcommand
//! lives in its own module; `main` owns the exit codes of DESIGN.md.

mod bench;
mod browse_dataset;
mod check;
mod completions;
mod convert;
mod data;
mod env;
mod eval;
mod expand;
mod graph;
mod infer;
mod plot;
mod run;
mod schema;
pub mod summary;
mod test;
pub mod work_dir;

use clap::{Parser, Subcommand};

use crate::config::diagnostic::Result;
use crate::config::source::Sources;
use crate::config::value::Node;

/// Exit codes (DESIGN.md): 0 success, 1 bad input, 2 usage, 3 runtime
/// failure, 4 stopped by SIGTERM after saving a checkpoint (`--resume` continues).
pub const EXIT_OK: i32 = 0;
pub const EXIT_INPUT: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_RUNTIME: i32 = 3;
pub const EXIT_PREEMPTED: i32 = 4;

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
    /// Print the JSON Schema of detc configs, or (`--format markdown`) the configuration reference.
    Schema(schema::Args),
    /// Print the model's module graph as DOT.
    Graph(graph::Args),
    /// Report libtorch and the devices the engine sees.
    Env(env::Args),
    /// Check a config, then train it in the engine.
    Run(run::Args),
    /// Time training steps and inference of a config on its data: images/s, the step by phase, peak memory.
    Bench(bench::Args),
    /// Evaluate a COCO results file against ground truth (bbox, segm).
    Eval(eval::Args),
    /// Dataset tools: generate the synthetic shapes dataset.
    Data(data::Args),
    /// Test a checkpoint: the test loop and the test_evaluator metrics.
    Test(test::Args),
    /// Detect objects in images with a checkpoint: drawings (PNG) and COCO-style predictions.
    Infer(infer::Args),
    /// Print the model's module tree with parameter counts, and its state-dict names and shapes.
    Summary(summary::Args),
    /// Draw the curves of logged keys (losses, mAPs) of one or more work dirs as a PNG.
    Plot(plot::Args),
    /// Draw dataset samples after the configured pipeline with their ground truth.
    BrowseDataset(browse_dataset::Args),
    /// Convert an MMDetection Python config and its `_base_` files into detc YAML files.
    Convert(convert::Args),
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
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
        Command::Bench(args) => bench::exec(args),
        Command::Eval(args) => eval::exec(args),
        Command::Data(args) => data::exec(args),
        Command::Test(args) => test::exec(args),
        Command::Infer(args) => infer::exec(args),
        Command::Summary(args) => summary::exec(args),
        Command::Plot(args) => plot::exec(args),
        Command::BrowseDataset(args) => browse_dataset::exec(args),
        Command::Convert(args) => convert::exec(args),
        Command::Completions(args) => completions::exec(args),
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

/// The config file and its overrides, as every config-reading command takes them.
#[derive(clap::Args)]
pub struct ConfigArgs {
    /// The config file (YAML or JSON).
    pub file: std::path::PathBuf,
    /// Override settings, as MMEngine's `--cfg-options`: `a.b=1 c=[1,2]`.
    #[arg(long = "cfg-options", num_args = 1.., value_name = "KEY=VALUE")]
    pub cfg_options: Vec<String>,
}

/// What a compile checks beyond resolving the config.
#[derive(Clone, Copy, PartialEq)]
enum Checks {
    /// Nothing more (`detc graph`, `detc expand --no-validate`).
    None,
    /// The registry schemas, the module graph and the data pipelines: what
    /// reading the model and data needs (`detc infer`, `detc browse-dataset`,
    /// `detc summary`).
    Model,
    /// Those and the runner's sections that only work together, as MMEngine's
    /// Runner checks them (`detc check`, `expand`, `run`, `test`, `bench`).
    Runner,
}

/// Resolves the config and checks it as `checks` says; all problems come
/// back at once, in reading order.
fn compile(config: &ConfigArgs, checks: Checks) -> (Sources, Result<Node>) {
    let (sources, result) = crate::config::resolve(&config.file, &config.cfg_options);
    let result = result.and_then(|tree| {
        if checks == Checks::None {
            return Ok(tree);
        }
        let mut diags = crate::registry::validate::check(&tree).err().unwrap_or_default();
        if checks == Checks::Runner {
            diags.extend(crate::registry::sections::check(&tree).err().unwrap_or_default());
        }
        diags.extend(crate::graph::check(&tree).err().unwrap_or_default());
        // The pipelines are built only from a config the schemas accept,
        // which their builders expect (and would report less precisely).
        if diags.is_empty() {
            diags.extend(crate::data::pipeline_check::check(&tree));
        }
        diags.sort_by_key(|d| d.labels.first().map(|l| (l.span.source, l.span.start)));
        if diags.is_empty() { Ok(tree) } else { Err(diags) }
    });
    (sources, result)
}

/// Prints diagnostics to stderr for people.
fn report(diags: &[crate::config::diagnostic::Diagnostic], sources: &Sources) {
    use crate::config::diagnostic::{render, Style};
    eprint!("{}", render(diags, sources, Style::detect()));
}

/// Writes to stdout, letting a closed pipe surface as `BrokenPipe`.
fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Starts the workers of `plan`, each `detc-engine ARGS...` with the
/// resolved `tree` as JSON on stdin, and supervises them (`crate::dist`).
fn run_engines(tree: &Node, args: &[std::ffi::OsString], plan: &crate::dist::Plan) -> i32 {
    let program = engine_path();
    let config_json = crate::config::emit::to_json(tree);
    let engine = crate::dist::Engine {
        program: &program,
        args,
        config_json: &config_json,
    };
    crate::dist::run(plan, &engine)
}

/// The engine binary: `DETC_ENGINE` if set, else `detc-engine` beside this executable.
/// Starts `detc-engine ARGS...`, sends it the resolved `tree` as JSON on
/// stdin and maps its exit status to ours (DESIGN.md's exit codes).
fn run_engine<S: AsRef<std::ffi::OsStr>>(tree: &Node, args: &[S]) -> std::io::Result<i32> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let engine = engine_path();
    let mut command = Command::new(&engine);
    command.args(args).stdin(Stdio::piped());
    crate::dist::supervise::die_with_launcher(&mut command);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("error: cannot start the engine `{}`: {e}", engine.display());
            return Ok(EXIT_RUNTIME);
        }
    };
    // A scheduler's SIGTERM reaches the engine, which saves and stops (preemption).
    crate::dist::supervise::forward_sigterm_to(child.id());
    let sent = child.stdin.take().expect("piped").write_all(crate::config::emit::to_json(tree).as_bytes());
    let status = child.wait()?;
    // An engine that exits early closes its stdin; its exit status says why.
    if let Err(e) = sent {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e);
        }
    }
    Ok(match status.code() {
        Some(0) => EXIT_OK,
        Some(1) => EXIT_INPUT,
        Some(EXIT_PREEMPTED) => EXIT_PREEMPTED,
        _ => EXIT_RUNTIME,
    })
}

/// Compiles and checks `config`; on error prints the diagnostics and gives
/// `None` (exit 1).
fn compile_checked(config: &ConfigArgs, checks: Checks) -> Option<Node> {
    let (sources, result) = compile(config, checks);
    match result {
        Ok(tree) => Some(tree),
        Err(diags) => {
            report(&diags, &sources);
            None
        }
    }
}

/// Compiles and checks `config`, then runs the engine subcommand `args` on it.
fn compile_and_run_engine<S: AsRef<std::ffi::OsStr>>(config: &ConfigArgs, args: &[S]) -> std::io::Result<i32> {
    match compile_checked(config, Checks::Model) {
        Some(tree) => run_engine(&tree, args),
        None => Ok(EXIT_INPUT),
    }
}

/// The work dir of a run of `tree`: `--work-dir`, else the config's
/// `work_dir`, else `./work_dirs/<config stem>`.
fn run_work_dir(tree: &Node, cli: Option<&std::path::Path>, config: &ConfigArgs) -> std::path::PathBuf {
    let from_config = tree.to_json().get("work_dir").and_then(|w| w.as_str().map(String::from));
    work_dir::resolve(cli, from_config.as_deref(), &config.file)
}

pub fn engine_path() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("DETC_ENGINE") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name("detc-engine")
}
