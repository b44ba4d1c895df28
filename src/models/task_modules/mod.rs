//! Task modules (`mmdet/models/task_modules`): the match costs, the
//! linear sum assignment solver and the `HungarianAssigner` of Sparse R-CNN
//! and QueryInst; the `AnchorGenerator`, `MaxIoUAssigner` and
//! `RandomSampler` of Faster / Mask R-CNN; the `ATSSAssigner` of ATSS; the
//! `MlvlPointGenerator` and `DynamicSoftLabelAssigner` of RTMDet; TOOD's
//! `TaskAlignedAssigner`; RepPoints' `PointAssigner`.
//!
//! Shape shorthand: `P` predictions (proposals) and `G` ground truths of one image, `C` classes.

// The RoI heads consume these; until they land the binary reads only part of them.
#![allow(dead_code, unused_imports)]

pub mod anchor_generator;
pub mod atss_assigner;
pub mod dynamic_soft_label_assigner;
pub mod hungarian;
pub mod hungarian_assigner;
#[cfg(test)]
mod legacy_tests;
pub mod libra_samplers;
pub mod match_costs;
pub mod max_iou_assigner;
pub mod point_assigner;
pub mod point_generator;
pub mod random_sampler;
pub mod pseudo_sampler;
pub mod sample_masks;
pub mod task_aligned_assigner;

pub use anchor_generator::{anchor_inside_flags, AnchorGenerator};
pub use hungarian::{linear_sum_assignment, LsaError};
pub use hungarian_assigner::{AssignResult, HungarianAssigner};
pub use match_costs::{BBoxL1Cost, FocalLossCost, IoUCost, MatchCost, MatchInputs};
pub use max_iou_assigner::MaxIoUAssigner;
pub use point_generator::MlvlPointGenerator;
pub use dynamic_soft_label_assigner::DynamicSoftLabelAssigner;
pub use random_sampler::RandomSampler;
pub use pseudo_sampler::{PseudoSampler, SamplingResult};
pub use sample_masks::{pseudo_sample_masks, SampledMasks};
