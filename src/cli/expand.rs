//! `detc expand FILE`: the fully resolved config on stdout.

use std::path::PathBuf;

use crate::config::{self, diagnostic, emit};

#[derive(clap::Args)]
pub struct Args {
    /// The config file (YAML or JSON).
    file: PathBuf,
    /// Override settings, as MMEngine's `--cfg-options`: `a.b=1 c=[1,2]`.
    #[arg(long = "cfg-options", num_args = 1.., value_name = "KEY=VALUE")]
    cfg_options: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    format: Format,
    /// Resolve inheritance, references and overrides only; do not check components.
    #[arg(long)]
    no_validate: bool,
    /// Annotate each value with the file:line (or --cfg-options) that set it.
    #[arg(long)]
    show_origin: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Yaml,
    Json,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    let (sources, result) = config::resolve(&args.file, &args.cfg_options);
    let result = result.and_then(|tree| {
        if args.no_validate {
            Ok(tree)
        } else {
            crate::registry::validate::check(&tree).map(|_| tree)
        }
    });
    match result {
        Ok(tree) => {
            let text = match args.format {
                Format::Yaml => emit::to_yaml(&tree, args.show_origin.then_some(&sources)),
                Format::Json => emit::to_json(&tree),
            };
            super::print_stdout(&text)?;
            Ok(super::EXIT_OK)
        }
        Err(diags) => {
            eprint!("{}", diagnostic::render(&diags, &sources, diagnostic::Style::detect()));
            Ok(super::EXIT_INPUT)
        }
    }
}
