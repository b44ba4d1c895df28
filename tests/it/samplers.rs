//! Samplers against MMEngine/PyTorch: order, sharding over ranks, resume.
//! The references are MMEngine's `DefaultSampler`/`InfiniteSampler` and
//! MMDetection's `AspectRatioBatchSampler`, run live by
//! `tests/samplers/reference.py` from the test-only environment (one Python
//! process answers every request of this file). The loader is checked for
//! order and content across worker counts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use detc::data::loader::{Loader, LoaderOptions, SampleFn};
use detc::data::samplers::{AspectRatioBatchSampler, BatchSampler, DefaultSampler, InfiniteSampler, Sampler, Shard};
use detc::data::{DataError, Image, PackedInstances, PackedSample, SampleMeta};
use rand::Rng;
use serde_json::{json, Value};


// --------------------------------------------------------------------------
// The reference answers

fn default_case(
    n: usize,
    seed: i64,
    epoch: u64,
    world_size: usize,
    rank: usize,
    shuffle: bool,
    round_up: bool,
) -> Value {
    json!({"kind": "default", "n": n, "seed": seed, "epoch": epoch, "world_size": world_size,
           "rank": rank, "shuffle": shuffle, "round_up": round_up})
}

fn infinite_case(n: usize, seed: i64, world_size: usize, rank: usize, shuffle: bool, count: usize) -> Value {
    json!({"kind": "infinite", "n": n, "seed": seed, "world_size": world_size, "rank": rank,
           "shuffle": shuffle, "count": count})
}

/// Image sizes `(width, height)` with a mix of orientations (square counts as landscape).
fn sizes(n: usize, seed: u64) -> Vec<(u32, u32)> {
    let mut rng = detc::data::sample_rng(seed, 0, 0);
    (0..n).map(|_| (rng.random_range(1..5u32), rng.random_range(1..5u32))).collect()
}

fn aspect_case(
    sizes: &[(u32, u32)],
    batch_size: usize,
    drop_last: bool,
    sampler: Value,
    count: Option<usize>,
) -> Value {
    json!({"kind": "aspect", "sizes": sizes, "batch_size": batch_size, "drop_last": drop_last,
           "sampler": sampler, "count": count})
}

/// Every request of this file, in a fixed order.
fn cases() -> Vec<Value> {
    let mut cases = Vec::new();
    for n in [1, 7, 10, 33] {
        for world_size in [1, 2, 3, 4] {
            for rank in 0..world_size {
                for (shuffle, round_up) in [(true, true), (true, false), (false, true), (false, false)] {
                    cases.push(default_case(n, 42, 3, world_size, rank, shuffle, round_up));
                }
            }
        }
    }
    for (seed, epoch) in [(0, 0), (0, 1), (-3, 1), (1 << 40, 7), (12345, 0)] {
        cases.push(default_case(100, seed, epoch, 2, 1, true, true));
    }
    for n in [1, 5, 13] {
        for world_size in [1, 2, 3] {
            for rank in 0..world_size {
                for shuffle in [true, false] {
                    cases.push(infinite_case(n, 7, world_size, rank, shuffle, 40));
                }
            }
        }
    }
    for (n, batch_size) in [(23, 2), (23, 3), (40, 4), (9, 8)] {
        let s = sizes(n, n as u64);
        for drop_last in [false, true] {
            for rank in 0..2 {
                let sampler = default_case(n, 5, 2, 2, rank, true, true);
                cases.push(aspect_case(&s, batch_size, drop_last, sampler, None));
            }
        }
        let sampler = infinite_case(n, 9, 2, 1, true, 0);
        cases.push(aspect_case(&s, batch_size, false, sampler, Some(25)));
    }
    // A leftover of exactly `batch_size` is dropped with `drop_last` (MMDetection's `<=`).
    let sampler = default_case(2, 0, 0, 1, 0, false, true);
    cases.push(aspect_case(&[(1, 2), (2, 1)], 2, true, sampler.clone(), None));
    cases.push(aspect_case(&[(1, 2), (2, 1)], 2, false, sampler, None));
    cases
}

/// MMEngine's/MMDetection's answer to each of `cases()`.
fn answers() -> &'static [Value] {
    static ANSWERS: OnceLock<Vec<Value>> = OnceLock::new();
    ANSWERS.get_or_init(|| {
        crate::support::ask_python("tests/samplers/reference.py", &[], &cases())
    })
}

/// The (request, answer) pairs of one kind.
fn reference(kind: &str) -> Vec<(Value, Value)> {
    let pairs: Vec<_> = cases().into_iter().zip(answers().iter().cloned()).filter(|(c, _)| c["kind"] == kind).collect();
    assert!(!pairs.is_empty());
    pairs
}

fn as_usize(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

fn indices(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(as_usize).collect()
}

fn batches(v: &Value) -> Vec<Vec<usize>> {
    v.as_array().unwrap().iter().map(indices).collect()
}

fn shard(case: &Value) -> Shard {
    Shard::new(as_usize(&case["rank"]), as_usize(&case["world_size"])).unwrap()
}

fn sampler_of(case: &Value) -> Sampler {
    let (n, seed, shuffle) = (as_usize(&case["n"]), case["seed"].as_i64().unwrap(), case["shuffle"].as_bool().unwrap());
    if case["kind"] == "default" {
        let mut s = DefaultSampler::new(n, shuffle, seed, case["round_up"].as_bool().unwrap(), shard(case)).unwrap();
        s.set_epoch(case["epoch"].as_u64().unwrap());
        Sampler::Default(s)
    } else {
        Sampler::Infinite(InfiniteSampler::new(n, shuffle, seed, shard(case)).unwrap())
    }
}

// --------------------------------------------------------------------------
// Samplers

#[test]
fn default_sampler_order_equals_mmengine() {
    for (case, answer) in reference("default") {
        let Sampler::Default(s) = sampler_of(&case) else { unreachable!() };
        let expected = indices(&answer);
        assert_eq!(s.indices(), expected, "{case}");
        assert_eq!(s.len(), expected.len(), "len(sampler) for {case}");
    }
}

#[test]
fn default_sampler_resumes_mid_epoch_with_the_remaining_order() {
    for (case, answer) in reference("default") {
        let Sampler::Default(s) = sampler_of(&case) else { unreachable!() };
        let expected = indices(&answer);
        for start in [0, 1, expected.len() / 2, expected.len()] {
            assert_eq!(s.indices_from(start), expected[start.min(expected.len())..], "start {start} of {case}");
        }
    }
}

#[test]
fn infinite_sampler_stream_equals_mmengine_and_resumes() {
    for (case, answer) in reference("infinite") {
        let s = sampler_of(&case);
        let expected = indices(&answer);
        assert_eq!(s.iter_from(0).take(expected.len()).collect::<Vec<_>>(), expected, "{case}");
        for start in [1, 7, 31] {
            let tail: Vec<usize> = s.iter_from(start).take(expected.len() - start).collect();
            assert_eq!(tail, expected[start..], "start {start} of {case}");
        }
    }
}

#[test]
fn aspect_ratio_batches_equal_mmdetection_and_resume() {
    for (case, answer) in reference("aspect") {
        let sizes: Vec<(u32, u32)> = serde_json::from_value(case["sizes"].clone()).unwrap();
        let a =
            AspectRatioBatchSampler::new(as_usize(&case["batch_size"]), case["drop_last"].as_bool().unwrap(), &sizes)
                .unwrap();
        let sampler = sampler_of(&case["sampler"]);
        let expected = batches(&answer);
        let batch_sampler = BatchSampler::AspectRatio(a);
        let got: Vec<Vec<usize>> = batch_sampler.batches_from(&sampler, 0).take(expected.len() + 1).collect();
        let bounded = case["count"].is_u64();
        assert_eq!(if bounded { &got[..expected.len()] } else { &got[..] }, expected, "{case}");
        for start in [1, expected.len() / 2].into_iter().filter(|&s| s <= expected.len()) {
            let tail: Vec<Vec<usize>> =
                batch_sampler.batches_from(&sampler, start).take(expected.len() - start).collect();
            assert_eq!(tail, expected[start..], "start {start} of {case}");
        }
    }
}

#[test]
fn plain_batches_chunk_the_sampler_and_resume() {
    let sampler = Sampler::Default(DefaultSampler::new(11, true, 3, true, Shard::SINGLE).unwrap());
    let order = sampler.iter_from(0).collect::<Vec<_>>();
    for drop_last in [false, true] {
        let plain = BatchSampler::Plain { batch_size: 4, drop_last };
        let all: Vec<Vec<usize>> = plain.batches_from(&sampler, 0).collect();
        let mut expected: Vec<Vec<usize>> = order.chunks(4).map(<[usize]>::to_vec).collect();
        if drop_last {
            expected.pop();
        }
        assert_eq!(all, expected);
        assert_eq!(plain.len(sampler.len()), expected.len());
        assert_eq!(plain.batches_from(&sampler, 1).collect::<Vec<_>>(), expected[1..]);
    }
}

#[test]
fn two_ranks_cover_every_sample_once_per_epoch_and_repeat_for_the_same_seed() {
    let n = 11;
    let ranks = |epoch: u64| -> Vec<Vec<usize>> {
        (0..2)
            .map(|rank| {
                let mut s = DefaultSampler::new(n, true, 2024, true, Shard::new(rank, 2).unwrap()).unwrap();
                s.set_epoch(epoch);
                s.indices()
            })
            .collect()
    };
    let epoch0 = ranks(0);
    assert_eq!(epoch0[0].len(), 6);
    assert_eq!(epoch0[1].len(), 6);
    let mut all: Vec<usize> = epoch0.concat();
    all.sort_unstable();
    let mut distinct = all.clone();
    distinct.dedup();
    assert_eq!(distinct, (0..n).collect::<Vec<_>>(), "every sample once");
    assert_eq!(all.len(), n + 1, "one padding sample");
    assert_eq!(ranks(0), epoch0, "same seed and epoch, same order");
    assert_ne!(ranks(1), epoch0, "another epoch reshuffles");
}

#[test]
fn samplers_build_from_config_sections() {
    use detc::registry::refs::{BatchSamplerCfg, DataSamplerCfg};
    let cfg = DataSamplerCfg(json!({"type": "DefaultSampler", "shuffle": false}));
    let s = Sampler::from_config(&cfg, 5, Shard::SINGLE, 0).unwrap();
    assert_eq!(s.iter_from(0).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    let cfg = DataSamplerCfg(json!({"type": "InfiniteSampler", "seed": 3}));
    assert!(Sampler::from_config(&cfg, 5, Shard::SINGLE, 0).unwrap().is_infinite());
    let cfg = BatchSamplerCfg(json!({"type": "AspectRatioBatchSampler"}));
    let b = BatchSampler::from_config(Some(&cfg), 2, false, &[(1, 2); 5]).unwrap();
    assert!(matches!(b, BatchSampler::AspectRatio(_)));
    let err = Sampler::from_config(&DataSamplerCfg(json!({"type": "Nope"})), 5, Shard::SINGLE, 0).unwrap_err();
    assert!(err.message.contains("`Nope`"), "{err}");
}

// --------------------------------------------------------------------------
// Loader

/// A packed sample whose pixels record the index and the first draw of its random stream.
fn fake_sample(index: usize, rng: &mut detc::data::SampleRng) -> PackedSample {
    let draw: u8 = rng.random();
    PackedSample {
        inputs: Image { data: vec![index as u8, draw], height: 1, width: 2, channels: 1 },
        meta: SampleMeta { img_id: Some(index as u64), ..SampleMeta::default() },
        gt_instances: PackedInstances::default(),
        ignored_instances: PackedInstances::default(),
    }
}

fn options(num_workers: usize, persistent_workers: bool) -> LoaderOptions {
    LoaderOptions {
        num_workers,
        prefetch_factor: 2,
        persistent_workers,
        max_refetch: Some(10),
        dataset_len: 40,
        redraw: None,
        seed: 11,
        timeout: Some(Duration::from_secs(20)),
    }
}

fn load_epochs(loader: &mut Loader, epochs: u64) -> Vec<Vec<(Vec<usize>, Vec<PackedSample>)>> {
    let sampler = Sampler::Default(DefaultSampler::new(40, true, 1, true, Shard::SINGLE).unwrap());
    let plain = BatchSampler::Plain { batch_size: 3, drop_last: false };
    (0..epochs)
        .map(|epoch| {
            let mut s = sampler.clone();
            s.set_epoch(epoch);
            loader
                .epoch(epoch, plain.batches_from(&s, 0), 0)
                .map(|b| {
                    let b = b.unwrap();
                    (b.indices, b.samples)
                })
                .collect()
        })
        .collect()
}

#[test]
fn loader_delivers_batches_in_sampler_order_with_any_number_of_workers() {
    // Workers that take longer on low indices finish out of order.
    let sample_fn: SampleFn = Arc::new(|index, rng| {
        std::thread::sleep(Duration::from_micros(((40 - index) * 50) as u64));
        Ok(Some(fake_sample(index, rng)))
    });
    let reference = load_epochs(&mut Loader::new(sample_fn.clone(), options(0, false)).unwrap(), 2);
    assert_eq!(reference[0].len(), 14);
    for (i, (indices, samples)) in reference[0].iter().enumerate() {
        assert_eq!(samples.iter().map(|s| s.meta.img_id.unwrap() as usize).collect::<Vec<_>>(), *indices, "batch {i}");
    }
    assert_ne!(reference[0], reference[1], "each epoch reshuffles and redraws");
    for (workers, persistent) in [(1, false), (3, false), (3, true)] {
        let got = load_epochs(&mut Loader::new(sample_fn.clone(), options(workers, persistent)).unwrap(), 2);
        assert_eq!(got, reference, "{workers} workers, persistent {persistent}");
    }
}

#[test]
fn loader_resumes_at_a_batch_position() {
    let sample_fn: SampleFn = Arc::new(|index, rng| Ok(Some(fake_sample(index, rng))));
    let sampler = Sampler::Default(DefaultSampler::new(40, true, 1, true, Shard::SINGLE).unwrap());
    let plain = BatchSampler::Plain { batch_size: 3, drop_last: false };
    let mut loader = Loader::new(sample_fn, options(2, true)).unwrap();
    let full: Vec<_> = loader.epoch(0, plain.batches_from(&sampler, 0), 0).map(|b| b.unwrap()).collect();
    // Stop after 2 batches, then resume at batch 5.
    let partial: Vec<_> = loader.epoch(0, plain.batches_from(&sampler, 0), 0).take(2).map(|b| b.unwrap()).collect();
    assert_eq!(partial[1].samples, full[1].samples);
    let resumed: Vec<_> = loader.epoch(0, plain.batches_from(&sampler, 5), 5).map(|b| b.unwrap()).collect();
    assert_eq!(resumed.len(), full.len() - 5);
    for (r, f) in resumed.iter().zip(&full[5..]) {
        assert_eq!((r.position, &r.indices, &r.samples), (f.position, &f.indices, &f.samples));
    }
}

#[test]
fn loader_refetches_dropped_samples_and_reports_errors_with_the_index() {
    // Odd indices are dropped: each is replaced by a random even one.
    let dropping: SampleFn = Arc::new(|index, rng| Ok((index % 2 == 0).then(|| fake_sample(index, rng))));
    let mut loader = Loader::new(dropping.clone(), options(2, false)).unwrap();
    for epoch in load_epochs(&mut loader, 1) {
        for (_, samples) in epoch {
            assert!(samples.iter().all(|s| s.meta.img_id.unwrap() % 2 == 0));
        }
    }
    let mut test_mode = options(0, false);
    test_mode.max_refetch = None;
    let mut loader = Loader::new(dropping, test_mode).unwrap();
    let err = loader.epoch(0, Box::new(vec![vec![0, 1]].into_iter()), 0).next().unwrap().unwrap_err();
    assert!(err.message.contains("dataset sample 1"), "{err}");

    let failing: SampleFn = Arc::new(|index, rng| {
        if index == 7 {
            return Err(DataError::new("broken.jpg: not a JPEG file"));
        }
        Ok(Some(fake_sample(index, rng)))
    });
    for workers in [0, 3] {
        let mut loader = Loader::new(failing.clone(), options(workers, false)).unwrap();
        let results: Vec<_> = loader.epoch(0, Box::new((0..10).map(|i| vec![i])), 0).collect();
        assert_eq!(results.len(), 8, "stops after the error");
        let err = results[7].as_ref().unwrap_err();
        assert_eq!(err.message, "dataset sample 7: broken.jpg: not a JPEG file");
    }
}

#[test]
fn loader_bounds_prefetch_and_shuts_down_when_dropped() {
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let sample_fn: SampleFn = Arc::new(move |index, rng| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(Some(fake_sample(index, rng)))
    });
    let mut loader = Loader::new(sample_fn, options(2, true)).unwrap();
    let mut epoch = loader.epoch(0, Box::new((0..1000).map(|i| vec![i % 40])), 0);
    let first = epoch.next().unwrap().unwrap();
    assert_eq!(first.indices, vec![0]);
    std::thread::sleep(Duration::from_millis(50));
    // 2 workers x prefetch 2 in flight after the first batch, plus the first.
    assert!(started.load(Ordering::SeqCst) <= 5, "loaded {} samples", started.load(Ordering::SeqCst));
    drop(epoch);
    drop(loader); // joins the workers; a hang here fails the test by timeout
}

#[test]
fn loader_reports_a_timeout_and_the_wait_as_data_time() {
    let slow: SampleFn = Arc::new(|index, rng| {
        std::thread::sleep(Duration::from_millis(if index == 1 { 300 } else { 20 }));
        Ok(Some(fake_sample(index, rng)))
    });
    let mut opts = options(1, false);
    opts.timeout = Some(Duration::from_millis(100));
    let mut loader = Loader::new(slow, opts).unwrap();
    let mut epoch = loader.epoch(0, Box::new((0..3).map(|i| vec![i])), 0);
    let first = epoch.next().unwrap().unwrap();
    assert!(first.data_time >= Duration::from_millis(15), "waited {:?}", first.data_time);
    let err = epoch.next().unwrap().unwrap_err();
    assert!(err.message.contains("`timeout`"), "{err}");
    assert!(epoch.next().is_none());
}
