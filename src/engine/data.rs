//! Builds a dataloader section (`train_dataloader`, `val_dataloader`,
//! `test_dataloader`) into the dataset, its samplers and a [`Loader`], as
//! MMEngine's `Runner.build_dataloader` does.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use detc::data::coco::CocoDataset;
use detc::data::dataset::Dataset;
use detc::data::loader::{Loader, LoaderOptions, Redraw, SampleFn};
use detc::data::samplers::{BatchIter, BatchSampler, Sampler, Shard};
use detc::data::transforms::Pipeline;
use detc::data::{DataError, DataResult, Sample};
use detc::registry::root::DataLoaderConfig;
use serde_json::Value;

/// One dataloader: the dataset, the index samplers and the loader workers.
pub struct DataParts {
    pub dataset: Arc<Dataset>,
    pub sampler: Sampler,
    pub batch_sampler: BatchSampler,
    pub loader: Loader,
    /// The pipeline of each `CocoDataset` of the tree, as the workers read it.
    pub pipelines: PipelineSlots,
}

/// The pipelines of a dataloader's datasets, replaceable while it runs
/// (`PipelineSwitchHook`): a worker takes the current one for each sample.
#[derive(Clone)]
pub struct PipelineSlots(Arc<Vec<RwLock<Arc<Pipeline>>>>);

impl PipelineSlots {
    fn get(&self, leaf: usize) -> Arc<Pipeline> {
        self.0[leaf].read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every dataset runs `transforms` from now on.
    pub fn switch(&self, transforms: &[Value]) -> DataResult<()> {
        let pipeline = Arc::new(Pipeline::from_config(transforms)?);
        for slot in self.0.iter() {
            *slot.write().unwrap_or_else(|e| e.into_inner()) = pipeline.clone();
        }
        Ok(())
    }
}

/// What the loader needs of one `CocoDataset` of the tree.
struct LeafParts {
    /// With `skip_invalid_samples`, a training image that cannot be read
    /// (corrupt, truncated) is skipped like a sample the pipeline drops:
    /// another one is drawn in its place, with a counted warning.
    skip_unreadable: bool,
}

impl DataParts {
    /// Builds `section` (the dataloader dict) with paths relative to
    /// `base_dir`; `seed` seeds samplers without their own seed and the
    /// per-sample augmentation streams.
    pub fn build(
        name: &str,
        section: &Value,
        base_dir: &Path,
        shard: Shard,
        seed: u64,
    ) -> DataResult<Self> {
        let cfg: DataLoaderConfig = serde_json::from_value(section.clone())
            .map_err(|e| DataError::new(format!("{name}: {e}")))?;
        let dataset = Arc::new(Dataset::from_config(&cfg.dataset.0, base_dir, &format!("{name}.dataset"))?);
        if name != "train_dataloader" && dataset.as_coco().is_none() {
            // `detc check` reports this too (detc::data::wrapper).
            return Err(DataError::new(format!(
                "{name}.dataset: a dataset wrapper cannot be evaluated; evaluate on the CocoDataset itself"
            )));
        }
        let (mut leaves, mut pipelines) = (vec![], vec![]);
        // MMEngine re-fetches inside each dataset with its own `max_refetch`;
        // the loader takes the first dataset's (`None`: test mode, no re-fetch).
        let mut max_refetch = None;
        for (i, leaf) in dataset.leaves().iter().enumerate() {
            let at = &leaf.path;
            for warning in leaf.data.warnings() {
                eprintln!("warning: {at}: {warning}");
            }
            let ds_cfg = &leaf.config;
            let pipeline =
                Pipeline::from_config(ds_cfg.get("pipeline").and_then(Value::as_array).map_or(&[], |v| v))
                    .map_err(|e| DataError::new(format!("{at}.pipeline: {e}")))?;
            let test_mode = ds_cfg.get("test_mode").and_then(Value::as_bool).unwrap_or(false);
            if i == 0 {
                max_refetch = (!test_mode)
                    .then(|| ds_cfg.get("max_refetch").and_then(Value::as_u64).unwrap_or(1000) as usize);
            }
            let skip_unreadable =
                !test_mode && ds_cfg.get("skip_invalid_samples").and_then(Value::as_bool).unwrap_or(false);
            leaves.push(LeafParts { skip_unreadable });
            pipelines.push(RwLock::new(Arc::new(pipeline)));
        }
        // `num_batch_per_epoch`: MMEngine's `_SlicedDataset`, the first
        // batches x batch size x world size samples (at most all of them).
        let len = cfg.num_batch_per_epoch.map_or(dataset.len(), |n| {
            (n as usize * cfg.batch_size as usize * shard.world_size).min(dataset.len())
        });
        let sampler = Sampler::from_config(&cfg.sampler, len, shard, seed as i64)?;
        let sizes: Vec<(u32, u32)> = (0..len).map(|i| dataset.image_size(i)).collect();
        let batch_sampler = BatchSampler::from_config(
            cfg.batch_sampler.as_ref(),
            cfg.batch_size as usize,
            cfg.drop_last,
            &sizes,
        )?;
        let data = dataset.clone();
        let skipped = Arc::new(AtomicU64::new(0));
        let pipelines = PipelineSlots(Arc::new(pipelines));
        let slots = pipelines.clone();
        let label = name.to_string();
        let sample_fn: SampleFn = Arc::new(move |i, rng| {
            let (leaf, record) = data.locate(i);
            let parts = &leaves[leaf];
            // Mixing transforms (`CachedMosaic`, ...) draw their partners from this leaf's records.
            let records = &data.leaves()[leaf].data;
            match slots.get(leaf).apply_with(Sample::new(records.get(record), record), rng, records) {
                Err(e) if parts.skip_unreadable => {
                    let n = skipped.fetch_add(1, Ordering::Relaxed) + 1;
                    eprintln!(
                        "warning: {label}: skipped sample {i} ({n} so far; skip_invalid_samples): {}",
                        e.message
                    );
                    Ok(None)
                }
                other => other,
            }
        });
        let redraw_from = dataset.clone();
        let mut options = LoaderOptions::from_config(&cfg, dataset.len(), max_refetch, seed);
        options.redraw = Some(Redraw(Arc::new(move |i, rng| redraw_from.redraw(i, rng))));
        let loader = Loader::new(sample_fn, options)?;
        Ok(DataParts {
            dataset,
            sampler,
            batch_sampler,
            loader,
            pipelines,
        })
    }

    /// Batches per epoch (`len(dataloader)`).
    pub fn len(&self) -> usize {
        self.batch_sampler.len(self.sampler.len())
    }

    /// This epoch's batches from batch `start` on.
    pub fn batches(&mut self, epoch: u64, start: usize) -> BatchIter {
        self.sampler.set_epoch(epoch);
        self.batch_sampler.batches_from(&self.sampler, start)
    }
}

/// The `CocoDataset` of a val or test dataloader (never a wrapper:
/// [`DataParts::build`] refuses one).
pub fn eval_dataset(dataset: &Dataset) -> &CocoDataset {
    dataset.as_coco().expect("evaluation dataloaders hold a CocoDataset")
}
