//! Integration tests: they drive the real `detc` binaries on config trees
//! written to temporary folders. Snapshots refresh with `SNAPSHOTS=overwrite`.

mod binaries;
mod check;
mod checkpoint;
mod conformance;
mod data;
mod eval;
mod expand;
mod pipeline;
mod run;
mod samplers;
mod schema;
mod summary;
mod train;
mod support;
