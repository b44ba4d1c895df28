//! The dataloaders' pipelines of a resolved config, built without running
//! them, so that `detc check` reports what the transforms refuse (a crop
//! size MMDetection asserts against, `RandomChoice` probabilities that do not
//! sum to 1, polygon masks before `RandomCrop`, ...) at the transform in the
//! file, as it reports schema errors, instead of the engine at its start.

use serde_json::Value as Json;

use super::transforms::Pipeline;
use crate::config::diagnostic::{Diagnostic, Diagnostics};
use crate::config::value::{Node, Value};

/// The `CocoDataset` sections of the dataloader section `loader` and their
/// config paths: the dataset itself, or the datasets a wrapper holds
/// (`RepeatDataset`'s and `ClassBalancedDataset`'s `dataset`,
/// `ConcatDataset`'s `datasets`), in index order.
pub fn loader_datasets<'a>(config: &'a Node, loader: &str) -> Vec<(&'a Node, String)> {
    match config.at_path(&[loader, "dataset"]) {
        Some(dataset) => leaves(dataset, format!("{loader}.dataset")),
        None => vec![],
    }
}

fn leaves(dataset: &Node, path: String) -> Vec<(&Node, String)> {
    match dataset.at_path(&["type"]).and_then(Node::as_str) {
        Some("RepeatDataset" | "ClassBalancedDataset") => match dataset.at_path(&["dataset"]) {
            Some(inner) => leaves(inner, format!("{path}.dataset")),
            None => vec![],
        },
        Some("ConcatDataset") => match dataset.at_path(&["datasets"]).map(|d| &d.value) {
            Some(Value::List(items)) => items
                .iter()
                .enumerate()
                .flat_map(|(i, d)| leaves(d, format!("{path}.datasets.{i}")))
                .collect(),
            _ => vec![],
        },
        _ => vec![(dataset, path)],
    }
}

/// One diagnostic per dataset whose pipeline does not build, and per
/// dataset wrapper in an evaluation dataloader.
pub fn check(config: &Node) -> Diagnostics {
    let mut errors = vec![];
    for loader in ["val_dataloader", "test_dataloader"] {
        // The evaluation matches predictions to one annotation file's images.
        let Some(wrapper) = config.at_path(&[loader, "dataset", "type"]) else { continue };
        if let Some(name @ ("RepeatDataset" | "ClassBalancedDataset" | "ConcatDataset")) = wrapper.as_str() {
            errors.push(
                Diagnostic::error("detc::data::wrapper", format!("{loader}.dataset: a {name} cannot be evaluated"))
                    .label(wrapper.span, "a dataset wrapper")
                    .help("evaluate on the CocoDataset itself: CocoMetric scores each image of its `ann_file` once"),
            );
        }
    }
    for loader in ["train_dataloader", "val_dataloader", "test_dataloader"] {
        for (dataset, path) in loader_datasets(config, loader) {
            errors.extend(check_pipeline(dataset.at_path(&["pipeline"]), &path));
        }
    }
    errors.extend(check_switch_pipelines(config));
    errors
}

/// `PipelineSwitchHook`s of `custom_hooks`: the pipeline each switches to,
/// and a training dataset it can switch (MMDetection sets the pipeline of
/// `train_dataloader.dataset` itself, which a wrapper never runs).
fn check_switch_pipelines(config: &Node) -> Diagnostics {
    let Some(Value::List(hooks)) = config.at_path(&["custom_hooks"]).map(|n| &n.value) else { return vec![] };
    let mut errors = vec![];
    for (i, hook) in hooks.iter().enumerate() {
        let Some(ty) = hook.at_path(&["type"]).filter(|t| t.as_str() == Some("PipelineSwitchHook")) else { continue };
        errors.extend(check_pipeline(hook.at_path(&["switch_pipeline"]), &format!("custom_hooks.{i}.switch_pipeline")));
        let wrapper = config.at_path(&["train_dataloader", "dataset", "type"]).and_then(Node::as_str);
        if let Some(name @ ("RepeatDataset" | "ClassBalancedDataset" | "ConcatDataset")) = wrapper {
            errors.push(
                Diagnostic::error("detc::data::wrapper", format!("custom_hooks.{i}: PipelineSwitchHook cannot switch the pipeline of a {name}"))
                    .label(ty.span, "switches `train_dataloader.dataset.pipeline`")
                    .help("MMDetection sets the wrapper's own `pipeline`, which it never runs: put the CocoDataset in train_dataloader directly"),
            );
        }
    }
    errors
}

fn check_pipeline(pipeline: Option<&Node>, path: &str) -> Option<Diagnostic> {
    let pipeline = pipeline?;
    let Value::List(items) = &pipeline.value else { return None };
    let transforms: Vec<Json> = items.iter().map(Node::to_json).collect();
    let (index, e) = Pipeline::check(&transforms).err()?;
    // The transform's `type` line (the whole transform may be long).
    let (span, what) = match index.and_then(|i| items.get(i)) {
        Some(node) => (node.at_path(&["type"]).unwrap_or(node).span, "this transform"),
        None => (pipeline.span, "this pipeline"),
    };
    Some(
        Diagnostic::error("detc::data::pipeline", format!("{path}: {}", e.message))
            .label(span, format!("{what} cannot be built")),
    )
}
