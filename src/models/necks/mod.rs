//! Necks (`mmdet/models/necks`): backbone feature maps in, fused pyramid out.

// The detectors consume these; until they land the binary reads only part of them.
#![allow(dead_code, unused_imports)]

pub mod bfp;
pub mod cspnext_pafpn;
pub mod dyhead;
pub mod fpn;
pub mod hrfpn;

#[cfg(test)]
mod bfp_tests;
#[cfg(test)]
mod pafpn_tests;

pub use bfp::BFP;
pub use cspnext_pafpn::CSPNeXtPAFPN;
pub use dyhead::DyHead;
pub use fpn::FPN;
pub use hrfpn::HRFPN;

use tch::Tensor;

use crate::models::layers::ModelResult;

/// A detector's neck: `FPN` (or `PAFPN`), `HRFPN`, `BFP`, `CSPNeXtPAFPN`, `DyHead`, or a list of
/// them run in turn.
#[derive(Debug)]
pub enum Neck {
    Fpn(FPN),
    HrFpn(HRFPN),
    Bfp(BFP),
    CspNext(CSPNeXtPAFPN),
    DyHead(DyHead),
    Sequential(Vec<Neck>),
}

impl Neck {
    /// The backbone's maps -> the pyramid, finest first; `train` is the model's mode.
    pub fn forward_t(&self, inputs: &[Tensor], train: bool) -> ModelResult<Vec<Tensor>> {
        match self {
            Neck::Fpn(n) => n.forward_t(inputs, train),
            Neck::HrFpn(n) => n.forward_t(inputs, train),
            Neck::Bfp(n) => n.forward_t(inputs, train),
            Neck::CspNext(n) => n.forward_t(inputs, train),
            Neck::DyHead(n) => n.forward_t(inputs, train),
            Neck::Sequential(necks) => {
                let mut x = inputs.iter().map(Tensor::shallow_clone).collect::<Vec<_>>();
                for neck in necks {
                    x = neck.forward_t(&x, train)?;
                }
                Ok(x)
            }
        }
    }
}
