//! tch modules, grouped like MMDetection (`backbones/`, `necks/`,
//! `roi_heads/`, ...), and the builder table that turns a registered
//! component's config into one. Only the engine links this module.

pub mod backbones;
pub mod data_preprocessors;
pub mod dense_heads;
pub mod detectors;
pub mod layers;
pub mod losses;
pub mod necks;
pub mod ops;
pub mod roi_heads;
pub mod task_modules;
pub mod weights;

#[cfg(test)]
mod dcn_reference_tests;
#[cfg(test)]
mod hrnet_reference_tests;
#[cfg(test)]
mod norm_conv_reference_tests;
#[cfg(test)]
mod swin_reference_tests;

/// `type` names that have a builder in the engine (models here, the runtime
/// in `src/engine`). A registered component missing here is reported by
/// name before anything runs.
pub static BUILDERS: &[&str] = &[
    "DetDataPreprocessor",
    "BatchFixedSizePad",
    "ResNet",
    "ResNeXt",
    "RegNet",
    "SwinTransformer",
    "GELU",
    "FPN",
    "PAFPN",
    "BFP",
    "BalancedL1Loss",
    "GHMC",
    "GHMR",
    "RoIAlign",
    "FocalLoss",
    "L1Loss",
    "GIoULoss",
    "IoULoss",
    "BoundedIoULoss",
    "DIoULoss",
    "CIoULoss",
    "DiceLoss",
    "CrossEntropyLoss",
    "FocalLossCost",
    "BBoxL1Cost",
    "IoUCost",
    "HungarianAssigner",
    "PseudoSampler",
    "DeltaXYWHBBoxCoder",
    "BN",
    "BN2d",
    "SyncBN",
    "MMSyncBN",
    "GN",
    "LN",
    "ReLU",
    "DynamicConv",
    "EmbeddingRPNHead",
    "SingleRoIExtractor",
    "GenericRoIExtractor",
    "ConvModule",
    "DIIHead",
    "DynamicMaskHead",
    "SparseRoIHead",
    "SparseRCNN",
    "QueryInst",
    // Faster R-CNN and Mask R-CNN.
    "FasterRCNN",
    "MaskRCNN",
    "MaskScoringRCNN",
    "MaskScoringRoIHead",
    "MaskIoUHead",
    "MSELoss",
    "Kaiming",
    "CascadeRCNN",
    "RetinaNet",
    "RPN",
    "FCOS",
    "FCOSHead",
    "ATSS",
    "ATSSHead",
    "ATSSAssigner",
    "GFL",
    "GFLHead",
    "VFNet",
    "VFNetHead",
    "VarifocalLoss",
    "TOOD",
    "TOODHead",
    "TaskAlignedAssigner",
    "FOVEA",
    "FoveaHead",
    "RepPointsDetector",
    "RepPointsHead",
    "PointAssigner",
    "CenterNet",
    "CenterNetUpdateHead",
    "GaussianFocalLoss",
    // RTMDet (src/models/backbones/cspnext.rs, necks/cspnext_pafpn.rs,
    // dense_heads/rtmdet_head.rs, task_modules/dynamic_soft_label_assigner.rs).
    "RTMDet",
    "CSPNeXt",
    "CSPNeXtPAFPN",
    "DyHead",
    "RTMDetSepBNHead",
    "FreeAnchorRetinaHead",
    "MlvlPointGenerator",
    "DynamicSoftLabelAssigner",
    "SiLU",
    "Swish",
    "QualityFocalLoss",
    "DistributionFocalLoss",
    "DistancePointBBoxCoder",
    "RetinaHead",
    "CascadeRoIHead",
    "RPNHead",
    "AnchorGenerator",
    "LegacyAnchorGenerator",
    "LegacyDeltaXYWHBBoxCoder",
    "MaxIoUAssigner",
    "RandomSampler",
    "OHEMSampler",
    "CombinedSampler",
    "InstanceBalancedPosSampler",
    "IoUBalancedNegSampler",
    "nms",
    "soft_nms",
    "SmoothL1Loss",
    "StandardRoIHead",
    "Shared2FCBBoxHead",
    "Shared4Conv1FCBBoxHead",
    "ConvFCBBoxHead",
    "BBoxHead",
    "ResLayer",
    "HRNet",
    "ResNeSt",
    "Res2Net",
    "HRFPN",
    "Caffe2Xavier",
    "FCNMaskHead",
    // `init_cfg: {type: Normal, layer: Conv2d, std: 0.01}`, RPNHead's default.
    "Normal",
    "Pretrained",
    "Conv",
    "Conv2d",
    "ConvWS",
    // A ResNet-family backbone's `dcn` (src/models/layers/deform_conv.rs).
    "DCN",
    "DCNv2",
    // A ResNet-family backbone's `plugins` (src/models/backbones/plugins.rs).
    "ContextBlock",
    "GeneralizedAttention",
    // The runtime (src/engine): loops, optimizers, schedulers, hooks, logging.
    "EpochBasedTrainLoop",
    "IterBasedTrainLoop",
    "ValLoop",
    "TestLoop",
    "OptimWrapper",
    "AmpOptimWrapper",
    "SGD",
    "Adam",
    "AdamW",
    "LinearLR",
    "MultiStepLR",
    "CosineAnnealingLR",
    "ConstantLR",
    "StepLR",
    "ExponentialLR",
    "IterTimerHook",
    "LoggerHook",
    "ParamSchedulerHook",
    "CheckpointHook",
    "DistSamplerSeedHook",
    "RuntimeInfoHook",
    // Registered for its place in the hook order; releases nothing (src/engine/hooks/empty_cache_hook.rs).
    "EmptyCacheHook",
    "EMAHook",
    "PipelineSwitchHook",
    "LogProcessor",
    // Visualization that draws nothing (`draw: false`, MMDetection's default);
    // the scalars go to `vis_data/scalars.json` as LocalVisBackend writes them.
    "DetVisualizationHook",
    "DetLocalVisualizer",
    "LocalVisBackend",
    // Scalars as a TensorBoard event file (src/engine/logging/tensorboard.rs).
    "TensorboardVisBackend",
];

/// Whether the engine can build `name`: a model component, or a dataset,
/// transform, sampler or metric of the data side.
pub fn has_builder(name: &str) -> bool {
    BUILDERS.contains(&name) || detc::data::has_builder(name)
}
