//! The multi-process launcher of `detc run` (`--nproc N`) with real processes:
//! a stand-in engine (a shell script, through `DETC_ENGINE`) records the
//! environment and stdin each worker gets, then exits 0, fails on rank 1, or
//! hangs. See: "Multi-GPU and multi-node training on PyTorch's c10d: `detc run
//! --gpus N`, with no zombies and no port clashes".

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::support::root;

/// Records `KEY=VALUE` lines to `$LAUNCH_OUT/rank$RANK.env` (written whole,
/// then renamed), stdin to `rank$RANK.json`, then acts as `$LAUNCH_MODE` says.
const ENGINE: &str = r#"#!/bin/sh
out="$LAUNCH_OUT/rank$RANK"
cat > "$out.json"
fd=none
if [ -n "$DETC_MASTER_LISTEN_FD" ]; then
  case "$(readlink /proc/$$/fd/$DETC_MASTER_LISTEN_FD)" in socket:*) fd=socket ;; *) fd=missing ;; esac
fi
{
  echo "PID=$$"
  echo "RANK=$RANK"
  echo "LOCAL_RANK=$LOCAL_RANK"
  echo "WORLD_SIZE=$WORLD_SIZE"
  echo "LOCAL_WORLD_SIZE=$LOCAL_WORLD_SIZE"
  echo "GROUP_RANK=$GROUP_RANK"
  echo "MASTER_ADDR=$MASTER_ADDR"
  echo "MASTER_PORT=$MASTER_PORT"
  echo "DETC_MASTER_LISTEN_FD=${DETC_MASTER_LISTEN_FD:-unset}"
  echo "FD=$fd"
  echo "ARGS=$*"
} > "$out.tmp"
mv "$out.tmp" "$out.env"
case "$LAUNCH_MODE" in
  ok) exit 0 ;;
  fail)
    if [ "$RANK" = 1 ]; then sleep 0.5; echo "rank 1 gives up" >&2; exit 3; fi
    exec sleep 1000 ;;
  *) exec sleep 1000 ;;
esac
"#;

struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    fn new() -> Job {
        let dir = tempfile::tempdir().unwrap();
        let engine = dir.path().join("engine.sh");
        std::fs::write(&engine, ENGINE).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&engine, std::fs::Permissions::from_mode(0o755)).unwrap();
        Job { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `detc run` on the demo config with two CPU workers.
    fn start(&self, mode: &str) -> Child {
        let config = root().join("configs/demo/queryinst_r18_shapes_cpu.yaml");
        Command::new(env!("CARGO_BIN_EXE_detc"))
            .arg("run")
            .arg(config)
            .args(["--nproc", "2", "--device", "cpu", "--work-dir"])
            .arg(self.path().join("work"))
            .current_dir(self.path())
            .env("DETC_ENGINE", self.path().join("engine.sh"))
            .env("LAUNCH_OUT", self.path())
            .env("LAUNCH_MODE", mode)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// What rank `rank` recorded, once it did (waits up to 20 s).
    fn recorded(&self, rank: u32) -> HashMap<String, String> {
        let file = self.path().join(format!("rank{rank}.env"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !file.exists() {
            assert!(Instant::now() < deadline, "rank {rank} never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(file).unwrap();
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }

    fn pids(&self) -> Vec<i32> {
        (0..2)
            .map(|rank| self.recorded(rank)["PID"].parse().unwrap())
            .collect()
    }
}

/// Waits (up to `limit`) for `child` to exit and collects its output.
fn finish(mut child: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("`detc run` still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), start.elapsed())
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn every_rank_gets_its_environment_and_the_config() {
    let job = Job::new();
    let (output, _) = finish(job.start("ok"), Duration::from_secs(60));
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    let ranks = [job.recorded(0), job.recorded(1)];
    let port = &ranks[0]["MASTER_PORT"];
    assert!(
        err.contains(&format!(
            "launching 2 workers (world size 2, 127.0.0.1:{port})"
        )),
        "{err}"
    );
    for (rank, env) in ranks.iter().enumerate() {
        assert_eq!(env["RANK"], rank.to_string());
        assert_eq!(env["LOCAL_RANK"], rank.to_string());
        assert_eq!(
            (env["WORLD_SIZE"].as_str(), env["LOCAL_WORLD_SIZE"].as_str()),
            ("2", "2")
        );
        assert_eq!(env["GROUP_RANK"], "0");
        assert_eq!(
            (env["MASTER_ADDR"].as_str(), &env["MASTER_PORT"]),
            ("127.0.0.1", port)
        );
        assert!(env["ARGS"].starts_with("run --work-dir"), "{}", env["ARGS"]);
        assert!(env["ARGS"].ends_with("--device cpu"), "{}", env["ARGS"]);
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(job.path().join(format!("rank{rank}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(json["model"]["type"], "QueryInst");
    }
    // Rank 0 alone inherits the bound rendezvous socket.
    assert_eq!(ranks[0]["FD"], "socket");
    assert_eq!(
        (
            ranks[1]["FD"].as_str(),
            ranks[1]["DETC_MASTER_LISTEN_FD"].as_str()
        ),
        ("none", "unset")
    );
}

#[test]
fn a_failing_rank_stops_the_job_and_is_named() {
    let job = Job::new();
    let child = job.start("fail");
    let pids = job.pids();
    let (output, elapsed) = finish(child, Duration::from_secs(30));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    assert!(
        err.contains(&format!(
            "error: rank 1 (pid {}) failed with exit code 3",
            pids[1]
        )),
        "{err}"
    );
    assert!(err.contains("  | rank 1 gives up"), "{err}");
    for pid in pids {
        assert!(!alive(pid), "worker {pid} left behind");
    }
}

#[test]
fn sigterm_to_the_launcher_stops_every_worker() {
    let job = Job::new();
    let child = job.start("hang");
    let pids = job.pids();
    // The launcher gave up its copy of the socket: rank 0 holds the port.
    let port: u16 = job.recorded(0)["MASTER_PORT"].parse().unwrap();
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (output, elapsed) = finish(child, Duration::from_secs(30));
    assert!(!output.status.success());
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    for pid in pids {
        assert!(!alive(pid), "worker {pid} left behind");
    }
}

#[test]
fn two_jobs_at_once_get_distinct_ports() {
    let (first, second) = (Job::new(), Job::new());
    let a = first.start("hang");
    let port_a = first.recorded(0)["MASTER_PORT"].clone();
    let b = second.start("hang");
    let port_b = second.recorded(0)["MASTER_PORT"].clone();
    let pids: Vec<i32> = first.pids().into_iter().chain(second.pids()).collect();
    for child in [&a, &b] {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    let (_, _) = finish(a, Duration::from_secs(30));
    let (output, _) = finish(b, Duration::from_secs(30));
    assert_ne!(port_a, port_b);
    assert_eq!(second.recorded(1)["MASTER_PORT"], port_b);
    let err = stderr(&output);
    if port_a == "29500" {
        assert!(
            err.contains(&format!(
                "note: port 29500 is in use; using free port {port_b}"
            )),
            "{err}"
        );
    }
    assert!(pids.iter().all(|&pid| !alive(pid)));
}

/// `--launcher slurm`: one worker from srun's variables; the master is the
/// node list's first host, and its port `env_cfg.dist_cfg.port` ahead of
/// `MASTER_PORT` (MMEngine's `_init_dist_slurm`).
#[test]
fn a_slurm_task_takes_the_config_port_ahead_of_master_port() {
    let job = Job::new();
    let config = root().join("configs/demo/queryinst_r18_shapes_cpu.yaml");
    let child = Command::new(env!("CARGO_BIN_EXE_detc"))
        .arg("run")
        .arg(config)
        .args(["--launcher", "slurm", "--device", "cpu", "--work-dir"])
        .arg(job.path().join("work"))
        .args(["--cfg-options", "env_cfg.dist_cfg.port=29611"])
        .current_dir(job.path())
        .env("DETC_ENGINE", job.path().join("engine.sh"))
        .env("LAUNCH_OUT", job.path())
        .env("LAUNCH_MODE", "ok")
        .envs([
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_NODEID", "0"),
            ("SLURM_NODELIST", "gpu[07-08]"),
            ("SLURM_TASKS_PER_NODE", "2(x2)"),
            ("MASTER_PORT", "1234"),
        ])
        .env_remove("MASTER_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (output, _) = finish(child, Duration::from_secs(60));
    assert!(output.status.success(), "{}", stderr(&output));
    let env = job.recorded(0);
    let got: Vec<&str> = [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
    ]
    .iter()
    .map(|k| env[*k].as_str())
    .collect();
    assert_eq!(got, ["0", "4", "2", "gpu07", "29611"]);
}
