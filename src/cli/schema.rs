//! `detc schema`: the JSON Schema of configs (also checked in as `schema/detc.schema.json`).

#[derive(clap::Args)]
pub struct Args {}

pub fn exec(_: Args) -> std::io::Result<i32> {
    let schema = crate::registry::schema::editor_schema();
    super::print_stdout(&(serde_json::to_string_pretty(&schema).expect("schemas serialise") + "\n"))?;
    Ok(super::EXIT_OK)
}
