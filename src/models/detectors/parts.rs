//! The parts every detector builds the same way: the backbone, the neck and
//! the `data_preprocessor` config, and the feature extraction through them
//! (`BaseDetector.extract_feat`).

use detc::registry::models::backbones::{
    CSPNeXtConfig, HRNetConfig, RegNetConfig, Res2NetConfig, ResNeStConfig, ResNeXtConfig, ResNetConfig, SwinTransformerConfig,
};
use detc::registry::models::data_preprocessors::DetDataPreprocessorConfig;
use detc::registry::models::common::OneOrMany;
use detc::registry::models::necks::{BFPConfig, CSPNeXtPAFPNConfig, DyHeadConfig, FPNConfig, HRFPNConfig};
use detc::registry::refs::{BackboneCfg, DataPreprocessorCfg, NeckCfg};
use tch::{nn, Tensor};

use crate::models::backbones::{Backbone, CSPNeXt, HRNet, ResNet, SwinTransformer};
use crate::models::data_preprocessors::DetBatch;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::necks::{CSPNeXtPAFPN, DyHead, Neck, BFP, FPN, HRFPN};

/// `backbone` under `p / "backbone"`; `detector` names the owner in errors.
pub fn build_backbone(cfg: &BackboneCfg, detector: &str, p: &nn::Path) -> ModelResult<Backbone> {
    Ok(match cfg_type(&cfg.0, "backbone")? {
        "ResNet" => Backbone::ResNet(ResNet::new(&parse_cfg::<ResNetConfig>(&cfg.0, "ResNet")?, p / "backbone")?),
        "ResNeXt" => Backbone::ResNet(ResNet::resnext(&parse_cfg::<ResNeXtConfig>(&cfg.0, "ResNeXt")?, p / "backbone")?),
        "RegNet" => Backbone::ResNet(ResNet::regnet(&parse_cfg::<RegNetConfig>(&cfg.0, "RegNet")?, p / "backbone")?),
        "ResNeSt" => Backbone::ResNet(ResNet::resnest(&parse_cfg::<ResNeStConfig>(&cfg.0, "ResNeSt")?, p / "backbone")?),
        "Res2Net" => Backbone::ResNet(ResNet::res2net(&parse_cfg::<Res2NetConfig>(&cfg.0, "Res2Net")?, p / "backbone")?),
        "SwinTransformer" => Backbone::Swin(SwinTransformer::new(
            &parse_cfg::<SwinTransformerConfig>(&cfg.0, "SwinTransformer")?,
            p / "backbone",
        )?),
        "HRNet" => Backbone::HRNet(HRNet::new(&parse_cfg::<HRNetConfig>(&cfg.0, "HRNet")?, p / "backbone")?),
        "CSPNeXt" => Backbone::CspNext(CSPNeXt::new(&parse_cfg::<CSPNeXtConfig>(&cfg.0, "CSPNeXt")?, p / "backbone")?),
        other => {
            return Err(ModelError::new(
                detector,
                format!("backbone {other:?} is not supported (ResNet, ResNeXt, ResNeSt, Res2Net, RegNet, SwinTransformer, HRNet and CSPNeXt are)"),
            ))
        }
    })
}

/// `neck` under `p / "neck"`, if configured; a list is MMEngine's
/// `Sequential` of its necks, under `neck.{i}`.
pub fn build_neck(cfg: Option<&OneOrMany<NeckCfg>>, detector: &str, p: &nn::Path) -> ModelResult<Option<Neck>> {
    match cfg {
        None => Ok(None),
        Some(OneOrMany::One(cfg)) => one_neck(cfg, detector, p / "neck").map(Some),
        Some(OneOrMany::Many(cfgs)) => {
            let necks = cfgs.iter().enumerate().map(|(i, c)| one_neck(c, detector, p / "neck" / i)).collect::<ModelResult<Vec<_>>>()?;
            Ok(Some(Neck::Sequential(necks)))
        }
    }
}

fn one_neck(cfg: &NeckCfg, detector: &str, p: nn::Path) -> ModelResult<Neck> {
    match cfg_type(&cfg.0, "neck")? {
        "FPN" => Ok(Neck::Fpn(FPN::new(&parse_cfg::<FPNConfig>(&cfg.0, "FPN")?, p)?)),
        "PAFPN" => Ok(Neck::Fpn(FPN::pafpn(&parse_cfg::<FPNConfig>(&cfg.0, "PAFPN")?, p)?)),
        "HRFPN" => Ok(Neck::HrFpn(HRFPN::new(&parse_cfg::<HRFPNConfig>(&cfg.0, "HRFPN")?, p)?)),
        "BFP" => Ok(Neck::Bfp(BFP::new(&parse_cfg::<BFPConfig>(&cfg.0, "BFP")?, p)?)),
        "DyHead" => Ok(Neck::DyHead(DyHead::new(&parse_cfg::<DyHeadConfig>(&cfg.0, "DyHead")?, p)?)),
        "CSPNeXtPAFPN" => Ok(Neck::CspNext(CSPNeXtPAFPN::new(&parse_cfg::<CSPNeXtPAFPNConfig>(&cfg.0, "CSPNeXtPAFPN")?, p)?)),
        other => Err(ModelError::new(detector, format!("neck {other:?} is not supported (FPN, PAFPN, HRFPN, BFP, CSPNeXtPAFPN and DyHead are)"))),
    }
}

/// The `data_preprocessor` config (the preprocessor itself is built per device).
pub fn preprocessor_config(
    cfg: Option<&DataPreprocessorCfg>,
    detector: &str,
) -> ModelResult<Option<DetDataPreprocessorConfig>> {
    let Some(cfg) = cfg else { return Ok(None) };
    match cfg_type(&cfg.0, "data_preprocessor")? {
        "DetDataPreprocessor" => Ok(Some(parse_cfg(&cfg.0, "DetDataPreprocessor")?)),
        other => Err(ModelError::new(
            detector,
            format!("data_preprocessor {other:?} is not supported"),
        )),
    }
}

/// `extract_feat`: backbone, then neck.
pub fn extract_feat(
    backbone: &Backbone,
    neck: Option<&Neck>,
    inputs: &Tensor,
    train: bool,
) -> ModelResult<Vec<Tensor>> {
    let x = backbone.forward_t(inputs, train)?;
    match neck {
        Some(neck) => neck.forward_t(&x, train),
        None => Ok(x),
    }
}

/// The neck's maps as the RoI extractors read them, (N, C, H, W) contiguous.
/// Under channels-last weights (`env_cfg.channels_last`) they come out laid
/// out (N, H, W, C): converted here once per forward pass rather than by
/// RoIAlign at each of its calls (QueryInst's stages make 12). Maps already
/// contiguous are shared as they are.
pub fn roi_feats(x: &[Tensor]) -> ModelResult<Vec<Tensor>> {
    Ok(x.iter().map(Tensor::f_contiguous).collect::<Result<_, _>>()?)
}

/// Each image's `img_shape` `(h, w)`.
pub fn img_shapes(batch: &DetBatch) -> ModelResult<Vec<(f64, f64)>> {
    batch
        .data_samples
        .iter()
        .map(|s| {
            s.meta
                .img_shape
                .map(|(h, w)| (h as f64, w as f64))
                .ok_or_else(|| ModelError::new("detector", "a sample has no img_shape"))
        })
        .collect()
}
