//! RoIAlign's CPU kernel (`roi_align.cpp`): torchvision's arithmetic as an
//! autograd function, for float and double features on the CPU.
//! `models::ops::roi_align` picks it where it applies.

use tch::{Kind, Tensor};

use super::{ffi, new_tensor, NativeResult};

/// The op's settings, as `models::ops::RoIAlign` holds them (average pooling).
#[derive(Debug, Clone, Copy)]
pub struct RoiAlignArgs {
    pub spatial_scale: f64,
    /// `(Ph, Pw)`.
    pub output_size: (i64, i64),
    pub sampling_ratio: i64,
    pub aligned: bool,
}

/// Whether the kernel takes these features: a float or double CPU tensor.
pub fn roi_align_cpu_supports(input: &Tensor) -> bool {
    input.device() == tch::Device::Cpu && matches!(input.kind(), Kind::Float | Kind::Double)
}

/// input (N, C, H, W), rois (R, 5) `[batch, x1, y1, x2, y2]` of the input's
/// dtype -> (R, C, Ph, Pw), with the features' gradient (none for the boxes).
pub fn roi_align_cpu(input: &Tensor, rois: &Tensor, args: RoiAlignArgs) -> NativeResult<Tensor> {
    let (ph, pw) = args.output_size;
    // SAFETY: both tensor pointers are live for the call.
    new_tensor("roi_align", |out| unsafe {
        ffi::detc_roi_align_cpu(
            input.as_ptr(),
            rois.as_ptr(),
            args.spatial_scale,
            ph,
            pw,
            args.sampling_ratio,
            args.aligned as i32,
            out,
        )
    })
}
