//! The work dir layout of DESIGN.md, as MMEngine lays it out:
//!
//! ```text
//! work_dir/                       CLI --work-dir > config `work_dir` > ./work_dirs/<config stem>
//!   <config stem>.<ext>           the resolved config
//!   last_checkpoint               one line: the path of the newest checkpoint
//!   epoch_N.pth | iter_N.pth      checkpoints (CheckpointHook)
//!   <YYYYmmdd_HHMMSS>/            this run's log dir (local time at start)
//!     <YYYYmmdd_HHMMSS>.log       the text log
//!     vis_data/scalars.json       one JSON record per log interval
//!     vis_data/config.py          the config again, as Python (LocalVisBackend's
//!                                 `config_save_file`; logging::RunLog::add_config)
//!     vis_data/vis_image/         drawn predictions (DetVisualizationHook, `draw: true`)
//! ```
//!
//! Local time comes from libc's `localtime_r`, declared here, because the
//! crate has no time dependency and this is the only place that needs one.

// The runner wires these in; until it lands the binary reads only part of them.
#![allow(dead_code)]

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A broken-down local time (what `time.localtime()` gives MMEngine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// e.g. 2026.
    pub year: i32,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
    /// 0–23.
    pub hour: u32,
    /// 0–59.
    pub minute: u32,
    /// 0–60.
    pub second: u32,
}

/// glibc's and the BSDs' `struct tm` (the same on every 64-bit Unix we build for).
#[repr(C)]
struct Tm {
    tm_sec: i32,
    tm_min: i32,
    tm_hour: i32,
    tm_mday: i32,
    tm_mon: i32,
    tm_year: i32,
    tm_wday: i32,
    tm_yday: i32,
    tm_isdst: i32,
    tm_gmtoff: i64,
    tm_zone: *const std::ffi::c_char,
}

extern "C" {
    fn localtime_r(time: *const i64, out: *mut Tm) -> *mut Tm;
}

impl LocalTime {
    /// The local time now (UTC if the C library cannot tell).
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Self::from_unix(secs)
    }

    /// The local time at `secs` since the Unix epoch.
    pub fn from_unix(secs: i64) -> Self {
        let mut tm = Tm {
            tm_sec: 0,
            tm_min: 0,
            tm_hour: 0,
            tm_mday: 1,
            tm_mon: 0,
            tm_year: 70,
            tm_wday: 0,
            tm_yday: 0,
            tm_isdst: 0,
            tm_gmtoff: 0,
            tm_zone: std::ptr::null(),
        };
        // SAFETY: both pointers are valid for the call; localtime_r is the
        // thread-safe variant and writes only into `tm`.
        let ok = unsafe { !localtime_r(&secs, &mut tm).is_null() };
        if !ok {
            return Self::utc(secs);
        }
        LocalTime {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec as u32,
        }
    }

    /// UTC civil time (Howard Hinnant's days-to-civil), the fallback.
    fn utc(secs: i64) -> Self {
        let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        LocalTime {
            year,
            month,
            day,
            hour: (rest / 3600) as u32,
            minute: (rest % 3600 / 60) as u32,
            second: (rest % 60) as u32,
        }
    }

    /// `time.strftime('%Y%m%d_%H%M%S')`: the run's timestamp.
    pub fn timestamp(&self) -> String {
        format!(
            "{:04}{:02}{:02}_{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// One run's folders inside the work dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkDir {
    /// The work dir itself.
    pub root: PathBuf,
    /// `YYYYmmdd_HHMMSS` of this run (rank 0's, shared with the other ranks).
    pub timestamp: String,
}

impl WorkDir {
    /// Creates `root/<timestamp>/vis_data` (and everything above it).
    pub fn create(root: &Path, timestamp: &str) -> io::Result<Self> {
        let dir = WorkDir {
            root: root.to_path_buf(),
            timestamp: timestamp.to_string(),
        };
        fs::create_dir_all(dir.vis_dir())?;
        Ok(dir)
    }

    /// `root/<ts>`: MMEngine's `log_dir`.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join(&self.timestamp)
    }

    /// `root/<ts>/<ts>.log`.
    pub fn log_file(&self) -> PathBuf {
        self.log_dir().join(format!("{}.log", self.timestamp))
    }

    /// `root/<ts>/vis_data`.
    pub fn vis_dir(&self) -> PathBuf {
        self.log_dir().join("vis_data")
    }

    /// `root/<ts>/vis_data/scalars.json`.
    pub fn scalars_file(&self) -> PathBuf {
        self.vis_dir().join("scalars.json")
    }

    /// `root/last_checkpoint`.
    pub fn last_checkpoint_file(&self) -> PathBuf {
        self.root.join(LAST_CHECKPOINT)
    }

    /// Writes the resolved config as `root/<stem>.<ext>` (`Runner.dump_config`)
    /// and returns its path.
    pub fn dump_config(&self, stem: &str, ext: &str, text: &str) -> io::Result<PathBuf> {
        let main = self.root.join(format!("{stem}.{ext}"));
        write_atomic(&main, text.as_bytes())?;
        Ok(main)
    }
}

/// The file in the work dir naming the newest checkpoint.
pub const LAST_CHECKPOINT: &str = "last_checkpoint";

/// `find_latest_checkpoint`: the path in `work_dir/last_checkpoint`, or `None`
/// when there is none (MMEngine then trains from scratch).
pub fn latest_checkpoint(work_dir: &Path) -> io::Result<Option<PathBuf>> {
    match fs::read_to_string(work_dir.join(LAST_CHECKPOINT)) {
        Ok(text) => {
            Ok(Some(PathBuf::from(text.trim()))).map(|p| p.filter(|p| !p.as_os_str().is_empty()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder
/// (`.<name>.tmp<pid>`, the checkpoint writer's naming), fsync and rename, so
/// readers see the old file or the whole new one; then deletes the
/// temporary files of `path` that a killed writer left.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    match result {
        Ok(()) => detc::checkpoint::remove_abandoned_temps(path),
        Err(_) => {
            let _ = fs::remove_file(&tmp);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = WorkDir::create(tmp.path(), "20261128_120000").unwrap();
        assert_eq!(
            dir.log_file(),
            tmp.path().join("20261128_120000/20261128_120000.log")
        );
        assert_eq!(
            dir.scalars_file(),
            tmp.path().join("20261128_120000/vis_data/scalars.json")
        );
        assert!(dir.vis_dir().is_dir());
        assert_eq!(
            dir.dump_config("demo", "yaml", "a: 1\n").unwrap(),
            tmp.path().join("demo.yaml")
        );
        assert_eq!(latest_checkpoint(tmp.path()).unwrap(), None);
        write_atomic(&dir.last_checkpoint_file(), b"/x/epoch_2.pth").unwrap();
        assert_eq!(
            latest_checkpoint(tmp.path()).unwrap(),
            Some(PathBuf::from("/x/epoch_2.pth"))
        );
    }

    /// A `last_checkpoint` write killed before its rename leaves
    /// `.last_checkpoint.tmp<pid>`; the next write replaces the file and
    /// deletes that leftover.
    #[test]
    #[cfg(target_os = "linux")] // the liveness of a pid comes from /proc
    fn write_atomic_deletes_a_killed_writers_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join(LAST_CHECKPOINT);
        let stale = tmp.path().join(".last_checkpoint.tmp4194305");
        fs::write(&stale, b"/x/iter_").unwrap();
        write_atomic(&target, b"/x/iter_3.pth").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "/x/iter_3.pth");
        assert!(!stale.exists());
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, [LAST_CHECKPOINT]);
    }

    /// Against `date -u` semantics: the UTC fallback's civil calendar.
    #[test]
    fn utc_calendar() {
        let t = LocalTime::utc(1_795_867_200); // 2026-11-28T12:00:00Z
        assert_eq!(t.timestamp(), "20261128_120000");
        assert_eq!(LocalTime::utc(951_782_400).timestamp(), "20000229_000000");
        assert_eq!(LocalTime::now().timestamp().len(), 15);
    }
}
