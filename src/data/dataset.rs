//! A dataloader's dataset as MMEngine builds it: a [`CocoDataset`], or one of
//! MMEngine's wrappers around datasets — `RepeatDataset` (MMDetection's 3x
//! schedules), `ClassBalancedDataset` (repeat factor sampling) and
//! `ConcatDataset` (several annotation files trained as one).
//!
//! A wrapper only maps its indices to those of the datasets it holds; each
//! `CocoDataset` (a *leaf*) keeps its own config and pipeline. The loader
//! asks [`Dataset::locate`] which leaf and record an index is, and re-draws a
//! dropped sample inside that leaf ([`Dataset::redraw`]), as each dataset's
//! own `__getitem__` re-fetches in MMEngine.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::coco::CocoDataset;
use super::{DataError, DataInfo, DataResult, SampleRng};

/// One `CocoDataset` of the tree, with its config section (for its pipeline,
/// `test_mode`, `max_refetch`, ...) and where that section is in the config.
pub struct Leaf {
    pub data: CocoDataset,
    pub config: Value,
    /// Config path below the dataloader, e.g. `dataset.dataset`.
    pub path: String,
}

/// The dataset of a dataloader: its leaves and how indices map onto them.
pub struct Dataset {
    leaves: Vec<Leaf>,
    root: Tree,
}

enum Tree {
    Leaf(usize),
    /// `index % inner.len()`.
    Repeat { inner: Box<Tree>, times: usize },
    /// The inner dataset's records, each repeated by its class repeat factor.
    Balanced { inner: Box<Tree>, indices: Vec<usize> },
    /// The parts one after another; `ends[i]` is the cumulative length up to part i.
    Concat { parts: Vec<Tree>, ends: Vec<usize> },
}

impl Dataset {
    /// Builds the dataset section of a dataloader (paths relative to
    /// `base_dir`), loading every annotation file. `path` names the section in
    /// errors, e.g. `train_dataloader.dataset`.
    pub fn from_config(cfg: &Value, base_dir: &Path, path: &str) -> DataResult<Dataset> {
        let mut leaves = vec![];
        let root = build(cfg, base_dir, path, &mut leaves)?;
        let classes = leaves[0].data.classes();
        if let Some(other) = leaves.iter().find(|l| l.data.classes() != classes) {
            return Err(DataError::new(format!(
                "{}: its classes {:?} differ from {}'s {:?}; the datasets of a ConcatDataset must share their classes (set the same `metainfo.classes` on each)",
                other.path,
                other.data.classes(),
                leaves[0].path,
                classes
            )));
        }
        Ok(Dataset { leaves, root })
    }

    /// Number of samples (`len(dataset)`).
    pub fn len(&self) -> usize {
        self.root.len(&self.leaves)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which leaf (its number in [`Self::leaves`]) and which of its records
    /// sample `index` is (panics when out of range, like a slice).
    pub fn locate(&self, index: usize) -> (usize, usize) {
        self.root.locate(index, &self.leaves)
    }

    /// The record of sample `index`.
    pub fn get(&self, index: usize) -> Arc<DataInfo> {
        let (leaf, record) = self.locate(index);
        self.leaves[leaf].data.get(record)
    }

    /// `(width, height)` of sample `index`, for `AspectRatioBatchSampler`.
    pub fn image_size(&self, index: usize) -> (u32, u32) {
        let (leaf, record) = self.locate(index);
        self.leaves[leaf].data.image_size(record)
    }

    /// Class names, the same for every leaf.
    pub fn classes(&self) -> &[String] {
        self.leaves[0].data.classes()
    }

    pub fn leaves(&self) -> &[Leaf] {
        &self.leaves
    }

    /// The `CocoDataset` itself when the section is not a wrapper.
    pub fn as_coco(&self) -> Option<&CocoDataset> {
        match self.root {
            Tree::Leaf(i) => Some(&self.leaves[i].data),
            _ => None,
        }
    }

    /// Another sample in place of `index`, whose pipeline dropped it: a record
    /// drawn uniformly from the same leaf, as MMEngine's `BaseDataset`
    /// re-fetches inside itself whatever wraps it.
    pub fn redraw(&self, index: usize, rng: &mut SampleRng) -> usize {
        use rand::Rng;
        let (leaf, _) = self.locate(index);
        let record = rng.random_range(0..self.leaves[leaf].data.len());
        self.root
            .index_of(leaf, record, &self.leaves)
            .expect("every record of a leaf has an index in its wrappers")
    }
}

fn build(cfg: &Value, base_dir: &Path, path: &str, leaves: &mut Vec<Leaf>) -> DataResult<Tree> {
    let err = |e: String| DataError::new(format!("{path}: {e}"));
    let inner = |key: &str, leaves: &mut Vec<Leaf>| -> DataResult<Tree> {
        let section = cfg.get(key).ok_or_else(|| err(format!("`{key}` is missing")))?;
        build(section, base_dir, &format!("{path}.{key}"), leaves)
    };
    match cfg.get("type").and_then(Value::as_str) {
        Some("RepeatDataset") => {
            let times = cfg
                .get("times")
                .and_then(Value::as_u64)
                .filter(|&t| t >= 1)
                .ok_or_else(|| err("`times` must be a positive integer".into()))?;
            Ok(Tree::Repeat { inner: Box::new(inner("dataset", leaves)?), times: times as usize })
        }
        Some("ClassBalancedDataset") => {
            let threshold = cfg
                .get("oversample_thr")
                .and_then(Value::as_f64)
                .ok_or_else(|| err("`oversample_thr` must be a number".into()))?;
            let tree = inner("dataset", leaves)?;
            let indices = repeat_indices(&tree, leaves, threshold);
            Ok(Tree::Balanced { inner: Box::new(tree), indices })
        }
        Some("ConcatDataset") => {
            let sections = cfg
                .get("datasets")
                .and_then(Value::as_array)
                .filter(|d| !d.is_empty())
                .ok_or_else(|| err("`datasets` must be a non-empty list".into()))?;
            let mut parts = vec![];
            let mut ends = vec![];
            for (i, section) in sections.iter().enumerate() {
                let part = build(section, base_dir, &format!("{path}.datasets.{i}"), leaves)?;
                ends.push(ends.last().copied().unwrap_or(0) + part.len(leaves));
                parts.push(part);
            }
            Ok(Tree::Concat { parts, ends })
        }
        _ => {
            let data = CocoDataset::from_config(cfg, base_dir).map_err(|e| err(e.message))?;
            data.full_init().map_err(|e| err(e.message))?;
            leaves.push(Leaf { data, config: cfg.clone(), path: path.to_string() });
            Ok(Tree::Leaf(leaves.len() - 1))
        }
    }
}

/// `ClassBalancedDataset`'s repeated indices: record i of `tree` appears
/// `ceil(r(i))` times, r(i) the largest `max(1, sqrt(t / f(c)))` over the
/// classes c of its instances (1 without instances), f(c) the fraction of
/// records having class c. Crowd instances count, as `get_cat_ids` lists them.
fn repeat_indices(tree: &Tree, leaves: &[Leaf], threshold: f64) -> Vec<usize> {
    let n = tree.len(leaves);
    let labels: Vec<Vec<i64>> = (0..n)
        .map(|i| {
            let (leaf, record) = tree.locate(i, leaves);
            let mut labels: Vec<i64> = leaves[leaf].data.get(record).instances.iter().map(|x| x.bbox_label).collect();
            labels.sort_unstable();
            labels.dedup();
            labels
        })
        .collect();
    let mut images_with = std::collections::HashMap::<i64, f64>::new();
    for label in labels.iter().flatten() {
        *images_with.entry(*label).or_default() += 1.0;
    }
    let class_repeat = |label: &i64| (threshold / (images_with[label] / n as f64)).sqrt().max(1.0);
    let mut indices = vec![];
    for (i, labels) in labels.iter().enumerate() {
        let factor = labels.iter().map(class_repeat).fold(1.0, f64::max);
        indices.extend(std::iter::repeat_n(i, factor.ceil() as usize));
    }
    indices
}

impl Tree {
    fn len(&self, leaves: &[Leaf]) -> usize {
        match self {
            Tree::Leaf(i) => leaves[*i].data.len(),
            Tree::Repeat { inner, times } => inner.len(leaves) * times,
            Tree::Balanced { indices, .. } => indices.len(),
            Tree::Concat { ends, .. } => ends.last().copied().unwrap_or(0),
        }
    }

    /// (leaf, record) of `index` (panics when out of range, like a slice).
    fn locate(&self, index: usize, leaves: &[Leaf]) -> (usize, usize) {
        match self {
            Tree::Leaf(i) => (*i, index),
            Tree::Repeat { inner, .. } => inner.locate(index % inner.len(leaves), leaves),
            Tree::Balanced { inner, indices } => inner.locate(indices[index], leaves),
            Tree::Concat { parts, ends } => {
                let part = ends.partition_point(|&end| end <= index);
                let start = if part == 0 { 0 } else { ends[part - 1] };
                parts[part].locate(index - start, leaves)
            }
        }
    }

    /// The first index of this tree that is record `record` of leaf `leaf`.
    fn index_of(&self, leaf: usize, record: usize, leaves: &[Leaf]) -> Option<usize> {
        match self {
            Tree::Leaf(i) => (*i == leaf).then_some(record),
            Tree::Repeat { inner, .. } => inner.index_of(leaf, record, leaves),
            Tree::Balanced { inner, indices } => {
                let inner_index = inner.index_of(leaf, record, leaves)?;
                // Sorted: record i's copies follow those of i - 1.
                let at = indices.partition_point(|&i| i < inner_index);
                (indices.get(at) == Some(&inner_index)).then_some(at)
            }
            Tree::Concat { parts, ends } => parts.iter().enumerate().find_map(|(p, part)| {
                let start = if p == 0 { 0 } else { ends[p - 1] };
                part.index_of(leaf, record, leaves).map(|i| start + i)
            }),
        }
    }
}

/// The `CocoDataset` sections of a dataset section and their paths below it
/// (`dataset`, `dataset.dataset`, `dataset.datasets.1`, ...), in index order;
/// `prefix` is the section's own path.
pub fn leaf_sections<'a>(cfg: &'a Value, prefix: &str) -> Vec<(&'a Value, String)> {
    match cfg.get("type").and_then(Value::as_str) {
        Some("RepeatDataset" | "ClassBalancedDataset") => match cfg.get("dataset") {
            Some(inner) => leaf_sections(inner, &format!("{prefix}.dataset")),
            None => vec![],
        },
        Some("ConcatDataset") => cfg
            .get("datasets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .flat_map(|(i, d)| leaf_sections(d, &format!("{prefix}.datasets.{i}")))
            .collect(),
        _ => vec![(cfg, prefix.to_string())],
    }
}

/// [`leaf_sections`], mutable (to point every leaf at other data).
pub fn leaf_sections_mut(cfg: &mut Value) -> Vec<&mut Value> {
    match cfg.get("type").and_then(Value::as_str) {
        Some("RepeatDataset" | "ClassBalancedDataset") => match cfg.get_mut("dataset") {
            Some(inner) => leaf_sections_mut(inner),
            None => vec![],
        },
        Some("ConcatDataset") => match cfg.get_mut("datasets").and_then(Value::as_array_mut) {
            Some(list) => list.iter_mut().flat_map(leaf_sections_mut).collect(),
            None => vec![],
        },
        _ => vec![cfg],
    }
}
