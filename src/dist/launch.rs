//! Starting the workers: each is `detc-engine` with the same arguments as a
//! single-process run, the resolved config as JSON on stdin, and torchrun's
//! environment variables, from which it joins the c10d process group.

use std::ffi::OsString;
use std::io::Write;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::ports::PortRule;
use super::supervise::{self, Workers};
use crate::cli::{EXIT_INPUT, EXIT_RUNTIME};

/// One worker's place in the job, as torchrun's environment variables say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerEnv {
    pub rank: u32,
    pub local_rank: u32,
    pub world_size: u32,
    /// `None` where the outer launcher did not say (left as inherited).
    pub local_world_size: Option<u32>,
    /// The node rank; `None` as [`Self::local_world_size`].
    pub group_rank: Option<u32>,
    pub master_addr: String,
    pub master_port: u16,
}

impl WorkerEnv {
    /// The variables to set, by torchrun's names.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("RANK", self.rank.to_string()),
            ("LOCAL_RANK", self.local_rank.to_string()),
            ("WORLD_SIZE", self.world_size.to_string()),
            ("MASTER_ADDR", self.master_addr.clone()),
            ("MASTER_PORT", self.master_port.to_string()),
        ];
        vars.extend(
            self.local_world_size
                .map(|n| ("LOCAL_WORLD_SIZE", n.to_string())),
        );
        vars.extend(self.group_rank.map(|n| ("GROUP_RANK", n.to_string())));
        vars
    }

    /// Ranks within bounds.
    pub fn check(&self) -> Result<(), String> {
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(format!(
                "rank {} is not below the world size {}",
                self.rank, self.world_size
            ));
        }
        match self.local_world_size {
            Some(n) if self.local_rank >= n => Err(format!(
                "local rank {} is not below the local world size {n}",
                self.local_rank
            )),
            _ => Ok(()),
        }
    }

    /// `--launcher pytorch`: this process is one worker of a torchrun job.
    pub fn from_torchrun(lookup: impl Fn(&str) -> Option<String>) -> Result<WorkerEnv, String> {
        let need = |name: &str| {
            lookup(name).ok_or_else(|| {
                format!("`--launcher pytorch` needs {name} in the environment (torchrun sets it); it is not set")
            })
        };
        let parse = |name: &str, text: String| -> Result<u32, String> {
            text.trim()
                .parse()
                .map_err(|_| format!("{name}=`{text}` is not a number"))
        };
        let number = |name: &str| parse(name, need(name)?);
        let optional = |name: &str| lookup(name).map(|text| parse(name, text)).transpose();
        let env = WorkerEnv {
            rank: number("RANK")?,
            local_rank: number("LOCAL_RANK")?,
            world_size: number("WORLD_SIZE")?,
            local_world_size: optional("LOCAL_WORLD_SIZE")?,
            group_rank: optional("GROUP_RANK")?,
            master_addr: need("MASTER_ADDR")?,
            master_port: need("MASTER_PORT").and_then(|port| {
                port.trim()
                    .parse()
                    .map_err(|_| format!("MASTER_PORT=`{port}` is not a port number"))
            })?,
        };
        env.check()?;
        Ok(env)
    }
}

/// The workers a `detc run` on this node starts: `nproc` per node, `nnodes` nodes.
#[derive(Clone, Debug)]
pub struct Topology {
    pub nnodes: u32,
    pub node_rank: u32,
    pub nproc: u32,
    pub master_addr: String,
    pub master_port: u16,
}

impl Topology {
    pub fn world_size(&self) -> u32 {
        self.nnodes * self.nproc
    }

    /// Ranks are node-major, as torchrun numbers them.
    pub fn global_rank(&self, local_rank: u32) -> u32 {
        self.node_rank * self.nproc + local_rank
    }

    /// The environments of this node's workers, by local rank.
    pub fn workers(&self) -> Vec<WorkerEnv> {
        (0..self.nproc)
            .map(|local_rank| WorkerEnv {
                rank: self.global_rank(local_rank),
                local_rank,
                world_size: self.world_size(),
                local_world_size: Some(self.nproc),
                group_rank: Some(self.node_rank),
                master_addr: self.master_addr.clone(),
                master_port: self.master_port,
            })
            .collect()
    }
}

/// How the job is laid out.
#[derive(Clone, Debug)]
pub enum Plan {
    /// This `detc` starts and supervises the workers of its node. `explicit_port`:
    /// the user chose `master_port`, so it is never replaced.
    Local {
        topology: Topology,
        explicit_port: bool,
    },
    /// torchrun started this process as one worker.
    Pytorch,
    /// srun started this process as one worker; `port`: the config's
    /// `env_cfg.dist_cfg.port`.
    Slurm { port: Option<u16> },
}

/// What every worker runs.
pub struct Engine<'a> {
    pub program: &'a Path,
    pub args: &'a [OsString],
    /// The resolved config, written to each worker's stdin.
    pub config_json: &'a str,
}

/// Starts one worker per entry of `envs`. The worker of global rank 0 gets
/// `listener` (the bound rendezvous socket) as `DETC_MASTER_LISTEN_FD`. If a
/// spawn fails, the workers already started are killed (the guard drops).
pub fn spawn(
    engine: &Engine,
    envs: &[WorkerEnv],
    listener: Option<&TcpListener>,
) -> std::io::Result<Workers> {
    let mut workers = Workers::default();
    for env in envs {
        let mut command = Command::new(engine.program);
        command
            .args(engine.args)
            .envs(env.vars())
            .env_remove("DETC_MASTER_LISTEN_FD")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped());
        super::supervise::die_with_launcher(&mut command);
        if let (0, Some(listener)) = (env.rank, listener) {
            let fd = listener.as_raw_fd();
            command.env("DETC_MASTER_LISTEN_FD", fd.to_string());
            // SAFETY: fcntl is async-signal-safe; it clears close-on-exec in
            // the child's copy of the socket only, so rank 0 alone inherits it.
            unsafe {
                command.pre_exec(move || {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        workers.push(env.rank, child);
        if let Some(mut stdin) = stdin {
            // From a thread: a worker that reads late must not block the others.
            let json = engine.config_json.to_owned();
            std::thread::spawn(move || {
                // A worker that exits early closes its stdin; its exit status says why.
                let _ = stdin.write_all(json.as_bytes());
            });
        }
    }
    Ok(workers)
}

/// Runs the job of `plan` on this node and returns the exit code.
pub fn run(plan: &Plan, engine: &Engine) -> i32 {
    let lookup = |name: &str| std::env::var(name).ok();
    let (envs, bound) = match plan {
        Plan::Local {
            topology,
            explicit_port,
        } => {
            let mut topology = topology.clone();
            let bound = if topology.node_rank == 0 {
                // Other nodes expect the port they were given: fall back to a
                // free one only when this node is the whole job.
                let rule = match (explicit_port, topology.nnodes) {
                    (true, _) => PortRule::Explicit,
                    (false, 1) => PortRule::Fallback,
                    (false, _) => PortRule::Shared,
                };
                match super::ports::bind_master(&topology.master_addr, topology.master_port, rule) {
                    Ok(bound) => Some(bound),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return EXIT_INPUT;
                    }
                }
            } else {
                None
            };
            if let Some(bound) = &bound {
                if let Some(note) = &bound.note {
                    eprintln!("{note}");
                }
                topology.master_port = bound.port;
            }
            (topology.workers(), bound)
        }
        Plan::Pytorch | Plan::Slurm { .. } => {
            let env = match plan {
                Plan::Slurm { port } => super::slurm::worker_env(lookup, *port),
                _ => WorkerEnv::from_torchrun(lookup),
            };
            match env {
                Ok(env) => (vec![env], None),
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_INPUT;
                }
            }
        }
    };
    let first = &envs[0];
    let world = first.world_size;
    let (addr, port) = (&first.master_addr, first.master_port);
    let n = envs.len();
    let noun = if n == 1 { "worker" } else { "workers" };
    eprintln!("launching {n} {noun} (world size {world}, {addr}:{port})");
    supervise::install_signal_handlers();
    let workers = spawn(engine, &envs, bound.as_ref().map(|b| &b.listener));
    // Rank 0 holds the socket now; ours must not keep the port bound.
    drop(bound);
    match workers {
        Ok(workers) => workers.supervise().exit_code(),
        Err(e) => {
            eprintln!(
                "error: cannot start the engine `{}`: {e}",
                engine.program.display()
            );
            EXIT_RUNTIME
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(nnodes: u32, node_rank: u32, nproc: u32) -> Topology {
        Topology {
            nnodes,
            node_rank,
            nproc,
            master_addr: "10.1.1.1".into(),
            master_port: 29500,
        }
    }

    #[test]
    fn ranks_are_node_major() {
        let t = topology(3, 2, 4);
        assert_eq!(t.world_size(), 12);
        let ranks: Vec<_> = t.workers().iter().map(|w| (w.rank, w.local_rank)).collect();
        assert_eq!(ranks, [(8, 0), (9, 1), (10, 2), (11, 3)]);
        assert!(t.workers().iter().all(|w| w.world_size == 12
            && w.local_world_size == Some(4)
            && w.group_rank == Some(2)
            && w.check().is_ok()));
    }

    #[test]
    fn a_worker_gets_torchruns_variables() {
        let vars = topology(1, 0, 2).workers()[1].vars();
        let get = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("RANK"), Some("1"));
        assert_eq!(get("LOCAL_RANK"), Some("1"));
        assert_eq!(get("WORLD_SIZE"), Some("2"));
        assert_eq!(get("LOCAL_WORLD_SIZE"), Some("2"));
        assert_eq!(get("GROUP_RANK"), Some("0"));
        assert_eq!(get("MASTER_ADDR"), Some("10.1.1.1"));
        assert_eq!(get("MASTER_PORT"), Some("29500"));
    }

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn torchrun_variables_are_read_and_checked() {
        let vars = [
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("WORLD_SIZE", "4"),
            ("MASTER_ADDR", "h0"),
            ("MASTER_PORT", "29400"),
        ];
        let env = WorkerEnv::from_torchrun(lookup(&vars)).unwrap();
        assert_eq!(
            (env.rank, env.local_rank, env.world_size, env.master_port),
            (3, 1, 4, 29400)
        );
        assert_eq!((env.local_world_size, env.group_rank), (None, None));
        let err = WorkerEnv::from_torchrun(lookup(&vars[1..])).unwrap_err();
        assert!(err.contains("RANK") && err.contains("torchrun"), "{err}");
        let bad = [
            ("RANK", "4"),
            ("LOCAL_RANK", "0"),
            ("WORLD_SIZE", "4"),
            ("MASTER_ADDR", "h0"),
            ("MASTER_PORT", "1"),
        ];
        assert!(WorkerEnv::from_torchrun(lookup(&bad))
            .unwrap_err()
            .contains("world size"));
        let bad = [
            ("RANK", "x"),
            ("LOCAL_RANK", "0"),
            ("WORLD_SIZE", "4"),
            ("MASTER_ADDR", "h0"),
            ("MASTER_PORT", "1"),
        ];
        assert!(WorkerEnv::from_torchrun(lookup(&bad))
            .unwrap_err()
            .contains("RANK=`x`"));
    }
}
