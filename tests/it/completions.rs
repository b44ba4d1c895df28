//! `detc completions`: a bash script that bash loads and that completes
//! every subcommand and flag; an unknown shell is a usage error.

use std::process::Command;

use crate::support::detc;

#[test]
fn bash_loads_the_completion_script() {
    let script = detc(std::path::Path::new("."))
        .args(["completions", "bash"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let script = String::from_utf8(script).unwrap();
    for word in [
        "plot",
        "run",
        "completions",
        "--cfg-options",
        "--resume",
        "--keys",
    ] {
        assert!(script.contains(word), "`{word}` is not completed");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("detc.bash");
    std::fs::write(&file, &script).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p detc", file.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("detc"));

    detc(std::path::Path::new("."))
        .args(["completions", "tcsh"])
        .assert()
        .code(2);
}
