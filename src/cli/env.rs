//! `detc env`: what the engine sees (libtorch build, CUDA), by asking
//! `detc-engine`, so this process never loads libtorch itself.

#[derive(clap::Args)]
pub struct Args {}

pub fn exec(_: Args) -> std::io::Result<i32> {
    println!("detc {}", env!("CARGO_PKG_VERSION"));
    let engine = crate::cli::engine_path();
    match std::process::Command::new(&engine).arg("env").status() {
        Ok(status) if status.success() => Ok(super::EXIT_OK),
        Ok(status) => {
            eprintln!("error: `{}` failed ({status})", engine.display());
            Ok(super::EXIT_RUNTIME)
        }
        Err(e) => {
            eprintln!("error: cannot start the engine `{}`: {e}\nhelp: build it with `cargo build --release` (it sits beside `detc`)", engine.display());
            Ok(super::EXIT_RUNTIME)
        }
    }
}
