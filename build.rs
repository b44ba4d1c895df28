//! Link settings for the engine binary only (the light `detc` binary must not
//! link libtorch):
//! - an rpath to the torch `lib` folder, so no `LD_LIBRARY_PATH` is needed
//!   (for every target that links libtorch);
//! - `libtorch_cuda`/`libc10_cuda` kept in NEEDED despite `--as-needed`,
//!   otherwise nothing refers to them and CUDA is never found at run time.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_ENGINE").is_none() {
        return;
    }
    // Set by torch-sys (`links = "tch"`), the folder holding libtorch_cpu.so.
    let Some(lib_dir) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        println!("cargo:warning=torch-sys did not report its lib folder; detc-engine gets no rpath");
        return;
    };
    let bin = "detc-engine";
    // Every target that may load libtorch (the engine, unit tests, benches) finds
    // it through the rpath; `detc` gets the rpath too but, linking nothing
    // from libtorch, no NEEDED entry (checked by tests/it/binaries.rs).
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg-bin={bin}=-Wl,--no-as-needed,-ltorch_cuda,-lc10_cuda,--as-needed");
    }
    let version = std::fs::read_to_string(lib_dir.join("../version.py")).unwrap_or_default();
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim_matches(['\'', '"']).to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DETC_LIBTORCH_VERSION={version}");
}
