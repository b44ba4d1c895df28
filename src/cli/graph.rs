//! `detc graph FILE`: the model's module graph as DOT.

use std::path::PathBuf;

use crate::config::{self, diagnostic};

#[derive(clap::Args)]
pub struct Args {
    /// The config file.
    file: PathBuf,
    /// Override settings, as MMEngine's `--cfg-options`.
    #[arg(long = "cfg-options", num_args = 1.., value_name = "KEY=VALUE")]
    cfg_options: Vec<String>,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    let (sources, result) = config::resolve(&args.file, &args.cfg_options);
    match result {
        Ok(tree) => {
            let (graph, errors) = crate::graph::build(&tree);
            if !errors.is_empty() {
                eprint!("{}", diagnostic::render(&errors, &sources, diagnostic::Style::detect()));
            }
            super::print_stdout(&crate::graph::to_dot(&graph))?;
            Ok(if errors.is_empty() { super::EXIT_OK } else { super::EXIT_INPUT })
        }
        Err(diags) => {
            eprint!("{}", diagnostic::render(&diags, &sources, diagnostic::Style::detect()));
            Ok(super::EXIT_INPUT)
        }
    }
}
