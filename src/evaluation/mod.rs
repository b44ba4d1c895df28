//! COCO evaluation without tensors: pycocotools' mask API ([`mask`]), COCO
//! files as pycocotools reads them ([`coco`]), `COCOeval` ([`cocoeval`]), and
//! MMDetection's `CocoMetric` on top ([`metric`]), with its `proposal_fast`
//! recall ([`recall`]).

mod accumulate;
pub mod coco;
mod coco_json;
pub mod cocoeval;
pub mod mask;
pub mod metric;
pub mod pack;
pub mod recall;
mod summarize;
