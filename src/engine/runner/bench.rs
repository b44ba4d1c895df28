//! `detc bench`: real training steps of a config on its data, timed by
//! phase (data wait, forward with the losses, backward, gradient all-reduce,
//! optimizer step), then inference on the validation data (the training data
//! without one); images per second, and peak memory. The run is the one
//! `detc run` would make, without its hooks (no logging, checkpoints or
//! scheduler steps), in a throw-away work dir. In a job of several
//! processes every rank runs the same steps on its shard; rank 0 reports,
//! its phase times and the images per second of the whole job (its own
//! times the number of processes: the ranks step together). `--synthetic`
//! reads generated images at the config's scale instead of its dataset.

use std::time::Instant;

use serde_json::{json, Value};
use tch::Device;

use super::build::Runner;
use super::synthetic;
use super::{input, runtime, Failure, RunArgs};
use crate::engine::data::DataParts;
use crate::engine::native::{self, timing::CudaEvent, NativeError};
use crate::engine::profile;
use crate::models::ops::upload::wait_for;

/// The phases of a train step, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Preprocessing, the forward pass and the losses on the host.
    Forward,
    /// Backward, with DDP's gradient all-reduce in a job of several (its
    /// reducer all-reduces buckets while backward runs and waits for the
    /// last ones before backward returns).
    Backward,
    /// Gradient synchronisation left after backward: none with DDP's
    /// reducer, which overlaps it with backward (its cost shows in the
    /// backward time), so this reads about 0.
    AllReduce,
    /// Clipping, the optimizer step and zeroing the gradients.
    Optimizer,
}

impl Phase {
    /// The phase's name in the section profile (`DETC_PROFILE`).
    fn name(self) -> &'static str {
        match self {
            Phase::Forward => "forward: the rest",
            Phase::Backward => "backward",
            Phase::AllReduce => "all-reduce",
            Phase::Optimizer => "optimizer",
        }
    }
}

/// Seconds per phase of one step. Off (training) it records nothing. On
/// the CPU each mark reads the host's clock. On CUDA it never waits for the
/// device, which the reference harnesses do not do either (a wait at each
/// phase would leave the GPU idle while the host launches the next one and
/// prepares the next batch): each mark records a timing event on the
/// stream, and [`StepTimes::seconds`] reads the spans between them on the
/// device's clock once the timed steps are over.
#[derive(Debug)]
pub struct StepTimes {
    clock: Clock,
}

#[derive(Debug)]
enum Clock {
    Off,
    Host { last: Instant, seconds: [f64; 4] },
    /// The step's start event, then one per mark; the first failure to
    /// record one, reported by `seconds`.
    Cuda { index: usize, events: Vec<(Option<Phase>, CudaEvent)>, failed: Option<NativeError> },
}

impl StepTimes {
    pub fn off() -> Self {
        StepTimes { clock: Clock::Off }
    }

    fn on(device: Device) -> Self {
        let clock = match device {
            Device::Cuda(index) => Clock::Cuda { index, events: Vec::with_capacity(5), failed: None },
            _ => Clock::Host { last: Instant::now(), seconds: [0.0; 4] },
        };
        StepTimes { clock }
    }

    pub fn start(&mut self) {
        if !matches!(self.clock, Clock::Off) {
            profile::restart();
        }
        self.record(None);
    }

    /// Ends `phase` now.
    pub fn mark(&mut self, phase: Phase) {
        if !matches!(self.clock, Clock::Off) {
            profile::section(phase.name());
        }
        self.record(Some(phase));
    }

    fn record(&mut self, phase: Option<Phase>) {
        match &mut self.clock {
            Clock::Off => {}
            Clock::Host { last, seconds } => {
                let now = Instant::now();
                if let Some(phase) = phase {
                    seconds[phase as usize] += (now - *last).as_secs_f64();
                }
                *last = now;
            }
            Clock::Cuda { index, events, failed } => match CudaEvent::record(*index) {
                Ok(event) => events.push((phase, event)),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            },
        }
    }

    /// Each phase's seconds; on CUDA this waits for the step's last event.
    fn seconds(&self) -> Result<[f64; 4], NativeError> {
        match &self.clock {
            Clock::Off => Ok([0.0; 4]),
            Clock::Host { seconds, .. } => Ok(*seconds),
            Clock::Cuda { failed: Some(e), .. } => Err(e.clone()),
            Clock::Cuda { events, .. } => {
                let mut seconds = [0.0; 4];
                for pair in events.windows(2) {
                    if let ((_, from), (Some(phase), to)) = (&pair[0], &pair[1]) {
                        seconds[*phase as usize] += from.seconds_to(to)?;
                    }
                }
                Ok(seconds)
            }
        }
    }
}

/// `detc-engine bench` arguments.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Timed iterations (train steps, then inference batches).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed iterations first (allocator, cuDNN autotuning, caches).
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// `cpu` or `cuda` (default: cuda when the engine sees a GPU).
    #[arg(long)]
    pub device: Option<String>,
    /// Generated shapes images at the config's scale instead of its dataset.
    #[arg(long)]
    pub synthetic: bool,
}

/// Runs the benchmark; returns the exit code.
pub fn bench(config: &Value, args: &BenchArgs) -> i32 {
    let work_dir = std::env::temp_dir().join(format!("detc-bench-{}", std::process::id()));
    let run_args = RunArgs {
        work_dir: work_dir.clone(),
        config_stem: "bench".into(),
        resume: false,
        resume_from: None,
        auto_scale_lr: false,
        device: args.device.clone(),
        quiet: true,
    };
    let config = if args.synthetic {
        synthetic::with_synthetic_data(config, &work_dir.join("synthetic")).map_err(input)
    } else {
        Ok(config.clone())
    };
    let result = config
        .and_then(|config| Runner::build(&config, &run_args))
        .and_then(|(mut runner, mut data)| runner.bench(&mut data, args));
    let _ = std::fs::remove_dir_all(&work_dir);
    match result {
        Ok(None) => 0,
        Ok(Some(report)) if args.json => {
            println!("{report}");
            0
        }
        Ok(Some(report)) => {
            print!("{}", table(&report));
            0
        }
        Err((code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

impl Runner {
    /// The report, on rank 0 (`None` on the other ranks of a job).
    fn bench(&mut self, data: &mut DataParts, args: &BenchArgs) -> Result<Option<Value>, Failure> {
        if args.iters == 0 {
            return Err(input("--iters must be at least 1"));
        }
        let device = self.state.vs.device();
        let (mut data_wait, mut images, mut batch_size) = (0.0, 0usize, 0usize);
        // The timed steps' phase marks, read once they are over (on CUDA the
        // device's events: reading one waits for it).
        let mut timed = Vec::with_capacity(args.iters);
        let mut started = None;
        let mut step = 0usize;
        // The steps' losses, read once the timed steps are over (as a run
        // reads them at its log interval): the last total shows the steps
        // trained, and a non-finite one stops the benchmark with an error.
        let mut unread = Vec::with_capacity(args.warmup + args.iters);
        // A Chrome trace of the timed steps, of rank 0 in a job of several
        // (the ranks run the same steps); its file is made now, as the
        // profiler only logs a file it cannot write.
        let rank0 = self.dist.as_ref().is_none_or(|d| d.rank() == 0);
        let trace = match std::env::var_os("DETC_TRACE").filter(|p| !p.is_empty() && rank0) {
            Some(path) => {
                let path = std::path::PathBuf::from(path);
                std::fs::File::create(&path).map_err(|e| input(format!("DETC_TRACE={}: {e}", path.display())))?;
                Some(path)
            }
            None => None,
        };
        for_batches(data, args.warmup + args.iters, |batch| {
            let (n, wait) = (batch.samples.len(), batch.data_time.as_secs_f64());
            if step == args.warmup {
                // The peak over the timed steps, as the references measure it:
                // cuDNN's autotuning tries workspaces during warm-up only.
                let _ = crate::engine::native::cuda_peak_memory_mb(device);
                if profile::requested() {
                    profile::start(device);
                }
                if let Some(path) = &trace {
                    native::trace::start(device.is_cuda())
                        .map_err(|e| runtime(format!("DETC_TRACE={}: {e}", path.display())))?;
                    profile::mark_trace(true);
                }
                // The timed steps run between two waits for the device, as
                // the references' do, and none in between.
                wait_for(device);
                started = Some(Instant::now());
            }
            let mut times = StepTimes::on(device);
            unread.push(self.timed_train_step(batch.samples, &mut times)?);
            self.state.iter += 1;
            if step >= args.warmup {
                timed.push(times);
                data_wait += wait;
                images += n;
                batch_size = batch_size.max(n);
            }
            step += 1;
            Ok(())
        })?;
        wait_for(device);
        let wall = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let logged = self.read_train_values(unread)?;
        let last_loss = logged.iter().rev().find(|(k, _)| k == "loss").map(|(_, v)| *v);
        let mut phases = [0.0; 4];
        for times in &timed {
            let seconds = times.seconds().map_err(|e| runtime(format!("timing the phases: {e}")))?;
            (0..4).for_each(|i| phases[i] += seconds[i]);
        }
        drop(timed);
        if let Some(path) = &trace {
            profile::mark_trace(false);
            native::trace::stop(path).map_err(|e| runtime(format!("DETC_TRACE={}: {e}", path.display())))?;
            if std::fs::metadata(path).map_or(true, |m| m.len() == 0) {
                return Err(runtime(format!("DETC_TRACE={}: the profiler wrote no trace", path.display())));
            }
        }
        let train_peak = crate::engine::native::cuda_peak_memory_mb(device);
        let sections = profile::finish();
        let per_step = |s: f64| s / args.iters as f64;
        let (rank, processes) = self
            .dist
            .as_ref()
            .map_or((0, 1), |d| (d.rank(), d.world_size()));
        let mut train = json!({
            "batch_size": batch_size,
            "images_per_s": (processes * images) as f64 / wall,
            "step_s": per_step(wall),
            "data_wait_s": per_step(data_wait),
            "forward_s": per_step(phases[Phase::Forward as usize]),
            "backward_s": per_step(phases[Phase::Backward as usize]),
            "all_reduce_s": per_step(phases[Phase::AllReduce as usize]),
            "optimizer_s": per_step(phases[Phase::Optimizer as usize]),
            "peak_memory_mb": train_peak,
            "loss": last_loss,
        });
        if !sections.is_empty() {
            train["sections_s"] = sections.seconds.iter().map(|(k, v)| (k.to_string(), json!(per_step(*v)))).collect();
            let per_step_count = |n: i64| n as f64 / args.iters as f64;
            train["sections_ops"] = sections
                .counts
                .iter()
                .map(|(k, c)| {
                    let counts = json!({"ops": per_step_count(c.ops), "dispatched": per_step_count(c.dispatched), "syncs": per_step_count(c.syncs)});
                    (k.to_string(), counts)
                })
                .collect();
        }
        let inference = self.bench_inference(data, args, processes)?;
        if rank != 0 {
            return Ok(None);
        }
        let max_rss_mb = max_rss_mb();
        Ok(Some(json!({
            "device": format!("{device:?}").to_lowercase(),
            "processes": processes,
            "iters": args.iters,
            "warmup": args.warmup,
            "train": train,
            "inference": inference,
            "max_rss_mb": max_rss_mb,
        })))
    }

    /// `model.predict` on the validation batches (the training ones without),
    /// each of the `processes` on its own shard.
    fn bench_inference(
        &mut self,
        train: &mut DataParts,
        args: &BenchArgs,
        processes: usize,
    ) -> Result<Value, Failure> {
        let device = self.state.vs.device();
        let (model, pre) = (&self.model, &self.pre);
        let data = match self.val.as_mut() {
            Some((val, _)) => val,
            None => train,
        };
        let (mut started, mut images, mut step, mut batch_size) = (None, 0usize, 0usize, 0usize);
        for_batches(data, args.warmup + args.iters, |batch| {
            let n = batch.samples.len();
            if step == args.warmup {
                let _ = crate::engine::native::cuda_peak_memory_mb(device); // as in training
                wait_for(device);
                started = Some(Instant::now());
            }
            let det = pre.forward(batch.samples, false).map_err(input)?;
            tch::no_grad(|| model.predict(&det, true)).map_err(runtime)?;
            if step >= args.warmup {
                images += n;
                batch_size = batch_size.max(n);
            }
            step += 1;
            Ok(())
        })?;
        wait_for(device);
        let wall = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        Ok(json!({
            "batch_size": batch_size,
            "images_per_s": (processes * images) as f64 / wall,
            "batch_s": wall / args.iters as f64,
            "peak_memory_mb": crate::engine::native::cuda_peak_memory_mb(device),
        }))
    }
}

/// Calls `f` on `n` batches of `data`, epoch after epoch as needed.
fn for_batches(
    data: &mut DataParts,
    n: usize,
    mut f: impl FnMut(detc::data::loader::Batch) -> Result<(), Failure>,
) -> Result<(), Failure> {
    if data.len() == 0 {
        return Err(input("the dataloader has no batches (empty dataset?)"));
    }
    let (mut done, mut epoch) = (0, 0);
    while done < n {
        let batches = data.batches(epoch, 0);
        for batch in data.loader.epoch(epoch, batches, 0) {
            f(batch.map_err(input)?)?;
            done += 1;
            if done == n {
                break;
            }
        }
        epoch += 1;
    }
    Ok(())
}

/// This process's peak resident memory (`getrusage`), in MiB.
fn max_rss_mb() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    (usage.ru_maxrss.max(0) as u64) / 1024
}

/// The report for people.
fn table(r: &Value) -> String {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let ms = |v: &Value, k: &str| f(v, k) * 1000.0;
    let (t, i) = (&r["train"], &r["inference"]);
    let memory = match (t["peak_memory_mb"].as_u64(), i["peak_memory_mb"].as_u64()) {
        (Some(a), Some(b)) => format!("peak GPU memory: train {a} MiB, inference {b} MiB"),
        _ => format!("peak resident memory: {} MiB", r["max_rss_mb"]),
    };
    let processes = match r["processes"].as_u64() {
        Some(n) if n > 1 => format!(" x {n} processes (img/s of all, times of rank 0)"),
        _ => String::new(),
    };
    let sections: String = t["sections_s"]
        .as_object()
        .map(|o| {
            let header = "  section times per step, with the operators called and the host synchronisations\n";
            let rows = o.iter().map(|(k, v)| {
                let c = &t["sections_ops"][k];
                format!(
                    "  {:>8.2} ms {:>7.0} ops {:>5.0} syncs  {k}\n",
                    v.as_f64().unwrap_or(f64::NAN) * 1000.0,
                    f(c, "ops"),
                    f(c, "syncs"),
                )
            });
            std::iter::once(header.to_string()).chain(rows).collect()
        })
        .unwrap_or_default();
    format!(
        "device {}{processes}, {} timed iterations after {} warm-up\n\
         train      {:8.2} img/s  batch {:3}  step {:8.1} ms = data wait {:.1} + forward {:.1} + backward {:.1} + all-reduce {:.1} + optimizer {:.1} (+ the rest)\n\
         inference  {:8.2} img/s  batch {:3}  time {:8.1} ms\n\
         {sections}{memory}\n",
        r["device"].as_str().unwrap_or("?"),
        r["iters"],
        r["warmup"],
        f(t, "images_per_s"),
        t["batch_size"],
        ms(t, "step_s"),
        ms(t, "data_wait_s"),
        ms(t, "forward_s"),
        ms(t, "backward_s"),
        ms(t, "all_reduce_s"),
        ms(t, "optimizer_s"),
        f(i, "images_per_s"),
        i["batch_size"],
        ms(i, "batch_s"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_index_their_slots() {
        let phases = [
            Phase::Forward,
            Phase::Backward,
            Phase::AllReduce,
            Phase::Optimizer,
        ];
        assert_eq!(phases.map(|p| p as usize), [0, 1, 2, 3]);
        let mut off = StepTimes::off();
        off.start();
        off.mark(Phase::Backward);
        assert_eq!(off.seconds().unwrap(), [0.0; 4], "off records nothing");
    }

    #[test]
    fn host_clock_splits_the_step_at_the_marks() {
        let mut times = StepTimes::on(Device::Cpu);
        times.start();
        std::thread::sleep(std::time::Duration::from_millis(20));
        times.mark(Phase::Forward);
        times.mark(Phase::Backward);
        std::thread::sleep(std::time::Duration::from_millis(10));
        times.mark(Phase::Optimizer);
        let [forward, backward, all_reduce, optimizer] = times.seconds().unwrap();
        assert!(forward >= 0.02 && backward < 0.01 && all_reduce == 0.0 && optimizer >= 0.01, "{:?}", times.seconds());
    }
}
