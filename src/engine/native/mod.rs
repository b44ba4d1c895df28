//! What the engine needs from libtorch that tch 0.24 does not bind, through
//! the small C++ shim `shim.cpp` (compiled by build.rs):
//!
//! - [`autocast`]: mixed-precision regions on the CPU or CUDA with a chosen
//!   dtype (`torch.autocast`; tch only switches CUDA autocast on and off);
//! - [`cuda_memory`]: the CUDA caching allocator's peak (`torch.cuda.max_memory_allocated`);
//! - [`roi_align`]: RoIAlign's kernels, forward and backward: on the CPU
//!   (`roi_align.cpp`) and on CUDA (`roi_align.cu`, compiled by NVRTC);
//! - [`nms_sorted`]: NMS's kernels on CUDA (`nms.cu`, compiled by NVRTC
//!   with RoIAlign's), emulated on the CPU for the tests;
//! - [`mask_target_bitmap`]: bitmap mask targets on CUDA (`mask_target.cu`,
//!   likewise), emulated on the CPU for the tests;
//! - [`op_count`]: operator and host-synchronisation counts (`op_count.cpp`),
//!   for the section profile;
//! - [`optim`]: torch.optim's multi-tensor Adam and SGD updates and
//!   gradient-norm clipping (`optim.cpp`);
//! - [`timing`]: CUDA timing events, for `detc bench`'s phase times;
//! - [`trace`]: a Chrome trace of Kineto's profiler (`trace.cpp`), for
//!   `DETC_TRACE`;
//! - [`process_group`]: c10d's Gloo process group and its collectives (`dist.cpp`).
//!
//! The shim catches every C++ exception and returns a status; the safe
//! wrappers here turn it into a [`NativeError`].

// The runner reads only part of this API so far.
#![allow(dead_code, unused_imports)]

pub mod autocast;
pub mod cuda_memory;
pub mod op_count;
pub mod optim;
pub mod process_group;
pub mod roi_align;
pub mod timing;
pub mod trace;

#[cfg(test)]
mod tests;

pub use autocast::{autocast, AutocastGuard};
pub use cuda_memory::{
    cuda_empty_cache, cuda_max_memory_allocated, cuda_peak_memory_mb, cuda_reset_peak_memory_stats,
};
pub use process_group::{DdpReducer, ProcessGroup, Rendezvous};
pub use roi_align::{roi_align, roi_align_supports, RoiAlignArgs};

use std::ffi::CStr;
use std::os::raw::{c_char, c_int};

/// A C++ exception (or a refused argument) in the shim.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeError {
    /// The shim function that failed.
    pub call: &'static str,
    pub message: String,
}

impl std::fmt::Display for NativeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "libtorch ({}): {}", self.call, self.message)
    }
}

impl std::error::Error for NativeError {}

pub type NativeResult<T> = Result<T, NativeError>;

/// The shim's statuses (`DETC_*` in shim.cpp).
const OK: c_int = 0;
const ERROR: c_int = 1;
const UNAVAILABLE: c_int = 2;

/// What a call to the shim came to.
enum Status {
    Ok,
    /// The feature is not there (no CUDA build, no such device).
    Unavailable,
}

mod ffi {
    use std::os::raw::{c_char, c_int};

    extern "C" {
        pub fn detc_native_last_error() -> *const c_char;
        pub fn detc_autocast_enter(
            device: c_int,
            dtype: c_int,
            enabled: c_int,
            prev_enabled: *mut c_int,
            prev_dtype: *mut c_int,
        ) -> c_int;
        pub fn detc_autocast_exit(device: c_int, prev_enabled: c_int, prev_dtype: c_int) -> c_int;
        pub fn detc_autocast_is_enabled(device: c_int, out: *mut c_int) -> c_int;
        pub fn detc_autocast_dtype(device: c_int, out: *mut c_int) -> c_int;
        pub fn detc_cuda_max_memory_allocated(device: c_int, out: *mut u64) -> c_int;
        pub fn detc_cuda_reset_peak_memory_stats(device: c_int) -> c_int;
        pub fn detc_cuda_empty_cache(device: c_int) -> c_int;
        pub fn detc_set_cudnn_deterministic(on: c_int) -> c_int;
        pub fn detc_channels_last(t: *const torch_sys::C_tensor, out: *mut *mut torch_sys::C_tensor) -> c_int;
        pub fn detc_is_channels_last(t: *const torch_sys::C_tensor, out: *mut c_int) -> c_int;
        pub fn detc_adam_foreach(
            params: *const *const torch_sys::C_tensor,
            grads: *const *const torch_sys::C_tensor,
            exp_avgs: *const *const torch_sys::C_tensor,
            exp_avg_sqs: *const *const torch_sys::C_tensor,
            max_exp_avg_sqs: *const *const torch_sys::C_tensor,
            steps: *const f64,
            n: i64,
            lr: f64,
            beta1: f64,
            beta2: f64,
            weight_decay: f64,
            eps: f64,
            amsgrad: c_int,
            maximize: c_int,
            decoupled: c_int,
        ) -> c_int;
        pub fn detc_sgd_foreach(
            params: *const *const torch_sys::C_tensor,
            grads: *const *const torch_sys::C_tensor,
            momentum_buffers: *mut *mut torch_sys::C_tensor,
            n: i64,
            lr: f64,
            weight_decay: f64,
            momentum: f64,
            dampening: f64,
            nesterov: c_int,
            maximize: c_int,
        ) -> c_int;
        pub fn detc_clip_grad_norm_foreach(
            grads: *const *const torch_sys::C_tensor,
            n: i64,
            max_norm: f64,
            norm_type: f64,
            error_if_nonfinite: c_int,
            total: *mut *mut torch_sys::C_tensor,
        ) -> c_int;
        pub fn detc_roi_align(
            input: *const torch_sys::C_tensor,
            rois: *const torch_sys::C_tensor,
            spatial_scale: f64,
            pooled_h: i64,
            pooled_w: i64,
            sampling_ratio: i64,
            aligned: c_int,
            emulate_cuda: c_int,
            out: *mut *mut torch_sys::C_tensor,
        ) -> c_int;
        pub fn detc_roi_align_levels(
            feats: *const *const torch_sys::C_tensor,
            num_levels: i64,
            rois: *const torch_sys::C_tensor,
            levels: *const torch_sys::C_tensor,
            scales: *const f64,
            pooled_h: i64,
            pooled_w: i64,
            sampling_ratio: i64,
            aligned: c_int,
            emulate_cuda: c_int,
            out: *mut *mut torch_sys::C_tensor,
        ) -> c_int;
        pub fn detc_roi_align_cuda_prepare(
            device: c_int,
            target: *mut c_char,
            capacity: i64,
        ) -> c_int;
        pub fn detc_roi_align_cuda_compile(
            arch: c_int,
            target: *mut c_char,
            capacity: i64,
        ) -> c_int;
        pub fn detc_roi_align_settle_checks() -> c_int;
        pub fn detc_amp_unscale_foreach(
            grads: *const *const torch_sys::C_tensor,
            n: i64,
            found_inf: *mut torch_sys::C_tensor,
            inv_scale: *const torch_sys::C_tensor,
        ) -> c_int;
        pub fn detc_nms_sorted(
            boxes: *const torch_sys::C_tensor,
            iou_threshold: f64,
            offset: f64,
            limit: i64,
            count: *const torch_sys::C_tensor,
            out: *mut *mut torch_sys::C_tensor,
        ) -> c_int;
        pub fn detc_mask_target(
            masks: *const torch_sys::C_tensor,
            boxes: *const torch_sys::C_tensor,
            inds: *const torch_sys::C_tensor,
            pooled_h: i64,
            pooled_w: i64,
            out: *mut *mut torch_sys::C_tensor,
        ) -> c_int;
    }
}

/// An environment switch between the shim's kernels (`kernel`, the
/// default, or unset) and one other implementation `alternative`, for
/// comparing the two: `Ok(true)` for `alternative`; any other value is
/// refused with a message naming `what` it should be.
pub fn kernel_or(var: &str, alternative: &str, what: &str) -> Result<bool, String> {
    match std::env::var(var).as_deref() {
        Err(_) | Ok("") | Ok("kernel") => Ok(false),
        Ok(v) if v == alternative => Ok(true),
        Ok(other) => Err(format!("{var}={other:?} is not {what}; use kernel (the default) or {alternative}")),
    }
}

/// `torch.backends.cudnn.deterministic = on` (and, when on, `benchmark =
/// False`), as `randomness.deterministic` sets them.
pub fn set_cudnn_deterministic(on: bool) -> NativeResult<()> {
    // SAFETY: sets two process-wide flags of libtorch's global context.
    let status = unsafe { ffi::detc_set_cudnn_deterministic(c_int::from(on)) };
    check("set_cudnn_deterministic", status).map(|_| ())
}

/// `t.contiguous(memory_format=torch.channels_last)` of a 4-D tensor: the
/// same values, laid out (N, H, W, C) in memory; `t` itself when it already is.
pub fn channels_last(t: &tch::Tensor) -> NativeResult<tch::Tensor> {
    // SAFETY: a live tensor; the shim writes a new owned tensor on success.
    new_tensor("channels_last", |out| unsafe { ffi::detc_channels_last(t.as_ptr(), out) })
}

/// `t.is_contiguous(memory_format=torch.channels_last)`.
pub fn is_channels_last(t: &tch::Tensor) -> NativeResult<bool> {
    let mut on: c_int = 0;
    // SAFETY: a live tensor and one out-pointer to a local.
    let status = unsafe { ffi::detc_is_channels_last(t.as_ptr(), &mut on) };
    check("is_channels_last", status)?;
    Ok(on != 0)
}

/// NMS of `boxes` (N, 4), float or double and already sorted by decreasing
/// score, with `nms.cu`'s kernels: on CUDA (once [`roi_align::cuda_kernels`]
/// loaded them), on the CPU emulated on one thread (tests). A box is dropped
/// when its IoU with a kept earlier box is `> iou_threshold` (sides plus
/// mmcv's `offset`); at most `limit` are kept. `count`, an int64 scalar on
/// the boxes' device, sweeps only that many leading boxes (the others are
/// neither kept nor suppress). Returns (N,) bool on the boxes' device, true
/// at the kept positions; nothing waits for the device. Boxes (B, N, 4) are
/// B images, each its own NMS (each sorted on its own, `count` (B,), the
/// result (B, N)), swept side by side.
pub fn nms_sorted(
    boxes: &tch::Tensor,
    iou_threshold: f64,
    offset: f64,
    limit: usize,
    count: Option<&tch::Tensor>,
) -> NativeResult<tch::Tensor> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let count = count.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: live tensors (`count` may be null); the shim writes a new
    // owned tensor on success.
    new_tensor("nms_sorted", |out| unsafe {
        ffi::detc_nms_sorted(boxes.as_ptr(), iou_threshold, offset, limit, count, out)
    })
}

/// One image's mask targets with `mask_target.cu`'s kernel: on CUDA (once
/// [`roi_align::cuda_kernels`] loaded it), on the CPU emulated on one thread
/// (tests). `masks` (G, Hm, Wm) uint8 of 0/1, `boxes` (K, 4) x1y1x2y2
/// float32 (clipped to the canvas), `inds` (K,) int64 into the G masks (an
/// index outside gives an empty target) -> (K, h, w) float32 of 0/1 on
/// their device, the host's targets bit for bit; nothing waits for the device.
pub fn mask_target_bitmap(
    masks: &tch::Tensor,
    boxes: &tch::Tensor,
    inds: &tch::Tensor,
    (h, w): (i64, i64),
) -> NativeResult<tch::Tensor> {
    // SAFETY: live tensors; the shim writes a new owned tensor on success.
    new_tensor("mask_target", |out| unsafe {
        ffi::detc_mask_target(masks.as_ptr(), boxes.as_ptr(), inds.as_ptr(), h, w, out)
    })
}

/// Runs a shim call that returns a new tensor through its out-pointer
/// (`at::Tensor**`, written only with `DETC_OK`) and takes that tensor over.
fn new_tensor(
    call: &'static str,
    shim: impl FnOnce(*mut *mut torch_sys::C_tensor) -> c_int,
) -> NativeResult<tch::Tensor> {
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    check(call, shim(&mut out))?;
    if out.is_null() {
        return Err(NativeError {
            call,
            message: "no output tensor".into(),
        });
    }
    // SAFETY: a fresh heap `at::Tensor*` from the shim that nothing else owns.
    Ok(unsafe { tch::Tensor::from_ptr(out) })
}

/// Reads a shim status, with the thread's last error for `ERROR`.
fn check(call: &'static str, status: c_int) -> NativeResult<Status> {
    match status {
        OK => Ok(Status::Ok),
        UNAVAILABLE => Ok(Status::Unavailable),
        ERROR => Err(NativeError {
            call,
            message: last_error(),
        }),
        other => Err(NativeError {
            call,
            message: format!("unexpected status {other}"),
        }),
    }
}

fn last_error() -> String {
    // SAFETY: the shim returns a pointer to its thread-local, NUL-terminated
    // message, valid until the next failing call on this thread.
    let ptr: *const c_char = unsafe { ffi::detc_native_last_error() };
    if ptr.is_null() {
        return "unknown error".into();
    }
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}
