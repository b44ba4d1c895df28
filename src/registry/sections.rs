//! Top-level sections that only work together: MMEngine's `Runner` takes
//! `train_dataloader`, `train_cfg` and `optim_wrapper` all or none (and so
//! `val_*` and `test_*`), and refuses a partial set when it is built. Checked
//! here so that a config missing `val_evaluator` fails at `detc check`, not
//! by training without validation.

use crate::config::diagnostic::{Diagnostic, Result};
use crate::config::value::{Node, Value};

/// The three sections of each loop, in MMEngine's order.
const LOOPS: [[&str; 3]; 3] = [
    ["train_dataloader", "train_cfg", "optim_wrapper"],
    ["val_dataloader", "val_cfg", "val_evaluator"],
    ["test_dataloader", "test_cfg", "test_evaluator"],
];

/// Every loop whose sections are partly set (null counts as unset).
pub fn check(tree: &Node) -> Result<()> {
    let Value::Map(root) = &tree.value else { return Ok(()) };
    let mut errors = vec![];
    for keys in LOOPS {
        let set: Vec<_> = keys
            .iter()
            .filter_map(|k| root.entry(k).filter(|e| !matches!(e.node.value, Value::Null)).map(|e| (*k, e)))
            .collect();
        if set.is_empty() || set.len() == keys.len() {
            continue;
        }
        let missing: Vec<&str> = keys.iter().copied().filter(|k| !set.iter().any(|(s, _)| s == k)).collect();
        let verb = if missing.len() == 1 { "is" } else { "are" };
        let mut diag = Diagnostic::error(
            "detc::check::incomplete_loop",
            format!("{} go together, but {} {verb} not set", names(&keys), names(&missing)),
        );
        // The first section that is set (more labels in one file would show
        // every line between them), and where a missing one was made null.
        let (key, entry) = set[0];
        diag = diag.label(entry.key_span, format!("`{key}` is set here"));
        for key in &missing {
            if let Some(entry) = root.entry(key) {
                diag = diag.label(entry.node.span, format!("`{key}` is null here"));
            }
        }
        errors.push(diag.help(format!(
            "set {} too, or set {} to null (MMEngine's Runner refuses a partial set)",
            names(&missing),
            names(&set.iter().map(|(k, _)| *k).collect::<Vec<_>>())
        )));
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// "`a`", "`a` and `b`", "`a`, `b` and `c`".
fn names(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}
