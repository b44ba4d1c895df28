//! RoIAlign's kernels (`roi_align.cpp`, `roi_align.cu`) as an autograd
//! function: torchvision's arithmetic on the CPU (float and double) and on
//! CUDA (NVRTC-compiled at first use; half and bfloat16 pooled in float32).
//! `models::ops::roi_align` picks them where [`roi_align_supports`] says so,
//! and otherwise the grid-sampler path.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};

use super::{check, ffi, new_tensor, NativeResult, Status};

/// The op's settings, as `models::ops::RoIAlign` holds them (average pooling).
#[derive(Debug, Clone, Copy)]
pub struct RoiAlignArgs {
    pub spatial_scale: f64,
    /// `(Ph, Pw)`.
    pub output_size: (i64, i64),
    pub sampling_ratio: i64,
    pub aligned: bool,
}

/// The environment setting that picks RoIAlign's implementation:
/// `kernel` (the default) or `sampled` (the grid-sampler path everywhere,
/// to compare or to work around a kernel).
pub const IMPLEMENTATION_VAR: &str = "DETC_ROI_ALIGN";

/// Whether the kernels take these features: float or double on the CPU, any
/// floating dtype on a CUDA device whose kernels compiled, unless
/// `DETC_ROI_ALIGN=sampled`.
pub fn roi_align_supports(input: &Tensor) -> bool {
    if sampled_by_request() {
        return false;
    }
    match input.device() {
        Device::Cpu => matches!(input.kind(), Kind::Float | Kind::Double),
        Device::Cuda(index) => {
            matches!(
                input.kind(),
                Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
            ) && cuda_kernels(index).is_ok()
        }
        _ => false,
    }
}

/// `DETC_ROI_ALIGN=sampled`; any value but `kernel` and `sampled` is an
/// error that says so (`check_implementation_setting`).
fn sampled_by_request() -> bool {
    static SAMPLED: OnceLock<bool> = OnceLock::new();
    *SAMPLED.get_or_init(|| check_implementation_setting() == Ok(true))
}

/// Refuses a `DETC_ROI_ALIGN` other than `kernel` or `sampled`; `Ok(true)`
/// for `sampled`.
pub fn check_implementation_setting() -> Result<bool, String> {
    super::kernel_or(IMPLEMENTATION_VAR, "sampled", "a RoIAlign implementation")
}

/// The CUDA kernels on `device`, compiled and loaded on first use (one
/// device per process): the target NVRTC compiled for, or why they are
/// unavailable, which is reported once on stderr; RoIAlign then keeps the
/// grid-sampler path (slower, more memory).
pub fn cuda_kernels(device: usize) -> &'static Result<String, String> {
    static READY: OnceLock<Result<String, String>> = OnceLock::new();
    READY.get_or_init(|| {
        let prepared = with_target("roi_align_cuda_prepare", |target, capacity| {
            // SAFETY: the shim writes at most `capacity` bytes to `target`.
            unsafe { ffi::detc_roi_align_cuda_prepare(device as i32, target, capacity) }
        });
        let ready = match prepared {
            Ok(Some(target)) => Ok(target),
            Ok(None) => Err("this detc-engine was built without CUDA kernels".to_string()),
            Err(e) => Err(e.message),
        };
        if let Err(why) = &ready {
            eprintln!(
                "warning: RoIAlign runs on grid_sampler_2d on CUDA (slower, more memory): {why}"
            );
        }
        ready
    })
}

/// input (N, C, H, W), rois (R, 5) `[batch, x1, y1, x2, y2]` on its device
/// -> (R, C, Ph, Pw) of the input's dtype, with the features' gradient
/// (none for the boxes).
pub fn roi_align(input: &Tensor, rois: &Tensor, args: RoiAlignArgs) -> NativeResult<Tensor> {
    call(input, rois, args, false)
}

/// [`roi_align`] with the CUDA kernels' code run on the CPU (for the tests).
pub fn roi_align_cuda_emulated(
    input: &Tensor,
    rois: &Tensor,
    args: RoiAlignArgs,
) -> NativeResult<Tensor> {
    call(input, rois, args, true)
}

fn call(input: &Tensor, rois: &Tensor, args: RoiAlignArgs, emulate: bool) -> NativeResult<Tensor> {
    let (ph, pw) = args.output_size;
    // SAFETY: both tensor pointers are live for the call.
    new_tensor("roi_align", |out| unsafe {
        ffi::detc_roi_align(
            input.as_ptr(),
            rois.as_ptr(),
            args.spatial_scale,
            ph,
            pw,
            args.sampling_ratio,
            args.aligned as i32,
            emulate as i32,
            out,
        )
    })
}

/// `SingleRoIExtractor`'s pooling in one call with the CUDA kernels (run on
/// the CPU with `emulate`, for the tests): `feats` (N, C, Hl, Wl) per level,
/// rois (R, 5), `levels` (R,) int64 (`map_roi_levels`), `scales` (one per
/// level; `args.spatial_scale` is not used) -> (R, C, Ph, Pw), with every
/// level's gradient. Nothing is read back from the device but the RoI check.
pub fn roi_align_levels(
    feats: &[Tensor],
    rois: &Tensor,
    levels: &Tensor,
    scales: &[f64],
    args: RoiAlignArgs,
    emulate: bool,
) -> NativeResult<Tensor> {
    assert_eq!(feats.len(), scales.len(), "one scale per feature level");
    let (ph, pw) = args.output_size;
    let ptrs: Vec<_> = feats.iter().map(|f| f.as_ptr()).collect();
    // SAFETY: every pointer is live for the call; `ptrs` and `scales` hold
    // `feats.len()` entries.
    new_tensor("roi_align_levels", |out| unsafe {
        ffi::detc_roi_align_levels(
            ptrs.as_ptr(),
            feats.len() as i64,
            rois.as_ptr(),
            levels.as_ptr(),
            scales.as_ptr(),
            ph,
            pw,
            args.sampling_ratio,
            args.aligned as i32,
            emulate as i32,
            out,
        )
    })
}

/// Settles the RoI checks that training left unread on this thread: an
/// error naming the first call that refused its RoIs (a batch index outside
/// the images, or boxes so large that pooling them would take more than
/// 2^31 samples). In training the kernels' check is not read at each call,
/// which would wait for the GPU; a refused call pools NaN instead, and the
/// runner settles the checks at its next read of the losses. One read from
/// the device, if a check is pending; nothing on the CPU kernel's path,
/// which checks on the host.
pub fn settle_checks() -> NativeResult<()> {
    // SAFETY: no arguments; the shim reports through its status.
    check("roi_align_settle_checks", unsafe { ffi::detc_roi_align_settle_checks() })?;
    Ok(())
}

/// Compiles the CUDA kernels with NVRTC for compute capability `arch` (90
/// for sm_90), which needs no GPU: `Some(target)` it compiled for, `None`
/// in a build without CUDA.
pub fn compile_cuda_kernels(arch: i32) -> NativeResult<Option<String>> {
    with_target("roi_align_cuda_compile", |target, capacity| {
        // SAFETY: the shim writes at most `capacity` bytes to `target`.
        unsafe { ffi::detc_roi_align_cuda_compile(arch, target, capacity) }
    })
}

/// A shim call that names an NVRTC target: `Some(target)`, or `None` for
/// `UNAVAILABLE` (a build without CUDA).
fn with_target(
    call: &'static str,
    shim: impl FnOnce(*mut c_char, i64) -> c_int,
) -> NativeResult<Option<String>> {
    let mut target = [0 as c_char; 64];
    let status = shim(target.as_mut_ptr(), target.len() as i64);
    Ok(match check(call, status)? {
        // SAFETY: NUL-terminated by the shim.
        Status::Ok => Some(
            unsafe { CStr::from_ptr(target.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
        ),
        Status::Unavailable => None,
    })
}
