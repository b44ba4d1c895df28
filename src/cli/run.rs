//! `detc run CONFIG`: compiles and checks the config here (no libtorch in
//! this process), then hands the resolved config to `detc-engine`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::config::{self, diagnostic, emit};

#[derive(clap::Args)]
pub struct Args {
    /// The config file (a source config or an expanded one).
    file: PathBuf,
    /// Override settings, as MMEngine's `--cfg-options`.
    #[arg(long = "cfg-options", num_args = 1.., value_name = "KEY=VALUE")]
    cfg_options: Vec<String>,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    let (sources, result) = config::resolve(&args.file, &args.cfg_options);
    let checked = result.and_then(|tree| {
        let mut diags = crate::registry::validate::check(&tree).err().unwrap_or_default();
        diags.extend(crate::graph::check(&tree).err().unwrap_or_default());
        if diags.is_empty() { Ok(tree) } else { Err(diags) }
    });
    let tree = match checked {
        Ok(tree) => tree,
        Err(diags) => {
            eprint!("{}", diagnostic::render(&diags, &sources, diagnostic::Style::detect()));
            return Ok(super::EXIT_INPUT);
        }
    };
    let engine = super::engine_path();
    let mut child = match Command::new(&engine).arg("run").stdin(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("error: cannot start the engine `{}`: {e}", engine.display());
            return Ok(super::EXIT_RUNTIME);
        }
    };
    let sent = child.stdin.take().expect("piped").write_all(emit::to_json(&tree).as_bytes());
    let status = child.wait()?;
    sent?;
    Ok(match status.code() {
        Some(0) => super::EXIT_OK,
        Some(1) => super::EXIT_INPUT,
        _ => super::EXIT_RUNTIME,
    })
}
