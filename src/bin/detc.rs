//! `detc`: the command users type. It never links libtorch; `run`/`test`
//! start `detc-engine` processes for the tensor work.

fn main() {
    std::process::exit(detc::cli::main());
}
