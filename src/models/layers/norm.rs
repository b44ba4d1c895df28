//! `norm_cfg` and the layers it builds: torch's `BatchNorm2d` with its full
//! state dict (`weight`, `bias`, `running_mean`, `running_var`,
//! `num_batches_tracked`) and `GroupNorm` (`weight`, `bias`), as [`Norm`].
//!
//! Shape shorthand: `N` images, `C` channels, `H, W` height and width.

use detc::registry::models::layers::{BatchNormConfig, GroupNormConfig};
use detc::registry::refs::NormCfg;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::{buffer, param, ModelError, ModelResult};
use crate::engine::native::ProcessGroup;

/// A parsed `norm_cfg`. `BN` and `SyncBN` both build a [`BatchNorm2d`]
/// (MMCV names both `bn`); a `SyncBN` one shares its batch statistics over
/// the job's processes when there are several. `GN` builds a [`GroupNorm`]
/// (named `gn`).
#[derive(Debug, Clone, PartialEq)]
pub struct NormSpec {
    /// The `type` as written (`BN`, `BN2d`, `SyncBN`, `GN`).
    pub kind: String,
    /// `requires_grad`: whether the affine weight and bias train.
    pub requires_grad: bool,
    pub eps: f64,
    /// `None`: cumulative moving average (torch's `momentum=None`); unused by GN.
    pub momentum: Option<f64>,
    /// `GN`'s `num_groups`; `None` for the batch norms.
    pub num_groups: Option<i64>,
}

impl NormSpec {
    /// torch's defaults with `requires_grad=True`.
    pub fn bn() -> Self {
        NormSpec {
            kind: "BN".into(),
            requires_grad: true,
            eps: 1e-5,
            momentum: Some(0.1),
            num_groups: None,
        }
    }

    /// Parses a `norm_cfg` dict for the component `owner` (named in errors).
    pub fn from_cfg(cfg: &NormCfg, owner: &str) -> ModelResult<Self> {
        let mut map = cfg
            .0
            .as_object()
            .cloned()
            .ok_or_else(|| ModelError::new(owner, "norm_cfg must be a dict"))?;
        let kind = map
            .remove("type")
            .and_then(|t| t.as_str().map(str::to_string))
            .ok_or_else(|| ModelError::new(owner, "norm_cfg needs a `type`"))?;
        match kind.as_str() {
            "BN" | "BN2d" | "SyncBN" => {}
            "GN" => return Self::group_norm(map, owner),
            other => {
                return Err(ModelError::new(
                    owner,
                    format!("norm_cfg type `{other}` is not supported yet (BN, BN2d, SyncBN, GN)"),
                ))
            }
        }
        if kind == "SyncBN" {
            // SyncBN's keys that BN shares; the rest (e.g. `process_group`)
            // do not change the arithmetic. `affine` and
            // `track_running_stats` stay, so that false is refused below.
            map.retain(|k, _| {
                matches!(
                    k.as_str(),
                    "requires_grad" | "eps" | "momentum" | "affine" | "track_running_stats"
                )
            });
        }
        let bn: BatchNormConfig = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| ModelError::new(owner, format!("invalid norm_cfg: {e}")))?;
        if !bn.affine || !bn.track_running_stats {
            return Err(ModelError::new(
                owner,
                "norm_cfg with affine=false or track_running_stats=false is not supported",
            ));
        }
        Ok(NormSpec {
            kind,
            requires_grad: bn.requires_grad,
            eps: bn.eps,
            momentum: bn.momentum,
            num_groups: None,
        })
    }

    fn group_norm(map: serde_json::Map<String, serde_json::Value>, owner: &str) -> ModelResult<Self> {
        let gn: GroupNormConfig = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| ModelError::new(owner, format!("invalid norm_cfg: {e}")))?;
        if !gn.affine {
            return Err(ModelError::new(owner, "norm_cfg GN with affine=false is not supported"));
        }
        Ok(NormSpec {
            kind: "GN".into(),
            requires_grad: gn.requires_grad,
            eps: gn.eps,
            momentum: None,
            num_groups: Some(gn.num_groups as i64),
        })
    }

    /// MMCV's `infer_abbr`: the state-dict name of the layer (`bn`, `gn`),
    /// to which blocks add a postfix (`bn1`, `gn2`).
    pub fn abbr(&self) -> &'static str {
        if self.num_groups.is_some() {
            "gn"
        } else {
            "bn"
        }
    }
}

/// A layer a `norm_cfg` builds.
#[derive(Debug)]
pub enum Norm {
    Batch(BatchNorm2d),
    Group(GroupNorm),
}

impl Norm {
    /// A norm of `c` channels under `p`; its weight and bias train when
    /// `trainable` and `spec.requires_grad` both hold.
    pub fn new(p: &nn::Path, c: i64, spec: &NormSpec, trainable: bool) -> ModelResult<Self> {
        Self::with_weight(p, c, spec, trainable, 1.0)
    }

    /// As [`Norm::new`] with the weight set to `weight_init` (0 for
    /// `zero_init_residual`, which MMDetection applies to BN and GN alike).
    pub fn with_weight(p: &nn::Path, c: i64, spec: &NormSpec, trainable: bool, weight_init: f64) -> ModelResult<Self> {
        Ok(match spec.num_groups {
            Some(groups) => Norm::Group(GroupNorm::new(p, c, groups, spec, trainable, weight_init)?),
            None => Norm::Batch(BatchNorm2d::with_weight(p, c, spec, trainable, weight_init)?),
        })
    }

    /// x: (N, C, H, W) -> (N, C, H, W); `train` switches a batch norm to batch
    /// statistics (a group norm has none to switch).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        match self {
            Norm::Batch(bn) => bn.forward_t(x, train),
            Norm::Group(gn) => gn.forward(x),
        }
    }
}

/// `nn.GroupNorm(num_groups, C)`: each image's channels in `num_groups`
/// groups, normalised over the group's channels and pixels, then a
/// per-channel affine `weight`, `bias`.
#[derive(Debug)]
pub struct GroupNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub num_groups: i64,
    pub eps: f64,
}

impl GroupNorm {
    fn new(p: &nn::Path, c: i64, num_groups: i64, spec: &NormSpec, trainable: bool, weight_init: f64) -> ModelResult<Self> {
        if num_groups < 1 || c % num_groups != 0 {
            return Err(ModelError::new(
                "GN",
                format!("num_groups {num_groups} does not divide the {c} channels of `{}`", p.components().collect::<Vec<_>>().join(".")),
            ));
        }
        let train = trainable && spec.requires_grad;
        Ok(GroupNorm {
            weight: param(p, "weight", &[c], Init::Const(weight_init), train)?,
            bias: param(p, "bias", &[c], Init::Const(0.0), train)?,
            num_groups,
            eps: spec.eps,
        })
    }

    /// x: (N, C, ...) -> the same shape.
    pub fn forward(&self, x: &Tensor) -> ModelResult<Tensor> {
        Ok(x.f_group_norm(self.num_groups, Some(&self.weight), Some(&self.bias), self.eps, true)?)
    }
}

/// `nn.BatchNorm2d(C)` initialised as MMEngine's `Constant(val=1)` leaves it
/// (weight 1, bias 0) unless `weight_init` says otherwise.
#[derive(Debug)]
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: Tensor,
    pub eps: f64,
    pub momentum: Option<f64>,
    /// `SyncBN`: batch statistics over every process of the job.
    pub sync: bool,
}

impl BatchNorm2d {
    /// A BN of `c` channels; its weight and bias train when `trainable` and
    /// `spec.requires_grad` both hold (frozen stages pass `trainable=false`).
    pub fn new(p: &nn::Path, c: i64, spec: &NormSpec, trainable: bool) -> ModelResult<Self> {
        Self::with_weight(p, c, spec, trainable, 1.0)
    }

    /// As [`BatchNorm2d::new`] with the weight set to `weight_init`
    /// (0 for `zero_init_residual`).
    pub fn with_weight(
        p: &nn::Path,
        c: i64,
        spec: &NormSpec,
        trainable: bool,
        weight_init: f64,
    ) -> ModelResult<Self> {
        let train = trainable && spec.requires_grad;
        let weight = param(p, "weight", &[c], Init::Const(weight_init), train)?;
        let bias = param(p, "bias", &[c], Init::Const(0.0), train)?;
        let running_mean = buffer(
            p,
            "running_mean",
            Tensor::f_zeros([c], (Kind::Float, p.device()))?,
        );
        let running_var = buffer(
            p,
            "running_var",
            Tensor::f_ones([c], (Kind::Float, p.device()))?,
        );
        let num_batches_tracked = buffer(
            p,
            "num_batches_tracked",
            Tensor::f_zeros([], (Kind::Int64, p.device()))?,
        );
        Ok(BatchNorm2d {
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
            eps: spec.eps,
            momentum: spec.momentum,
            sync: spec.kind == "SyncBN",
        })
    }

    /// x: (N, C, H, W) -> (N, C, H, W). With `train`, normalises by batch
    /// statistics and updates the running ones (and `num_batches_tracked`) as
    /// torch does; otherwise uses the running statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let mut momentum = self.momentum.unwrap_or(0.0);
        if train {
            tch::no_grad(|| {
                let mut n = self.num_batches_tracked.shallow_clone();
                n.f_add_scalar_(1).map(|_| ())
            })?;
            if self.momentum.is_none() {
                // torch: cumulative average, factor 1 / num_batches_tracked.
                let n = self.num_batches_tracked.f_double_value(&[])?;
                momentum = 1.0 / n.max(1.0);
            }
        }
        if train && self.sync {
            if let Some(group) = ProcessGroup::global() {
                return self.sync_forward(x, momentum, group);
            }
        }
        Ok(Tensor::f_batch_norm(
            x,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            momentum,
            self.eps,
            true,
        )?)
    }

    /// `torch.nn.SyncBatchNorm` in training: the mean and (biased) variance
    /// of the whole job's batch, from per-channel sums all-reduced through
    /// autograd (so the backward sums their gradients over the ranks too);
    /// the running statistics take the unbiased variance, as torch's do.
    ///
    /// The statistics combine as torch's SyncBatchNorm combines them: each
    /// rank's own mean and variance (computed as one process's batch norm
    /// computes them), then the job's mean `Σ nᵣ·meanᵣ / N` and variance
    /// `Σ nᵣ·(varᵣ + (meanᵣ - mean)²) / N`. A one-pass `E[x²] - E[x]²`
    /// loses the variance of features far from zero to float32
    /// cancellation.
    fn sync_forward(&self, x: &Tensor, momentum: f64, group: &ProcessGroup) -> ModelResult<Tensor> {
        let c = x.size()[1];
        let kind = super::reduction_kind(x.kind());
        let xf = x.f_to_kind(kind)?;
        let local_count = (x.numel() as i64 / c.max(1)) as f64;
        let dims: &[i64] = &[0, 2, 3];
        let shape = [1, c, 1, 1];
        let sync_err = |e: crate::engine::native::NativeError| ModelError::new("SyncBN", e.message);
        let (local_var, local_mean) = if local_count > 0.0 {
            xf.f_var_mean_correction(dims, 0, false)?
        } else {
            let zeros = Tensor::f_zeros([c], (kind, x.device()))?;
            (zeros.f_zeros_like()?, zeros)
        };
        let count = Tensor::f_full([1], local_count, (kind, x.device()))?;
        let sums = Tensor::f_cat(&[local_mean.f_mul_scalar(local_count)?, count], 0)?;
        let sums = group.all_reduce_sum_autograd(&sums).map_err(sync_err)?;
        let n = sums.f_narrow(0, c, 1)?;
        let mean = sums.f_narrow(0, 0, c)?.f_div(&n)?;
        let spread = local_var
            .f_add(&local_mean.f_sub(&mean)?.f_square()?)?
            .f_mul_scalar(local_count)?;
        let var = group
            .all_reduce_sum_autograd(&spread)
            .map_err(sync_err)?
            .f_div(&n)?;
        let centered = xf.f_sub(&mean.f_view(shape)?)?;
        tch::no_grad(|| -> Result<(), tch::TchError> {
            // n / (n - 1) on the device: no host sync in the training step.
            let unbiased = var.f_mul(&n.f_div(&n.f_sub_scalar(1.0)?.f_clamp_min(1.0)?)?)?;
            let mut rm = self.running_mean.shallow_clone();
            let mut rv = self.running_var.shallow_clone();
            let _ = rm
                .f_mul_scalar_(1.0 - momentum)?
                .f_add_(&mean.f_mul_scalar(momentum)?)?;
            let _ = rv
                .f_mul_scalar_(1.0 - momentum)?
                .f_add_(&unbiased.f_mul_scalar(momentum)?)?;
            Ok(())
        })?;
        let scale = var.f_add_scalar(self.eps)?.f_rsqrt()?.f_mul(&self.weight)?;
        let y = centered
            .f_mul(&scale.f_view(shape)?)?
            .f_add(&self.bias.f_view(shape)?)?;
        Ok(y.f_to_kind(x.kind())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::native::Rendezvous;

    #[test]
    fn sync_bn_without_affine_or_running_stats_is_refused_as_bn_is() {
        for kind in ["BN", "SyncBN"] {
            for key in ["affine", "track_running_stats"] {
                let cfg = NormCfg(serde_json::json!({"type": kind, key: false}));
                let err = NormSpec::from_cfg(&cfg, "test").unwrap_err();
                assert!(err.to_string().contains("not supported"), "{kind} {key}: {err}");
            }
        }
        let ok = NormCfg(serde_json::json!({"type": "SyncBN", "affine": true, "momentum": 0.01}));
        assert!(NormSpec::from_cfg(&ok, "test").is_ok());
    }

    /// Two ranks in threads, each with half of a batch whose features sit
    /// far from zero (1000 ± 0.1): SyncBN's output and input gradient equal
    /// one process's batch norm of the whole batch, in float64. A one-pass
    /// `E[x²] - E[x]²` in float32 has no digits of this variance left.
    #[test]
    fn sync_bn_of_two_ranks_is_batch_norm_of_their_whole_batch() {
        // Its draws would change those of a seeded test running beside it.
        let _seeded = crate::models::layers::fixtures::seeded();
        tch::manual_seed(0);
        let x = (Tensor::randn([4, 3, 5, 5], (Kind::Float, tch::Device::Cpu)) * 0.1) + 1000.0;
        let dy = Tensor::randn([4, 3, 5, 5], (Kind::Float, tch::Device::Cpu));
        let whole = x.to_kind(Kind::Double).set_requires_grad(true);
        let y = whole.batch_norm(None::<Tensor>, None::<Tensor>, None::<Tensor>, None::<Tensor>, true, 0.1, 1e-5, false);
        (&y * dy.to_kind(Kind::Double)).sum(Kind::Double).backward();
        let (y_ref, dx_ref) = (y.detach(), whole.grad());

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let ranks: Vec<_> = (0..2i64)
            .map(|rank| {
                let (x, dy) = (x.narrow(0, 2 * rank, 2).copy(), dy.narrow(0, 2 * rank, 2).copy());
                std::thread::spawn(move || {
                    let rv = Rendezvous {
                        master_addr: "127.0.0.1".into(),
                        master_port: port,
                        rank: rank as usize,
                        world_size: 2,
                        serve_store: true,
                        listen_fd: None,
                        timeout: std::time::Duration::from_secs(30),
                        cuda_device: None,
                    };
                    let group = ProcessGroup::join(&rv).unwrap();
                    let vs = nn::VarStore::new(tch::Device::Cpu);
                    let spec = NormSpec {
                        kind: "SyncBN".into(),
                        ..NormSpec::bn()
                    };
                    let bn = BatchNorm2d::new(&vs.root(), 3, &spec, true).unwrap();
                    let x = x.set_requires_grad(true);
                    let y = bn.sync_forward(&x, 0.1, &group).unwrap();
                    (&y * &dy).sum(Kind::Float).backward();
                    (y.detach(), x.grad())
                })
            })
            .collect();
        let parts: Vec<(Tensor, Tensor)> = ranks.into_iter().map(|h| h.join().unwrap()).collect();
        let y = Tensor::cat(&[&parts[0].0, &parts[1].0], 0).to_kind(Kind::Double);
        let dx = Tensor::cat(&[&parts[0].1, &parts[1].1], 0).to_kind(Kind::Double);
        let worst = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        assert!(worst(&y, &y_ref) < 1e-2, "output off by {}", worst(&y, &y_ref));
        // The input gradient scales with 1/std (10 here); compared relatively.
        let rel = worst(&dx, &dx_ref) / dx_ref.abs().max().double_value(&[]);
        assert!(rel < 1e-2, "input gradient off by {rel} of its largest value");
    }
}
