//! What `detc env` reports about libtorch and the devices, as
//! `python -m torch.utils.collect_env` does for PyTorch.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct EnvReport {
    /// The PyTorch release whose libtorch this binary was built against.
    pub libtorch_version: &'static str,
    pub cuda_available: bool,
    pub cuda_device_count: i64,
    pub cudnn_available: bool,
    /// Whether multi-GPU jobs can use c10d's NCCL group (else Gloo only).
    pub nccl_available: bool,
    pub num_threads: i32,
}

impl EnvReport {
    pub fn to_string_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain struct serialises")
    }
}

pub fn report() -> EnvReport {
    EnvReport {
        libtorch_version: env!("DETC_LIBTORCH_VERSION"),
        cuda_available: tch::Cuda::is_available(),
        cuda_device_count: tch::Cuda::device_count(),
        cudnn_available: tch::Cuda::cudnn_is_available(),
        nccl_available: crate::engine::native::ProcessGroup::nccl_built(),
        num_threads: tch::get_num_threads(),
    }
}
