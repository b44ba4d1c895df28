//! The dataloaders' pipelines of a resolved config, built without running
//! them, so that `detc check` reports what the transforms refuse (a crop
//! size MMDetection asserts against, `RandomChoice` probabilities that do not
//! sum to 1, polygon masks before `RandomCrop`, ...) at the transform in the
//! file, as it reports schema errors, instead of the engine at its start.

use serde_json::Value as Json;

use super::transforms::Pipeline;
use crate::config::diagnostic::{Diagnostic, Diagnostics};
use crate::config::value::{Node, Value};

/// The dataset of the dataloader section `loader` and its config path; a
/// wrapper's (RepeatDataset, ClassBalancedDataset) inner `dataset`.
pub fn loader_dataset<'a>(config: &'a Node, loader: &str) -> Option<(&'a Node, String)> {
    let mut dataset = config.at_path(&[loader, "dataset"])?;
    let mut path = format!("{loader}.dataset");
    while let Some(inner) = dataset.at_path(&["dataset"]) {
        dataset = inner;
        path.push_str(".dataset");
    }
    Some((dataset, path))
}

/// One diagnostic per dataloader whose pipeline does not build.
pub fn check(config: &Node) -> Diagnostics {
    let mut errors = vec![];
    for loader in ["train_dataloader", "val_dataloader", "test_dataloader"] {
        let Some((dataset, path)) = loader_dataset(config, loader) else { continue };
        let Some(pipeline) = dataset.at_path(&["pipeline"]) else { continue };
        let Value::List(items) = &pipeline.value else { continue };
        let transforms: Vec<Json> = items.iter().map(Node::to_json).collect();
        if let Err((index, e)) = Pipeline::check(&transforms) {
            // The transform's `type` line (the whole transform may be long).
            let (span, what) = match index.and_then(|i| items.get(i)) {
                Some(node) => (node.at_path(&["type"]).unwrap_or(node).span, "this transform"),
                None => (pipeline.span, "this pipeline"),
            };
            errors.push(
                Diagnostic::error("detc::data::pipeline", format!("{path}: {}", e.message))
                    .label(span, format!("{what} cannot be built")),
            );
        }
    }
    errors
}
