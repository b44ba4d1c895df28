//! `detc`: the command users type. It never links libtorch; `run`/`test`
//! start `detc-engine` processes for the tensor work.

fn main() {
    std::process::exit(detc::cli::main());
}

// The compiler allocates many small values; mimalloc makes a resolve ~15%
// faster than glibc's malloc (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
