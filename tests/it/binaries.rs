//! The two-binary split: `detc` must not link libtorch (it starts in
//! milliseconds); `detc-engine` must keep `libtorch_cuda.so` so CUDA is found.

use std::process::Command;

fn needed(binary: &str) -> Vec<String> {
    let out = Command::new("readelf").arg("-d").arg(binary).output().expect("readelf runs");
    assert!(out.status.success(), "readelf failed on {binary}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1).map(|s| s.trim_end_matches(']').to_string()))
        .collect()
}

#[test]
fn detc_does_not_link_libtorch() {
    let libs = needed(env!("CARGO_BIN_EXE_detc"));
    assert!(!libs.iter().any(|l| l.contains("torch") || l.contains("c10")), "detc links {libs:?}");
}

#[test]
fn engine_links_libtorch_cuda() {
    let libs = needed(env!("CARGO_BIN_EXE_detc-engine"));
    assert!(libs.iter().any(|l| l == "libtorch_cuda.so"), "detc-engine NEEDED: {libs:?}");
    assert!(libs.iter().any(|l| l == "libtorch_cpu.so"), "detc-engine NEEDED: {libs:?}");
}

#[test]
fn engine_runs_without_ld_library_path() {
    let out = Command::new(env!("CARGO_BIN_EXE_detc-engine"))
        .arg("env")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("engine starts");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["libtorch_version"].as_str().unwrap().split('+').next(), Some("2.11.0"));
    assert!(report["cuda_available"].is_boolean());
}

#[test]
fn detc_env_reports_through_the_engine() {
    let out = Command::new(env!("CARGO_BIN_EXE_detc"))
        .arg("env")
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"libtorch_version\""), "{text}");
}
