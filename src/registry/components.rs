//! The table of every registered component.
//!
//! Names are MMDetection's / MMEngine's / MMCV's `type:` strings exactly
//! (case-sensitive, as MMEngine's registry looks them up). Several names may
//! share one config struct when their constructors take the same arguments
//! (`Conv` / `Conv2d`).


use super::data::{
    AspectRatioBatchSamplerConfig, CachedMixUpConfig, CachedMosaicConfig, ClassBalancedDatasetConfig, CocoDatasetConfig,
    CocoMetricConfig, ConcatDatasetConfig, DefaultSamplerConfig, FilterAnnotationsConfig, InfiniteSamplerConfig,
    RepeatDatasetConfig, LoadAnnotationsConfig, LoadImageFromFileConfig, PackDetInputsConfig, PadConfig, RandomChoiceConfig,
    RandomChoiceResizeConfig, RandomCropConfig, RandomFlipConfig, RandomResizeConfig, ResizeConfig, YOLOXHSVRandomAugConfig,
};
use super::engine::{
    AdamConfig, AdamWConfig, AmpOptimWrapperConfig, CheckpointHookConfig, ConstantLRConfig, CosineAnnealingLRConfig,
    DetLocalVisualizerConfig, DetVisualizationHookConfig, DistSamplerSeedHookConfig, EMAHookConfig, EmptyCacheHookConfig, PipelineSwitchHookConfig,
    EpochBasedTrainLoopConfig, ExponentialLRConfig, IterBasedTrainLoopConfig, IterTimerHookConfig, LinearLRConfig,
    LocalVisBackendConfig, LogProcessorConfig, LoggerHookConfig, MultiStepLRConfig, OptimWrapperConfig,
    ParamSchedulerHookConfig, RuntimeInfoHookConfig, SGDConfig, StepLRConfig, TensorboardVisBackendConfig,
    TestLoopConfig, ValLoopConfig,
};
use super::models::backbones::{
    CSPNeXtConfig, HRNetConfig, RegNetConfig, Res2NetConfig, ResNeStConfig, ResNeXtConfig, ResNetConfig, SwinTransformerConfig,
};
use super::models::bbox_heads::{BBoxHeadConfig, ConvFCBBoxHeadConfig, DIIHeadConfig, Shared2FCBBoxHeadConfig, Shared4Conv1FCBBoxHeadConfig};
use super::models::data_preprocessors::{BatchFixedSizePadConfig, DetDataPreprocessorConfig};
use super::models::dense_heads::{FreeAnchorRetinaHeadConfig, RTMDetSepBNHeadConfig, ATSSHeadConfig, EmbeddingRPNHeadConfig, FCOSHeadConfig, GFLHeadConfig, RPNHeadConfig, TOODHeadConfig, FoveaHeadConfig, RepPointsHeadConfig, CenterNetUpdateHeadConfig, VFNetHeadConfig, RetinaHeadConfig};
use super::models::detectors::{RPNConfig, SingleStageDetectorConfig, TOODConfig, FOVEAConfig, RepPointsDetectorConfig, QueryInstConfig, SparseRCNNConfig, TwoStageDetectorConfig};
use super::models::layers::{
    BatchNormConfig, ContextBlockConfig, ConvModuleConfig, Conv2dConfig, GeneralizedAttentionConfig, ConvWSConfig, DeformConvConfig, DynamicConvConfig, ModulatedDeformConvConfig, GeluConfig, GroupNormConfig, LayerNormConfig, LeakyReluConfig,
    MmcvSyncBatchNormConfig, ReluConfig, SigmoidConfig, SiluConfig, SwishConfig, SyncBatchNormConfig,
};
use super::models::losses::{
    BalancedL1LossConfig, BoundedIoULossConfig, GhmcConfig, GhmrConfig, CrossEntropyLossConfig, DiceLossConfig, DistanceIoULossConfig, DistributionFocalLossConfig, FocalLossConfig, QualityFocalLossConfig, VarifocalLossConfig, GaussianFocalLossConfig, GIoULossConfig, IoULossConfig, L1LossConfig, MSELossConfig,
    SmoothL1LossConfig,
};
use super::models::mask_heads::{DynamicMaskHeadConfig, FCNMaskHeadConfig, MaskIoUHeadConfig};
use super::models::necks::{CSPNeXtPAFPNConfig, DyHeadConfig, BFPConfig, FPNConfig, HRFPNConfig};
use super::models::ops::{NmsConfig, RoIAlignConfig, SoftNmsConfig};
use super::models::roi_heads::{ResLayerConfig, CascadeRoIHeadConfig, GenericRoIExtractorConfig, MaskScoringRoIHeadConfig, SingleRoIExtractorConfig, SparseRoIHeadConfig, StandardRoIHeadConfig};
use super::models::task_modules::{
    AnchorGeneratorConfig, LegacyDeltaXYWHBBoxCoderConfig, MlvlPointGeneratorConfig, DynamicSoftLabelAssignerConfig, BBoxL1CostConfig, ClassificationCostConfig, DeltaXYWHBBoxCoderConfig, DistancePointBBoxCoderConfig, FocalLossCostConfig,
    ATSSAssignerConfig, TaskAlignedAssignerConfig, PointAssignerConfig, CombinedSamplerConfig, HungarianAssignerConfig, InstanceBalancedPosSamplerConfig, IoUBalancedNegSamplerConfig, IoUCostConfig, MaxIoUAssignerConfig, OHEMSamplerConfig, PseudoSamplerConfig, RandomSamplerConfig,
};
use super::models::weight_init::{
    Caffe2XavierInitConfig, ConstantInitConfig, KaimingInitConfig, NormalInitConfig, PretrainedInitConfig, XavierInitConfig,
};
use super::{component, Component, Role};

pub static COMPONENTS: &[Component] = &[
    // detectors
    component::<TwoStageDetectorConfig>("FasterRCNN", Role::Detector),
    component::<SingleStageDetectorConfig>("RetinaNet", Role::Detector),
    component::<RPNConfig>("RPN", Role::Detector),
    component::<SingleStageDetectorConfig>("FCOS", Role::Detector),
    component::<SingleStageDetectorConfig>("ATSS", Role::Detector),
    component::<SingleStageDetectorConfig>("GFL", Role::Detector),
    component::<SingleStageDetectorConfig>("VFNet", Role::Detector),
    component::<SingleStageDetectorConfig>("CenterNet", Role::Detector),
    component::<TOODConfig>("TOOD", Role::Detector),
    component::<FOVEAConfig>("FOVEA", Role::Detector),
    component::<RepPointsDetectorConfig>("RepPointsDetector", Role::Detector),
    component::<SingleStageDetectorConfig>("RTMDet", Role::Detector),
    component::<TwoStageDetectorConfig>("MaskRCNN", Role::Detector),
    component::<TwoStageDetectorConfig>("MaskScoringRCNN", Role::Detector),
    component::<TwoStageDetectorConfig>("CascadeRCNN", Role::Detector),
    component::<SparseRCNNConfig>("SparseRCNN", Role::Detector),
    component::<QueryInstConfig>("QueryInst", Role::Detector),
    // data preprocessors
    component::<DetDataPreprocessorConfig>("DetDataPreprocessor", Role::DataPreprocessor),
    component::<BatchFixedSizePadConfig>("BatchFixedSizePad", Role::BatchAugment),
    // backbones
    component::<ResNetConfig>("ResNet", Role::Backbone),
    component::<ResNeXtConfig>("ResNeXt", Role::Backbone),
    component::<ResNeStConfig>("ResNeSt", Role::Backbone),
    component::<Res2NetConfig>("Res2Net", Role::Backbone),
    component::<RegNetConfig>("RegNet", Role::Backbone),
    component::<SwinTransformerConfig>("SwinTransformer", Role::Backbone),
    component::<HRNetConfig>("HRNet", Role::Backbone),
    component::<CSPNeXtConfig>("CSPNeXt", Role::Backbone),
    // necks
    component::<FPNConfig>("FPN", Role::Neck),
    component::<FPNConfig>("PAFPN", Role::Neck),
    component::<BFPConfig>("BFP", Role::Neck),
    component::<HRFPNConfig>("HRFPN", Role::Neck),
    component::<CSPNeXtPAFPNConfig>("CSPNeXtPAFPN", Role::Neck),
    component::<DyHeadConfig>("DyHead", Role::Neck),
    // dense heads
    component::<RPNHeadConfig>("RPNHead", Role::RpnHead),
    component::<RetinaHeadConfig>("RetinaHead", Role::DenseHead),
    component::<FCOSHeadConfig>("FCOSHead", Role::DenseHead),
    component::<ATSSHeadConfig>("ATSSHead", Role::DenseHead),
    component::<VFNetHeadConfig>("VFNetHead", Role::DenseHead),
    component::<TOODHeadConfig>("TOODHead", Role::DenseHead),
    component::<FoveaHeadConfig>("FoveaHead", Role::DenseHead),
    component::<RepPointsHeadConfig>("RepPointsHead", Role::DenseHead),
    component::<CenterNetUpdateHeadConfig>("CenterNetUpdateHead", Role::DenseHead),
    component::<GFLHeadConfig>("GFLHead", Role::DenseHead),
    component::<RTMDetSepBNHeadConfig>("RTMDetSepBNHead", Role::DenseHead),
    component::<FreeAnchorRetinaHeadConfig>("FreeAnchorRetinaHead", Role::DenseHead),
    component::<EmbeddingRPNHeadConfig>("EmbeddingRPNHead", Role::RpnHead),
    // roi heads
    component::<StandardRoIHeadConfig>("StandardRoIHead", Role::RoiHead),
    component::<MaskScoringRoIHeadConfig>("MaskScoringRoIHead", Role::RoiHead),
    component::<CascadeRoIHeadConfig>("CascadeRoIHead", Role::RoiHead),
    component::<SparseRoIHeadConfig>("SparseRoIHead", Role::RoiHead),
    component::<Shared2FCBBoxHeadConfig>("Shared2FCBBoxHead", Role::BBoxHead),
    component::<Shared4Conv1FCBBoxHeadConfig>("Shared4Conv1FCBBoxHead", Role::BBoxHead),
    component::<ConvFCBBoxHeadConfig>("ConvFCBBoxHead", Role::BBoxHead),
    component::<BBoxHeadConfig>("BBoxHead", Role::BBoxHead),
    component::<ResLayerConfig>("ResLayer", Role::SharedHead),
    component::<DIIHeadConfig>("DIIHead", Role::BBoxHead),
    component::<FCNMaskHeadConfig>("FCNMaskHead", Role::MaskHead),
    component::<DynamicMaskHeadConfig>("DynamicMaskHead", Role::MaskHead),
    component::<MaskIoUHeadConfig>("MaskIoUHead", Role::MaskHead),
    component::<SingleRoIExtractorConfig>("SingleRoIExtractor", Role::RoiExtractor),
    component::<GenericRoIExtractorConfig>("GenericRoIExtractor", Role::RoiExtractor),
    // ops
    component::<RoIAlignConfig>("RoIAlign", Role::RoiLayer),
    component::<NmsConfig>("nms", Role::Nms),
    component::<SoftNmsConfig>("soft_nms", Role::Nms),
    // task modules
    component::<AnchorGeneratorConfig>("AnchorGenerator", Role::AnchorGenerator),
    component::<MlvlPointGeneratorConfig>("MlvlPointGenerator", Role::AnchorGenerator),
    component::<AnchorGeneratorConfig>("LegacyAnchorGenerator", Role::AnchorGenerator),
    component::<DeltaXYWHBBoxCoderConfig>("DeltaXYWHBBoxCoder", Role::BBoxCoder),
    component::<LegacyDeltaXYWHBBoxCoderConfig>("LegacyDeltaXYWHBBoxCoder", Role::BBoxCoder),
    component::<DistancePointBBoxCoderConfig>("DistancePointBBoxCoder", Role::BBoxCoder),
    component::<MaxIoUAssignerConfig>("MaxIoUAssigner", Role::Assigner),
    component::<HungarianAssignerConfig>("HungarianAssigner", Role::Assigner),
    component::<ATSSAssignerConfig>("ATSSAssigner", Role::Assigner),
    component::<TaskAlignedAssignerConfig>("TaskAlignedAssigner", Role::Assigner),
    component::<PointAssignerConfig>("PointAssigner", Role::Assigner),
    component::<DynamicSoftLabelAssignerConfig>("DynamicSoftLabelAssigner", Role::Assigner),
    component::<RandomSamplerConfig>("RandomSampler", Role::Sampler),
    component::<PseudoSamplerConfig>("PseudoSampler", Role::Sampler),
    component::<OHEMSamplerConfig>("OHEMSampler", Role::Sampler),
    component::<CombinedSamplerConfig>("CombinedSampler", Role::Sampler),
    component::<InstanceBalancedPosSamplerConfig>("InstanceBalancedPosSampler", Role::Sampler),
    component::<IoUBalancedNegSamplerConfig>("IoUBalancedNegSampler", Role::Sampler),
    component::<FocalLossCostConfig>("FocalLossCost", Role::MatchCost),
    component::<BBoxL1CostConfig>("BBoxL1Cost", Role::MatchCost),
    component::<IoUCostConfig>("IoUCost", Role::MatchCost),
    component::<ClassificationCostConfig>("ClassificationCost", Role::MatchCost),
    // losses
    component::<FocalLossConfig>("FocalLoss", Role::Loss),
    component::<QualityFocalLossConfig>("QualityFocalLoss", Role::Loss),
    component::<VarifocalLossConfig>("VarifocalLoss", Role::Loss),
    component::<GaussianFocalLossConfig>("GaussianFocalLoss", Role::Loss),
    component::<DistributionFocalLossConfig>("DistributionFocalLoss", Role::Loss),
    component::<CrossEntropyLossConfig>("CrossEntropyLoss", Role::Loss),
    component::<L1LossConfig>("L1Loss", Role::Loss),
    component::<MSELossConfig>("MSELoss", Role::Loss),
    component::<BalancedL1LossConfig>("BalancedL1Loss", Role::Loss),
    component::<GhmcConfig>("GHMC", Role::Loss),
    component::<GhmrConfig>("GHMR", Role::Loss),
    component::<SmoothL1LossConfig>("SmoothL1Loss", Role::Loss),
    component::<GIoULossConfig>("GIoULoss", Role::Loss),
    component::<IoULossConfig>("IoULoss", Role::Loss),
    component::<BoundedIoULossConfig>("BoundedIoULoss", Role::Loss),
    component::<DistanceIoULossConfig>("DIoULoss", Role::Loss),
    component::<DistanceIoULossConfig>("CIoULoss", Role::Loss),
    component::<DiceLossConfig>("DiceLoss", Role::Loss),
    // layers
    component::<Conv2dConfig>("Conv2d", Role::Conv),
    component::<Conv2dConfig>("Conv", Role::Conv),
    component::<ConvWSConfig>("ConvWS", Role::Conv),
    component::<DynamicConvConfig>("DynamicConv", Role::Conv),
    component::<DeformConvConfig>("DCN", Role::Conv),
    component::<ModulatedDeformConvConfig>("DCNv2", Role::Conv),
    component::<ContextBlockConfig>("ContextBlock", Role::Plugin),
    component::<GeneralizedAttentionConfig>("GeneralizedAttention", Role::Plugin),
    component::<ConvModuleConfig>("ConvModule", Role::Plugin),
    component::<BatchNormConfig>("BN", Role::Norm),
    component::<BatchNormConfig>("BN2d", Role::Norm),
    component::<SyncBatchNormConfig>("SyncBN", Role::Norm),
    component::<MmcvSyncBatchNormConfig>("MMSyncBN", Role::Norm),
    component::<GroupNormConfig>("GN", Role::Norm),
    component::<LayerNormConfig>("LN", Role::Norm),
    component::<ReluConfig>("ReLU", Role::Activation),
    component::<LeakyReluConfig>("LeakyReLU", Role::Activation),
    component::<GeluConfig>("GELU", Role::Activation),
    component::<SiluConfig>("SiLU", Role::Activation),
    component::<SwishConfig>("Swish", Role::Activation),
    component::<SigmoidConfig>("Sigmoid", Role::Activation),
    // weight init
    component::<PretrainedInitConfig>("Pretrained", Role::Init),
    component::<KaimingInitConfig>("Kaiming", Role::Init),
    component::<Caffe2XavierInitConfig>("Caffe2Xavier", Role::Init),
    component::<XavierInitConfig>("Xavier", Role::Init),
    component::<NormalInitConfig>("Normal", Role::Init),
    component::<ConstantInitConfig>("Constant", Role::Init),
    // datasets
    component::<CocoDatasetConfig>("CocoDataset", Role::Dataset),
    component::<CocoDatasetConfig>("Objects365V1Dataset", Role::Dataset),
    component::<CocoDatasetConfig>("Objects365V2Dataset", Role::Dataset),
    component::<RepeatDatasetConfig>("RepeatDataset", Role::Dataset),
    component::<ClassBalancedDatasetConfig>("ClassBalancedDataset", Role::Dataset),
    component::<ConcatDatasetConfig>("ConcatDataset", Role::Dataset),
    // transforms
    component::<LoadImageFromFileConfig>("LoadImageFromFile", Role::Transform),
    component::<LoadAnnotationsConfig>("LoadAnnotations", Role::Transform),
    component::<ResizeConfig>("Resize", Role::Transform),
    component::<RandomFlipConfig>("RandomFlip", Role::Transform),
    component::<RandomResizeConfig>("RandomResize", Role::Transform),
    component::<RandomChoiceResizeConfig>("RandomChoiceResize", Role::Transform),
    component::<RandomCropConfig>("RandomCrop", Role::Transform),
    component::<RandomChoiceConfig>("RandomChoice", Role::Transform),
    component::<FilterAnnotationsConfig>("FilterAnnotations", Role::Transform),
    component::<PadConfig>("Pad", Role::Transform),
    component::<YOLOXHSVRandomAugConfig>("YOLOXHSVRandomAug", Role::Transform),
    component::<CachedMosaicConfig>("CachedMosaic", Role::Transform),
    component::<CachedMixUpConfig>("CachedMixUp", Role::Transform),
    component::<PackDetInputsConfig>("PackDetInputs", Role::Transform),
    // data samplers
    component::<DefaultSamplerConfig>("DefaultSampler", Role::DataSampler),
    component::<InfiniteSamplerConfig>("InfiniteSampler", Role::DataSampler),
    component::<AspectRatioBatchSamplerConfig>("AspectRatioBatchSampler", Role::BatchSampler),
    // evaluators
    component::<CocoMetricConfig>("CocoMetric", Role::Evaluator),
    // optimizer wrappers and optimizers
    component::<OptimWrapperConfig>("OptimWrapper", Role::OptimWrapper),
    component::<AmpOptimWrapperConfig>("AmpOptimWrapper", Role::OptimWrapper),
    component::<SGDConfig>("SGD", Role::Optimizer),
    component::<AdamConfig>("Adam", Role::Optimizer),
    component::<AdamWConfig>("AdamW", Role::Optimizer),
    // parameter schedulers
    component::<LinearLRConfig>("LinearLR", Role::ParamScheduler),
    component::<MultiStepLRConfig>("MultiStepLR", Role::ParamScheduler),
    component::<CosineAnnealingLRConfig>("CosineAnnealingLR", Role::ParamScheduler),
    component::<ConstantLRConfig>("ConstantLR", Role::ParamScheduler),
    component::<StepLRConfig>("StepLR", Role::ParamScheduler),
    component::<ExponentialLRConfig>("ExponentialLR", Role::ParamScheduler),
    // hooks
    component::<RuntimeInfoHookConfig>("RuntimeInfoHook", Role::Hook),
    component::<IterTimerHookConfig>("IterTimerHook", Role::Hook),
    component::<LoggerHookConfig>("LoggerHook", Role::Hook),
    component::<ParamSchedulerHookConfig>("ParamSchedulerHook", Role::Hook),
    component::<CheckpointHookConfig>("CheckpointHook", Role::Hook),
    component::<DistSamplerSeedHookConfig>("DistSamplerSeedHook", Role::Hook),
    component::<DetVisualizationHookConfig>("DetVisualizationHook", Role::Hook),
    component::<EmptyCacheHookConfig>("EmptyCacheHook", Role::Hook),
    component::<EMAHookConfig>("EMAHook", Role::Hook),
    component::<PipelineSwitchHookConfig>("PipelineSwitchHook", Role::Hook),
    // loops
    component::<EpochBasedTrainLoopConfig>("EpochBasedTrainLoop", Role::Loop),
    component::<IterBasedTrainLoopConfig>("IterBasedTrainLoop", Role::Loop),
    component::<ValLoopConfig>("ValLoop", Role::Loop),
    component::<TestLoopConfig>("TestLoop", Role::Loop),
    // visualization
    component::<DetLocalVisualizerConfig>("DetLocalVisualizer", Role::Visualizer),
    component::<LocalVisBackendConfig>("LocalVisBackend", Role::VisBackend),
    component::<TensorboardVisBackendConfig>("TensorboardVisBackend", Role::VisBackend),
    // logging
    component::<LogProcessorConfig>("LogProcessor", Role::LogProcessor),
];

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use serde_json::{json, Value};

    use super::super::refs::ROLE_KEYWORD;
    use super::super::{of_role, Role, ALL_ROLES};
    use super::COMPONENTS;

    /// The JSON Schema keywords the validator implements.
    const SUPPORTED: &[&str] = &[
        "type",
        "properties",
        "additionalProperties",
        "required",
        "items",
        "prefixItems",
        "enum",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
        "anyOf",
        "oneOf",
        "$ref",
        "$defs",
        "default",
        "description",
        // schemars' `uint32`/`double` annotations: ignored by the validator
        // (ranges come from `minimum`), harmless to editors.
        "format",
        ROLE_KEYWORD,
    ];

    /// Keywords whose value is a schema.
    const SCHEMA_VALUED: &[&str] = &["items", "additionalProperties"];
    /// Keywords whose value is a list of schemas.
    const SCHEMA_LISTS: &[&str] = &["prefixItems", "anyOf", "oneOf"];
    /// Keywords whose value is a map of name to schema.
    const SCHEMA_MAPS: &[&str] = &["properties", "$defs"];

    fn generator() -> schemars::SchemaGenerator {
        schemars::generate::SchemaSettings::draft2020_12().into_generator()
    }

    /// Every keyword of `schema` and its subschemas that is not supported, as `path: keyword`.
    fn unsupported(schema: &Value, path: &str, out: &mut Vec<String>) {
        let map = match schema {
            Value::Bool(_) => return,
            Value::Object(map) => map,
            other => {
                out.push(format!("{path}: not a schema: {other}"));
                return;
            }
        };
        for (key, value) in map {
            let here = format!("{path}/{key}");
            if !SUPPORTED.contains(&key.as_str()) {
                out.push(format!("{path}: `{key}`"));
                continue;
            }
            if key == "additionalProperties" && value != &Value::Bool(false) {
                out.push(format!("{here}: only `false` is supported, got {value}"));
            } else if SCHEMA_VALUED.contains(&key.as_str()) {
                unsupported(value, &here, out);
            } else if SCHEMA_LISTS.contains(&key.as_str()) {
                for (i, sub) in value.as_array().into_iter().flatten().enumerate() {
                    unsupported(sub, &format!("{here}/{i}"), out);
                }
            } else if SCHEMA_MAPS.contains(&key.as_str()) {
                for (name, sub) in value.as_object().into_iter().flatten() {
                    unsupported(sub, &format!("{here}/{name}"), out);
                }
            }
        }
    }

    /// Every role named by an `x-detc-role` marker in `schema`.
    fn roles_used(schema: &Value, out: &mut BTreeSet<String>) {
        match schema {
            Value::Object(map) => {
                if let Some(Value::String(role)) = map.get(ROLE_KEYWORD) {
                    out.insert(role.clone());
                }
                map.values().for_each(|v| roles_used(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| roles_used(v, out)),
            _ => {}
        }
    }

    /// The schemas of every component plus `RootConfig`, and all their definitions.
    /// The schemas the validator uses (root, components, every definition).
    fn all_schemas() -> Vec<(String, Value)> {
        let s = crate::registry::validate::schemas();
        let mut schemas: Vec<(String, Value)> = s.components.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
        schemas.push(("RootConfig".into(), s.root.clone()));
        schemas.extend(s.defs.iter().map(|(name, def)| (format!("$defs/{name}"), def.clone())));
        schemas
    }

    #[test]
    fn names_are_unique() {
        let mut seen = HashSet::new();
        for c in COMPONENTS {
            assert!(seen.insert(c.name), "`{}` is registered twice", c.name);
        }
    }

    #[test]
    fn every_referenced_role_has_a_component() {
        let mut used = BTreeSet::new();
        for (_, schema) in all_schemas() {
            roles_used(&schema, &mut used);
        }
        assert!(!used.is_empty());
        for role in &used {
            let role = Role::from_name(role).unwrap_or_else(|| panic!("unknown role `{role}`"));
            assert!(of_role(role).next().is_some(), "no component of role {role:?}");
        }
    }

    #[test]
    fn every_role_has_a_component() {
        let missing: Vec<_> = ALL_ROLES.iter().filter(|r| of_role(**r).next().is_none()).collect();
        assert!(missing.is_empty(), "roles without a component: {missing:?}");
    }

    #[test]
    fn schemas_use_only_the_supported_subset() {
        let mut problems = Vec::new();
        for (name, schema) in all_schemas() {
            unsupported(&schema, &name, &mut problems);
        }
        assert!(problems.is_empty(), "unsupported JSON Schema:\n{}", problems.join("\n"));
    }

    #[test]
    fn components_are_objects_that_deny_unknown_keys() {
        let mut generator = generator();
        for c in COMPONENTS {
            let reference = (c.schema)(&mut generator).to_value();
            let name = reference["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/$defs/"))
                .unwrap_or_else(|| panic!("`{}`: expected a $ref, got {reference}", c.name))
                .to_string();
            let def = generator.definitions()[&name].clone();
            assert_eq!(def["type"], "object", "`{}`", c.name);
            assert_eq!(def["additionalProperties"], false, "`{}` must deny unknown fields", c.name);
            assert!(
                def.get("properties").is_none_or(|p| p.get("type").is_none()),
                "`{}` must not declare `type` (the validator strips it)",
                c.name
            );
            assert!(def.get("description").is_some(), "`{}` needs a doc comment", c.name);
        }
    }

    #[test]
    fn every_property_is_documented() {
        let mut undocumented = Vec::new();
        for (name, schema) in all_schemas() {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else { continue };
            for (key, prop) in props {
                if prop.get("description").is_none() {
                    undocumented.push(format!("{name}.{key}"));
                }
            }
        }
        assert!(undocumented.is_empty(), "fields without a `///` doc: {undocumented:?}");
    }

    /// MMDetection 3.3.0's four reference configs, resolved by MMEngine 0.10.7:
    /// `Config.fromfile(f).to_dict()` dumped with `json.dump(d, fp, indent=1)`
    /// for `f` in `queryinst/queryinst_r50_fpn_1x_coco.py`,
    /// `sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.py`,
    /// `faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py`,
    /// `mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py` (run in `mmdet/.mim/configs`).
    const MMDET_CONFIGS: &[(&str, &str)] = &[
        ("queryinst", include_str!("models/testdata/queryinst_r50_fpn_1x_coco.json")),
        ("sparse_rcnn", include_str!("models/testdata/sparse-rcnn_r50_fpn_1x_coco.json")),
        ("faster_rcnn", include_str!("models/testdata/faster-rcnn_r50_fpn_1x_coco.json")),
        ("mask_rcnn", include_str!("models/testdata/mask-rcnn_r50_fpn_1x_coco.json")),
    ];

    /// The diagnostics (`code: message`) of validating `config`.
    fn check(config: &Value) -> Vec<String> {
        use crate::config::source::Sources;
        let text = serde_json::to_string_pretty(config).unwrap();
        let mut sources = Sources::default();
        let id = sources.add("test.json".into(), None, text.clone());
        let tree = crate::config::yaml::parse(id, &text, None).expect("fixture parses");
        match super::super::validate::check(&tree) {
            Ok(()) => vec![],
            Err(diags) => diags.iter().map(|d| format!("{}: {}", d.code, d.message)).collect(),
        }
    }

    /// Sets `pointer` in `config`, adding the last key if its parent is a mapping.
    fn set(config: &mut Value, pointer: &str, value: Value) {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let parent = config.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}"));
        match parent {
            Value::Object(map) => {
                map.insert(key.to_string(), value);
            }
            Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
            other => panic!("{pointer}: parent is {other}"),
        }
    }

    fn fixture(name: &str) -> Value {
        let text = MMDET_CONFIGS.iter().find(|(n, _)| *n == name).unwrap().1;
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn mmdetection_reference_configs_validate() {
        for (name, _) in MMDET_CONFIGS {
            let errors = check(&fixture(name));
            assert!(errors.is_empty(), "{name}: {errors:#?}");
        }
    }

    #[test]
    fn value_constraints_are_enforced() {
        // Each must be rejected (the validator picks the diagnostic code).
        let cases: &[(&str, &str, Value)] = &[
            ("faster_rcnn", "/optim_wrapper/optimizer/lr", json!(0)),
            ("faster_rcnn", "/optim_wrapper/optimizer/momentum", json!(1.5)),
            ("faster_rcnn", "/optim_wrapper/optimizer/weight_decay", json!(-0.1)),
            ("sparse_rcnn", "/optim_wrapper/optimizer/lr", json!(-1e-4)),
            ("faster_rcnn", "/train_dataloader/batch_size", json!(0)),
            ("faster_rcnn", "/train_dataloader/num_workers", json!(-1)),
            ("faster_rcnn", "/train_cfg/max_epochs", json!(0)),
            ("faster_rcnn", "/default_hooks/logger/interval", json!(0)),
            ("faster_rcnn", "/default_hooks/checkpoint/interval", json!(0)),
            ("faster_rcnn", "/default_hooks/checkpoint/max_keep_ckpts", json!(0)),
            ("faster_rcnn", "/model/roi_head/bbox_head/num_classes", json!(0)),
            ("queryinst", "/model/roi_head/num_stages", json!(0)),
            ("faster_rcnn", "/train_dataloader/dataset/pipeline/3/prob", json!(1.5)),
            ("faster_rcnn", "/model/rpn_head/loss_cls/loss_weight", json!(-1)),
            ("faster_rcnn", "/model/train_cfg/rpn/assigner/pos_iou_thr", json!(1.2)),
            ("faster_rcnn", "/model/test_cfg/rcnn/nms/iou_threshold", json!(-0.5)),
            ("faster_rcnn", "/model/backbone/depth", json!(51)),
            ("faster_rcnn", "/model/neck/out_channel", json!(256)),
            ("mask_rcnn", "/model/roi_head/mask_head/type", json!("FCNMaskHed")),
            ("queryinst", "/model/roi_head/bbox_head/0/loss_cls/use_sigmoid", json!(false)),
            ("queryinst", "/model/train_cfg/rpn", json!({})),
            ("faster_rcnn", "/val_evaluator/metric", json!("bbbox")),
            ("faster_rcnn", "/param_scheduler", json!({"type": "StepLR"})),
            ("faster_rcnn", "/param_scheduler", json!({"type": "StepLR", "step_size": 0})),
            ("faster_rcnn", "/param_scheduler", json!({"type": "StepLR", "step_size": 2, "gamma": -0.1})),
            ("faster_rcnn", "/param_scheduler", json!({"type": "StepLR", "step_size": 2, "milestones": [8]})),
            ("faster_rcnn", "/param_scheduler", json!({"type": "ExponentialLR"})),
            ("faster_rcnn", "/param_scheduler", json!({"type": "ExponentialLR", "gamma": "0.9"})),
            ("faster_rcnn", "/param_scheduler", json!({"type": "ExponentialLR", "gamma": 0.9, "last_step": -2})),
            ("faster_rcnn", "/param_scheduler", json!({"type": "ExponentialLr", "gamma": 0.9})),
        ];
        for (name, pointer, value) in cases {
            let mut config = fixture(name);
            set(&mut config, pointer, value.clone());
            let errors = check(&config);
            assert!(!errors.is_empty(), "{name}{pointer} = {value} was accepted");
        }
    }

    #[test]
    fn constraints_accept_their_edge_values() {
        let cases: &[(&str, &str, Value)] = &[
            ("faster_rcnn", "/default_hooks/checkpoint/max_keep_ckpts", json!(-1)),
            ("faster_rcnn", "/default_hooks/checkpoint/max_keep_ckpts", json!(1)),
            ("faster_rcnn", "/default_hooks/checkpoint/interval", json!(-1)),
            ("faster_rcnn", "/train_dataloader/num_workers", json!(0)),
            ("faster_rcnn", "/optim_wrapper/optimizer/momentum", json!(1)),
            ("faster_rcnn", "/train_dataloader/dataset/pipeline/3/prob", json!(0.0)),
            ("faster_rcnn", "/train_dataloader/dataset/pipeline/2/scale", json!(800)),
            ("faster_rcnn", "/val_evaluator/metric", json!(["bbox", "proposal"])),
            ("faster_rcnn", "/param_scheduler", json!({"type": "MultiStepLR", "milestones": [8, 11]})),
            ("faster_rcnn", "/param_scheduler", json!({"type": "StepLR", "step_size": 1})),
            (
                "faster_rcnn",
                "/param_scheduler",
                json!([
                    {"type": "LinearLR", "start_factor": 0.001, "by_epoch": false, "end": 500},
                    {"type": "StepLR", "step_size": 3, "gamma": 0.5, "begin": 1, "end": 12, "last_step": -1,
                     "by_epoch": true, "convert_to_iter_based": true, "verbose": false},
                ]),
            ),
            ("faster_rcnn", "/param_scheduler", json!({"type": "ExponentialLR", "gamma": 0.0})),
            (
                "faster_rcnn",
                "/param_scheduler",
                json!({"type": "ExponentialLR", "gamma": 0.95, "begin": 2, "end": 9, "last_step": -1,
                       "by_epoch": false, "convert_to_iter_based": false, "verbose": true}),
            ),
            ("faster_rcnn", "/model/backbone/init_cfg", json!([{"type": "Kaiming", "layer": "Conv2d"}])),
        ];
        for (name, pointer, value) in cases {
            let mut config = fixture(name);
            set(&mut config, pointer, value.clone());
            let errors = check(&config);
            assert!(errors.is_empty(), "{name}{pointer} = {value}: {errors:#?}");
        }
    }

    #[test]
    fn schema_defaults_name_components_of_the_right_role() {
        // A `*Cfg` field's default dict must name a registered component of that role.
        let mut generator = generator();
        for c in COMPONENTS {
            (c.schema)(&mut generator);
        }
        let defs = generator.definitions().clone();
        let role_of = |schema: &Value| -> Option<String> {
            let refs: Vec<&Value> = match schema.get("anyOf").and_then(Value::as_array) {
                Some(branches) => branches.iter().collect(),
                None => vec![schema],
            };
            refs.iter().find_map(|s| {
                let name = s.get("$ref")?.as_str()?.strip_prefix("#/$defs/")?;
                defs.get(name)?.get(ROLE_KEYWORD)?.as_str().map(str::to_string)
            })
        };
        let mut checked = 0;
        for (def_name, def) in &defs {
            let Some(props) = def.get("properties").and_then(Value::as_object) else { continue };
            for (key, prop) in props {
                let (Some(role), Some(default)) = (role_of(prop), prop.get("default")) else { continue };
                let dicts: Vec<&Value> = match default {
                    Value::Array(items) => items.iter().collect(),
                    Value::Null => vec![],
                    other => vec![other],
                };
                for dict in dicts {
                    let ty = dict["type"].as_str().unwrap_or_else(|| panic!("{def_name}.{key}: default without type"));
                    let component =
                        super::super::lookup(ty).unwrap_or_else(|| panic!("{def_name}.{key}: `{ty}` not registered"));
                    assert_eq!(component.role.as_str(), role, "{def_name}.{key}: `{ty}`");
                    checked += 1;
                }
            }
        }
        assert!(checked > 20, "only {checked} defaults checked");
    }
}
