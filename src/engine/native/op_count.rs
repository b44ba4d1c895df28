//! Operator and host-synchronisation counts (`op_count.cpp`), for the
//! section profile of `detc bench` (`DETC_PROFILE`). Counting costs a
//! callback per operator, so it is on only while profiling.

use super::{check, NativeResult};

mod ffi {
    extern "C" {
        pub fn detc_op_count_start() -> std::os::raw::c_int;
        pub fn detc_op_count_read(ops: *mut i64, dispatched: *mut i64, syncs: *mut i64) -> std::os::raw::c_int;
        pub fn detc_op_count_stop() -> std::os::raw::c_int;
    }
}

/// Counts since [`start`], of every thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Operators called by the model (not those nested in another).
    pub ops: i64,
    /// Every operator dispatched, nested ones included.
    pub dispatched: i64,
    /// Operators that wait for the device on CUDA: scalar reads to the host
    /// (`item`, a tensor's truth value) and `nonzero` (also behind boolean
    /// indexing).
    pub syncs: i64,
}

impl std::ops::Sub for OpCounts {
    type Output = OpCounts;
    fn sub(self, o: OpCounts) -> OpCounts {
        OpCounts { ops: self.ops - o.ops, dispatched: self.dispatched - o.dispatched, syncs: self.syncs - o.syncs }
    }
}

impl std::ops::AddAssign for OpCounts {
    fn add_assign(&mut self, o: OpCounts) {
        self.ops += o.ops;
        self.dispatched += o.dispatched;
        self.syncs += o.syncs;
    }
}

/// Starts counting (the counts keep growing; read differences).
pub fn start() -> NativeResult<()> {
    // SAFETY: no arguments.
    check("op_count_start", unsafe { ffi::detc_op_count_start() }).map(|_| ())
}

/// The counts so far.
pub fn read() -> OpCounts {
    let mut c = OpCounts::default();
    // SAFETY: three out-pointers to locals.
    unsafe { ffi::detc_op_count_read(&mut c.ops, &mut c.dispatched, &mut c.syncs) };
    c
}

/// Stops counting.
pub fn stop() -> NativeResult<()> {
    // SAFETY: no arguments.
    check("op_count_stop", unsafe { ffi::detc_op_count_stop() }).map(|_| ())
}
