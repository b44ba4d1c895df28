//! Build settings for the engine only (the light `detc` binary must not
//! link libtorch):
//! - an rpath to the torch `lib` folder, so no `LD_LIBRARY_PATH` is needed
//!   (for every target that links libtorch);
//! - `libtorch_cuda`/`libc10_cuda` kept in NEEDED despite `--as-needed`,
//!   otherwise nothing refers to them and CUDA is never found at run time;
//! - the C++ shim of `src/engine/native` (autocast, CUDA memory
//!   statistics and timing events, operator counts and Kineto traces for the profile,
//!   RoIAlign's CPU kernel and the CPU emulation of its CUDA kernels, torch.optim's multi-tensor updates and c10d's Gloo process
//!   group, which tch does not bind), compiled against the libtorch
//!   headers only (it reaches CUDA through c10's device-allocator interface,
//!   so it needs neither the CUDA headers nor libc10_cuda);
//! - the CUDA part: c10d's NCCL process group (`dist_nccl.cpp`) and the
//!   launcher of RoIAlign's and NMS's CUDA kernels (`roi_align_cuda.cpp`,
//!   which embeds `roi_align.cu`, `nms.cu` and `mask_target.cu` for NVRTC), compiled with the CUDA (and NCCL) headers of
//!   the pip packages beside torch when libtorch has CUDA and they are
//!   installed; without them these files compile to an error message for a
//!   job that asks for NCCL, and RoIAlign keeps its grid-sampler path on CUDA.

use std::path::{Path, PathBuf};

/// The shim's translation units, and the header they share.
const SHIM: [&str; 10] = [
    "src/engine/native/shim.cpp",
    "src/engine/native/op_count.cpp",
    "src/engine/native/trace.cpp",
    "src/engine/native/timing.cpp",
    "src/engine/native/roi_align.cpp",
    "src/engine/native/roi_align_emulated.cpp",
    "src/engine/native/nms.cpp",
    "src/engine/native/mask_target.cpp",
    "src/engine/native/optim.cpp",
    "src/engine/native/dist.cpp",
];
const SHIM_HEADERS: [&str; 8] = [
    "src/engine/native/status.h",
    "src/engine/native/roi_align.h",
    "src/engine/native/roi_align_host.h",
    "src/engine/native/roi_align.cu",
    "src/engine/native/nms.h",
    "src/engine/native/nms.cu",
    "src/engine/native/mask_target.h",
    "src/engine/native/mask_target.cu",
];
const CUDA_SHIM: [&str; 2] = [
    "src/engine/native/dist_nccl.cpp",
    "src/engine/native/roi_align_cuda.cpp",
];
/// The kernels NVRTC compiles at run time, embedded as one C++ string.
const CUDA_KERNELS: [&str; 3] = [
    "src/engine/native/roi_align.cu",
    "src/engine/native/nms.cu",
    "src/engine/native/mask_target.cu",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_ENGINE").is_none() {
        return;
    }
    // Set by torch-sys (`links = "tch"`), the folder holding libtorch_cpu.so.
    let Some(lib_dir) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        println!(
            "cargo:warning=torch-sys did not report its lib folder; detc-engine gets no rpath"
        );
        return;
    };
    let bin = "detc-engine";
    // Every target that may load libtorch (the engine, unit tests, benches) finds
    // it through the rpath; `detc` gets the rpath too but, linking nothing
    // from libtorch, no NEEDED entry (checked by tests/it/binaries.rs).
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!(
            "cargo:rustc-link-arg-bin={bin}=-Wl,--no-as-needed,-ltorch_cuda,-lc10_cuda,--as-needed"
        );
    }
    let version = std::fs::read_to_string(lib_dir.join("../version.py")).unwrap_or_default();
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim_matches(['\'', '"']).to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DETC_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-env=DETC_LIBTORCH_LIB={}", lib_dir.display());
    build_shim(&lib_dir);
}

/// Compiles the shim with the flags torch-sys uses for its own C++ (C++17,
/// the CXX11 ABI of the PyPI wheels) and links what it calls.
fn build_shim(lib_dir: &Path) {
    for file in SHIM.iter().chain(&SHIM_HEADERS) {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let mut build = torch_cpp(lib_dir);
    // c10d's Gloo process group (dist.cpp); its headers come from
    // Debian's libgloo-dev (scripts/bootstrap), its code from libtorch_cpu.
    build.flag("-DUSE_C10D_GLOO").files(SHIM);
    build.compile("detc_native");
    build_cuda_shim(lib_dir);
    // The shim refers to libtorch_cpu and libc10 (torch-sys links them too,
    // after us); `--as-needed` keeps them out of binaries that do not call
    // the shim, such as `detc`.
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// A C++ build with libtorch's headers and ABI.
fn torch_cpp(lib_dir: &Path) -> cc::Build {
    let include = lib_dir.join("../include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT");
    build
}

/// `CUDA_SHIM`: with CUDA when libtorch has it and the pip packages beside
/// torch hold the CUDA runtime and NVRTC headers (`nvidia/cu13`, with the
/// `crt` and `nv` folders of nvidia-cuda-crt and nvidia-cuda-cccl), and
/// with NCCL when they also hold its headers (`nvidia/nccl`).
fn build_cuda_shim(lib_dir: &Path) {
    for file in CUDA_SHIM {
        println!("cargo:rerun-if-changed={file}");
    }
    let mut build = torch_cpp(lib_dir);
    let nvidia = lib_dir.join("../../nvidia");
    let cuda = nvidia.join("cu13/include");
    let nccl = nvidia.join("nccl/include");
    if cuda.is_dir() {
        // scripts/bootstrap may add the crt headers after a first build.
        println!("cargo:rerun-if-changed={}", cuda.display());
    }
    let with_cuda = lib_dir.join("libtorch_cuda.so").exists()
        && cuda.join("cuda_runtime.h").exists()
        && cuda.join("nvrtc.h").exists()
        && cuda.join("crt/host_config.h").exists()
        && cuda.join("nv/target").exists();
    let with_nccl = with_cuda && nccl.join("nccl.h").exists();
    if with_cuda {
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let kernels: String = CUDA_KERNELS
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_else(|e| panic!("read {f}: {e}")))
            .collect();
        std::fs::write(
            out.join("kernels_cu.inc"),
            format!("R\"detc_cu({kernels})detc_cu\"\n"),
        )
        .expect("write kernels_cu.inc");
        build.include(&out).include(&cuda).flag("-DDETC_WITH_CUDA");
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    if with_nccl {
        build
            .include(&nccl)
            .flag("-DUSE_C10D_NCCL")
            .flag("-DDETC_WITH_NCCL");
    } else {
        println!(
            "cargo:warning=detc-engine is built without {} (no CUDA libtorch, or the CUDA and NCCL headers are missing: run scripts/bootstrap)",
            if with_cuda { "NCCL" } else { "CUDA kernels and NCCL" }
        );
    }
    build.files(CUDA_SHIM).compile("detc_native_cuda");
}
