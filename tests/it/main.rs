//! Integration tests: they drive the real `detc` binaries on config trees
//! written to temporary folders. Snapshots refresh with `SNAPSHOTS=overwrite`.

mod amp;
mod bench;
mod binaries;
mod browse_dataset;
mod check;
mod code_rules;
mod checkpoint;
mod completions;
mod conformance;
mod convert;
mod ddp;
mod data;
mod eval;
mod infer;
mod expand;
mod faults;
mod kill_save;
mod launch;
mod pipeline;
mod preempt;
mod plot;
mod run;
mod samplers;
mod schema;
mod show_dir;
mod summary;
mod visualizer;
mod train;
mod train_iter;
mod two_stage;
mod support;
