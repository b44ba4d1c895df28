//! The engine: everything that runs tensors. Only the `detc-engine` binary
//! links it (feature `engine`).

pub mod env;
pub mod run;
pub mod summary;
