//! Where a run writes: MMDetection's `tools/train.py` / `tools/test.py` rule.

use std::path::{Path, PathBuf};

/// The work dir: `cli` (`--work-dir`) if given, else the config's `work_dir`,
/// else `./work_dirs/<stem of config_path>` (mmdet's `tools/train.py`).
pub fn resolve(cli: Option<&Path>, config_work_dir: Option<&str>, config_path: &Path) -> PathBuf {
    if let Some(dir) = cli {
        return dir.to_path_buf();
    }
    if let Some(dir) = config_work_dir {
        return PathBuf::from(dir);
    }
    let stem = config_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Path::new("./work_dirs").join(stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_then_config_then_config_stem() {
        let cfg = Path::new("configs/queryinst/queryinst_r50_fpn_1x_coco.yaml");
        assert_eq!(
            resolve(None, None, cfg),
            Path::new("./work_dirs/queryinst_r50_fpn_1x_coco")
        );
        assert_eq!(resolve(None, Some("w"), cfg), Path::new("w"));
        assert_eq!(
            resolve(Some(Path::new("c")), Some("w"), cfg),
            Path::new("c")
        );
    }
}
