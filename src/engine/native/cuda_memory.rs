//! Peak GPU memory of the CUDA caching allocator, as MMEngine logs it
//! (`memory: torch.cuda.max_memory_allocated() // 2**20`, then
//! `reset_peak_memory_stats()`). Everything is `None` without CUDA.

use std::os::raw::c_int;

use tch::Device;

use super::{check, ffi, NativeResult, Status};

fn cuda_index(device: Device) -> Option<c_int> {
    match device {
        Device::Cuda(i) => c_int::try_from(i).ok(),
        _ => None,
    }
}

/// `torch.cuda.max_memory_allocated(device)` in bytes: `None` for a device
/// that is not a visible CUDA device (or a libtorch without CUDA), `0`
/// before the first CUDA allocation.
pub fn cuda_max_memory_allocated(device: Device) -> NativeResult<Option<u64>> {
    let Some(index) = cuda_index(device) else {
        return Ok(None);
    };
    let mut bytes = 0u64;
    // SAFETY: one out-pointer to a local.
    let status = unsafe { ffi::detc_cuda_max_memory_allocated(index, &mut bytes) };
    Ok(match check("max_memory_allocated", status)? {
        Status::Ok => Some(bytes),
        Status::Unavailable => None,
    })
}

/// `torch.cuda.reset_peak_memory_stats(device)`; returns whether there was a
/// CUDA device to reset.
pub fn cuda_reset_peak_memory_stats(device: Device) -> NativeResult<bool> {
    let Some(index) = cuda_index(device) else {
        return Ok(false);
    };
    // SAFETY: a plain integer in.
    let status = unsafe { ffi::detc_cuda_reset_peak_memory_stats(index) };
    Ok(matches!(
        check("reset_peak_memory_stats", status)?,
        Status::Ok
    ))
}

/// MMEngine's `get_max_cuda_memory`: the peak allocated memory in MiB since
/// the last call, then resets the peak. `None` when `device` is not a CUDA
/// device or the statistics cannot be read (the log then has no `memory`).
pub fn cuda_peak_memory_mb(device: Device) -> Option<u64> {
    let bytes = cuda_max_memory_allocated(device).ok().flatten()?;
    let _ = cuda_reset_peak_memory_stats(device);
    Some(bytes / (1 << 20))
}

/// `torch.cuda.empty_cache()`: releases the allocator's cached, unused
/// blocks; returns whether there was a CUDA device to release them on.
pub fn cuda_empty_cache(device: Device) -> NativeResult<bool> {
    let Some(index) = cuda_index(device) else {
        return Ok(false);
    };
    // SAFETY: a plain integer in.
    let status = unsafe { ffi::detc_cuda_empty_cache(index) };
    Ok(matches!(check("empty_cache", status)?, Status::Ok))
}
