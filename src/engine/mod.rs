//! The engine: everything that runs tensors. Only the `detc-engine` binary
//! links it (feature `engine`).

pub mod checkpoint_hook;
pub mod data;
pub mod dist;
pub mod ema;
pub mod env;
pub mod evaluate;
pub mod hooks;
pub mod infer;
pub mod logging;
pub mod memory_format;
pub mod native;
pub mod optim;
pub mod preempt;
pub mod profile;
pub mod run;
pub mod runner;
pub mod schedulers;
pub mod summary;
pub mod test_loop;
pub mod work_dir;
