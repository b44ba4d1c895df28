//! Multi-process training: the launcher and supervisor that `detc run --gpus N`
//! (or `--nproc N`, `--launcher pytorch|slurm`) uses to start one `detc-engine`
//! per worker and watch them. No tch here: the workers join PyTorch's c10d
//! process group themselves from torchrun's environment variables, which this
//! module sets (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`,
//! `MASTER_ADDR`, `MASTER_PORT`, `GROUP_RANK`).
//!
//! - [`ports`] binds the rendezvous port on the master node, falling back to a
//!   free port when the default one is taken, and hands the bound socket to
//!   rank 0 (`DETC_MASTER_LISTEN_FD`) so no other job can take it meanwhile.
//! - [`launch`] computes each worker's environment (from the command line, or
//!   from torchrun's or Slurm's variables) and spawns the workers.
//! - [`supervise`] forwards their stderr, and stops the whole job when one
//!   worker fails or the launcher is interrupted, so no worker is left behind.
//! - [`slurm`] reads Slurm's variables, including its compressed host lists.

pub mod launch;
pub mod ports;
pub mod slurm;
pub mod supervise;

pub use launch::{run, Engine, Plan, Topology, WorkerEnv};
pub use ports::{bind_master, Bound, PortError, PortRule, DEFAULT_PORT};
pub use supervise::{Outcome, Workers};
