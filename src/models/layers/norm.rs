//! `norm_cfg` and the layers it builds: torch's `BatchNorm2d` with its full
//! state dict (`weight`, `bias`, `running_mean`, `running_var`,
//! `num_batches_tracked`) and `GroupNorm` (`weight`, `bias`), as [`Norm`].
//!
//! Shape shorthand: `N` images, `C` channels, `H, W` height and width.

use std::sync::Mutex;

use detc::registry::models::layers::{BatchNormConfig, GroupNormConfig};
use detc::registry::refs::NormCfg;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::{buffer, param, ModelError, ModelResult};
use crate::engine::native::ProcessGroup;

/// A parsed `norm_cfg`. `BN`, `SyncBN` and `MMSyncBN` all build a
/// [`BatchNorm2d`] (MMCV names them `bn`); a synchronised one shares its
/// batch statistics over the job's processes when there are several. `GN`
/// builds a [`GroupNorm`] (named `gn`).
#[derive(Debug, Clone, PartialEq)]
pub struct NormSpec {
    /// The `type` as written (`BN`, `BN2d`, `SyncBN`, `MMSyncBN`, `GN`).
    pub kind: String,
    /// `requires_grad`: whether the affine weight and bias train.
    pub requires_grad: bool,
    pub eps: f64,
    /// `None`: cumulative moving average (torch's `momentum=None`); unused by GN.
    pub momentum: Option<f64>,
    /// `GN`'s `num_groups`; `None` for the batch norms.
    pub num_groups: Option<i64>,
    /// How a synchronised batch norm weighs the processes' statistics;
    /// `None` for `BN` and `GN`.
    pub sync: Option<SyncStats>,
}

/// How the batch statistics of a job's processes combine into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStats {
    /// torch's `SyncBatchNorm` (`SyncBN`): each process by its element count.
    Elements,
    /// MMCV's `MMSyncBN` with `stats_mode='default'`: each process equally,
    /// one with an empty batch included (as zero mean and zero spread).
    EqualRanks,
    /// MMCV's `MMSyncBN` with `stats_mode='N'`: each process by its number
    /// of images (RoIs), so an empty batch has no say.
    Images,
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
            sync: None,
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
        let sync = match kind.as_str() {
            "BN" | "BN2d" => None,
            "SyncBN" => Some(SyncStats::Elements),
            "MMSyncBN" => Some(Self::mmcv_stats_mode(&mut map, owner)?),
            "GN" => return Self::group_norm(map, owner),
            other => {
                return Err(ModelError::new(
                    owner,
                    format!("norm_cfg type `{other}` is not supported yet (BN, BN2d, SyncBN, MMSyncBN, GN)"),
                ))
            }
        };
        if sync.is_some() {
            // The keys BN shares; the rest (`process_group`, `group`) do
            // not change the arithmetic. `affine` and
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
            sync,
        })
    }

    /// As [`NormSpec::from_cfg`] for a backbone's own norm layers (not
    /// ConvModules'), which refuse `MMSyncBN`: MMCV's `SyncBatchNorm` starts
    /// its weight from U(0, 1), and a backbone's `Constant` init for
    /// `_BatchNorm` layers does not reach it (it is no `_BatchNorm`), an
    /// init no checkpoint would reproduce here.
    pub fn from_backbone_cfg(cfg: &NormCfg, owner: &str) -> ModelResult<Self> {
        let spec = Self::from_cfg(cfg, owner)?;
        if spec.kind == "MMSyncBN" {
            return Err(ModelError::new(
                owner,
                "norm_cfg MMSyncBN is for heads and necks here; use SyncBN in a backbone \
                 (MMCV's MMSyncBN there starts from a U(0, 1) weight that MMDetection's \
                 backbone init does not reset)",
            ));
        }
        Ok(spec)
    }

    /// MMCV's `stats_mode` of an `MMSyncBN` norm_cfg.
    fn mmcv_stats_mode(map: &mut serde_json::Map<String, serde_json::Value>, owner: &str) -> ModelResult<SyncStats> {
        match map.remove("stats_mode").as_ref().map(|v| v.as_str()) {
            None | Some(Some("default")) => Ok(SyncStats::EqualRanks),
            Some(Some("N")) => Ok(SyncStats::Images),
            Some(other) => Err(ModelError::new(
                owner,
                format!("MMSyncBN stats_mode must be \"default\" or \"N\", not {other:?}"),
            )),
        }
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
            sync: None,
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
    /// `SyncBN`, `MMSyncBN`: batch statistics over every process of the job.
    pub sync: Option<SyncStats>,
    /// The frozen path's constants, kept while their sources are unchanged.
    frozen: Mutex<Option<FrozenConstants>>,
}

/// A frozen batch norm's `scale` and `shift`, and what they were made
/// from: each source's storage and version counter (bumped by every
/// in-place change: a checkpoint load, an EMA swap), the compute dtype and
/// the input's rank.
#[derive(Debug)]
struct FrozenConstants {
    sources: [(usize, i64); 4],
    compute: Kind,
    dims: usize,
    scale: Tensor,
    shift: Tensor,
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
            sync: spec.sync,
            frozen: Mutex::new(None),
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
        if let (true, Some(stats)) = (train, self.sync) {
            if let Some(group) = ProcessGroup::global() {
                return self.sync_forward(x, momentum, stats, group);
            }
        }
        if !train && x.device().is_cuda() && !self.weight.requires_grad() && !self.bias.requires_grad() {
            return self.frozen_forward(x);
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

    /// Eval mode with a frozen weight and bias (`requires_grad: false`, frozen
    /// stages) on CUDA: `x * scale + shift` with per-channel constants, as
    /// torchvision's `FrozenBatchNorm2d` computes it (`scale = weight /
    /// sqrt(var + eps)`, `shift = bias - mean * scale`). Nothing of `x` is
    /// kept for backward, where `batch_norm` keeps its input: a full
    /// activation per layer (about 500 MiB for Faster R-CNN R50-FPN at
    /// 800x800, batch 2). The CPU keeps torch's `batch_norm`, whose
    /// roundings MMDetection's CPU outputs have bit for bit. A half or
    /// bfloat16 input (under autocast) is normalised in float32 and rounded
    /// once, as `batch_norm` does. `scale` and `shift` are made once and
    /// kept while the weight, bias and statistics are unchanged (frozen,
    /// they change only when loaded): five launches fewer per norm and
    /// forward on a GPU, about 265 per Faster R-CNN R50 step, and one or
    /// two more from the fused multiply-add.
    fn frozen_forward(&self, x: &Tensor) -> ModelResult<Tensor> {
        let compute = match x.kind() {
            Kind::Half | Kind::BFloat16 => Kind::Float,
            other => other,
        };
        let dims = x.dim().max(2);
        let mut sources = [(0usize, 0i64); 4];
        for (slot, t) in sources.iter_mut().zip([&self.weight, &self.bias, &self.running_mean, &self.running_var]) {
            *slot = (t.data_ptr() as usize, t.f_internal_version()?);
        }
        let mut kept = self.frozen.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = kept.as_ref().is_some_and(|k| k.sources == sources && k.compute == compute && k.dims == dims);
        if !fresh {
            let (scale, shift) = tch::no_grad(|| -> ModelResult<(Tensor, Tensor)> {
                let scale = self.running_var.f_add_scalar(self.eps)?.f_rsqrt()?.f_mul(&self.weight)?;
                let shift = self.bias.f_sub(&self.running_mean.f_mul(&scale)?)?;
                let per_channel = |t: Tensor| -> ModelResult<Tensor> {
                    let mut shape = vec![1i64; dims];
                    shape[1] = -1;
                    Ok(t.f_view(shape.as_slice())?.f_to_kind(compute)?)
                };
                Ok((per_channel(scale)?, per_channel(shift)?))
            })?;
            *kept = Some(FrozenConstants { sources, compute, dims, scale, shift });
        }
        let k = kept.as_ref().expect("made above");
        // One kernel for `x * scale + shift`, computed in `compute` (type
        // promotion casts a half input as it reads it). Autograd keeps `x`
        // only for a gradient of `scale`, which has none.
        Ok(k.shift.f_addcmul(x, &k.scale)?.f_to_kind(x.kind())?)
    }

    /// A synchronised batch norm in training: the mean and (biased)
    /// variance of the whole job's batch, from per-channel sums all-reduced
    /// through autograd (so the backward sums their gradients over the
    /// ranks too); the running statistics take the unbiased variance.
    ///
    /// Each rank's own mean and variance (computed as one process's batch
    /// norm computes them) combine with a weight `wᵣ` per rank: the mean
    /// `Σ wᵣ·meanᵣ / W` and the variance `Σ wᵣ·(varᵣ + (meanᵣ - mean)²) / W`,
    /// `W = Σ wᵣ`. A one-pass `E[x²] - E[x]²` loses the variance of
    /// features far from zero to float32 cancellation. The weights are
    /// [`SyncStats`]'s: torch's element counts, or MMCV's 1 per rank or
    /// image count; MMCV also unbiases the running variance by the rank's
    /// own count times the world size, and leaves the running statistics
    /// alone when every rank's batch is empty.
    fn sync_forward(&self, x: &Tensor, momentum: f64, stats: SyncStats, group: &ProcessGroup) -> ModelResult<Tensor> {
        let c = x.size()[1];
        let kind = super::reduction_kind(x.kind());
        let xf = x.f_to_kind(kind)?;
        let local_count = (x.numel() as i64 / c.max(1)) as f64;
        let images = x.size()[0] as f64;
        let dims: &[i64] = &[0, 2, 3];
        let shape = [1, c, 1, 1];
        let sync_err = |e: crate::engine::native::NativeError| ModelError::new("SyncBN", e.message);
        let (local_var, local_mean) = if local_count > 0.0 {
            xf.f_var_mean_correction(dims, 0, false)?
        } else {
            // Zeros that still hang from `x`: the backward's all-reduces
            // must run on an empty rank too, or the others wait for it.
            let zeros = xf.f_sum_dim_intlist(dims, false, kind)?;
            (zeros.f_mul_scalar(0.0)?, zeros)
        };
        let weight = match stats {
            SyncStats::Elements => local_count,
            SyncStats::EqualRanks => 1.0,
            SyncStats::Images => images,
        };
        let nonempty = if local_count > 0.0 { 1.0 } else { 0.0 };
        // Filled on the device: a copy from the host would wait for its queue.
        let full = |v: f64| Tensor::f_full([1], v, (kind, x.device()));
        let sums = Tensor::f_cat(&[local_mean.f_mul_scalar(weight)?, full(weight)?, full(local_count)?, full(nonempty)?], 0)?;
        let sums = group.all_reduce_sum_autograd(&sums).map_err(sync_err)?;
        let total_weight = sums.f_narrow(0, c, 1)?.f_clamp_min(1e-12)?;
        let total_count = sums.f_narrow(0, c + 1, 1)?;
        let nonempty_ranks = sums.f_narrow(0, c + 2, 1)?;
        let mean = sums.f_narrow(0, 0, c)?.f_div(&total_weight)?;
        // An empty batch has no spread about the job's mean (MMCV skips it).
        let spread = local_var
            .f_add(&local_mean.f_sub(&mean)?.f_square()?)?
            .f_mul_scalar(weight * nonempty)?;
        let var = group
            .all_reduce_sum_autograd(&spread)
            .map_err(sync_err)?
            .f_div(&total_weight)?;
        let centered = xf.f_sub(&mean.f_view(shape)?)?;
        tch::no_grad(|| -> Result<(), tch::TchError> {
            // On the device: no host sync in the training step.
            let n = match stats {
                SyncStats::Elements => total_count,
                _ => full(local_count * group.world_size() as f64)?,
            };
            let unbiased = var.f_mul(&n.f_div(&n.f_sub_scalar(1.0)?.f_clamp_min(1.0)?)?)?;
            let m = nonempty_ranks.f_clamp_max(1.0)?.f_mul_scalar(momentum)?;
            let mut rm = self.running_mean.shallow_clone();
            let mut rv = self.running_var.shallow_clone();
            let _ = rm.f_add_(&mean.f_sub(&rm)?.f_mul(&m)?)?;
            let _ = rv.f_add_(&unbiased.f_sub(&rv)?.f_mul(&m)?)?;
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

    /// The frozen path keeps its constants until a source changes in place
    /// (a checkpoint load) or is replaced (a dtype change).
    #[test]
    fn a_frozen_batch_norm_remakes_its_constants_when_loaded() {
        let mut vs = nn::VarStore::new(tch::Device::Cpu);
        let spec = NormSpec::from_cfg(&NormCfg(serde_json::json!({"type": "BN"})), "test").unwrap();
        let bn = BatchNorm2d::new(&vs.root(), 3, &spec, false).unwrap();
        let x = Tensor::ones([1, 3, 2, 2], (Kind::Float, tch::Device::Cpu));
        let at = |y: Tensor| f64::try_from(y.get(0).get(0).get(0).get(0)).unwrap();
        assert!((at(bn.frozen_forward(&x).unwrap()) - 1.0).abs() < 1e-4);
        assert!((at(bn.frozen_forward(&x).unwrap()) - 1.0).abs() < 1e-4, "kept");
        tch::no_grad(|| {
            let _ = bn.running_mean.shallow_clone().fill_(0.5);
        });
        assert!((at(bn.frozen_forward(&x).unwrap()) - 0.5).abs() < 1e-4, "a statistic changed in place");
        tch::no_grad(|| bn.weight.shallow_clone().copy_(&Tensor::full([3], 2.0, (Kind::Float, tch::Device::Cpu))));
        assert!((at(bn.frozen_forward(&x).unwrap()) - 1.0).abs() < 1e-4, "a loaded weight");
        vs.double();
        let y = bn.frozen_forward(&x.to_kind(Kind::Double)).unwrap();
        assert_eq!(y.kind(), Kind::Double);
        assert!((at(y) - 1.0).abs() < 1e-4, "replaced by a dtype change");
    }

    /// A frozen batch norm in eval mode (`x * scale + shift`, the CUDA path,
    /// run here on the CPU) gives what `batch_norm` gives, values and input
    /// gradient, in float32 and float64; a trainable one still trains its
    /// weight.
    #[test]
    fn a_frozen_batch_norm_in_eval_mode_is_batch_norm() {
        tch::manual_seed(0);
        for kind in [Kind::Float, Kind::Double] {
            for trainable in [false, true] {
                let mut vs = nn::VarStore::new(tch::Device::Cpu);
                let spec = NormSpec::from_cfg(&NormCfg(serde_json::json!({"type": "BN"})), "test").unwrap();
                let bn = BatchNorm2d::new(&vs.root(), 5, &spec, trainable).unwrap();
                tch::no_grad(|| {
                    for t in [&bn.weight, &bn.bias, &bn.running_mean] {
                        t.shallow_clone().copy_(&(Tensor::randn([5], (Kind::Float, tch::Device::Cpu)) * 3.0));
                    }
                    bn.running_var.shallow_clone().copy_(&(Tensor::rand([5], (Kind::Float, tch::Device::Cpu)) + 0.1));
                });
                if kind == Kind::Double {
                    vs.double();
                }
                let x = (Tensor::randn([2, 5, 4, 3], (kind, tch::Device::Cpu)) * 2.0 + 1.0).set_requires_grad(true);
                let y = if trainable { bn.forward_t(&x, false).unwrap() } else { bn.frozen_forward(&x).unwrap() };
                let (w, b, m, v) = (&bn.weight.detach(), &bn.bias.detach(), &bn.running_mean, &bn.running_var);
                let want = x.batch_norm(Some(w), Some(b), Some(m), Some(v), false, 0.1, bn.eps, false);
                let tol = if kind == Kind::Float { 1e-5 } else { 1e-12 };
                assert!(f64::try_from((&y - &want).abs().max()).unwrap() < tol, "{kind:?} values");
                let g = Tensor::randn_like(&y);
                let gx = Tensor::run_backward(&[(&y * &g).sum(kind)], &[&x], true, false).remove(0);
                let gw = Tensor::run_backward(&[(&want * &g).sum(kind)], &[&x], false, false).remove(0);
                assert!(f64::try_from((&gx - &gw).abs().max()).unwrap() < tol, "{kind:?} input gradient");
                assert_eq!(bn.weight.requires_grad(), trainable);
            }
        }
    }

    /// The frozen path saves nothing of its input for backward (an in-place
    /// change of `x` after the forward leaves the gradient computable), and
    /// gives a bfloat16 input's float32 normalisation within one rounding.
    #[test]
    fn a_frozen_batch_norm_keeps_nothing_of_its_input_and_takes_bfloat16() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let spec = NormSpec::from_cfg(&NormCfg(serde_json::json!({"type": "BN"})), "test").unwrap();
        let bn = BatchNorm2d::new(&vs.root(), 4, &spec, false).unwrap();
        tch::no_grad(|| {
            bn.weight.shallow_clone().copy_(&(Tensor::randn([4], (Kind::Float, tch::Device::Cpu)) * 3.0));
            bn.running_var.shallow_clone().copy_(&(Tensor::rand([4], (Kind::Float, tch::Device::Cpu)) + 0.1));
        });
        let leaf = Tensor::randn([2, 4, 3, 3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let x = &leaf * 1.0;
        let y = bn.frozen_forward(&x).unwrap();
        tch::no_grad(|| {
            let _ = x.shallow_clone().fill_(7.0);
        });
        let g = Tensor::run_backward(&[y.sum(Kind::Float)], &[&leaf], false, false).remove(0);
        let scale = (&bn.running_var + bn.eps).rsqrt() * &bn.weight;
        let want = scale.view([1, 4, 1, 1]).expand([2, 4, 3, 3], false);
        assert!(f64::try_from((&g - &want).abs().max()).unwrap() < 1e-6, "the input gradient");

        let xb = Tensor::randn([2, 4, 3, 3], (Kind::Float, tch::Device::Cpu)).to_kind(Kind::BFloat16);
        let y = bn.frozen_forward(&xb).unwrap();
        assert_eq!(y.kind(), Kind::BFloat16);
        let (w, b, m, v) = (&bn.weight.detach(), &bn.bias.detach(), &bn.running_mean, &bn.running_var);
        let want = xb.to_kind(Kind::Float).batch_norm(Some(w), Some(b), Some(m), Some(v), false, 0.1, bn.eps, false);
        let off = (y.to_kind(Kind::Float) - want.to_kind(Kind::BFloat16).to_kind(Kind::Float)).abs();
        let ulp = want.abs().to_kind(Kind::Float) * 2f64.powi(-7);
        assert!(bool::try_from(off.le_tensor(&ulp).all()).unwrap(), "within one bfloat16 rounding");
    }

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

        let halves = |t: &Tensor| [t.narrow(0, 0, 2).copy(), t.narrow(0, 2, 2).copy()];
        let parts = on_two_ranks(halves(&x), halves(&dy), SyncStats::Elements);
        let y = Tensor::cat(&[&parts[0].0, &parts[1].0], 0).to_kind(Kind::Double);
        let dx = Tensor::cat(&[&parts[0].1, &parts[1].1], 0).to_kind(Kind::Double);
        let worst = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        assert!(worst(&y, &y_ref) < 1e-2, "output off by {}", worst(&y, &y_ref));
        // The input gradient scales with 1/std (10 here); compared relatively.
        let rel = worst(&dx, &dx_ref) / dx_ref.abs().max().double_value(&[]);
        assert!(rel < 1e-2, "input gradient off by {rel} of its largest value");
    }

    /// Runs a synchronised batch norm of 3 channels on two ranks (threads),
    /// rank r given `xs[r]`, backpropagating `dys[r]`; per rank, the output,
    /// the input gradient and the running variance after the step.
    fn on_two_ranks(xs: [Tensor; 2], dys: [Tensor; 2], stats: SyncStats) -> Vec<(Tensor, Tensor, Tensor)> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let ranks: Vec<_> = xs
            .into_iter()
            .zip(dys)
            .enumerate()
            .map(|(rank, (x, dy))| {
                std::thread::spawn(move || {
                    let rv = Rendezvous {
                        master_addr: "127.0.0.1".into(),
                        master_port: port,
                        rank,
                        world_size: 2,
                        serve_store: true,
                        listen_fd: None,
                        timeout: std::time::Duration::from_secs(30),
                        cuda_device: None,
                    };
                    let group = ProcessGroup::join(&rv).unwrap();
                    let vs = nn::VarStore::new(tch::Device::Cpu);
                    let spec = NormSpec { sync: Some(stats), ..NormSpec::bn() };
                    let bn = BatchNorm2d::new(&vs.root(), 3, &spec, true).unwrap();
                    let x = x.set_requires_grad(true);
                    let y = bn.sync_forward(&x, 0.1, stats, &group).unwrap();
                    (&y * &dy).sum(Kind::Float).backward();
                    (y.detach(), x.grad(), bn.running_var.copy())
                })
            })
            .collect();
        ranks.into_iter().map(|h| h.join().unwrap()).collect()
    }

    /// MMCV's `SyncBatchNormFunction` (its CUDA kernels, written out in
    /// float64 on one process): the job's mean is `Σ wᵣ·meanᵣ / Σ wᵣ` and its
    /// variance `Σ wᵣ·mean((xᵣ - mean)²) / Σ wᵣ`, an empty rank adding
    /// nothing but its weight. Returns each rank's output and input gradient
    /// and the running variance rank r keeps (unbiased by `nᵣ·world`).
    fn mmcv_sync_bn(xs: &[Tensor; 2], dys: &[Tensor; 2], weights: [f64; 2]) -> Vec<(Tensor, Tensor, Tensor)> {
        let xs: Vec<Tensor> = xs.iter().map(|x| x.to_kind(Kind::Double).set_requires_grad(true)).collect();
        let dims: &[i64] = &[0, 2, 3];
        let total: f64 = weights.iter().sum();
        let zeros = || Tensor::zeros([3], (Kind::Double, tch::Device::Cpu));
        let mut mean = zeros();
        for (x, w) in xs.iter().zip(weights) {
            if x.numel() > 0 {
                mean = mean + x.mean_dim(dims, false, Kind::Double) * w;
            }
        }
        let mean = mean / total;
        let mut var = zeros();
        for (x, w) in xs.iter().zip(weights) {
            if x.numel() > 0 {
                var = var + (x - mean.view([1, 3, 1, 1])).square().mean_dim(dims, false, Kind::Double) * w;
            }
        }
        let var = var / total;
        let std = (&var + 1e-5).sqrt().view([1, 3, 1, 1]);
        let ys: Vec<Tensor> = xs.iter().map(|x| (x - mean.view([1, 3, 1, 1])) / &std).collect();
        let loss = ys
            .iter()
            .zip(dys)
            .map(|(y, dy)| (y * dy.to_kind(Kind::Double)).sum(Kind::Double))
            .fold(Tensor::zeros([], (Kind::Double, tch::Device::Cpu)), |a, b| a + b);
        loss.backward();
        xs.iter()
            .zip(ys)
            .map(|(x, y)| {
                let n = (x.numel() / 3) as f64 * 2.0;
                let unbiased = if n > 1.0 { var.detach() * (n / (n - 1.0)) } else { var.detach() };
                let running = if total > 0.0 { unbiased * 0.1 + 0.9 } else { Tensor::ones([3], (Kind::Double, tch::Device::Cpu)) };
                (y.detach(), x.grad(), running)
            })
            .collect()
    }

    /// MMSyncBN with one image on rank 0 and three on rank 1 (their
    /// statistics weigh 1:1 under `default` and 1:3 under `N`), and with an
    /// empty rank 0 (the RoI heads' case MMDetection uses it for): output,
    /// input gradient and running variance as MMCV's kernels compute them.
    #[test]
    fn mmcv_sync_bn_weighs_ranks_as_its_stats_mode_says() {
        let _seeded = crate::models::layers::fixtures::seeded();
        tch::manual_seed(1);
        let opts = (Kind::Float, tch::Device::Cpu);
        let x = Tensor::randn([4, 3, 4, 5], opts) * 2.0 + 3.0;
        let dy = Tensor::randn([4, 3, 4, 5], opts);
        let split = |t: &Tensor, k: i64| [t.narrow(0, 0, k).copy(), t.narrow(0, k, 4 - k).copy()];
        for (stats, k, weights) in [
            (SyncStats::EqualRanks, 1, [1.0, 1.0]),
            (SyncStats::Images, 1, [1.0, 3.0]),
            (SyncStats::EqualRanks, 0, [1.0, 1.0]),
            (SyncStats::Images, 0, [0.0, 4.0]),
        ] {
            let (xs, dys) = (split(&x, k), split(&dy, k));
            let got = on_two_ranks(split(&x, k), split(&dy, k), stats);
            let want = mmcv_sync_bn(&xs, &dys, weights);
            for (rank, ((y, dx, rv), (y_ref, dx_ref, rv_ref))) in got.iter().zip(&want).enumerate() {
                if y.numel() == 0 {
                    continue;
                }
                let worst = |a: &Tensor, b: &Tensor| (a.to_kind(Kind::Double) - b).abs().max().double_value(&[]);
                let what = format!("{stats:?} with {k} image(s) on rank 0, rank {rank}");
                assert!(worst(y, y_ref) < 1e-4, "{what}: output off by {}", worst(y, y_ref));
                assert!(worst(dx, dx_ref) < 1e-4, "{what}: input gradient off by {}", worst(dx, dx_ref));
                assert!(worst(rv, rv_ref) < 1e-4, "{what}: running variance off by {}", worst(rv, rv_ref));
            }
        }
    }

    /// torch's SyncBatchNorm with an empty rank: the other rank normalises
    /// by its own batch alone, and neither waits for the other's backward.
    #[test]
    fn sync_bn_with_an_empty_rank_is_the_other_ranks_batch_norm() {
        let _seeded = crate::models::layers::fixtures::seeded();
        tch::manual_seed(2);
        let opts = (Kind::Float, tch::Device::Cpu);
        let x = Tensor::randn([3, 3, 4, 5], opts) + 1.0;
        let dy = Tensor::randn([3, 3, 4, 5], opts);
        let empty = Tensor::zeros([0, 3, 4, 5], opts);
        let got = on_two_ranks([empty.copy(), x.copy()], [empty, dy], SyncStats::Elements);
        let want = x.batch_norm(None::<Tensor>, None::<Tensor>, None::<Tensor>, None::<Tensor>, true, 0.1, 1e-5, false);
        let off = (&got[1].0 - want).abs().max().double_value(&[]);
        assert!(off < 1e-4, "output off by {off}");
    }

    #[test]
    fn mmcv_sync_bn_parses_its_stats_mode() {
        let spec = |cfg| NormSpec::from_cfg(&NormCfg(cfg), "test");
        let default = spec(serde_json::json!({"type": "MMSyncBN", "requires_grad": true})).unwrap();
        assert_eq!(default.sync, Some(SyncStats::EqualRanks));
        assert_eq!(default.abbr(), "bn");
        let n = spec(serde_json::json!({"type": "MMSyncBN", "stats_mode": "N", "group": null})).unwrap();
        assert_eq!(n.sync, Some(SyncStats::Images));
        let err = spec(serde_json::json!({"type": "MMSyncBN", "stats_mode": "mean"})).unwrap_err();
        assert!(err.to_string().contains("stats_mode"), "{err}");
        assert_eq!(spec(serde_json::json!({"type": "SyncBN"})).unwrap().sync, Some(SyncStats::Elements));
        assert_eq!(spec(serde_json::json!({"type": "BN"})).unwrap().sync, None);
    }
}
