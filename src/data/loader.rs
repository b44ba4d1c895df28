//! A threaded loader: decodes and augments on worker threads with bounded prefetch, in sampler order.
//!
//! It plays the part of PyTorch's `DataLoader` with MMEngine's
//! `pseudo_collate`: batches of dataset indices come from the samplers
//! ([`crate::data::samplers`]), each index is turned into a [`PackedSample`]
//! by a caller-supplied function (the dataset's pipeline), and the batches are
//! handed back in sampler order, whichever worker finished first. Threads
//! rather than processes: the pipeline is Rust, so there is no interpreter
//! lock to escape and samples need no pickling.
//!
//! Each sample gets its own random stream, `sample_rng(seed, epoch, index)`,
//! so the augmentations do not depend on the number of workers or on a
//! resume. A sample the pipeline drops (`None`) is replaced in training as
//! MMEngine's `BaseDataset.__getitem__` does: another index drawn at random,
//! up to `max_refetch` times.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::data::samplers::BatchIter;
use crate::data::{sample_rng, DataError, DataResult, PackedSample, SampleRng};
use crate::registry::root::DataLoaderConfig;

/// Turns dataset record `index` into a packed sample with the given random
/// stream; `None` when the pipeline drops it (e.g. no annotation left after a crop).
pub type SampleFn = Arc<dyn Fn(usize, &mut SampleRng) -> DataResult<Option<PackedSample>> + Send + Sync>;

/// Picks the sample that replaces dropped sample `index` (a dataset wrapper
/// re-fetches inside the dataset the index falls in).
#[derive(Clone)]
pub struct Redraw(pub Arc<dyn Fn(usize, &mut SampleRng) -> usize + Send + Sync>);

impl std::fmt::Debug for Redraw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redraw(..)")
    }
}

/// How a [`Loader`] runs.
#[derive(Debug, Clone)]
pub struct LoaderOptions {
    /// Worker threads; 0 loads in the calling thread.
    pub num_workers: usize,
    /// Batches in flight per worker (PyTorch's `prefetch_factor`).
    pub prefetch_factor: usize,
    /// Keep the worker threads from one epoch to the next.
    pub persistent_workers: bool,
    /// Re-fetches of a dropped sample (training); `None` makes a dropped sample
    /// an error, as in MMEngine's test mode.
    pub max_refetch: Option<usize>,
    /// Records in the dataset (the range re-fetched indices are drawn from).
    pub dataset_len: usize,
    /// Draws the index that replaces a dropped one; `None`: uniform over `dataset_len`.
    pub redraw: Option<Redraw>,
    /// Seed of the per-sample random streams.
    pub seed: u64,
    /// Longest wait for one batch; `None` waits forever.
    pub timeout: Option<Duration>,
}

impl LoaderOptions {
    /// From a dataloader section. `max_refetch` is the dataset's (`None` in
    /// test mode); `seed` the run's seed.
    pub fn from_config(cfg: &DataLoaderConfig, dataset_len: usize, max_refetch: Option<usize>, seed: u64) -> Self {
        LoaderOptions {
            num_workers: cfg.num_workers as usize,
            prefetch_factor: cfg.prefetch_factor.map_or(2, |p| p as usize),
            persistent_workers: cfg.persistent_workers,
            max_refetch,
            dataset_len,
            redraw: None,
            seed,
            timeout: (cfg.timeout > 0.0).then(|| Duration::from_secs_f64(cfg.timeout)),
        }
    }
}

/// One batch, as the train loop receives it.
#[derive(Debug)]
pub struct Batch {
    /// Position of the batch in the epoch (counting skipped ones on resume is the caller's).
    pub position: usize,
    /// The dataset indices the batch sampler asked for (before any re-fetch).
    pub indices: Vec<usize>,
    pub samples: Vec<PackedSample>,
    /// How long the consumer waited for this batch (MMEngine's `data_time`).
    pub data_time: Duration,
}

/// The loader: worker threads (when any) and the sample function.
pub struct Loader {
    options: LoaderOptions,
    sample_fn: SampleFn,
    pool: Option<Pool>,
    generation: u64,
}

impl Loader {
    pub fn new(sample_fn: SampleFn, options: LoaderOptions) -> DataResult<Self> {
        if options.dataset_len == 0 {
            return Err(DataError::new("loader: the dataset is empty"));
        }
        if options.num_workers > 0 && options.prefetch_factor == 0 {
            return Err(DataError::new("loader: `prefetch_factor` must be at least 1"));
        }
        Ok(Loader { options, sample_fn, pool: None, generation: 0 })
    }

    pub fn options(&self) -> &LoaderOptions {
        &self.options
    }

    /// Loads `batches` of `epoch` in order. To resume mid-epoch, pass the
    /// batches from the resume position on (`BatchSampler::batches_from`)
    /// and `first_position`, the number of batches already done.
    pub fn epoch(&mut self, epoch: u64, batches: BatchIter, first_position: usize) -> Epoch<'_> {
        self.generation += 1;
        if self.options.num_workers > 0 && self.pool.is_none() {
            // Without any thread (spawning failed) the epoch loads in this thread.
            self.pool = Pool::start(self.options.num_workers, self.options.clone(), self.sample_fn.clone());
        }
        if let Some(pool) = &self.pool {
            pool.current.store(self.generation, Ordering::SeqCst);
        }
        let generation = self.generation;
        Epoch {
            loader: self,
            batches,
            epoch,
            generation,
            first_position,
            sent: 0,
            delivered: 0,
            sent_indices: BTreeMap::new(),
            pending: BTreeMap::new(),
            finished: false,
        }
    }
}

/// One epoch's batches: an iterator that stops after the last batch or the first error.
pub struct Epoch<'a> {
    loader: &'a mut Loader,
    batches: BatchIter,
    epoch: u64,
    generation: u64,
    first_position: usize,
    /// Batches handed to the workers so far, and batches given to the consumer.
    sent: usize,
    delivered: usize,
    sent_indices: BTreeMap<usize, Vec<usize>>,
    pending: BTreeMap<usize, DataResult<Vec<PackedSample>>>,
    finished: bool,
}

impl Epoch<'_> {
    /// Sends batches to the workers until `prefetch_factor` per worker are in flight.
    fn fill(&mut self) {
        let Some(pool) = &self.loader.pool else { return };
        let cap = self.loader.options.prefetch_factor * self.loader.options.num_workers;
        while self.sent - self.delivered < cap {
            let Some(indices) = self.batches.next() else { break };
            let task =
                Task { generation: self.generation, seq: self.sent, epoch: self.epoch, indices: indices.clone() };
            if pool.send(task).is_err() {
                break;
            }
            self.sent_indices.insert(self.sent, indices);
            self.sent += 1;
        }
    }

    /// The next batch's samples from the workers, waiting as long as the timeout allows.
    fn receive(&mut self) -> DataResult<Vec<PackedSample>> {
        let seq = self.delivered;
        loop {
            if let Some(result) = self.pending.remove(&seq) {
                return result;
            }
            let Some(pool) = &self.loader.pool else {
                return Err(DataError::new("loader: the worker threads are gone"));
            };
            let done = match self.loader.options.timeout {
                Some(t) => pool.results.recv_timeout(t).map_err(|e| match e {
                    RecvTimeoutError::Timeout => DataError::new(format!(
                        "loader: no batch from the workers within {} s; raise the dataloader's `timeout` or set it to 0",
                        t.as_secs_f64()
                    )),
                    RecvTimeoutError::Disconnected => DataError::new("loader: the worker threads stopped"),
                })?,
                None => pool.results.recv().map_err(|_| DataError::new("loader: the worker threads stopped"))?,
            };
            if done.generation == self.generation {
                self.pending.insert(done.seq, done.result);
            }
        }
    }
}

impl Iterator for Epoch<'_> {
    type Item = DataResult<Batch>;

    fn next(&mut self) -> Option<DataResult<Batch>> {
        if self.finished {
            return None;
        }
        let start = Instant::now();
        let (indices, result) = if self.loader.pool.is_some() {
            self.fill();
            let Some(indices) = self.sent_indices.remove(&self.delivered) else {
                self.finished = true;
                return None;
            };
            let result = self.receive();
            (indices, result)
        } else {
            let Some(indices) = self.batches.next() else {
                self.finished = true;
                return None;
            };
            let result = load_batch(&self.loader.sample_fn, &self.loader.options, self.epoch, &indices, || false);
            (indices, result)
        };
        let position = self.first_position + self.delivered;
        self.delivered += 1;
        // Keep the workers busy while the consumer trains on this batch.
        self.fill();
        match result {
            Ok(samples) => Some(Ok(Batch { position, indices, samples, data_time: start.elapsed() })),
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}

impl Drop for Epoch<'_> {
    fn drop(&mut self) {
        if self.loader.options.persistent_workers {
            // Workers skip what is left of this epoch's tasks.
            self.loader.generation += 1;
            if let Some(pool) = &self.loader.pool {
                pool.current.store(self.loader.generation, Ordering::SeqCst);
            }
        } else {
            self.loader.pool = None;
        }
    }
}

/// Loads one batch, stopping early when `cancelled()` says its epoch is over.
fn load_batch(
    sample_fn: &SampleFn,
    options: &LoaderOptions,
    epoch: u64,
    indices: &[usize],
    cancelled: impl Fn() -> bool,
) -> DataResult<Vec<PackedSample>> {
    let mut samples = Vec::with_capacity(indices.len());
    for &index in indices {
        if cancelled() {
            return Err(DataError::new("loader: cancelled"));
        }
        samples.push(load_sample(sample_fn, options, epoch, index)?);
    }
    Ok(samples)
}

/// One sample, re-fetching a random other index while the pipeline drops it.
fn load_sample(sample_fn: &SampleFn, options: &LoaderOptions, epoch: u64, index: usize) -> DataResult<PackedSample> {
    let mut rng = sample_rng(options.seed, epoch, index);
    let mut current = index;
    let attempts = options.max_refetch.map_or(1, |m| m + 1);
    for _ in 0..attempts {
        let outcome = catch_unwind(AssertUnwindSafe(|| sample_fn(current, &mut rng)))
            .unwrap_or_else(|panic| Err(DataError::new(format!("the pipeline panicked: {}", panic_message(&panic)))));
        match outcome {
            Ok(Some(sample)) => return Ok(sample),
            Ok(None) if options.max_refetch.is_none() => {
                return Err(DataError::new(format!(
                    "dataset sample {current}: the test pipeline dropped it; a test pipeline must keep every sample"
                )))
            }
            Ok(None) => {
                current = match &options.redraw {
                    Some(Redraw(redraw)) => redraw(current, &mut rng),
                    None => rng.random_range(0..options.dataset_len),
                }
            }
            Err(e) if current == index => return Err(DataError::new(format!("dataset sample {current}: {e}"))),
            Err(e) => return Err(DataError::new(format!("dataset sample {current} (re-fetched for {index}): {e}"))),
        }
    }
    Err(DataError::new(format!(
        "dataset sample {index}: no valid sample after {} re-fetches; check the image paths and the pipeline",
        attempts - 1
    )))
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

// --------------------------------------------------------------------------
// Worker threads

struct Task {
    generation: u64,
    seq: usize,
    epoch: u64,
    indices: Vec<usize>,
}

struct Done {
    generation: u64,
    seq: usize,
    result: DataResult<Vec<PackedSample>>,
}

/// Worker threads sharing one task queue; results come back on one channel.
struct Pool {
    tasks: Option<Sender<Task>>,
    results: Receiver<Done>,
    /// The generation whose tasks are still wanted; others are skipped.
    current: Arc<AtomicU64>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start(num_workers: usize, options: LoaderOptions, sample_fn: SampleFn) -> Option<Pool> {
        let (task_tx, task_rx) = mpsc::channel::<Task>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let task_rx = Arc::new(Mutex::new(task_rx));
        let current = Arc::new(AtomicU64::new(0));
        let handles = (0..num_workers)
            .filter_map(|i| {
                let (task_rx, done_tx, current) = (task_rx.clone(), done_tx.clone(), current.clone());
                let (options, sample_fn) = (options.clone(), sample_fn.clone());
                std::thread::Builder::new()
                    .name(format!("detc-loader-{i}"))
                    .spawn(move || worker(&task_rx, &done_tx, &current, &options, &sample_fn))
                    .ok()
            })
            .collect::<Vec<_>>();
        (!handles.is_empty()).then(|| Pool { tasks: Some(task_tx), results: done_rx, current, handles })
    }

    fn send(&self, task: Task) -> Result<(), ()> {
        match &self.tasks {
            Some(tx) => tx.send(task).map_err(|_| ()),
            None => Err(()),
        }
    }
}

fn worker(
    tasks: &Mutex<Receiver<Task>>,
    done: &Sender<Done>,
    current: &AtomicU64,
    options: &LoaderOptions,
    sample_fn: &SampleFn,
) {
    loop {
        // Only the receive happens under the lock; a panic cannot poison it.
        let task = match tasks.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(task) = task else { return };
        if task.generation != current.load(Ordering::SeqCst) {
            continue;
        }
        let cancelled = || current.load(Ordering::SeqCst) != task.generation;
        let result = load_batch(sample_fn, options, task.epoch, &task.indices, cancelled);
        if done.send(Done { generation: task.generation, seq: task.seq, result }).is_err() {
            return;
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Skip queued tasks, close the queue, and wait for the batch in hand.
        self.current.store(u64::MAX, Ordering::SeqCst);
        self.tasks = None;
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}
