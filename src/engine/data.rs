//! Builds a dataloader section (`train_dataloader`, `val_dataloader`,
//! `test_dataloader`) into the dataset, its samplers and a [`Loader`], as
//! MMEngine's `Runner.build_dataloader` does.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use detc::data::coco::CocoDataset;
use detc::data::loader::{Loader, LoaderOptions, SampleFn};
use detc::data::samplers::{BatchIter, BatchSampler, Sampler, Shard};
use detc::data::transforms::Pipeline;
use detc::data::{DataError, DataResult, Sample};
use detc::registry::root::DataLoaderConfig;
use serde_json::Value;

/// One dataloader: the dataset, the index samplers and the loader workers.
pub struct DataParts {
    pub dataset: Arc<CocoDataset>,
    pub sampler: Sampler,
    pub batch_sampler: BatchSampler,
    pub loader: Loader,
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
        let ds_cfg = &cfg.dataset.0;
        let dataset = Arc::new(
            CocoDataset::from_config(ds_cfg, base_dir)
                .map_err(|e| DataError::new(format!("{name}.dataset: {e}")))?,
        );
        dataset
            .full_init()
            .map_err(|e| DataError::new(format!("{name}.dataset: {e}")))?;
        for warning in dataset.warnings() {
            eprintln!("warning: {name}.dataset: {warning}");
        }
        let pipeline = Pipeline::from_config(
            ds_cfg
                .get("pipeline")
                .and_then(Value::as_array)
                .map_or(&[], |v| v),
        )
        .map_err(|e| DataError::new(format!("{name}.dataset.pipeline: {e}")))?;
        let test_mode = ds_cfg
            .get("test_mode")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let max_refetch = (!test_mode).then(|| {
            ds_cfg
                .get("max_refetch")
                .and_then(Value::as_u64)
                .unwrap_or(1000) as usize
        });
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
        // With `skip_invalid_samples`, a training image that cannot be read
        // (corrupt, truncated) is skipped like a sample the pipeline drops:
        // another one is drawn in its place, with a counted warning.
        let skip_unreadable = max_refetch.is_some()
            && ds_cfg.get("skip_invalid_samples").and_then(Value::as_bool).unwrap_or(false);
        let skipped = Arc::new(AtomicU64::new(0));
        let label = name.to_string();
        let sample_fn: SampleFn = Arc::new(move |i, rng| {
            match pipeline.apply(Sample::new(data.get(i), i), rng) {
                Err(e) if skip_unreadable => {
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
        let options = LoaderOptions::from_config(&cfg, dataset.len(), max_refetch, seed);
        let loader = Loader::new(sample_fn, options)?;
        Ok(DataParts {
            dataset,
            sampler,
            batch_sampler,
            loader,
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
