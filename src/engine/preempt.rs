//! Preemption: SIGTERM (what Slurm and Kubernetes send before they kill a
//! job) asks the run to stop at the end of the current iteration, with a
//! checkpoint of that position, instead of dying mid-step. The handler only
//! sets a flag; the train step reads it, and with several processes the
//! flag travels with the step's loss all-reduce, so every rank stops after
//! the same iteration.

use std::sync::atomic::{AtomicBool, Ordering};

/// The exit code of a run stopped this way (DESIGN.md's exit codes).
pub use detc::cli::EXIT_PREEMPTED;

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Makes SIGTERM request a stop instead of ending the process.
pub fn install() {
    let handler = on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether this process got SIGTERM.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
