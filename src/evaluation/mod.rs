//! COCO evaluation without tensors: pycocotools' mask API ([`mask`]) and
//! `COCOeval` ([`cocoeval`]), and MMDetection's `CocoMetric` on top ([`metric`]).

pub mod cocoeval;
pub mod mask;
pub mod metric;
