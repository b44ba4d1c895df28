//! Data parallelism for an engine worker started by `detc run --nproc N`
//! (or `--gpus N`, torchrun, srun): joins the job's c10d process group from
//! torchrun's environment variables and does what PyTorch DDP and MMEngine
//! do around the training step:
//!
//! - the weights and buffers of rank 0 are broadcast once, after they are
//!   initialised, loaded or resumed;
//! - during backward, gradients are averaged over the ranks by c10d's DDP
//!   `Reducer`: buckets of about 25 MiB all-reduced as soon as backward has
//!   produced them, overlapping the rest of backward (a parameter without a
//!   gradient on some rank counts as zero there, one without a gradient
//!   anywhere keeps none);
//! - `reduce_mean` (the losses' `avg_factor`) and the logged loss values are
//!   means over the ranks (MMDetection's `reduce_mean`, MMEngine's
//!   `parse_losses`).
//!
//! The sampler shards the data by rank (`detc::data::samplers::Shard`); only
//! rank 0 writes logs, checkpoints and the work dir.

use std::collections::BTreeMap;
use std::time::Duration;

use tch::{nn::VarStore, Kind, Tensor};

use crate::engine::native::{DdpReducer, NativeResult, ProcessGroup, Rendezvous};

/// This worker's place in the job.
#[derive(Debug)]
pub struct Dist {
    pub group: &'static ProcessGroup,
    pub local_rank: usize,
    /// Set by [`Dist::reduce_gradients_of`].
    reducer: Option<DdpReducer>,
}

/// The collective timeout without `env_cfg.dist_cfg.timeout` (PyTorch's
/// default): a hung peer is ended by the launcher long before.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How the job's collectives run, from `env_cfg.dist_cfg` (MMEngine's
/// `init_dist(launcher, **dist_cfg)`).
#[derive(Debug, Clone, PartialEq)]
pub struct DistSettings {
    /// CUDA tensors through NCCL (`backend: nccl`, the default, on GPUs);
    /// otherwise every collective runs in Gloo.
    pub nccl: bool,
    pub timeout: Duration,
}

impl DistSettings {
    /// The settings for a run on GPUs (`cuda`) or on the CPU. On the CPU
    /// every backend means Gloo (MMDetection configs say `nccl` whatever
    /// the device); on GPUs detc runs `nccl` and `gloo`.
    pub fn from_config(config: &serde_json::Value, cuda: bool) -> Result<Self, String> {
        let dist_cfg = config.pointer("/env_cfg/dist_cfg");
        let field = |name: &str| dist_cfg.and_then(|d| d.get(name));
        let backend = field("backend")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("nccl");
        let nccl = match (cuda, backend) {
            (false, _) | (true, "gloo") => false,
            (true, "nccl") => true,
            (true, other) => {
                return Err(format!(
                    "env_cfg.dist_cfg.backend: detc runs jobs on GPUs with `nccl` or `gloo`, not `{other}`"
                ))
            }
        };
        let timeout = field("timeout")
            .and_then(serde_json::Value::as_u64)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        Ok(DistSettings { nccl, timeout })
    }
}

impl Dist {
    /// Joins the job named by `RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
    /// `MASTER_ADDR`, `MASTER_PORT` (and `DETC_MASTER_LISTEN_FD` from the
    /// launcher); `None` for a single process (no `WORLD_SIZE`, or 1 without
    /// `RANK` and `MASTER_PORT`). With
    /// `settings.nccl` the CUDA tensors' collectives run in an NCCL group on
    /// device `LOCAL_RANK`.
    pub fn from_env(settings: &DistSettings) -> Result<Option<Dist>, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let world_size: usize = match var("WORLD_SIZE") {
            None => return Ok(None),
            Some(v) => v
                .parse()
                .map_err(|_| format!("WORLD_SIZE={v} is not a number"))?,
        };
        // A job of one (`torchrun --nproc-per-node 1`) still forms its group,
        // as MMEngine's init_dist does; a stray WORLD_SIZE=1 alone does not.
        let launched = var("RANK").is_some() && var("MASTER_PORT").is_some();
        if world_size == 0 || (world_size == 1 && !launched) {
            return Ok(None);
        }
        let number = |name: &str| -> Result<usize, String> {
            let v = var(name).ok_or_else(|| {
                format!("{name} is not set (WORLD_SIZE={world_size}); start workers with `detc run --nproc N` or torchrun")
            })?;
            v.parse().map_err(|_| format!("{name}={v} is not a number"))
        };
        let rank = number("RANK")?;
        let local_rank = var("LOCAL_RANK").map_or(Ok(rank), |_| number("LOCAL_RANK"))?;
        let master_port = number("MASTER_PORT")?;
        let master_port = u16::try_from(master_port)
            .map_err(|_| format!("MASTER_PORT={master_port} is not a TCP port"))?;
        let listen_fd = match var("DETC_MASTER_LISTEN_FD") {
            Some(v) => Some(
                v.parse()
                    .map_err(|_| format!("DETC_MASTER_LISTEN_FD={v} is not a file descriptor"))?,
            ),
            None => None,
        };
        let rv = Rendezvous {
            master_addr: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
            master_port,
            rank,
            world_size,
            // torchrun's agent serves the store itself and says so (as
            // torch.distributed's env:// rendezvous reads it).
            serve_store: var("TORCHELASTIC_USE_AGENT_STORE").as_deref() != Some("True"),
            listen_fd,
            timeout: settings.timeout,
            cuda_device: settings.nccl.then_some(local_rank),
        };
        let group = ProcessGroup::join_global(&rv).map_err(|e| {
            format!(
                "rank {rank} of {world_size} could not join the job at {}:{}: {}",
                rv.master_addr, rv.master_port, e.message
            )
        })?;
        Ok(Some(Dist {
            group,
            local_rank,
            reducer: None,
        }))
    }

    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    pub fn world_size(&self) -> usize {
        self.group.world_size()
    }

    /// MMDetection's `reduce_mean` of a host number.
    pub fn mean(&self, value: f64) -> NativeResult<f64> {
        Ok(self.mean_all(&[value])?[0])
    }

    /// The mean over the ranks of each value (MMEngine's `parse_losses`).
    pub fn mean_all(&self, values: &[f64]) -> NativeResult<Vec<f64>> {
        let mut t = Tensor::from_slice(values);
        self.group.all_reduce_sum(&mut t)?;
        let world = self.world_size() as f64;
        let _ = t.divide_scalar_(world);
        Ok(Vec::<f64>::try_from(&t).expect("a float64 vector"))
    }

    /// Every rank's `bytes`, in rank order (MMEngine's `collect_results`
    /// through an all-gather: lengths first, then buffers padded to the longest).
    pub fn gather_bytes(&self, bytes: &[u8]) -> NativeResult<Vec<Vec<u8>>> {
        let lengths = self
            .group
            .all_gather(&Tensor::from_slice(&[bytes.len() as i64]))?;
        let lengths = Vec::<i64>::try_from(lengths.reshape([-1])).expect("an int64 vector");
        let longest = lengths.iter().copied().max().unwrap_or(0).max(1);
        let padded = Tensor::zeros([longest], (Kind::Uint8, tch::Device::Cpu));
        if !bytes.is_empty() {
            padded.narrow(0, 0, bytes.len() as i64).copy_(&Tensor::from_slice(bytes));
        }
        let all = self.group.all_gather(&padded)?;
        Ok(lengths
            .iter()
            .enumerate()
            .map(|(rank, &n)| Vec::<u8>::try_from(all.get(rank as i64).narrow(0, 0, n)).expect("bytes"))
            .collect())
    }

    /// Every variable of `vs` (weights and buffers) from rank 0, by name.
    pub fn broadcast_weights(&self, vs: &VarStore) -> NativeResult<()> {
        let sorted: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        let tensors: Vec<Tensor> = sorted.into_values().collect();
        tch::no_grad(|| for_each_flat(&tensors, |flat| self.group.broadcast(flat, 0)))
    }

    /// From now on, the gradients of `params` (in model order) are averaged
    /// over the ranks during each backward that [`Dist::before_forward`]
    /// and [`Dist::before_backward`] prepare (DDP's construction, after the
    /// weights are broadcast).
    pub fn reduce_gradients_of(&mut self, params: &[Tensor]) -> NativeResult<()> {
        self.reducer = Some(DdpReducer::new(self.group, params)?);
        Ok(())
    }

    /// Before the forward pass of a step whose gradients are to be
    /// averaged (`sync`; not within a gradient accumulation window).
    pub fn before_forward(&self, sync: bool) -> NativeResult<()> {
        match &self.reducer {
            Some(r) if sync => r.prepare_forward(),
            _ => Ok(()),
        }
    }

    /// Between the forward pass and `loss.backward()` of such a step.
    pub fn before_backward(&self, loss: &Tensor, sync: bool) -> NativeResult<()> {
        match &self.reducer {
            Some(r) if sync => r.prepare_backward(loss),
            _ => Ok(()),
        }
    }
}

/// Runs `op` on one flat copy per (dtype, device) of `tensors`, then copies
/// the flat values back into them.
fn for_each_flat(
    tensors: &[Tensor],
    mut op: impl FnMut(&mut Tensor) -> NativeResult<()>,
) -> NativeResult<()> {
    let mut groups: Vec<((Kind, tch::Device), Vec<&Tensor>)> = vec![];
    for t in tensors {
        let key = (t.kind(), t.device());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(t),
            None => groups.push((key, vec![t])),
        }
    }
    for (_, list) in groups {
        let flat: Vec<Tensor> = list.iter().map(|t| t.reshape([-1])).collect();
        let mut flat = Tensor::cat(&flat, 0);
        op(&mut flat)?;
        let mut at = 0;
        for t in list {
            let n = t.numel() as i64;
            let mut dst = t.shallow_clone();
            dst.copy_(&flat.narrow(0, at, n).view_as(t));
            at += n;
        }
    }
    Ok(())
}


#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dist_cfg_picks_nccl_on_gpus_and_gloo_on_the_cpu() {
        let mmdet = json!({"env_cfg": {"dist_cfg": {"backend": "nccl"}}});
        let on = |config: &serde_json::Value, cuda| DistSettings::from_config(config, cuda);
        assert!(on(&mmdet, true).unwrap().nccl);
        assert!(!on(&mmdet, false).unwrap().nccl);
        assert!(on(&json!({}), true).unwrap().nccl, "nccl is the default");
        let gloo = json!({"env_cfg": {"dist_cfg": {"backend": "gloo", "timeout": 60}}});
        assert_eq!(
            on(&gloo, true).unwrap(),
            DistSettings {
                nccl: false,
                timeout: Duration::from_secs(60)
            }
        );
        assert_eq!(on(&mmdet, true).unwrap().timeout, DEFAULT_TIMEOUT);
        let mpi = json!({"env_cfg": {"dist_cfg": {"backend": "mpi"}}});
        assert!(!on(&mpi, false).unwrap().nccl);
        let err = on(&mpi, true).unwrap_err();
        assert!(err.contains("env_cfg.dist_cfg.backend") && err.contains("`mpi`"), "{err}");
    }
}
