//! `detc check FILE`: every problem of a config at once — inheritance,
//! overrides, components (registry schemas) and the module graph.

use std::path::PathBuf;

use crate::config::{self, diagnostic};

#[derive(clap::Args)]
pub struct Args {
    /// The config file (YAML or JSON).
    file: PathBuf,
    /// Override settings, as MMEngine's `--cfg-options`: `a.b=1 c=[1,2]`.
    #[arg(long = "cfg-options", num_args = 1.., value_name = "KEY=VALUE")]
    cfg_options: Vec<String>,
    /// `human` (rendered with source lines) or `json` (for editors and CI).
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Format {
    Human,
    Json,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    let (sources, result) = config::resolve(&args.file, &args.cfg_options);
    let diags = match result {
        Err(diags) => diags,
        Ok(tree) => {
            let mut diags = crate::registry::validate::check(&tree).err().unwrap_or_default();
            diags.extend(crate::graph::check(&tree).err().unwrap_or_default());
            diags
        }
    };
    let mut diags = diags;
    // In reading order: file by file, top to bottom.
    diags.sort_by_key(|d| d.labels.first().map(|l| (l.span.source, l.span.start)));
    match args.format {
        Format::Json => super::print_stdout(&(diagnostic::to_json(&diags, &sources) + "\n"))?,
        Format::Human if diags.is_empty() => eprintln!("{}: ok", args.file.display()),
        Format::Human => {
            eprint!("{}", diagnostic::render(&diags, &sources, diagnostic::Style::detect()));
            let n = diags.len();
            eprintln!("error: {} found {n} problem{}", args.file.display(), if n == 1 { "" } else { "s" });
        }
    }
    Ok(if diags.is_empty() { super::EXIT_OK } else { super::EXIT_INPUT })
}
