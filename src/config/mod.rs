//! The config compiler: YAML/JSON files with `_base_` inheritance, `_delete_`,
//! `{{_base_.x}}` references and `--cfg-options` overrides, resolved into one
//! spanned value tree exactly as MMEngine's `Config.fromfile` +
//! `merge_from_dict` would, with diagnostics that point at the file that set a
//! value. This module does not depend on tch, and must not.

pub mod diagnostic;
pub mod emit;
pub mod inherit;
pub mod merge;
pub mod overrides;
mod placeholders;
pub mod source;
pub mod value;
pub mod yaml;
mod yaml_fast;

use std::path::Path;

use diagnostic::Result;
use source::Sources;
use value::Node;

/// Resolves `path` (its `_base_` files, references and `--cfg-options`) into one
/// tree, as MMEngine's `Config.fromfile(path)` + `merge_from_dict(options)`.
/// The sources are returned even on error, to render the diagnostics.
pub fn resolve(path: &Path, options: &[String]) -> (Sources, Result<Node>) {
    let mut sources = Sources::default();
    let result = resolve_into(path, options, &mut sources);
    (sources, result)
}

fn resolve_into(path: &Path, options: &[String], sources: &mut Sources) -> Result<Node> {
    // Parse the options first so a typo in them is reported even when a file is also wrong.
    let overrides = overrides::parse_all(options, sources);
    let tree = inherit::load(path, sources);
    match (tree, overrides) {
        (Ok(tree), Ok(overrides)) => overrides::apply(tree, overrides),
        (Err(mut a), Err(b)) => {
            a.extend(b);
            Err(a)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}
