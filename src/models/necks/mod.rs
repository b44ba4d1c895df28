//! Necks (`mmdet/models/necks`): backbone feature maps in, fused pyramid out.

// The detectors consume these; until they land the binary reads only part of them.
#![allow(dead_code, unused_imports)]

pub mod fpn;
pub mod hrfpn;

#[cfg(test)]
mod pafpn_tests;

pub use fpn::FPN;
pub use hrfpn::HRFPN;

use tch::Tensor;

use crate::models::layers::ModelResult;

/// A detector's neck: `FPN` (or `PAFPN`) or `HRFPN`.
#[derive(Debug)]
pub enum Neck {
    Fpn(FPN),
    HrFpn(HRFPN),
}

impl Neck {
    /// The backbone's maps -> the pyramid, finest first; `train` is the model's mode.
    pub fn forward_t(&self, inputs: &[Tensor], train: bool) -> ModelResult<Vec<Tensor>> {
        match self {
            Neck::Fpn(n) => n.forward_t(inputs, train),
            Neck::HrFpn(n) => n.forward_t(inputs, train),
        }
    }
}
