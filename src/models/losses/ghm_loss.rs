//! GHM's two losses (`mmdet/models/losses/ghm_loss.py`, Li et al., 2019):
//! `GHMC` for classification and `GHMR` for box regression. Each weighs a
//! sample by the inverse density of its gradient norm `g` over `bins`
//! equal regions of [0, 1]: a sample in a region holding `k` of the `tot`
//! valid samples weighs `tot / k / n` (`n` the number of occupied regions),
//! and the weighted sum is divided by `tot`. With `momentum`, `k` is a
//! running average kept per region in the `acc_sum` buffer, updated once
//! per call (per FPN level, as MMDetection's heads call it) for each
//! occupied region. The region edges are the `edges` buffer.
//!
//! MMDetection loops over the regions with a host sync each; here the
//! regions come from one `bucketize` and their counts from one
//! `scatter_add`, all on the device.
//!
//! Shape shorthand: `M` samples, `C` classes.

use detc::registry::models::losses::{GhmcConfig, GhmrConfig};
use tch::nn::Path;
use tch::{Kind, Tensor};

use super::Reduction;
use crate::models::layers::{buffer, ModelError, ModelResult};

/// The gradient-density weighting both losses share.
#[derive(Debug)]
struct GradientDensity {
    /// (bins + 1,) region edges; MMDetection widens the last one past 1.
    edges: Tensor,
    /// (bins,) running counts; `None` without momentum (MMDetection then
    /// registers no such buffer).
    acc_sum: Option<Tensor>,
    momentum: f64,
    bins: i64,
}

impl GradientDensity {
    /// Registers `edges` (and `acc_sum` with momentum) under `p`; the last
    /// edge becomes `last_edge` (GHMC: 1 + 1e-6, GHMR: 1e3).
    fn new(p: &Path, bins: u32, momentum: f64, last_edge: impl FnOnce(f32) -> f32) -> ModelResult<Self> {
        let bins = bins as i64;
        let mut values: Vec<f32> = (0..=bins).map(|i| i as f32 / bins as f32).collect();
        let last = values.len() - 1;
        values[last] = last_edge(values[last]);
        let edges = buffer(p, "edges", Tensor::f_from_slice(&values)?.f_to(p.device())?);
        let acc_sum = (momentum > 0.0).then(|| {
            Tensor::f_zeros([bins], (Kind::Float, p.device())).map(|t| buffer(p, "acc_sum", t))
        });
        Ok(GradientDensity { edges, acc_sum: acc_sum.transpose()?, momentum, bins })
    }

    /// `g`, `valid`: (M, ...) gradient norms and the mask of the samples
    /// that count; `tot` the normaliser (a 0-d tensor, at least 1). Returns
    /// the (M, ...) weights, 0 for the invalid samples.
    fn weights(&self, g: &Tensor, valid: &Tensor, tot: &Tensor) -> ModelResult<Tensor> {
        tch::no_grad(|| {
            // Region i holds edges[i] <= g < edges[i + 1]; invalid samples
            // go to an extra region `bins` that is never read.
            let region = g.f_bucketize(&self.edges, false, true)?.f_sub_scalar(1)?.f_clamp(0, self.bins - 1)?;
            let region = region.f_where_scalarother(valid, self.bins)?.f_view([-1])?;
            let counts = Tensor::f_zeros([self.bins + 1], (Kind::Float, g.device()))?
                .f_scatter_add(0, &region, &Tensor::f_ones([region.size()[0]], (Kind::Float, g.device()))?)?
                .f_narrow(0, 0, self.bins)?;
            let occupied = counts.f_gt(0.0)?;
            let density = match &self.acc_sum {
                None => counts.shallow_clone(),
                Some(acc) => {
                    let updated = acc.f_mul_scalar(self.momentum)?.f_add(&counts.f_mul_scalar(1.0 - self.momentum)?)?;
                    acc.shallow_clone().f_copy_(&updated.f_where_self(&occupied, acc)?)?;
                    acc.shallow_clone()
                }
            };
            let n = occupied.f_sum(Kind::Float)?.f_clamp_min(1.0)?;
            // Occupied regions only are read below, so their density is > 0.
            let per_region = tot.f_div(&density.f_clamp_min(f32::MIN_POSITIVE as f64)?)?.f_div(&n)?;
            let per_region = Tensor::f_cat(&[per_region, Tensor::f_zeros([1], (Kind::Float, g.device()))?], 0)?;
            Ok(per_region.f_index_select(0, &region)?.f_view_as(g)?)
        })
    }
}

/// MMDetection's `weight_reduce_loss(loss, weights, reduction, avg_factor=tot)`.
fn reduce(loss: &Tensor, weights: &Tensor, tot: &Tensor, reduction: Reduction, owner: &str) -> ModelResult<Tensor> {
    let weighted = loss.f_mul(weights)?;
    match reduction {
        Reduction::None => Ok(weighted),
        Reduction::Mean => Ok(weighted.f_sum(Kind::Float)?.f_div(&tot.f_add_scalar(f32::EPSILON as f64)?)?),
        Reduction::Sum => Err(ModelError::new(owner, "reduction \"sum\" cannot take the valid-sample normaliser (use mean or none)")),
    }
}

/// `GHMC`: pred (M, C) logits; target (M,) labels in [0, C] (C the
/// background, one-hot expanded as MMDetection's `_expand_onehot_labels`)
/// or (M, C) binary targets; `label_weight` of the target's shape.
#[derive(Debug)]
pub struct Ghmc {
    density: GradientDensity,
    loss_weight: f64,
    reduction: Reduction,
}

impl Ghmc {
    pub fn new(cfg: &GhmcConfig, p: &Path) -> ModelResult<Self> {
        if !cfg.use_sigmoid {
            return Err(ModelError::new("GHMC", "use_sigmoid must be true (MMDetection has only the sigmoid form)"));
        }
        Ok(Ghmc {
            density: GradientDensity::new(p, cfg.bins, cfg.momentum, |e| e + 1e-6)?,
            loss_weight: cfg.loss_weight,
            reduction: cfg.reduction,
        })
    }

    pub fn forward(&self, pred: &Tensor, target: &Tensor, label_weight: &Tensor, reduction: Option<Reduction>) -> ModelResult<Tensor> {
        let (target, label_weight) = if pred.dim() != target.dim() {
            let c = pred.size()[pred.dim() - 1];
            // Labels outside [0, C) (the background) are all-zero rows.
            let onehot = target.f_one_hot(c + 1)?.f_narrow(1, 0, c)?;
            (onehot.f_to_kind(Kind::Float)?, label_weight.f_view([-1, 1])?.f_expand([-1, c], false)?.f_to_kind(Kind::Float)?)
        } else {
            (target.f_to_kind(Kind::Float)?, label_weight.f_to_kind(Kind::Float)?)
        };
        let g = pred.detach().f_sigmoid()?.f_sub(&target)?.f_abs()?;
        let valid = label_weight.f_gt(0.0)?;
        let tot = valid.f_sum(Kind::Float)?.f_clamp_min(1.0)?;
        let weights = self.density.weights(&g, &valid, &tot)?;
        let loss = pred.f_binary_cross_entropy_with_logits(&target, None::<Tensor>, None::<Tensor>, tch::Reduction::None)?;
        Ok(reduce(&loss, &weights, &tot, reduction.unwrap_or(self.reduction), "GHMC")?.f_mul_scalar(self.loss_weight)?)
    }
}

/// `GHMR`: pred, target (M, 4) (or (M, 4C)); `label_weight` their shape.
#[derive(Debug)]
pub struct Ghmr {
    density: GradientDensity,
    mu: f64,
    loss_weight: f64,
    reduction: Reduction,
}

impl Ghmr {
    pub fn new(cfg: &GhmrConfig, p: &Path) -> ModelResult<Self> {
        Ok(Ghmr {
            density: GradientDensity::new(p, cfg.bins, cfg.momentum, |_| 1e3)?,
            mu: cfg.mu,
            loss_weight: cfg.loss_weight,
            reduction: cfg.reduction,
        })
    }

    pub fn forward(&self, pred: &Tensor, target: &Tensor, label_weight: &Tensor, reduction: Option<Reduction>) -> ModelResult<Tensor> {
        let mu2 = self.mu * self.mu;
        let diff = pred.f_sub(target)?;
        let root = diff.f_square()?.f_add_scalar(mu2)?.f_sqrt()?;
        let loss = root.f_sub_scalar(self.mu)?;
        let g = diff.detach().f_div(&root.detach())?.f_abs()?;
        let valid = label_weight.f_gt(0.0)?;
        // The sum of the weights (not the count of valid ones), as MMDetection.
        let tot = label_weight.f_to_kind(Kind::Float)?.f_sum(Kind::Float)?.f_clamp_min(1.0)?;
        let weights = self.density.weights(&g, &valid, &tot)?;
        Ok(reduce(&loss, &weights, &tot, reduction.unwrap_or(self.reduction), "GHMR")?.f_mul_scalar(self.loss_weight)?)
    }
}
