//! Where a step's time goes inside its phases, for `detc bench` with
//! `DETC_PROFILE=1`: model code marks the end of named sections
//! ([`section`]); while profiling, each mark waits for the device and adds
//! the time since the previous mark to that section. Off (always in
//! training) a mark is one relaxed atomic load: no synchronisation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use indexmap::IndexMap;
use tch::Device;

static ON: AtomicBool = AtomicBool::new(false);

struct Sections {
    device: Device,
    last: Instant,
    seconds: IndexMap<&'static str, f64>,
}

static SECTIONS: Mutex<Option<Sections>> = Mutex::new(None);

/// Whether `DETC_PROFILE` asks for the section profile.
pub fn requested() -> bool {
    std::env::var("DETC_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Starts profiling on `device`; sections accumulate until [`finish`].
pub fn start(device: Device) {
    *SECTIONS.lock().unwrap_or_else(|e| e.into_inner()) = Some(Sections {
        device,
        last: Instant::now(),
        seconds: IndexMap::new(),
    });
    ON.store(true, Ordering::Relaxed);
}

/// Restarts the clock without recording (the start of a timed region).
pub fn restart() {
    if ON.load(Ordering::Relaxed) {
        if let Some(s) = SECTIONS.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            sync(s.device);
            s.last = Instant::now();
        }
    }
}

/// Ends the section `name` now (a no-op unless profiling).
pub fn section(name: &'static str) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    if let Some(s) = SECTIONS.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        sync(s.device);
        let now = Instant::now();
        *s.seconds.entry(name).or_insert(0.0) += (now - s.last).as_secs_f64();
        s.last = now;
    }
}

/// Stops profiling; returns each section's total seconds, in first-mark order.
pub fn finish() -> IndexMap<&'static str, f64> {
    ON.store(false, Ordering::Relaxed);
    SECTIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .map(|s| s.seconds)
        .unwrap_or_default()
}

fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}
