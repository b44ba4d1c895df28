//! Watching the workers of a job until they all succeed, or one fails.
//!
//! Each worker's stderr is forwarded line by line (a thread per worker) and
//! its last lines kept. The first worker to fail is named with its last lines,
//! then the others get SIGTERM and, after a grace period, SIGKILL. Ctrl-C to
//! the launcher stops the workers the same way. SIGTERM to the launcher (a
//! scheduler preempting the job) is passed on: the workers finish their
//! iteration, rank 0 saves a checkpoint, and they exit with
//! [`EXIT_PREEMPTED`], which is not a failure; SIGKILL follows only after
//! [`PREEMPT_GRACE`]. A [`Workers`]
//! dropped on any other path kills what is still running, so no worker is
//! ever left behind. Signals are polled (a flag set by the handler, checked
//! every 50 ms with `Child::try_wait`): simpler than a self-pipe, and fast
//! enough for a job that takes minutes.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cli::{EXIT_INPUT, EXIT_OK, EXIT_PREEMPTED, EXIT_RUNTIME};

/// The stderr lines of a failed worker repeated in the failure report.
pub const TAIL_LINES: usize = 20;
/// Between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);
/// Between a SIGTERM passed on to the workers and SIGKILL: time to finish
/// the iteration and write the checkpoint (Slurm's KillWait is 30 s by
/// default; a longer wait here only matters when the scheduler allows it).
pub const PREEMPT_GRACE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
/// How long to wait for a worker's stderr to reach its end once it exited
/// (a grandchild may keep the pipe open).
const DRAIN: Duration = Duration::from_secs(1);

/// The signal the launcher received (0: none).
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    SIGNALLED.store(signal, Ordering::SeqCst);
}

/// Makes the process `command` starts die with this one, however this one
/// ends (`PR_SET_PDEATHSIG`, SIGKILL), so that killing `detc` never strands
/// an engine holding a GPU. Torchrun and srun supervise their own workers;
/// this covers what `detc` starts.
pub fn die_with_launcher(command: &mut Command) {
    let launcher = std::process::id() as libc::pid_t;
    // SAFETY: prctl, getppid and _exit are async-signal-safe, as the code
    // between fork and exec must be.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The launcher may have died before the call: then nothing would.
            if libc::getppid() != launcher {
                libc::_exit(EXIT_RUNTIME);
            }
            Ok(())
        });
    }
}

/// The single engine `forward_sigterm_to` passes SIGTERM to (0: none).
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_sigterm_forward(signal: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Passes SIGTERM to the engine `pid` instead of ending this launcher, which
/// then waits for the engine's own exit status (a training engine saves and
/// exits with [`EXIT_PREEMPTED`]).
pub fn forward_sigterm_to(pid: u32) {
    FORWARD_TO.store(pid as i32, Ordering::SeqCst);
    let handler = on_sigterm_forward as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only loads an atomic and calls kill(2).
    unsafe {
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Makes Ctrl-C and SIGTERM stop the workers instead of killing the launcher outright.
pub fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every worker exited 0.
    Success,
    /// The first worker that did not; the others were stopped.
    Failed {
        rank: u32,
        pid: u32,
        status: ExitStatus,
    },
    /// The launcher got this signal; the workers were stopped.
    Interrupted(i32),
    /// SIGTERM was passed on; the workers saved and stopped.
    Preempted,
}

impl Outcome {
    /// DESIGN.md's exit codes, as a single engine's status maps to them.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Success => EXIT_OK,
            Outcome::Preempted => EXIT_PREEMPTED,
            Outcome::Failed { status, .. } if status.code() == Some(1) => EXIT_INPUT,
            _ => EXIT_RUNTIME,
        }
    }
}

struct Worker {
    rank: u32,
    child: Child,
    /// Set once reaped: the pid is then no longer ours to signal.
    status: Option<ExitStatus>,
    tail: Arc<Mutex<VecDeque<String>>>,
    forwarder: Option<JoinHandle<()>>,
}

impl Worker {
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            // An error (none expected for our own child) counts as still running.
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    fn signal(&mut self, signal: libc::c_int) {
        if self.poll().is_none() {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        }
    }

    /// Waits (up to `limit`) for the forwarder to reach the end of stderr.
    fn drain(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.forwarder.as_ref().is_some_and(|f| !f.is_finished()) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.forwarder.as_ref().is_some_and(|f| f.is_finished()) {
            let _ = self.forwarder.take().map(JoinHandle::join);
        }
    }
}

/// The running workers of this node; dropping it kills those still running.
#[derive(Default)]
pub struct Workers {
    workers: Vec<Worker>,
}

impl Workers {
    /// Adds a started worker; its stderr, if piped, is forwarded from now on.
    pub fn push(&mut self, rank: u32, mut child: Child) {
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let forwarder = child.stderr.take().map(|stderr| {
            let tail = Arc::clone(&tail);
            std::thread::spawn(move || forward(stderr, &tail))
        });
        self.workers.push(Worker {
            rank,
            child,
            status: None,
            tail,
            forwarder,
        });
    }

    /// The process ids, in rank order of starting.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.child.id()).collect()
    }

    /// Waits for the job to end, as the module doc says.
    pub fn supervise(mut self) -> Outcome {
        let mut preempt_deadline: Option<Instant> = None;
        loop {
            match SIGNALLED.load(Ordering::SeqCst) {
                0 => {}
                libc::SIGTERM if preempt_deadline.is_none() => {
                    eprintln!(
                        "received SIGTERM: the workers stop after their current iteration and save a checkpoint"
                    );
                    self.workers
                        .iter_mut()
                        .for_each(|w| w.signal(libc::SIGTERM));
                    preempt_deadline = Some(Instant::now() + PREEMPT_GRACE);
                }
                libc::SIGTERM => {}
                signal => {
                    eprintln!("error: received signal {signal}; stopping the workers");
                    self.stop();
                    return Outcome::Interrupted(signal);
                }
            }
            if preempt_deadline.is_some_and(|d| Instant::now() >= d) {
                eprintln!(
                    "error: the workers did not stop within {} s of SIGTERM; killing them",
                    PREEMPT_GRACE.as_secs()
                );
                self.kill_all();
                return Outcome::Interrupted(libc::SIGTERM);
            }
            let (mut running, mut preempted) = (false, false);
            for i in 0..self.workers.len() {
                match self.workers[i].poll() {
                    None => running = true,
                    Some(status) if status.success() => {}
                    // Not a failure: the others stop after the same iteration.
                    Some(status) if status.code() == Some(EXIT_PREEMPTED) => preempted = true,
                    Some(status) => return self.fail(i, status),
                }
            }
            if !running {
                self.workers.iter_mut().for_each(|w| w.drain(DRAIN));
                return if preempted {
                    Outcome::Preempted
                } else {
                    Outcome::Success
                };
            }
            std::thread::sleep(POLL);
        }
    }

    /// Reports worker `i`'s failure, then stops the others.
    fn fail(&mut self, i: usize, status: ExitStatus) -> Outcome {
        let worker = &mut self.workers[i];
        worker.drain(DRAIN);
        let (rank, pid) = (worker.rank, worker.child.id());
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("failed with exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => format!("failed ({status})"),
        };
        let mut report = format!("error: rank {rank} (pid {pid}) {how}\n");
        let tail = worker.tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.is_empty() {
            report.push_str("  (it wrote nothing on stderr)\n");
        } else {
            report.push_str(&format!("  its last stderr lines ({}):\n", tail.len()));
            tail.iter()
                .for_each(|line| report.push_str(&format!("  | {line}\n")));
        }
        drop(tail);
        let _ = std::io::stderr().lock().write_all(report.as_bytes());
        if self.workers.iter_mut().any(|w| w.poll().is_none()) {
            eprintln!("stopping the other workers");
        }
        self.stop();
        Outcome::Failed { rank, pid, status }
    }

    /// SIGTERM to every running worker, SIGKILL to those alive after [`GRACE`].
    fn stop(&mut self) {
        self.workers
            .iter_mut()
            .for_each(|w| w.signal(libc::SIGTERM));
        let deadline = Instant::now() + GRACE;
        while self.workers.iter_mut().any(|w| w.poll().is_none()) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        self.kill_all();
    }

    fn kill_all(&mut self) {
        for w in &mut self.workers {
            if w.poll().is_none() {
                let _ = w.child.kill();
                w.status = w.child.wait().ok();
            }
        }
        self.workers.iter_mut().for_each(|w| w.drain(DRAIN));
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Copies a worker's stderr to ours line by line, keeping the last lines.
fn forward(stderr: std::process::ChildStderr, tail: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        let _ = std::io::stderr().lock().write_all(&line);
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn sh(script: &str) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn alive(pid: u32) -> bool {
        // A reaped child is gone; kill(pid, 0) fails with ESRCH.
        unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
    }

    #[test]
    fn all_zero_is_success() {
        let mut workers = Workers::default();
        workers.push(0, sh("echo zero >&2"));
        workers.push(1, sh("exit 0"));
        assert!(matches!(workers.supervise(), Outcome::Success));
    }

    #[test]
    fn a_failure_stops_the_others_and_keeps_its_last_lines() {
        let mut workers = Workers::default();
        workers.push(0, sh("exec sleep 1000"));
        workers.push(
            1,
            sh("for i in $(seq 1 30); do echo line $i >&2; done; exit 3"),
        );
        let pids = workers.pids();
        let tail = Arc::clone(&workers.workers[1].tail);
        let start = Instant::now();
        let outcome = workers.supervise();
        assert!(start.elapsed() < Duration::from_secs(15));
        assert!(
            matches!(outcome, Outcome::Failed { rank: 1, .. }),
            "{outcome:?}"
        );
        assert_eq!(outcome.exit_code(), EXIT_RUNTIME);
        let tail = tail.lock().unwrap();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(
            (tail[0].as_str(), tail[19].as_str()),
            ("line 11", "line 30")
        );
        assert!(pids.iter().all(|&p| !alive(p)));
    }

    #[test]
    fn exit_code_1_is_an_input_error_and_a_term_ignoring_worker_is_killed() {
        let mut workers = Workers::default();
        workers.push(0, sh("trap '' TERM; while :; do sleep 0.1; done"));
        workers.push(1, sh("sleep 0.2; exit 1"));
        let pids = workers.pids();
        let start = Instant::now();
        let outcome = workers.supervise();
        assert_eq!(outcome.exit_code(), EXIT_INPUT);
        assert!(start.elapsed() >= GRACE && start.elapsed() < Duration::from_secs(15));
        assert!(!alive(pids[0]));
    }

    #[test]
    fn dropping_workers_kills_them() {
        let mut workers = Workers::default();
        workers.push(0, sh("exec sleep 1000"));
        let pids = workers.pids();
        drop(workers);
        assert!(!alive(pids[0]));
    }
}
