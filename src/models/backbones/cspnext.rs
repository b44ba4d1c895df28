//! `CSPNeXt` (Lyu et al., "RTMDet: An Empirical Study of Designing
//! Real-Time Object Detectors", <https://arxiv.org/abs/2212.07784>) as
//! `mmdet/models/backbones/cspnext.py`: a `stem` of three 3x3 ConvModules
//! (the first of stride 2), then per stage `stage{i}` a stride-2 3x3 conv
//! (`stage{i}.0`), an SPP block in the last stage (`stage{i}.1`), and a CSP
//! layer of CSPNeXt blocks (`stage{i}.1` or `.2`; `layers/csp_layer.rs`).
//!
//! Channels are `int(c * widen_factor)` and blocks
//! `max(round(n * deepen_factor), 1)` of the `arch` settings; output `0`
//! is the stem (stride 2), output `i` the end of stage `i` (stride `2^(i+1)`).
//!
//! Shape shorthand: `N` images, `H, W` the input's size.

use detc::registry::models::backbones::{CSPNeXtConfig, CspNextArch};
use detc::registry::models::weight_init::PretrainedInitConfig;
use tch::nn;
use tch::Tensor;

use crate::models::layers::csp_layer::{csp_init_cfg, CSPLayer, CspConv, CspLayerOpts, CspSpec, SPPBottleneck};
use crate::models::layers::{Activation, ConvGeom, ConvKind, ConvModule, ModelError, ModelResult, NormSpec};

const NAME: &str = "CSPNeXt";

/// `arch_settings`: per stage (in, out, blocks, add_identity, use_spp).
fn arch_settings(arch: CspNextArch) -> &'static [(i64, i64, f64, bool, bool)] {
    match arch {
        CspNextArch::P5 => &[(64, 128, 3.0, true, false), (128, 256, 6.0, true, false), (256, 512, 6.0, true, false), (512, 1024, 3.0, false, true)],
        CspNextArch::P6 => &[
            (64, 128, 3.0, true, false),
            (128, 256, 6.0, true, false),
            (256, 512, 6.0, true, false),
            (512, 768, 3.0, true, false),
            (768, 1024, 3.0, false, true),
        ],
    }
}

/// One stage: the downsampling conv, the SPP block (last stage), the CSP layer.
#[derive(Debug)]
struct Stage {
    down: CspConv,
    spp: Option<SPPBottleneck>,
    csp: CSPLayer,
}

#[derive(Debug)]
pub struct CSPNeXt {
    stem: Vec<ConvModule>,
    stages: Vec<Stage>,
    out_indices: Vec<usize>,
    frozen_stages: i64,
    norm_eval: bool,
    pub out_channels: Vec<i64>,
    scope: String,
    pretrained: Option<PretrainedInitConfig>,
}

impl CSPNeXt {
    /// Builds under `p` (`backbone`); a `Pretrained` `init_cfg` is loaded by
    /// [`CSPNeXt::init_weights`].
    pub fn new(cfg: &CSPNeXtConfig, p: nn::Path) -> ModelResult<Self> {
        if ConvKind::from_cfg(cfg.conv_cfg.as_ref(), NAME)? != ConvKind::Plain {
            return Err(ModelError::new(NAME, "conv_cfg is not supported (leave it null)"));
        }
        let settings = arch_settings(cfg.arch);
        let n = settings.len();
        if let Some(&bad) = cfg.out_indices.iter().find(|&&i| i as usize > n) {
            return Err(ModelError::new(NAME, format!("out_indices: {bad} is not an output (0 is the stem, 1 to {n} the stages)")));
        }
        if cfg.frozen_stages > n as i64 {
            return Err(ModelError::new(NAME, format!("frozen_stages {} is more than the {n} stages", cfg.frozen_stages)));
        }
        let (init, pretrained) = csp_init_cfg(cfg.init_cfg.as_ref(), NAME, true)?;
        let act = Activation::from_cfg(Some(&cfg.act_cfg), NAME)?;
        let norm = NormSpec::from_backbone_cfg(&cfg.norm_cfg, NAME)?;
        // Layer `l` (0 the stem, i the stage) trains unless frozen.
        let spec = |layer: i64| CspSpec { norm: norm.clone(), act, init, trainable: layer > cfg.frozen_stages };
        let widen = |c: i64| (c as f64 * cfg.widen_factor) as i64;
        let first = settings[0].0;
        // int(64 * widen_factor // 2): Python floors the float division.
        let half = (first as f64 * cfg.widen_factor / 2.0).floor() as i64;
        let stem_spec = spec(0);
        let k3 = ConvGeom::k(3).padding(1);
        let stem = vec![
            stem_spec.conv_module(&(&p / "stem" / 0), 3, half, k3.stride(2))?,
            stem_spec.conv_module(&(&p / "stem" / 1), half, half, k3)?,
            stem_spec.conv_module(&(&p / "stem" / 2), half, widen(first), k3)?,
        ];
        let mut out_channels_all = vec![widen(first)];
        let mut stages = Vec::with_capacity(n);
        for (i, &(cin, cout, blocks, add_identity, use_spp)) in settings.iter().enumerate() {
            let (cin, cout) = (widen(cin), widen(cout));
            // Python's round() rounds halves to even.
            let num_blocks = (blocks * cfg.deepen_factor).round_ties_even().max(1.0) as i64;
            let sp = &p / format!("stage{}", i + 1);
            let s = spec(i as i64 + 1);
            let down = s.conv(&(&sp / 0), cin, cout, 3, 2, cfg.use_depthwise)?;
            let spp = if use_spp {
                let kernels: Vec<i64> = cfg.spp_kernel_sizes.iter().map(|&k| k as i64).collect();
                Some(SPPBottleneck::new(&(&sp / 1), cout, cout, &kernels, &s)?)
            } else {
                None
            };
            let opts = CspLayerOpts {
                num_blocks,
                add_identity,
                depthwise: cfg.use_depthwise,
                expand_ratio: cfg.expand_ratio,
                channel_attention: cfg.channel_attention,
            };
            let csp = CSPLayer::new(&(&sp / if use_spp { 2 } else { 1 }), cout, cout, opts, &s)?;
            stages.push(Stage { down, spp, csp });
            out_channels_all.push(cout);
        }
        let out_indices: Vec<usize> = cfg.out_indices.iter().map(|&i| i as usize).collect();
        let out_channels = (0..=n).filter(|i| out_indices.contains(i)).map(|i| out_channels_all[i]).collect();
        Ok(CSPNeXt {
            stem,
            stages,
            out_channels,
            out_indices,
            frozen_stages: cfg.frozen_stages,
            norm_eval: cfg.norm_eval,
            scope: p.components().collect::<Vec<_>>().join("."),
            pretrained,
        })
    }

    /// Loads the `Pretrained` `init_cfg` (if any) under this backbone's scope.
    pub fn init_weights(&self, vs: &nn::VarStore) -> ModelResult<Option<detc::checkpoint::KeyReport>> {
        match &self.pretrained {
            Some(pt) => crate::models::weights::load_pretrained(vs, &self.scope, &pt.checkpoint, pt.prefix.as_deref()).map(Some),
            None => Ok(None),
        }
    }

    /// x: (N, 3, H, W) -> the outputs of `out_indices`, in layer order. Frozen
    /// layers, and every norm with `norm_eval`, use running statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Vec<Tensor>> {
        let bn_train = |layer: i64| train && !self.norm_eval && layer > self.frozen_stages;
        let mut y = x.shallow_clone();
        for conv in &self.stem {
            y = conv.forward_t(&y, bn_train(0))?;
        }
        let mut outs = Vec::with_capacity(self.out_indices.len());
        let mut layer_outs = vec![y.shallow_clone()];
        for (i, stage) in self.stages.iter().enumerate() {
            let t = bn_train(i as i64 + 1);
            y = stage.down.forward_t(&y, t)?;
            if let Some(spp) = &stage.spp {
                y = spp.forward_t(&y, t)?;
            }
            y = stage.csp.forward_t(&y, t)?;
            layer_outs.push(y.shallow_clone());
        }
        // In layer order, as MMDetection's `if i in out_indices`.
        for (i, out) in layer_outs.into_iter().enumerate() {
            if self.out_indices.contains(&i) {
                outs.push(out);
            }
        }
        Ok(outs)
    }
}

#[cfg(test)]
#[path = "cspnext_tests.rs"]
mod tests;
