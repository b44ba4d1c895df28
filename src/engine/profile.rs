//! Where a step's time goes inside its phases, for `detc bench` with
//! `DETC_PROFILE=1`: model code marks the end of named sections
//! ([`section`]); while profiling, each mark waits for the device and adds
//! the time since the previous mark to that section, with the operators
//! dispatched and the host synchronisations among them
//! ([`native::op_count`]: on CUDA every operator is a launch from the host,
//! and a step short of GPU work is bounded by them). While `DETC_TRACE`
//! records a trace, each mark is also a `section: NAME` mark in it, with no
//! synchronisation. Off (always in training) a mark is two relaxed atomic
//! loads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use indexmap::IndexMap;
use tch::Device;

use crate::engine::native::op_count::{self, OpCounts};

static ON: AtomicBool = AtomicBool::new(false);
static TRACING: AtomicBool = AtomicBool::new(false);

struct Sections {
    device: Device,
    last: Instant,
    last_counts: OpCounts,
    profile: Profile,
}

/// Each section's totals, in first-mark order.
#[derive(Debug, Default)]
pub struct Profile {
    pub seconds: IndexMap<&'static str, f64>,
    pub counts: IndexMap<&'static str, OpCounts>,
}

impl Profile {
    pub fn is_empty(&self) -> bool {
        self.seconds.is_empty()
    }
}

static SECTIONS: Mutex<Option<Sections>> = Mutex::new(None);

/// Whether `DETC_PROFILE` asks for the section profile.
pub fn requested() -> bool {
    std::env::var("DETC_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Starts profiling on `device`; sections accumulate until [`finish`].
pub fn start(device: Device) {
    // Without the counter the sections still have their times.
    let _ = op_count::start();
    *SECTIONS.lock().unwrap_or_else(|e| e.into_inner()) = Some(Sections {
        device,
        last: Instant::now(),
        last_counts: op_count::read(),
        profile: Profile::default(),
    });
    ON.store(true, Ordering::Relaxed);
}

/// Restarts the clock without recording (the start of a timed region).
pub fn restart() {
    if ON.load(Ordering::Relaxed) {
        if let Some(s) = SECTIONS.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            sync(s.device);
            s.last = Instant::now();
            s.last_counts = op_count::read();
        }
    }
}

/// Whether [`section`] marks the trace being recorded.
pub fn mark_trace(on: bool) {
    TRACING.store(on, Ordering::Relaxed);
}

/// Ends the section `name` now (a no-op unless profiling or tracing).
pub fn section(name: &'static str) {
    if TRACING.load(Ordering::Relaxed) {
        crate::engine::native::trace::mark(name);
    }
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    if let Some(s) = SECTIONS.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        sync(s.device);
        let now = Instant::now();
        let counts = op_count::read();
        *s.profile.seconds.entry(name).or_insert(0.0) += (now - s.last).as_secs_f64();
        *s.profile.counts.entry(name).or_default() += counts - s.last_counts;
        s.last = now;
        s.last_counts = counts;
    }
}

/// Stops profiling; returns each section's totals.
pub fn finish() -> Profile {
    ON.store(false, Ordering::Relaxed);
    let _ = op_count::stop();
    SECTIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .map(|s| s.profile)
        .unwrap_or_default()
}

fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}
