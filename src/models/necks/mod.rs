//! Necks (`mmdet/models/necks`): backbone feature maps in, fused pyramid out.

// The detectors consume these; until they land the binary reads only part of them.
#![allow(dead_code, unused_imports)]

pub mod fpn;

pub use fpn::FPN;
