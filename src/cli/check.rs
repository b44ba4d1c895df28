//! `detc check FILE`: every problem of a config at once — inheritance,
//! overrides, components (registry schemas) and the module graph.

use crate::config::diagnostic;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: super::ConfigArgs,
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
    let (sources, result) = super::compile(&args.config, super::Checks::Runner);
    let diags = result.err().unwrap_or_default();
    match args.format {
        Format::Json => super::print_stdout(&(diagnostic::to_json(&diags, &sources) + "\n"))?,
        Format::Human if diags.is_empty() => eprintln!("{}: ok", args.config.file.display()),
        Format::Human => {
            super::report(&diags, &sources);
            let n = diags.len();
            eprintln!("error: {} found {n} problem{}", args.config.file.display(), if n == 1 { "" } else { "s" });
        }
    }
    Ok(if diags.is_empty() { super::EXIT_OK } else { super::EXIT_INPUT })
}
