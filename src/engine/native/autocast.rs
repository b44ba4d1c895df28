//! `torch.autocast` for the CPU and CUDA: inside a region, eligible ops run
//! in the lower-precision dtype (bfloat16 or float16) while the parameters
//! stay float32.
//!
//! Autocast state is thread-local in libtorch, so an [`AutocastGuard`] is
//! neither `Send` nor `Sync`: it must end on the thread that began it.

use std::marker::PhantomData;
use std::os::raw::c_int;

use tch::{Device, Kind};

use super::{check, ffi, NativeError, NativeResult};

/// The shim's device codes.
fn device_code(device: Device) -> NativeResult<c_int> {
    match device {
        Device::Cpu => Ok(0),
        Device::Cuda(_) => Ok(1),
        other => Err(NativeError {
            call: "autocast",
            message: format!("autocast is only wired for cpu and cuda, not {other:?}"),
        }),
    }
}

/// `c10::ScalarType` codes of the dtypes autocast takes.
fn kind_code(kind: Kind) -> NativeResult<c_int> {
    match kind {
        Kind::Half => Ok(5),
        Kind::Float => Ok(6),
        Kind::Double => Ok(7),
        Kind::BFloat16 => Ok(15),
        other => Err(NativeError {
            call: "autocast",
            message: format!("{other:?} is not an autocast dtype (float16 or bfloat16)"),
        }),
    }
}

fn kind_of_code(code: c_int) -> Option<Kind> {
    match code {
        5 => Some(Kind::Half),
        6 => Some(Kind::Float),
        7 => Some(Kind::Double),
        15 => Some(Kind::BFloat16),
        _ => None,
    }
}

/// An open autocast region; dropping it ends the region
/// (`torch.autocast.__exit__`).
pub struct AutocastGuard {
    device: c_int,
    prev_enabled: c_int,
    prev_dtype: c_int,
    /// Thread-bound (autocast state is thread-local).
    _not_send: PhantomData<*const ()>,
}

impl AutocastGuard {
    /// `torch.autocast(device_type, dtype, enabled).__enter__()`: saves the
    /// device's autocast state, sets it, and increments the nesting.
    pub fn enter(device: Device, dtype: Kind, enabled: bool) -> NativeResult<Self> {
        let code = device_code(device)?;
        let (mut prev_enabled, mut prev_dtype) = (0, 0);
        // SAFETY: plain integers in, two out-pointers to locals.
        let status = unsafe {
            ffi::detc_autocast_enter(
                code,
                kind_code(dtype)?,
                c_int::from(enabled),
                &mut prev_enabled,
                &mut prev_dtype,
            )
        };
        check("autocast enter", status)?;
        Ok(AutocastGuard {
            device: code,
            prev_enabled,
            prev_dtype,
            _not_send: PhantomData,
        })
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: restores values the shim handed out on this thread.
        let status =
            unsafe { ffi::detc_autocast_exit(self.device, self.prev_enabled, self.prev_dtype) };
        // Only an unknown device code fails, and `enter` refused those.
        debug_assert!(check("autocast exit", status).is_ok());
    }
}

/// Runs `f` in an autocast region of `device` with `dtype`
/// (`with torch.autocast(device.type, dtype): f()`).
pub fn autocast<T>(device: Device, dtype: Kind, f: impl FnOnce() -> T) -> NativeResult<T> {
    let _region = AutocastGuard::enter(device, dtype, true)?;
    Ok(f())
}

/// `torch.is_autocast_enabled(device_type)` on this thread.
pub fn is_autocast_enabled(device: Device) -> NativeResult<bool> {
    let mut out = 0;
    // SAFETY: one out-pointer to a local.
    let status = unsafe { ffi::detc_autocast_is_enabled(device_code(device)?, &mut out) };
    check("is_autocast_enabled", status)?;
    Ok(out != 0)
}

/// `torch.get_autocast_dtype(device_type)` on this thread.
pub fn autocast_dtype(device: Device) -> NativeResult<Kind> {
    let mut out = 0;
    // SAFETY: one out-pointer to a local.
    let status = unsafe { ffi::detc_autocast_dtype(device_code(device)?, &mut out) };
    check("get_autocast_dtype", status)?;
    kind_of_code(out).ok_or_else(|| NativeError {
        call: "get_autocast_dtype",
        message: format!("unexpected scalar type code {out}"),
    })
}
