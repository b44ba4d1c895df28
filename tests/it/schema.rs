//! `schema/detc.schema.json` is `detc schema`'s output, checked in, and
//! `docs/config-reference.md` is `detc schema --format markdown`'s.

use crate::support::{detc, root};

/// `detc ARGS`'s output equals the checked-in file `path` (rewritten with `SNAPSHOTS=overwrite`).
fn assert_checked_in_output(args: &[&str], path: &str) {
    let out = detc(&root())
        .args(args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let current = String::from_utf8(out).unwrap();
    let file = root().join(path);
    if std::env::var_os("SNAPSHOTS").is_some_and(|v| v == "overwrite") {
        std::fs::write(&file, &current).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        stored == current,
        "{path} is stale: run `cargo run --bin detc -- {} > {path}`",
        args.join(" ")
    );
}

#[test]
fn checked_in_schema_is_fresh() {
    assert_checked_in_output(&["schema"], "schema/detc.schema.json");
}

#[test]
fn config_reference_is_current() {
    assert_checked_in_output(
        &["schema", "--format", "markdown"],
        "docs/config-reference.md",
    );
}

#[test]
fn schema_is_draft_2020_12_and_names_every_component() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schema/detc.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let backbones = schema["$defs"]["Backbone"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap();
    assert!(backbones.iter().any(|b| b == "ResNet"));
}

#[test]
fn bundled_configs_point_at_the_schema() {
    for entry in walk(&root().join("configs")) {
        let text = std::fs::read_to_string(&entry).unwrap();
        let first = text.lines().next().unwrap_or("");
        assert!(
            first.starts_with("# yaml-language-server: $schema=")
                && first.ends_with("schema/detc.schema.json"),
            "{} lacks the schema line",
            entry.display()
        );
        let rel = first.trim_start_matches("# yaml-language-server: $schema=");
        assert!(
            entry.parent().unwrap().join(rel).exists(),
            "{}: {rel} does not exist",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
    out
}

/// An independent validator (Python `jsonschema`) accepts every bundled file
/// alone against the checked-in schema and rejects typical typos.
#[test]
fn outside_validator_agrees() {
    let out = std::process::Command::new(crate::support::python())
        .arg(root().join("tests/mmengine/validate_schema.py"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
