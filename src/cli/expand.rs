//! `detc expand FILE`: the fully resolved config on stdout.

use crate::config::emit;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: super::ConfigArgs,
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
    let (sources, result) = super::compile(
        &args.config,
        if args.no_validate {
            super::Checks::None
        } else {
            super::Checks::Runner
        },
    );
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
            super::report(&diags, &sources);
            Ok(super::EXIT_INPUT)
        }
    }
}
