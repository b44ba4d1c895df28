//! Rules on the code itself. The library (`src/`, without the engine and
//! the models) reads what users hand over — configs, `--cfg-options`,
//! datasets, images, checkpoints — so none of its non-test code may
//! `.unwrap()`; an `.expect("…")` is allowed for an invariant of the code,
//! which its message states. Bad input must end in an error that says what
//! to do (the property tests in `tests/fuzz` throw random input at it).

use crate::support::root;

const CHECKED: &[&str] = &[
    "src/config",
    "src/registry",
    "src/graph",
    "src/data",
    "src/checkpoint",
    "src/cli",
    "src/dist",
    "src/evaluation",
    "src/visualization",
];

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            // A unit-test module in a file of its own (`foo_tests.rs`, declared
            // `#[cfg(test)] mod` by its parent) is all test code.
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !(name.ends_with("_tests.rs") || name.ends_with("_test_support.rs")) {
                out.push(path);
            }
        }
    }
}

#[test]
fn no_unwrap_and_no_unexplained_expect_outside_tests() {
    let mut files = vec![];
    for dir in CHECKED {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 50, "{} files", files.len());
    let mut found = vec![];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // The unit tests: a `#[cfg(test)] mod …` and everything after it.
        let end = text
            .match_indices("#[cfg(test)]")
            .find(|(at, m)| text[at + m.len()..].trim_start().starts_with("mod "))
            .map_or(text.len(), |(at, _)| at);
        for (n, line) in text[..end].lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let bare_expect = code.match_indices(".expect(").any(|(at, m)| !code[at + m.len()..].starts_with('"'));
            if code.contains(".unwrap()") || bare_expect {
                let relative = file.strip_prefix(root()).unwrap_or(&file).display().to_string();
                found.push(format!("{relative}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "return an error that says what to do instead (or `.expect(\"<the invariant>\")`):\n{}",
        found.join("\n")
    );
}
