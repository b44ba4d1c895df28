//! A Chrome trace (`trace.cpp`: libtorch's Kineto profiler, as
//! torch.profiler records it) of `detc bench`'s timed steps, with
//! `DETC_TRACE=FILE`; open it in Perfetto or chrome://tracing.

use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::path::Path;

use super::{check, NativeError, NativeResult};

mod ffi {
    use std::os::raw::{c_char, c_int};
    extern "C" {
        pub fn detc_trace_start(cuda: c_int) -> c_int;
        pub fn detc_trace_stop(path: *const c_char) -> c_int;
        pub fn detc_trace_mark(name: *const c_char) -> c_int;
    }
}

/// Starts tracing this thread's operators, and on CUDA the device's kernels.
pub fn start(cuda: bool) -> NativeResult<()> {
    // SAFETY: a plain integer in.
    check("trace_start", unsafe { ffi::detc_trace_start(c_int::from(cuda)) }).map(|_| ())
}

/// Marks the end of the section `name` in the trace (`section: NAME`).
pub fn mark(name: &str) {
    if let Ok(name) = CString::new(format!("section: {name}")) {
        // SAFETY: a NUL-terminated string that outlives the call.
        unsafe { ffi::detc_trace_mark(name.as_ptr()) };
    }
}

/// Stops tracing and writes the trace to `path`.
pub fn stop(path: &Path) -> NativeResult<()> {
    let path = CString::new(path.to_string_lossy().into_owned())
        .map_err(|_| NativeError { call: "trace_stop", message: "a path with a NUL byte".into() })?;
    // SAFETY: a NUL-terminated string that outlives the call.
    check("trace_stop", unsafe { ffi::detc_trace_stop(path.as_ptr() as *const c_char) }).map(|_| ())
}
