//! CUDA timing events (`timing.cpp`; `torch.cuda.Event(enable_timing=True)`):
//! `detc bench` times a step's phases on the device's own clock without
//! waiting for the device between them, as a synchronisation at each phase
//! would leave the GPU idle while the host launches the next one.

use std::os::raw::{c_int, c_void};

use super::{check, NativeError, NativeResult};

mod ffi {
    use std::os::raw::{c_int, c_void};
    extern "C" {
        pub fn detc_cuda_event_record(device: c_int, out: *mut *mut c_void) -> c_int;
        pub fn detc_cuda_event_elapsed_ms(start: *const c_void, end: *const c_void, out: *mut f64) -> c_int;
        pub fn detc_cuda_event_free(event: *mut c_void);
    }
}

/// A timing event recorded on the current stream of a CUDA device.
#[derive(Debug)]
pub struct CudaEvent(*mut c_void);

// SAFETY: a c10::Event is a CUDA event handle; recording happened on
// creation, and reading it back from another thread is what CUDA allows.
unsafe impl Send for CudaEvent {}

impl CudaEvent {
    /// Records a new event on the current stream of CUDA device `index`
    /// (no wait for the device).
    pub fn record(index: usize) -> NativeResult<Self> {
        let device = c_int::try_from(index)
            .map_err(|_| NativeError { call: "cuda_event_record", message: format!("device {index}") })?;
        let mut event = std::ptr::null_mut();
        // SAFETY: one out-pointer to a local.
        check("cuda_event_record", unsafe { ffi::detc_cuda_event_record(device, &mut event) })?;
        Ok(CudaEvent(event))
    }

    /// Seconds on the device from this event to `end`, waiting for `end`.
    pub fn seconds_to(&self, end: &CudaEvent) -> NativeResult<f64> {
        let mut ms = 0.0;
        // SAFETY: two live events, one out-pointer to a local.
        check("cuda_event_elapsed", unsafe { ffi::detc_cuda_event_elapsed_ms(self.0, end.0, &mut ms) })?;
        Ok(ms / 1e3)
    }
}

impl Drop for CudaEvent {
    fn drop(&mut self) {
        // SAFETY: the event was made by detc_cuda_event_record and is freed once.
        unsafe { ffi::detc_cuda_event_free(self.0) }
    }
}
