//! `GenericRoIExtractor` (GRoIE, Rossi et al., 2020;
//! `mmdet/models/roi_heads/roi_extractors/generic_roi_extractor.py`): every
//! RoI is pooled from every level; each level's pooled features go through
//! one `pre_module` (shared by the levels), are summed (or concatenated
//! along channels) and go through a `post_module`. The modules are plugin
//! layers: a `ConvModule` or MMCV's `GeneralizedAttention`.
//!
//! MMDetection's edge cases are kept: no RoIs give zeros of `out_channels`
//! (the modules are skipped), and with one level the pooled features are
//! returned as they are (the modules are skipped too).
//!
//! Shape shorthand: `R` RoIs, `C` channels, `S` the pooled size.

use detc::registry::models::layers::{ConvModuleConfig, GeneralizedAttentionConfig};
use detc::registry::models::ops::RoIAlignConfig;
use detc::registry::models::roi_heads::{GenericRoIExtractorConfig, RoiAggregation};
use detc::registry::refs::PluginCfg;
use tch::{nn, Tensor};

use crate::models::layers::generalized_attention::GeneralizedAttention;
use crate::models::layers::norm::NormSpec;
use crate::models::layers::{kaiming_normal_fan_out, Activation, ConvGeom, ConvKind, ConvModule, ConvModuleOpts, ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::ops::RoIAlign;

const NAME: &str = "GenericRoIExtractor";

/// A `pre_cfg` / `post_cfg` module.
#[derive(Debug)]
enum RoiModule {
    Conv(ConvModule),
    Attention(GeneralizedAttention),
}

impl RoiModule {
    /// Builds `cfg` under `p`; returns the module and its input and output
    /// channels.
    fn new(cfg: &PluginCfg, p: &nn::Path, what: &str) -> ModelResult<(Self, i64, i64)> {
        let owner = format!("{NAME}.{what}");
        match cfg_type(&cfg.0, &owner)? {
            "ConvModule" => {
                let c: ConvModuleConfig = parse_cfg(&cfg.0, &owner)?;
                let norm = c.norm_cfg.as_ref().map(|n| NormSpec::from_cfg(n, &owner)).transpose()?;
                if norm.as_ref().is_some_and(|n| n.num_groups.is_none()) {
                    // Its running statistics would need the train/eval switch
                    // that the RoI extractors do not carry.
                    return Err(ModelError::new(owner, "a batch norm in the ConvModule is not supported yet (use GN or none)"));
                }
                let (cin, cout, k) = (c.in_channels as i64, c.out_channels as i64, c.kernel_size as i64);
                let opts = ConvModuleOpts {
                    geom: ConvGeom::k(k).stride(c.stride as i64).padding(c.padding as i64).dilation(c.dilation as i64),
                    bias: c.bias.fixed(),
                    norm,
                    act: Activation::from_cfg(c.act_cfg.as_ref(), &owner)?,
                    // ConvModule's own init: Kaiming, fan_out, for ReLU.
                    init: kaiming_normal_fan_out(&[cout, cin, k, k]),
                    conv: ConvKind::from_cfg(c.conv_cfg.as_ref(), &owner)?,
                };
                Ok((RoiModule::Conv(ConvModule::new(p, cin, cout, &opts)?), cin, cout))
            }
            "GeneralizedAttention" => {
                let c: GeneralizedAttentionConfig = parse_cfg(&cfg.0, &owner)?;
                let channels = c
                    .in_channels
                    .ok_or_else(|| ModelError::new(&owner, "GeneralizedAttention needs in_channels here"))? as i64;
                Ok((RoiModule::Attention(GeneralizedAttention::new(p, channels, &c, true)?), channels, channels))
            }
            other => Err(ModelError::new(
                owner,
                format!("{other:?} is not supported here (ConvModule, GeneralizedAttention)"),
            )),
        }
    }

    fn forward(&self, x: &Tensor) -> ModelResult<Tensor> {
        match self {
            // No batch norm (refused above), so train and eval agree.
            RoiModule::Conv(m) => m.forward_t(x, false),
            RoiModule::Attention(m) => m.forward(x),
        }
    }
}

#[derive(Debug)]
pub struct GenericRoIExtractor {
    pub op: RoIAlign,
    pub featmap_strides: Vec<i64>,
    /// The channels of the aggregated features (before `post_module`).
    out_channels: i64,
    /// The channels each level's pooled features have (and keep through `pre_module`).
    level_channels: i64,
    aggregation: RoiAggregation,
    pre: Option<RoiModule>,
    post: Option<(RoiModule, i64)>,
}

impl GenericRoIExtractor {
    /// Builds under `p` (`roi_head.bbox_roi_extractor`): `pre_module.*`,
    /// `post_module.*`.
    pub fn new(cfg: &GenericRoIExtractorConfig, p: &nn::Path) -> ModelResult<Self> {
        let layer = &cfg.roi_layer.0;
        let op = match cfg_type(layer, "roi_layer")? {
            "RoIAlign" => RoIAlign::new(&parse_cfg::<RoIAlignConfig>(layer, "RoIAlign")?),
            other => return Err(ModelError::new(NAME, format!("roi_layer {other:?} is not supported (only RoIAlign)"))),
        };
        let out_channels = cfg.out_channels as i64;
        let levels = cfg.featmap_strides.len() as i64;
        if cfg.aggregation == RoiAggregation::Concat && out_channels % levels != 0 {
            return Err(ModelError::new(
                NAME,
                format!("concat of {levels} levels needs out_channels ({out_channels}) to be a multiple of {levels}"),
            ));
        }
        let level_channels = match cfg.aggregation {
            RoiAggregation::Sum => out_channels,
            RoiAggregation::Concat => out_channels / levels,
        };
        let pre = match &cfg.pre_cfg {
            None => None,
            Some(c) => {
                let (m, cin, cout) = RoiModule::new(c, &(p / "pre_module"), "pre_cfg")?;
                if cin != level_channels || cout != level_channels {
                    return Err(ModelError::new(
                        NAME,
                        format!("pre_cfg maps {cin} to {cout} channels but each level's pooled features have {level_channels} here"),
                    ));
                }
                Some(m)
            }
        };
        let post = match &cfg.post_cfg {
            None => None,
            Some(c) => {
                let (m, cin, cout) = RoiModule::new(c, &(p / "post_module"), "post_cfg")?;
                if cin != out_channels {
                    return Err(ModelError::new(NAME, format!("post_cfg takes {cin} channels but the aggregated features have {out_channels}")));
                }
                Some((m, cout))
            }
        };
        Ok(GenericRoIExtractor {
            op,
            featmap_strides: cfg.featmap_strides.iter().map(|&s| s as i64).collect(),
            out_channels,
            level_channels,
            aggregation: cfg.aggregation,
            pre,
            post,
        })
    }

    /// The channels of the features it returns (`post_module`'s output).
    pub fn result_channels(&self) -> i64 {
        self.post.as_ref().map_or(self.out_channels, |(_, c)| *c)
    }

    /// feats: the neck's levels (N, C, Hi, Wi), the first `L` (its
    /// `featmap_strides`) read; rois (R, 5) -> (R, C', S, S).
    pub fn forward(&self, feats: &[Tensor], rois: &Tensor) -> ModelResult<Tensor> {
        let levels = self.featmap_strides.len();
        if feats.len() < levels {
            return Err(ModelError::new(NAME, format!("{levels} featmap_strides but the neck gives {} levels", feats.len())));
        }
        let feats = &feats[..levels];
        let (ph, pw) = self.op.output_size;
        let r = rois.size()[0];
        if r == 0 {
            return Ok(Tensor::f_zeros([0, self.out_channels, ph, pw], (feats[0].kind(), feats[0].device()))?);
        }
        let pool = |i: usize| self.op.with_scale(1.0 / self.featmap_strides[i] as f64).forward(&feats[i], rois);
        if feats.len() == 1 {
            return pool(0);
        }
        let mut pooled_levels = Vec::with_capacity(levels);
        for i in 0..levels {
            let pooled = pool(i)?;
            if pooled.size()[1] != self.level_channels {
                return Err(ModelError::new(
                    NAME,
                    format!(
                        "level {i} has {} channels, but {:?} of {levels} levels into out_channels {} needs {}",
                        pooled.size()[1],
                        self.aggregation,
                        self.out_channels,
                        self.level_channels
                    ),
                ));
            }
            pooled_levels.push(match &self.pre {
                Some(m) => m.forward(&pooled)?,
                None => pooled,
            });
        }
        let aggregated = match self.aggregation {
            RoiAggregation::Sum => {
                let mut rest = pooled_levels.into_iter();
                let first = rest.next().expect("at least two levels");
                rest.try_fold(first, |sum, t| sum.f_add(&t))?
            }
            RoiAggregation::Concat => Tensor::f_cat(&pooled_levels, 1)?,
        };
        match &self.post {
            Some((m, _)) => m.forward(&aggregated),
            None => Ok(aggregated),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use serde_json::json;
    use tch::nn::VarStore;
    use tch::Device;

    use super::*;
    use crate::models::layers::fixtures::{check_module_case, script_state_dict, tensor, StateDict};

    fn fixture() -> &'static StateDict {
        static FX: OnceLock<StateDict> = OnceLock::new();
        FX.get_or_init(|| script_state_dict("tests/models/groie_reference.py", "detc-groie", "groie.pth"))
    }

    /// Names, initialisation, train-mode output and every gradient (the
    /// levels' and the modules' parameters') equal MMDetection's.
    fn check_case(case: &str, cfg: serde_json::Value) {
        let _seed = crate::models::layers::fixtures::seeded();
        let vs = VarStore::new(Device::Cpu);
        let ext = GenericRoIExtractor::new(&serde_json::from_value(cfg).unwrap(), &vs.root()).unwrap();
        let rois = tensor(fixture(), &format!("{case}.rois"));
        check_module_case(fixture(), case, &vs, |levels| vec![ext.forward(levels, &rois).unwrap()]);
    }

    #[test]
    fn groie_summing_levels_between_a_conv_and_attention_equals_mmdet() {
        check_case(
            "sum",
            json!({"aggregation": "sum", "roi_layer": {"type": "RoIAlign", "output_size": 7, "sampling_ratio": 2},
                   "out_channels": 8, "featmap_strides": [4, 8, 16, 32],
                   "pre_cfg": {"type": "ConvModule", "in_channels": 8, "out_channels": 8, "kernel_size": 5, "padding": 2, "inplace": false},
                   "post_cfg": {"type": "GeneralizedAttention", "in_channels": 8, "spatial_range": -1, "num_heads": 2,
                                "attention_type": "0100", "kv_stride": 2}}),
        );
    }

    /// GRoIE's GeneralizedAttention ('0100': query and relative position,
    /// without the geometric bias) on its 7x7 RoI features: MMCV's branch
    /// for it multiplies the y offsets with the transposed query.
    #[test]
    fn attention_of_query_and_position_equals_mmcv_on_roi_features() {
        let _seed = crate::models::layers::fixtures::seeded();
        let vs = VarStore::new(Device::Cpu);
        let cfg = json!({"in_channels": 8, "spatial_range": -1, "num_heads": 2, "attention_type": "0100", "kv_stride": 2});
        let ga = GeneralizedAttention::new(&vs.root(), 8, &serde_json::from_value(cfg).unwrap(), true).unwrap();
        check_module_case(fixture(), "ga7", &vs, |x| vec![ga.forward(&x[0]).unwrap()]);
    }

    #[test]
    fn groie_concatenating_levels_equals_mmdet() {
        check_case(
            "concat",
            json!({"aggregation": "concat", "roi_layer": {"type": "RoIAlign", "output_size": 5, "sampling_ratio": 0},
                   "out_channels": 16, "featmap_strides": [4, 8, 16, 32],
                   "pre_cfg": {"type": "ConvModule", "in_channels": 4, "out_channels": 4, "kernel_size": 3, "padding": 1,
                               "norm_cfg": {"type": "GN", "num_groups": 2}}}),
        );
    }

    #[test]
    fn groie_modules_that_do_not_fit_the_levels_are_refused() {
        let vs = VarStore::new(Device::Cpu);
        let cfg = json!({"roi_layer": {"type": "RoIAlign", "output_size": 7}, "out_channels": 8, "featmap_strides": [4, 8],
                         "pre_cfg": {"type": "ConvModule", "in_channels": 8, "out_channels": 16, "kernel_size": 1}});
        let err = GenericRoIExtractor::new(&serde_json::from_value(cfg).unwrap(), &vs.root()).unwrap_err();
        assert!(err.to_string().contains("pre_cfg maps 8 to 16 channels"), "{err}");
        let cfg = json!({"roi_layer": {"type": "RoIAlign", "output_size": 7}, "out_channels": 8, "featmap_strides": [4, 8],
                         "post_cfg": {"type": "GeneralizedAttention", "num_heads": 2}});
        let err = GenericRoIExtractor::new(&serde_json::from_value(cfg).unwrap(), &vs.root()).unwrap_err();
        assert!(err.to_string().contains("needs in_channels"), "{err}");
    }
}
