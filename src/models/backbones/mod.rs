//! Backbones (`mmdet/models/backbones`): image in, multi-scale feature maps out.

// The detectors consume these; until they land the binary reads only part of them.
#![allow(dead_code, unused_imports)]

pub mod cspnext;
pub mod hrnet;
mod plugins;
pub mod res2net;
pub mod resnest;
pub mod resnet;
pub mod swin;

#[cfg(test)]
mod regnet_tests;
#[cfg(test)]
mod gcnet_tests;
#[cfg(test)]
mod attention_tests;
#[cfg(test)]
mod resnest_tests;

pub use cspnext::CSPNeXt;
pub use hrnet::HRNet;
pub use resnet::ResNet;
pub use swin::SwinTransformer;

use tch::{nn, Tensor};

use crate::models::layers::ModelResult;

/// A detector's backbone: `ResNet` / `ResNeXt` / `RegNet`, `SwinTransformer` or `HRNet`.
#[derive(Debug)]
pub enum Backbone {
    ResNet(ResNet),
    Swin(SwinTransformer),
    HRNet(HRNet),
    CspNext(CSPNeXt),
}

impl Backbone {
    /// x: (N, 3, H, W) -> the `out_indices` feature maps; `train` is the model's mode.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Vec<Tensor>> {
        match self {
            Backbone::ResNet(b) => b.forward_t(x, train),
            Backbone::Swin(b) => b.forward_t(x, train),
            Backbone::HRNet(b) => b.forward_t(x, train),
            Backbone::CspNext(b) => b.forward_t(x, train),
        }
    }

    /// Loads the `Pretrained` `init_cfg`, if any.
    pub fn init_weights(&self, vs: &nn::VarStore) -> ModelResult<Option<detc::checkpoint::KeyReport>> {
        match self {
            Backbone::ResNet(b) => b.init_weights(vs),
            Backbone::Swin(b) => b.init_weights(vs),
            Backbone::HRNet(b) => b.init_weights(vs),
            Backbone::CspNext(b) => b.init_weights(vs),
        }
    }

    /// Channels of each returned feature map.
    pub fn out_channels(&self) -> &[i64] {
        match self {
            Backbone::ResNet(b) => &b.out_channels,
            Backbone::Swin(b) => &b.out_channels,
            Backbone::HRNet(b) => &b.out_channels,
            Backbone::CspNext(b) => &b.out_channels,
        }
    }
}
