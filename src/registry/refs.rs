//! Typed references to "a component of role R": a config dict whose `type`
//! names a registered component of that role.
//!
//! The schema of each reference is a definition named after the role carrying
//! the marker `x-detc-role`; the validator dispatches on the dict's `type`, and
//! `detc schema` rewrites the marker into per-type `if/then` branches.

use serde::{Deserialize, Serialize};

/// JSON Schema keyword that marks "any component of this role".
pub const ROLE_KEYWORD: &str = "x-detc-role";

macro_rules! role_refs {
    ($($name:ident => $role:ident),* $(,)?) => {$(
        #[doc = concat!("A `", stringify!($role), "` component config: a dict with a `type` key.")]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub serde_json::Value);

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($role).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "object", ROLE_KEYWORD: stringify!($role) })
            }
        }
    )*};
}

role_refs! {
    DetectorCfg => Detector,
    DataPreprocessorCfg => DataPreprocessor,
    BatchAugmentCfg => BatchAugment,
    BackboneCfg => Backbone,
    NeckCfg => Neck,
    RpnHeadCfg => RpnHead,
    DenseHeadCfg => DenseHead,
    RoiHeadCfg => RoiHead,
    SharedHeadCfg => SharedHead,
    BBoxHeadCfg => BBoxHead,
    MaskHeadCfg => MaskHead,
    RoiExtractorCfg => RoiExtractor,
    RoiLayerCfg => RoiLayer,
    AnchorGeneratorCfg => AnchorGenerator,
    BBoxCoderCfg => BBoxCoder,
    AssignerCfg => Assigner,
    SamplerCfg => Sampler,
    MatchCostCfg => MatchCost,
    LossCfg => Loss,
    NmsCfg => Nms,
    ConvCfg => Conv,
    NormCfg => Norm,
    ActivationCfg => Activation,
    PluginCfg => Plugin,
    InitCfg => Init,
    DatasetCfg => Dataset,
    TransformCfg => Transform,
    DataSamplerCfg => DataSampler,
    BatchSamplerCfg => BatchSampler,
    EvaluatorCfg => Evaluator,
    OptimWrapperCfg => OptimWrapper,
    OptimizerCfg => Optimizer,
    ParamSchedulerCfg => ParamScheduler,
    HookCfg => Hook,
    LoopCfg => Loop,
    VisualizerCfg => Visualizer,
    VisBackendCfg => VisBackend,
    LogProcessorCfg => LogProcessor,
}
