//! c10d's process groups (`dist.cpp`, `dist_nccl.cpp`): a TCPStore
//! rendezvous, Gloo for host tensors and, in a job on GPUs, NCCL for CUDA
//! tensors, and the collectives data-parallel training needs, on tch
//! tensors. Every call waits for its collective; a failed or timed-out one
//! is an error (a peer that died shows up here within about a second).

use std::ffi::CString;
use std::os::raw::{c_int, c_void};
use std::time::Duration;

use tch::Tensor;

use super::{check, new_tensor, NativeError, NativeResult};

mod ffi {
    use std::os::raw::{c_char, c_int, c_void};

    extern "C" {
        pub fn detc_dist_init(
            host: *const c_char,
            port: c_int,
            rank: c_int,
            world: c_int,
            serve: c_int,
            listen_fd: c_int,
            timeout_ms: i64,
            cuda_device: c_int,
            out: *mut *mut c_void,
        ) -> c_int;
        pub fn detc_dist_nccl_built() -> c_int;
        pub fn detc_dist_free(group: *mut c_void);
        pub fn detc_dist_allreduce_sum(
            group: *mut c_void,
            tensor: *mut torch_sys::C_tensor,
        ) -> c_int;
        pub fn detc_dist_broadcast(
            group: *mut c_void,
            tensor: *mut torch_sys::C_tensor,
            root: c_int,
        ) -> c_int;
        pub fn detc_dist_allgather(
            group: *mut c_void,
            input: *mut torch_sys::C_tensor,
            output: *mut torch_sys::C_tensor,
        ) -> c_int;
        pub fn detc_dist_barrier(group: *mut c_void) -> c_int;
        pub fn detc_dist_allreduce_sum_autograd(
            group: *mut c_void,
            input: *mut torch_sys::C_tensor,
            out: *mut *mut torch_sys::C_tensor,
        ) -> c_int;
        pub fn detc_ddp_new(
            group: *mut c_void,
            params: *const *mut torch_sys::C_tensor,
            count: i64,
            bucket_cap: i64,
            first_bucket_cap: i64,
            out: *mut *mut c_void,
        ) -> c_int;
        pub fn detc_ddp_free(ddp: *mut c_void);
        pub fn detc_ddp_prepare_forward(ddp: *mut c_void) -> c_int;
        pub fn detc_ddp_prepare_backward(ddp: *mut c_void, loss: *mut torch_sys::C_tensor)
            -> c_int;
    }
}

/// Where and how to rendezvous.
#[derive(Debug, Clone)]
pub struct Rendezvous {
    pub master_addr: String,
    pub master_port: u16,
    pub rank: usize,
    pub world_size: usize,
    /// Whether rank 0 serves the TCPStore (false under torchrun, whose agent does).
    pub serve_store: bool,
    /// A listening socket on the master port that rank 0's store takes over.
    pub listen_fd: Option<i32>,
    /// Bounds the rendezvous and every collective.
    pub timeout: Duration,
    /// The CUDA device of this rank, for a job on GPUs: its CUDA tensors
    /// then go through an NCCL group (host tensors always through Gloo).
    pub cuda_device: Option<usize>,
}

/// The process group (Gloo, and NCCL on GPUs) this process belongs to.
#[derive(Debug)]
pub struct ProcessGroup {
    handle: *mut c_void,
    rank: usize,
    world_size: usize,
}

// c10d process groups are thread-safe (torch calls them from any thread);
// the training loop uses this one from one thread at a time.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl ProcessGroup {
    /// Joins the job described by `rv` (blocks until every rank has joined).
    pub fn join(rv: &Rendezvous) -> NativeResult<Self> {
        let host = CString::new(rv.master_addr.as_str()).map_err(|_| NativeError {
            call: "init_process_group",
            message: format!("master address {:?} holds a NUL byte", rv.master_addr),
        })?;
        let timeout_ms = i64::try_from(rv.timeout.as_millis()).unwrap_or(i64::MAX);
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: a NUL-terminated host that outlives the call, plain integers,
        // and one out-pointer the shim fills only on success.
        let status = unsafe {
            ffi::detc_dist_init(
                host.as_ptr(),
                c_int::from(rv.master_port),
                rv.rank as c_int,
                rv.world_size as c_int,
                c_int::from(rv.serve_store),
                rv.listen_fd.unwrap_or(-1),
                timeout_ms,
                rv.cuda_device.map_or(-1, |d| d as c_int),
                &mut handle,
            )
        };
        check("init_process_group", status)?;
        Ok(ProcessGroup {
            handle,
            rank: rv.rank,
            world_size: rv.world_size,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Whether this build can form NCCL groups (libtorch with CUDA, and the
    /// CUDA headers present when it was built).
    pub fn nccl_built() -> bool {
        // SAFETY: no arguments, no state.
        unsafe { ffi::detc_dist_nccl_built() != 0 }
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// In place: the sum over ranks (`dist.all_reduce`).
    pub fn all_reduce_sum(&self, tensor: &mut Tensor) -> NativeResult<()> {
        // SAFETY: a live group and a live tensor, for the call only.
        let status = unsafe { ffi::detc_dist_allreduce_sum(self.handle, tensor.as_mut_ptr()) };
        check("all_reduce", status).map(drop)
    }

    /// In place: `root`'s values on every rank (`dist.broadcast`).
    pub fn broadcast(&self, tensor: &mut Tensor, root: usize) -> NativeResult<()> {
        // SAFETY: as above.
        let status =
            unsafe { ffi::detc_dist_broadcast(self.handle, tensor.as_mut_ptr(), root as c_int) };
        check("broadcast", status).map(drop)
    }

    /// `(world, *input.shape)`: row r holds rank r's `input` (`dist.all_gather`).
    pub fn all_gather(&self, input: &Tensor) -> NativeResult<Tensor> {
        let mut shape = vec![self.world_size as i64];
        shape.extend(input.size());
        let mut output = Tensor::empty(shape.as_slice(), (input.kind(), input.device()));
        let mut input = input.shallow_clone();
        // SAFETY: as above.
        let status = unsafe {
            ffi::detc_dist_allgather(self.handle, input.as_mut_ptr(), output.as_mut_ptr())
        };
        check("all_gather", status)?;
        Ok(output)
    }

    /// The sum over ranks of `input`, as a new tensor through which autograd
    /// passes (its backward sums the gradients over ranks).
    pub fn all_reduce_sum_autograd(&self, input: &Tensor) -> NativeResult<Tensor> {
        let mut input = input.shallow_clone();
        // SAFETY: a live group and tensor for the call.
        new_tensor("all_reduce", |out| unsafe {
            ffi::detc_dist_allreduce_sum_autograd(self.handle, input.as_mut_ptr(), out)
        })
    }

    /// Waits until every rank is here (`dist.barrier`).
    pub fn barrier(&self) -> NativeResult<()> {
        // SAFETY: a live group.
        let status = unsafe { ffi::detc_dist_barrier(self.handle) };
        check("barrier", status).map(drop)
    }
}

/// PyTorch DDP's gradient reducer (c10d's `Reducer`) over a model's
/// parameters: during backward, each bucket of gradients is all-reduced as
/// soon as backward has produced it, overlapping the communication with
/// the rest of backward; when backward returns, every `.grad` holds the
/// mean over the ranks (a parameter no rank used keeps none).
#[derive(Debug)]
pub struct DdpReducer {
    handle: *mut c_void,
    // The parameters the reducer's hooks refer to; they outlive it.
    _params: Vec<Tensor>,
}

// Used from the training thread only; the reducer's own threads are c10d's.
unsafe impl Send for DdpReducer {}

/// DDP's default bucket sizes: 25 MiB, the first one 1 MiB.
const BUCKET_CAP: i64 = 25 * 1024 * 1024;
const FIRST_BUCKET_CAP: i64 = 1024 * 1024;

impl DdpReducer {
    /// A reducer over `params` (in model order) in `group`.
    pub fn new(group: &ProcessGroup, params: &[Tensor]) -> NativeResult<Self> {
        let params: Vec<Tensor> = params.iter().map(Tensor::shallow_clone).collect();
        let ptrs: Vec<*mut torch_sys::C_tensor> =
            params.iter().map(|p| p.as_ptr() as *mut _).collect();
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: live tensors for the call (the shim copies the handles);
        // one out-pointer filled on success.
        let status = unsafe {
            ffi::detc_ddp_new(
                group.handle,
                ptrs.as_ptr(),
                ptrs.len() as i64,
                BUCKET_CAP,
                FIRST_BUCKET_CAP,
                &mut handle,
            )
        };
        check("DistributedDataParallel", status)?;
        Ok(DdpReducer {
            handle,
            _params: params,
        })
    }

    /// Before a forward pass whose gradients are to be reduced (every rank).
    pub fn prepare_forward(&self) -> NativeResult<()> {
        // SAFETY: a live reducer.
        let status = unsafe { ffi::detc_ddp_prepare_forward(self.handle) };
        check("DistributedDataParallel", status).map(drop)
    }

    /// After the forward pass, before `loss.backward()`.
    pub fn prepare_backward(&self, loss: &Tensor) -> NativeResult<()> {
        let mut loss = loss.shallow_clone();
        // SAFETY: a live reducer and tensor for the call.
        let status = unsafe { ffi::detc_ddp_prepare_backward(self.handle, loss.as_mut_ptr()) };
        check("DistributedDataParallel", status).map(drop)
    }
}

impl Drop for DdpReducer {
    fn drop(&mut self) {
        // SAFETY: the handle came from detc_ddp_new and is freed once.
        unsafe { ffi::detc_ddp_free(self.handle) }
    }
}

static GLOBAL: std::sync::OnceLock<ProcessGroup> = std::sync::OnceLock::new();

impl ProcessGroup {
    /// Joins the job as the process's default group (torch's
    /// `init_process_group`), which layers such as SyncBN reach through
    /// [`ProcessGroup::global`]; a process joins one job at most.
    pub fn join_global(rv: &Rendezvous) -> NativeResult<&'static ProcessGroup> {
        if GLOBAL.get().is_some() {
            return Err(NativeError {
                call: "init_process_group",
                message: "this process already belongs to a job".into(),
            });
        }
        let group = ProcessGroup::join(rv)?;
        Ok(GLOBAL.get_or_init(|| group))
    }

    /// The default group, when this process is a worker of several.
    pub fn global() -> Option<&'static ProcessGroup> {
        GLOBAL.get().filter(|g| g.world_size > 1)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the handle came from detc_dist_init and is freed once.
        unsafe { ffi::detc_dist_free(self.handle) }
    }
}
