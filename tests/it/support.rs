//! Shared helpers: temporary config trees and the `detc` command.

use std::path::{Path, PathBuf};

use snapbox::cmd::Command;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary folder holding `files` (path, content).
pub fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, content) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content.replace("[ROOT]", root().to_str().unwrap())).unwrap();
    }
    dir
}

/// `detc` run in `dir`, with output redacted so snapshots hold `[ROOT]`.
pub fn detc(dir: &Path) -> Command {
    Command::new(snapbox::cmd::cargo_bin!("detc"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .with_assert(assert())
}

pub fn assert() -> snapbox::Assert {
    let mut redactions = snapbox::Redactions::new();
    redactions.insert("[ROOT]", root()).unwrap();
    snapbox::Assert::new().action_env("SNAPSHOTS").redact_with(redactions)
}
