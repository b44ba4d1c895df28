//! Backbones (`mmdet/models/backbones`): image in, multi-scale feature maps out.

// The detectors consume these; until they land the binary reads only part of them.
#![allow(dead_code, unused_imports)]

pub mod resnet;

pub use resnet::ResNet;
