//! detc: MMDetection-style configs, checked before a GPU is touched, and a
//! libtorch engine that trains them.
//!
//! The compiler ([`config`], [`registry`], [`graph`]) never depends on tch;
//! the `engine` feature adds the parts that do.

pub mod config;
pub mod cli;
pub mod graph;
pub mod registry;
#[cfg(feature = "engine")]
pub mod engine;
