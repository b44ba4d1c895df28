//! Integration tests: they drive the real `detc` binaries on config trees
//! written to temporary folders. Snapshots refresh with `SNAPSHOTS=overwrite`.

mod binaries;
mod check;
mod conformance;
mod expand;
mod run;
mod schema;
mod support;
