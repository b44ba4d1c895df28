//! `detc schema`: the JSON Schema of configs (also checked in as
//! `schema/detc.schema.json`), or with `--format markdown` the configuration
//! reference (checked in as `docs/config-reference.md`).

#[derive(clap::Args)]
pub struct Args {
    /// `json`: the JSON Schema editors use; `markdown`: the configuration reference.
    #[arg(long, value_parser = ["json", "markdown"], default_value = "json")]
    format: String,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    let text = match args.format.as_str() {
        "markdown" => crate::registry::reference::markdown(),
        _ => {
            serde_json::to_string_pretty(&crate::registry::schema::editor_schema())
                .expect("schemas serialise")
                + "\n"
        }
    };
    super::print_stdout(&text)?;
    Ok(super::EXIT_OK)
}
