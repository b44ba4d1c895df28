//! detc: MMDetection-style configs, checked before a GPU is touched, and a
//! libtorch engine that trains them.
//!
//! This library is the compiler ([`config`], [`registry`], [`graph`]), the data
//! pipeline ([`data`]), COCO evaluation ([`evaluation`]), drawing detections
//! ([`visualization`]) and the light `detc` command line; it never depends on
//! tch. The parts that run tensors (`src/engine`, `src/models`) are compiled
//! into the `detc-engine` binary only, so nothing `detc` links can pull libtorch in.

pub mod config;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod dist;
pub mod evaluation;
pub mod graph;
pub mod registry;
pub mod visualization;
