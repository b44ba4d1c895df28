//! MMEngine's `DefaultSampler` and `InfiniteSampler` and MMDetection's `AspectRatioBatchSampler`.
//!
//! The shuffled order must be MMEngine's to the index for the same seed and
//! epoch, so that a run started by MMDetection and one started by detc see
//! the same samples in the same order on every rank. MMEngine draws it with
//! `torch.randperm(n, generator=g)` after `g.manual_seed(seed + epoch)`; this
//! module therefore carries PyTorch's CPU generator (MT19937 seeded as
//! `CPUGeneratorImpl` seeds it) and its `randperm` swap loop, written here
//! because no crate reproduces PyTorch's stream and the library must not link
//! libtorch.
//!
//! A sampler yields the dataset indices of one rank for one epoch; a batch
//! sampler groups them. Both can start mid-epoch (resume) and then produce the
//! remaining order of the uninterrupted run.

use serde::de::DeserializeOwned;

use crate::data::{DataError, DataResult};
use crate::registry::data::{AspectRatioBatchSamplerConfig, DefaultSamplerConfig, InfiniteSamplerConfig};
use crate::registry::refs::{BatchSamplerCfg, DataSamplerCfg};

/// A stream of dataset indices (one rank, one epoch or endless).
pub type IndexIter = Box<dyn Iterator<Item = usize> + Send>;

/// A stream of batches of dataset indices, in the order the model sees them.
pub type BatchIter = Box<dyn Iterator<Item = Vec<usize>> + Send>;

// --------------------------------------------------------------------------
// PyTorch's CPU generator

const MT_N: usize = 624;
const MT_M: usize = 397;

/// PyTorch's CPU random generator (`at::mt19937` in `CPUGeneratorImpl`): the
/// standard 32-bit Mersenne Twister, seeded with the low 32 bits of the seed
/// (`Generator.manual_seed` takes negative seeds modulo 2^64).
#[derive(Clone)]
pub struct TorchGenerator {
    state: [u32; MT_N],
    next: usize,
}

impl TorchGenerator {
    /// `g = torch.Generator(); g.manual_seed(seed)`.
    pub fn manual_seed(seed: u64) -> Self {
        let mut state = [0u32; MT_N];
        state[0] = seed as u32;
        for j in 1..MT_N {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(j as u32);
        }
        TorchGenerator { state, next: MT_N }
    }

    /// `CPUGeneratorImpl::random()`: one 32-bit draw.
    pub fn random(&mut self) -> u32 {
        if self.next >= MT_N {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `CPUGeneratorImpl::random64()`: two draws, the first one high.
    pub fn random64(&mut self) -> u64 {
        let hi = self.random() as u64;
        let lo = self.random() as u64;
        (hi << 32) | lo
    }

    fn twist(&mut self) {
        let s = &mut self.state;
        for k in 0..MT_N {
            let y = (s[k] & 0x8000_0000) | (s[(k + 1) % MT_N] & 0x7fff_ffff);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            s[k] = s[(k + MT_M) % MT_N] ^ (y >> 1) ^ mag;
        }
        self.next = 0;
    }

    /// `torch.randperm(n, generator=g)` on the CPU (`randperm_cpu` in ATen's
    /// `TensorFactories.cpp`): a forward swap loop with `random() % (n - i)`,
    /// or, for `n` of 2^32 / 20 and more, an inside-out shuffle with
    /// `random64()` (that branch follows ATen's source; the tests check the
    /// first one against torch, datasets never reach the second).
    pub fn randperm(&mut self, n: usize) -> Vec<usize> {
        let mut r: Vec<usize> = (0..n).collect();
        if small_randperm(n) {
            for i in 0..n.saturating_sub(1) {
                let z = (self.random() as u64 % (n - i) as u64) as usize;
                r.swap(i, i + z);
            }
        } else {
            for i in 0..n {
                let z = (self.random64() % (i as u64 + 1)) as usize;
                r[i] = r[z];
                r[z] = i;
            }
        }
        r
    }

    /// Advances the generator past one `randperm(n)` without building it.
    fn skip_randperm(&mut self, n: usize) {
        if small_randperm(n) {
            (0..n.saturating_sub(1)).for_each(|_| {
                self.random();
            });
        } else {
            (0..n).for_each(|_| {
                self.random64();
            });
        }
    }
}

/// ATen keeps the old 32-bit algorithm below `u32::MAX / 20`.
fn small_randperm(n: usize) -> bool {
    (n as u64) < u64::from(u32::MAX) / 20
}

/// The value Python passes to `manual_seed`: `seed + epoch`, taken modulo 2^64.
fn epoch_seed(seed: i64, epoch: u64) -> u64 {
    (seed as i128 + epoch as i128) as u64
}

// --------------------------------------------------------------------------
// Index samplers

/// This process's place among the training processes (`get_dist_info()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world_size: usize,
}

impl Shard {
    /// One process.
    pub const SINGLE: Shard = Shard { rank: 0, world_size: 1 };

    pub fn new(rank: usize, world_size: usize) -> DataResult<Self> {
        if world_size == 0 || rank >= world_size {
            return Err(DataError::new(format!(
                "sampler: rank {rank} is not below world size {world_size}; check RANK and WORLD_SIZE"
            )));
        }
        Ok(Shard { rank, world_size })
    }
}

fn check_len(kind: &str, dataset_len: usize) -> DataResult<()> {
    if dataset_len == 0 {
        return Err(DataError::new(format!(
            "{kind}: the dataset is empty; check `ann_file`, `data_prefix` and `filter_cfg`"
        )));
    }
    Ok(())
}

/// MMEngine's `DefaultSampler`: one shuffled (or ordered) pass per epoch,
/// padded by repetition to a multiple of the world size when `round_up`,
/// and dealt to ranks round-robin (`indices[rank::world_size]`).
#[derive(Debug, Clone)]
pub struct DefaultSampler {
    dataset_len: usize,
    shuffle: bool,
    seed: i64,
    shard: Shard,
    epoch: u64,
    total_size: usize,
}

impl DefaultSampler {
    pub fn new(dataset_len: usize, shuffle: bool, seed: i64, round_up: bool, shard: Shard) -> DataResult<Self> {
        check_len("DefaultSampler", dataset_len)?;
        let total_size = if round_up { dataset_len.div_ceil(shard.world_size) * shard.world_size } else { dataset_len };
        Ok(DefaultSampler { dataset_len, shuffle, seed, shard, epoch: 0, total_size })
    }

    /// From the config; `seed_if_null` stands for MMEngine's `sync_random_seed()`
    /// (a random seed drawn on rank 0 and shared), which the caller supplies.
    pub fn from_config(
        cfg: &DefaultSamplerConfig,
        dataset_len: usize,
        shard: Shard,
        seed_if_null: i64,
    ) -> DataResult<Self> {
        Self::new(dataset_len, cfg.shuffle, cfg.seed.unwrap_or(seed_if_null), cfg.round_up, shard)
    }

    /// The epoch whose order `indices` gives (MMEngine's `set_epoch`).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn seed(&self) -> i64 {
        self.seed
    }

    /// Indices this rank takes per epoch (MMEngine's `num_samples`).
    pub fn len(&self) -> usize {
        self.total_size.saturating_sub(self.shard.rank).div_ceil(self.shard.world_size)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// This rank's indices for the current epoch.
    pub fn indices(&self) -> Vec<usize> {
        self.indices_from(0)
    }

    /// This rank's indices for the current epoch from sample position `start`
    /// on: the tail of `indices()`, for resuming mid-epoch.
    pub fn indices_from(&self, start: usize) -> Vec<usize> {
        let order = if self.shuffle {
            TorchGenerator::manual_seed(epoch_seed(self.seed, self.epoch)).randperm(self.dataset_len)
        } else {
            (0..self.dataset_len).collect()
        };
        // `(indices * k)[:total_size]` repeats the order; then `[rank:total_size:world_size]`.
        let first = self.shard.rank + start * self.shard.world_size;
        (first..self.total_size).step_by(self.shard.world_size).map(|i| order[i % self.dataset_len]).collect()
    }
}

/// MMEngine's `InfiniteSampler`: one generator seeded once, then back-to-back
/// permutations forever; rank `r` takes every `world_size`-th index from `r`.
#[derive(Debug, Clone)]
pub struct InfiniteSampler {
    dataset_len: usize,
    shuffle: bool,
    seed: i64,
    shard: Shard,
}

impl InfiniteSampler {
    pub fn new(dataset_len: usize, shuffle: bool, seed: i64, shard: Shard) -> DataResult<Self> {
        check_len("InfiniteSampler", dataset_len)?;
        Ok(InfiniteSampler { dataset_len, shuffle, seed, shard })
    }

    /// From the config; `seed_if_null` as for [`DefaultSampler::from_config`].
    pub fn from_config(
        cfg: &InfiniteSamplerConfig,
        dataset_len: usize,
        shard: Shard,
        seed_if_null: i64,
    ) -> DataResult<Self> {
        Self::new(dataset_len, cfg.shuffle, cfg.seed.unwrap_or(seed_if_null), shard)
    }

    /// The dataset size (MMEngine's `__len__`).
    pub fn len(&self) -> usize {
        self.dataset_len
    }

    pub fn is_empty(&self) -> bool {
        self.dataset_len == 0
    }

    /// This rank's endless stream from its `start`-th index on.
    pub fn iter_from(&self, start: u64) -> InfiniteIndices {
        let n = self.dataset_len as u64;
        let global = self.shard.rank as u64 + start * self.shard.world_size as u64;
        let mut gen = TorchGenerator::manual_seed(epoch_seed(self.seed, 0));
        if self.shuffle {
            (0..global / n).for_each(|_| gen.skip_randperm(self.dataset_len));
        }
        let mut it = InfiniteIndices {
            gen,
            shuffle: self.shuffle,
            perm: Vec::new(),
            pos: (global % n) as usize,
            step: self.shard.world_size,
        };
        it.perm = it.next_perm(self.dataset_len);
        it
    }
}

/// The endless index stream of an [`InfiniteSampler`].
pub struct InfiniteIndices {
    gen: TorchGenerator,
    shuffle: bool,
    perm: Vec<usize>,
    /// Position of the next index in `perm`.
    pos: usize,
    step: usize,
}

impl InfiniteIndices {
    fn next_perm(&mut self, n: usize) -> Vec<usize> {
        if self.shuffle {
            self.gen.randperm(n)
        } else {
            (0..n).collect()
        }
    }
}

impl Iterator for InfiniteIndices {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let n = self.perm.len();
        while self.pos >= n {
            self.pos -= n;
            self.perm = self.next_perm(n);
        }
        let index = self.perm[self.pos];
        self.pos += self.step;
        Some(index)
    }
}

/// A dataloader's `sampler`.
#[derive(Debug, Clone)]
pub enum Sampler {
    Default(DefaultSampler),
    Infinite(InfiniteSampler),
}

impl Sampler {
    /// From a `sampler: {type: ..., ...}` section.
    pub fn from_config(cfg: &DataSamplerCfg, dataset_len: usize, shard: Shard, seed_if_null: i64) -> DataResult<Self> {
        match component_type(&cfg.0, "sampler")? {
            "DefaultSampler" => Ok(Sampler::Default(DefaultSampler::from_config(
                &typed_config(&cfg.0, "DefaultSampler")?,
                dataset_len,
                shard,
                seed_if_null,
            )?)),
            "InfiniteSampler" => Ok(Sampler::Infinite(InfiniteSampler::from_config(
                &typed_config(&cfg.0, "InfiniteSampler")?,
                dataset_len,
                shard,
                seed_if_null,
            )?)),
            other => Err(DataError::new(format!(
                "sampler: detc has no `{other}`; use `DefaultSampler` or `InfiniteSampler`"
            ))),
        }
    }

    /// Sets the epoch of a `DefaultSampler`; an `InfiniteSampler` ignores it, as in MMEngine.
    pub fn set_epoch(&mut self, epoch: u64) {
        if let Sampler::Default(s) = self {
            s.set_epoch(epoch);
        }
    }

    /// MMEngine's `len(sampler)`: this rank's samples per epoch, or the dataset size when infinite.
    pub fn len(&self) -> usize {
        match self {
            Sampler::Default(s) => s.len(),
            Sampler::Infinite(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_infinite(&self) -> bool {
        matches!(self, Sampler::Infinite(_))
    }

    /// This rank's indices of the current epoch (endless when infinite) from
    /// sample position `start` on.
    pub fn iter_from(&self, start: usize) -> IndexIter {
        match self {
            Sampler::Default(s) => Box::new(s.indices_from(start).into_iter()),
            Sampler::Infinite(s) => Box::new(s.iter_from(start as u64)),
        }
    }
}

// --------------------------------------------------------------------------
// Batch samplers

/// MMDetection's `AspectRatioBatchSampler`: two buckets, portrait
/// (`width < height`) and landscape; a bucket that reaches `batch_size` is
/// yielded. At the end of the sampler's pass the leftovers, portrait first,
/// are yielded in `batch_size` chunks; with `drop_last` the final chunk is
/// dropped when it is not longer than `batch_size` (so even a full one, as
/// MMDetection does).
#[derive(Debug, Clone)]
pub struct AspectRatioBatchSampler {
    batch_size: usize,
    drop_last: bool,
    portrait: std::sync::Arc<[bool]>,
}

impl AspectRatioBatchSampler {
    /// `sizes[i]` is dataset record `i`'s `(width, height)` as annotated.
    pub fn new(batch_size: usize, drop_last: bool, sizes: &[(u32, u32)]) -> DataResult<Self> {
        if batch_size == 0 {
            return Err(DataError::new("AspectRatioBatchSampler: `batch_size` must be at least 1"));
        }
        let portrait = sizes.iter().map(|&(w, h)| w < h).collect();
        Ok(AspectRatioBatchSampler { batch_size, drop_last, portrait })
    }

    /// Groups one pass of `indices` into batches.
    pub fn batches(&self, indices: IndexIter) -> AspectRatioBatches {
        AspectRatioBatches { sampler: self.clone(), indices, buckets: [Vec::new(), Vec::new()], leftover: None }
    }

    /// MMDetection's `__len__` for a sampler of `sampler_len` samples.
    pub fn len(&self, sampler_len: usize) -> usize {
        plain_len(sampler_len, self.batch_size, self.drop_last)
    }
}

/// The batches of one pass of an [`AspectRatioBatchSampler`].
pub struct AspectRatioBatches {
    sampler: AspectRatioBatchSampler,
    indices: IndexIter,
    buckets: [Vec<usize>; 2],
    /// Set once the indices are exhausted: leftovers still to yield.
    leftover: Option<std::vec::IntoIter<usize>>,
}

impl Iterator for AspectRatioBatches {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        let size = self.sampler.batch_size;
        if self.leftover.is_none() {
            for index in self.indices.by_ref() {
                // An index the sizes do not cover goes with landscape images (bucket 1).
                let portrait = self.sampler.portrait.get(index).copied().unwrap_or(false);
                let bucket = &mut self.buckets[if portrait { 0 } else { 1 }];
                bucket.push(index);
                if bucket.len() == size {
                    return Some(std::mem::take(bucket));
                }
            }
            let [portrait, landscape] = std::mem::take(&mut self.buckets);
            self.leftover = Some(portrait.into_iter().chain(landscape).collect::<Vec<_>>().into_iter());
        }
        let rest = self.leftover.as_mut()?;
        let remaining = rest.len();
        if remaining == 0 || (remaining <= size && self.sampler.drop_last) {
            self.leftover = Some(Vec::new().into_iter());
            return None;
        }
        Some(rest.by_ref().take(size).collect())
    }
}

/// A dataloader's batching: PyTorch's `BatchSampler` when `batch_sampler` is
/// null, or MMDetection's `AspectRatioBatchSampler`.
#[derive(Debug, Clone)]
pub enum BatchSampler {
    Plain { batch_size: usize, drop_last: bool },
    AspectRatio(AspectRatioBatchSampler),
}

impl BatchSampler {
    /// From the dataloader's `batch_sampler` section (or its absence),
    /// `batch_size` and `drop_last`; `sizes` as for [`AspectRatioBatchSampler::new`].
    pub fn from_config(
        cfg: Option<&BatchSamplerCfg>,
        batch_size: usize,
        drop_last: bool,
        sizes: &[(u32, u32)],
    ) -> DataResult<Self> {
        let Some(cfg) = cfg else {
            if batch_size == 0 {
                return Err(DataError::new("dataloader: `batch_size` must be at least 1"));
            }
            return Ok(BatchSampler::Plain { batch_size, drop_last });
        };
        match component_type(&cfg.0, "batch_sampler")? {
            "AspectRatioBatchSampler" => {
                let c: AspectRatioBatchSamplerConfig = typed_config(&cfg.0, "AspectRatioBatchSampler")?;
                let size = c.batch_size.map_or(batch_size, |b| b as usize);
                Ok(BatchSampler::AspectRatio(AspectRatioBatchSampler::new(size, c.drop_last, sizes)?))
            }
            other => Err(DataError::new(format!(
                "batch_sampler: detc has no `{other}`; use `AspectRatioBatchSampler` or null"
            ))),
        }
    }

    /// Batches per epoch for a sampler of `sampler_len` samples (`len(batch_sampler)`).
    pub fn len(&self, sampler_len: usize) -> usize {
        match self {
            BatchSampler::Plain { batch_size, drop_last } => plain_len(sampler_len, *batch_size, *drop_last),
            BatchSampler::AspectRatio(a) => a.len(sampler_len),
        }
    }

    /// The current epoch's batches of `sampler` from batch `start_batch` on,
    /// as the uninterrupted epoch would continue. Plain batching skips at the
    /// sample level; aspect-ratio batching depends on the whole pass, so it
    /// regroups from the start and drops the first batches (indices only,
    /// nothing is loaded).
    pub fn batches_from(&self, sampler: &Sampler, start_batch: usize) -> BatchIter {
        match self {
            BatchSampler::Plain { batch_size, drop_last } => Box::new(PlainBatches {
                indices: sampler.iter_from(start_batch * batch_size),
                batch_size: *batch_size,
                drop_last: *drop_last,
            }),
            BatchSampler::AspectRatio(a) => Box::new(a.batches(sampler.iter_from(0)).skip(start_batch)),
        }
    }
}

fn plain_len(sampler_len: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last {
        sampler_len / batch_size
    } else {
        sampler_len.div_ceil(batch_size)
    }
}

/// PyTorch's `BatchSampler`: consecutive chunks of `batch_size`.
struct PlainBatches {
    indices: IndexIter,
    batch_size: usize,
    drop_last: bool,
}

impl Iterator for PlainBatches {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        let batch: Vec<usize> = self.indices.by_ref().take(self.batch_size).collect();
        if batch.is_empty() || (self.drop_last && batch.len() < self.batch_size) {
            return None;
        }
        Some(batch)
    }
}

// --------------------------------------------------------------------------
// Config dispatch

fn component_type<'a>(cfg: &'a serde_json::Value, section: &str) -> DataResult<&'a str> {
    cfg.get("type").and_then(|t| t.as_str()).ok_or_else(|| DataError::new(format!("{section}: missing `type`")))
}

/// The section without its `type` key, as the typed config of `name`.
fn typed_config<T: DeserializeOwned>(cfg: &serde_json::Value, name: &str) -> DataResult<T> {
    let mut fields = cfg.clone();
    if let Some(map) = fields.as_object_mut() {
        map.remove("type");
    }
    serde_json::from_value(fields).map_err(|e| DataError::new(format!("{name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randperm_matches_torch_for_seed_0() {
        // torch.randperm(10, generator=torch.Generator().manual_seed(0)).tolist()
        assert_eq!(TorchGenerator::manual_seed(0).randperm(10), vec![4, 1, 7, 5, 3, 9, 0, 8, 6, 2]);
    }

    #[test]
    fn infinite_stream_crosses_permutations_with_large_world_size() {
        let s = InfiniteSampler::new(2, false, 0, Shard::new(1, 3).unwrap()).unwrap();
        // global 0 1 0 1 0 1 ..., rank 1 takes positions 1, 4, 7: 1, 0, 1
        assert_eq!(s.iter_from(0).take(3).collect::<Vec<_>>(), vec![1, 0, 1]);
    }
}
