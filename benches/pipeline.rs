//! Training-pipeline throughput, detc against MMDetection, side by side in one run:
//!
//!     scripts/bench-pipeline          # or: cargo bench --no-default-features --bench pipeline
//!
//! The pipeline of `coco_instance.py` (LoadImageFromFile, LoadAnnotations
//! with masks, Resize 1333x800 keep_ratio, RandomFlip 0.5, PackDetInputs)
//! over the same JPEG files: a `detc data shapes` dataset (200 images of
//! 640x640 with polygon masks, generated once under `target/bench-pipeline`).
//! Both sides use 2 workers (`DETC_BENCH_WORKERS=N` to change): detc's
//! loader (`data::loader`) with as many persistent worker threads, MMDetection a torch DataLoader with as many worker processes
//! (persistent, batch size 1, `pseudo_collate`), from `.venv-test`
//! (scripts/test-env). Rounds (one epoch each) alternate so that both see
//! the same load on the machine; each side's fastest round is reported in
//! images per second.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use detc::data::coco::CocoDataset;
use detc::data::shapes::{write_dataset, ShapesOptions};
use detc::data::loader::{Loader, LoaderOptions, SampleFn};
use detc::data::samplers::{BatchSampler, DefaultSampler, Sampler, Shard};
use detc::data::transforms::Pipeline;
use detc::data::{sample_rng, Sample};
use serde_json::json;

// The allocator the binaries ship with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IMAGES: u32 = 200;
const SIZE: u32 = 640;
/// Workers on each side; `DETC_BENCH_WORKERS` overrides.
fn workers() -> usize {
    std::env::var("DETC_BENCH_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2)
}
const ROUNDS: usize = 10;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv-test/bin/python");
    if !python.exists() {
        eprintln!("error: {} is missing; run scripts/test-env first", python.display());
        std::process::exit(1);
    }
    let data = root.join(format!("target/bench-pipeline/shapes-{SIZE}-{IMAGES}"));
    if !data.join("annotations/instances_train.json").exists() {
        let opts = ShapesOptions { train: IMAGES, val: 0, size: SIZE, seed: 0 };
        write_dataset(&data, &opts).expect("shapes dataset is written");
    }
    let pipeline_cfg = json!([
        {"type": "LoadImageFromFile"},
        {"type": "LoadAnnotations", "with_bbox": true, "with_mask": true},
        {"type": "Resize", "scale": [1333, 800], "keep_ratio": true},
        {"type": "RandomFlip", "prob": 0.5},
        {"type": "PackDetInputs"},
    ]);
    let dataset_cfg = json!({
        "type": "CocoDataset",
        "data_root": data.to_str().expect("utf-8 path"),
        "ann_file": "annotations/instances_train.json",
        "data_prefix": {"img": "train/"},
    });
    let dataset = Arc::new(CocoDataset::from_config(&dataset_cfg, &root).expect("dataset loads"));
    let pipeline = Pipeline::from_config(pipeline_cfg.as_array().expect("list")).expect("pipeline builds");
    let mut ours_loader = loader(&dataset, pipeline);

    if std::env::var_os("DETC_BENCH_PROFILE").is_some() {
        // detc alone, for a profiler: `DETC_BENCH_PROFILE=1 perf record -g <bench binary>`
        for round in 0..20 {
            epoch(&mut ours_loader, round);
        }
        return;
    }
    let mut mmdet = MmdetEpochs::start(&python, &root.join("tests/pipeline/bench_mmdet.py"), &data);
    epoch(&mut ours_loader, 0); // warm-up (starts the workers)
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut our_cpu, mut their_cpu) = (0.0, 0.0);
    for round in 1..=ROUNDS {
        let before = cpu_seconds(std::process::id());
        ours.push(epoch(&mut ours_loader, round as u64));
        our_cpu += cpu_seconds(std::process::id()) - before;
        let (wall, cpu) = mmdet.epoch();
        theirs.push(wall);
        their_cpu += cpu;
    }
    let n = dataset.len() as f64;
    let (best_ours, best_theirs) = (min(&ours), min(&theirs));
    println!(
        "training pipeline, {} images {SIZE}x{SIZE} with masks, {} workers, best of {ROUNDS} alternating epochs",
        dataset.len(),
        workers()
    );
    println!("{:<14} {:>12} {:>12}", "", "images/s", "ms/image");
    println!("{:<14} {:>12.1} {:>12.2}", "detc", n / best_ours, best_ours * 1e3 / n * workers() as f64);
    println!("{:<14} {:>12.1} {:>12.2}", "MMDetection", n / best_theirs, best_theirs * 1e3 / n * workers() as f64);
    println!("ratio {:.2}x   (ms/image is per worker)", best_theirs / best_ours);
    let per_image = |cpu: f64| cpu * 1e3 / (n * ROUNDS as f64);
    println!(
        "CPU time per image (user + system, all processes, mean over the rounds): detc {:.2} ms, MMDetection {:.2} ms, ratio {:.2}x",
        per_image(our_cpu),
        per_image(their_cpu),
        their_cpu / our_cpu
    );
    breakdown(&dataset, pipeline_cfg.as_array().expect("list"));
    operations(&dataset);
}

/// The image operations alone on the first image, one thread, mean ms.
fn operations(dataset: &CocoDataset) {
    use detc::data::image::{flip, read_image, resize_linear, resize_nearest_planes, ColorMode};
    use detc::data::Flip;
    let path = dataset.get(0).img_path.clone();
    let img = read_image(&path, ColorMode::Color).expect("decodes");
    let (w, h) = ((img.width * 5 + 2) / 4, (img.height * 5 + 2) / 4);
    let mask = vec![1u8; img.width * img.height];
    let time = |name: &str, f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..20 {
            f();
        }
        format!("{name} {:.2}", start.elapsed().as_secs_f64() * 1e3 / 20.0)
    };
    let parts = [
        time("decode", &mut || drop(std::hint::black_box(read_image(&path, ColorMode::Color)))),
        time("resize image", &mut || drop(std::hint::black_box(resize_linear(&img, w, h)))),
        time("resize 1 mask", &mut || {
            drop(std::hint::black_box(resize_nearest_planes(&mask, 1, img.height, img.width, 1, h, w)))
        }),
        time("flip image", &mut || drop(std::hint::black_box(flip(&img, Flip::Horizontal)))),
    ];
    println!("detc operations on one {}x{} image to {w}x{h}, ms: {}", img.width, img.height, parts.join(", "));
}

/// Where detc's time goes: one thread, cumulative ms/image as transforms are added.
fn breakdown(dataset: &CocoDataset, transforms: &[serde_json::Value]) {
    let pack = transforms.last().expect("PackDetInputs").clone();
    let mut parts = Vec::new();
    for k in 1..transforms.len() {
        let mut cfg = transforms[..k].to_vec();
        cfg.push(pack.clone());
        let pipeline = Pipeline::from_config(&cfg).expect("pipeline builds");
        let start = Instant::now();
        for i in 0..dataset.len() {
            let packed = pipeline.apply(Sample::new(dataset.get(i), i), &mut sample_rng(0, 0, i)).expect("runs");
            std::hint::black_box(packed);
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / dataset.len() as f64;
        parts.push(format!("+{} {ms:.2}", transforms[k - 1]["type"].as_str().unwrap_or("?")));
    }
    println!("detc, one thread, cumulative ms/image: {}", parts.join(", "));
}

/// User plus system CPU seconds of process `pid` so far (Linux `/proc`; 0 elsewhere).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // clock ticks of 1/100 s (USER_HZ on Linux)
    (tick(11) + tick(12)) / 100.0
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// detc's loader as MMDetection's side is set up: `workers()` persistent
/// worker threads, batch size 1, dataset order.
fn loader(dataset: &Arc<CocoDataset>, pipeline: Pipeline) -> Loader {
    let data = dataset.clone();
    let sample_fn: SampleFn = Arc::new(move |i, rng| pipeline.apply(Sample::new(data.get(i), i), rng));
    let options = LoaderOptions {
        num_workers: workers(),
        prefetch_factor: 2,
        persistent_workers: true,
        max_refetch: None,
        dataset_len: dataset.len(),
        redraw: None,
        seed: 0,
        timeout: None,
    };
    Loader::new(sample_fn, options).expect("loader starts")
}

/// One epoch through the loader; wall seconds.
fn epoch(loader: &mut Loader, epoch: u64) -> f64 {
    let len = loader.options().dataset_len;
    let sampler = Sampler::Default(DefaultSampler::new(len, false, 0, false, Shard::SINGLE).expect("sampler"));
    let batches = BatchSampler::Plain { batch_size: 1, drop_last: false }.batches_from(&sampler, 0);
    let start = Instant::now();
    for batch in loader.epoch(epoch, batches, 0) {
        std::hint::black_box(batch.expect("pipeline runs"));
    }
    start.elapsed().as_secs_f64()
}

/// MMDetection's DataLoader in a Python process, one epoch per request.
struct MmdetEpochs {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl MmdetEpochs {
    fn start(python: &Path, script: &Path, data: &Path) -> Self {
        let mut root = data.to_str().expect("utf-8 path").to_string();
        root.push('/');
        let mut child = Command::new(python)
            .arg(script)
            .arg(root)
            .arg(workers().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python starts");
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        // pycocotools prints its progress on stdout before `ready`.
        let mut line = String::new();
        while !line.starts_with("ready") {
            line.clear();
            let n = stdout.read_line(&mut line).expect("python answers");
            assert!(n > 0, "bench_mmdet.py exited before it was ready");
        }
        MmdetEpochs { child, stdin, stdout }
    }

    /// One epoch: (wall seconds, CPU seconds of the Python process and its workers).
    fn epoch(&mut self) -> (f64, f64) {
        writeln!(self.stdin, "round").expect("python reads");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("python answers");
        let mut it =
            line.split_whitespace().map(|v| v.parse::<f64>().unwrap_or_else(|_| panic!("bench_mmdet.py: {line}")));
        (it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN))
    }
}

impl Drop for MmdetEpochs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
