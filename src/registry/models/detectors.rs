//! Detector configs (`mmdet/models/detectors`): the `model:` section.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Null, OneOrMany};
use super::train_test::{
    DenseTestConfig, RpnOnlyTestConfig, RpnOnlyTrainConfig, RpnTrainConfig, SparseTestConfig, SparseTrainConfig, ToodTrainConfig, EmptyTrainConfig, RepPointsTrainConfig,
    TwoStageTestConfig, TwoStageTrainConfig,
};
use crate::registry::refs::{BackboneCfg, DataPreprocessorCfg, DenseHeadCfg, NeckCfg, RoiHeadCfg, RpnHeadCfg};

/// `FasterRCNN` (Ren et al., 2015) and `MaskRCNN` (He et al., 2017; a mask
/// branch in the RoI head): backbone, neck, RPN and an RoI head, as
/// `mmdet.models.detectors.TwoStageDetector`, whose arguments both take.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TwoStageDetectorConfig {
    /// Feature extractor, e.g. `ResNet`.
    pub backbone: BackboneCfg,
    /// Multi-scale feature neck, e.g. `FPN`; a list runs its necks in turn
    /// (`neck.0.*`, `neck.1.*`: Libra R-CNN's FPN then BFP).
    #[serde(default)]
    pub neck: Option<OneOrMany<NeckCfg>>,
    /// Proposal head, e.g. `RPNHead`.
    pub rpn_head: RpnHeadCfg,
    /// Second stage on the proposals, e.g. `StandardRoIHead` (with a `mask_head` for Mask R-CNN).
    pub roi_head: RoiHeadCfg,
    /// Training settings of the RPN (`rpn`, `rpn_proposal`) and the RoI head (`rcnn`; `mask_size` for masks).
    pub train_cfg: TwoStageTrainConfig,
    /// Test settings of the RPN (`rpn`) and the RoI head (`rcnn`; `mask_thr_binary` for masks).
    pub test_cfg: TwoStageTestConfig,
    /// Normalisation, padding and batching, e.g. `DetDataPreprocessor` (`pad_mask: true` for masks).
    #[serde(default)]
    pub data_preprocessor: Option<DataPreprocessorCfg>,
    /// Must be null: an initialiser over the whole detector is not supported yet (set `init_cfg` on a component, e.g. the backbone's `Pretrained`, or use `load_from`).
    #[serde(default)]
    pub init_cfg: Null,
}

/// `SparseRCNN` (Sun et al., 2021): learned proposals refined by an iterative
/// `SparseRoIHead`, as `mmdet.models.detectors.SparseRCNN`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SparseRCNNConfig {
    /// Feature extractor, e.g. `ResNet`.
    pub backbone: BackboneCfg,
    /// Multi-scale feature neck, e.g. `FPN`; a list runs its necks in turn
    /// (`neck.0.*`, `neck.1.*`: Libra R-CNN's FPN then BFP).
    #[serde(default)]
    pub neck: Option<OneOrMany<NeckCfg>>,
    /// Learned proposals, `EmbeddingRPNHead` (required: external proposals are not supported).
    pub rpn_head: RpnHeadCfg,
    /// The iterative head, `SparseRoIHead`.
    pub roi_head: RoiHeadCfg,
    /// Training settings: `rpn: null` and one `rcnn` dict per stage.
    #[serde(default)]
    pub train_cfg: Option<SparseTrainConfig>,
    /// Test settings: `rpn: null` and `rcnn.max_per_img`.
    #[serde(default)]
    pub test_cfg: Option<SparseTestConfig>,
    /// Normalisation, padding and batching, e.g. `DetDataPreprocessor`.
    #[serde(default)]
    pub data_preprocessor: Option<DataPreprocessorCfg>,
    /// Must be null: an initialiser over the whole detector is not supported yet (set `init_cfg` on a component, e.g. the backbone's `Pretrained`, or use `load_from`).
    #[serde(default)]
    pub init_cfg: Null,
}

/// `QueryInst` (Fang et al., 2021): Sparse R-CNN with dynamic mask heads, as
/// `mmdet.models.detectors.QueryInst`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryInstConfig {
    /// Feature extractor, e.g. `ResNet`.
    pub backbone: BackboneCfg,
    /// Multi-scale feature neck, e.g. `FPN`; a list runs its necks in turn
    /// (`neck.0.*`, `neck.1.*`: Libra R-CNN's FPN then BFP).
    #[serde(default)]
    pub neck: Option<OneOrMany<NeckCfg>>,
    /// Learned proposals, `EmbeddingRPNHead`.
    pub rpn_head: RpnHeadCfg,
    /// The iterative head, `SparseRoIHead` with `mask_roi_extractor` and `mask_head`.
    pub roi_head: RoiHeadCfg,
    /// Training settings: `rpn: null` and one `rcnn` dict (with `mask_size`) per stage.
    pub train_cfg: SparseTrainConfig,
    /// Test settings: `rpn: null` and `rcnn` with `max_per_img` and `mask_thr_binary`.
    pub test_cfg: SparseTestConfig,
    /// Normalisation, padding and batching, e.g. `DetDataPreprocessor` with `pad_mask: true`.
    #[serde(default)]
    pub data_preprocessor: Option<DataPreprocessorCfg>,
    /// Must be null: an initialiser over the whole detector is not supported yet (set `init_cfg` on a component, e.g. the backbone's `Pretrained`, or use `load_from`).
    #[serde(default)]
    pub init_cfg: Null,
}

/// `RetinaNet` (Lin et al., 2017): backbone, neck and a dense `RetinaHead`
/// trained with the focal loss, as `mmdet.models.detectors.RetinaNet` (a
/// `SingleStageDetector`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SingleStageDetectorConfig {
    /// Feature extractor, e.g. `ResNet`.
    pub backbone: BackboneCfg,
    /// Multi-scale feature neck, e.g. `FPN`; a list runs its necks in turn
    /// (`neck.0.*`, `neck.1.*`: Libra R-CNN's FPN then BFP).
    #[serde(default)]
    pub neck: Option<OneOrMany<NeckCfg>>,
    /// The dense head, e.g. `RetinaHead`.
    pub bbox_head: DenseHeadCfg,
    /// The head's anchor assignment and sampling.
    #[serde(default)]
    pub train_cfg: Option<RpnTrainConfig>,
    /// The head's post-processing.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Normalisation, padding and batching, e.g. `DetDataPreprocessor`.
    #[serde(default)]
    pub data_preprocessor: Option<DataPreprocessorCfg>,
    /// Must be null: an initialiser over the whole detector is not supported yet.
    #[serde(default)]
    pub init_cfg: Null,
}

/// `TOOD` (Feng et al., "TOOD: Task-aligned One-stage Object Detection",
/// 2021): backbone, neck and a `TOODHead`, as `mmdet.models.detectors.TOOD`
/// (a `SingleStageDetector` whose `train_cfg` switches assigners after
/// `initial_epoch` epochs).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TOODConfig {
    /// Feature extractor, e.g. `ResNet`.
    pub backbone: BackboneCfg,
    /// Multi-scale feature neck, e.g. `FPN`; a list runs its necks in turn.
    #[serde(default)]
    pub neck: Option<OneOrMany<NeckCfg>>,
    /// The dense head, `TOODHead`.
    pub bbox_head: DenseHeadCfg,
    /// The head's two assignments.
    #[serde(default)]
    pub train_cfg: Option<ToodTrainConfig>,
    /// The head's post-processing.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Normalisation, padding and batching, e.g. `DetDataPreprocessor`.
    #[serde(default)]
    pub data_preprocessor: Option<DataPreprocessorCfg>,
    /// Must be null: an initialiser over the whole detector is not supported yet.
    #[serde(default)]
    pub init_cfg: Null,
}

/// `FOVEA` (FoveaBox, Kong et al., 2020): backbone, neck and a `FoveaHead`,
/// as `mmdet.models.detectors.FOVEA` (a `SingleStageDetector` whose head
/// assigns its own targets: `train_cfg` is empty).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FOVEAConfig {
    /// Feature extractor, e.g. `ResNet`.
    pub backbone: BackboneCfg,
    /// Multi-scale feature neck, e.g. `FPN`; a list runs its necks in turn.
    #[serde(default)]
    pub neck: Option<OneOrMany<NeckCfg>>,
    /// The dense head, `FoveaHead`.
    pub bbox_head: DenseHeadCfg,
    /// Empty (`{}`) or null: the head has no training settings.
    #[serde(default)]
    pub train_cfg: Option<EmptyTrainConfig>,
    /// The head's post-processing.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Normalisation, padding and batching, e.g. `DetDataPreprocessor`.
    #[serde(default)]
    pub data_preprocessor: Option<DataPreprocessorCfg>,
    /// Must be null: an initialiser over the whole detector is not supported yet.
    #[serde(default)]
    pub init_cfg: Null,
}

/// `RepPointsDetector` (Yang et al., "RepPoints: Point Set Representation
/// for Object Detection", 2019): backbone, neck and a `RepPointsHead`, as
/// `mmdet.models.detectors.RepPointsDetector` (a `SingleStageDetector`
/// whose `train_cfg` assigns two stages).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepPointsDetectorConfig {
    /// Feature extractor, e.g. `ResNet`.
    pub backbone: BackboneCfg,
    /// Multi-scale feature neck, e.g. `FPN`; a list runs its necks in turn.
    #[serde(default)]
    pub neck: Option<OneOrMany<NeckCfg>>,
    /// The dense head, `RepPointsHead`.
    pub bbox_head: DenseHeadCfg,
    /// The head's two assignments, `init` and `refine`.
    #[serde(default)]
    pub train_cfg: Option<RepPointsTrainConfig>,
    /// The head's post-processing.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Normalisation, padding and batching, e.g. `DetDataPreprocessor`.
    #[serde(default)]
    pub data_preprocessor: Option<DataPreprocessorCfg>,
    /// Must be null: an initialiser over the whole detector is not supported yet.
    #[serde(default)]
    pub init_cfg: Null,
}

/// `RPN`: a region proposal network trained and tested on its own (the
/// first stage of Faster R-CNN, Ren et al., 2015), as
/// `mmdet.models.detectors.RPN`: its head is built as `bbox_head`, and it is
/// evaluated by the recall of its proposals (`CocoMetric` `proposal_fast`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RPNConfig {
    /// Feature extractor, e.g. `ResNet`.
    pub backbone: BackboneCfg,
    /// Multi-scale feature neck, e.g. `FPN`; null for none (the C4 RPN); a
    /// list runs its necks in turn.
    #[serde(default)]
    pub neck: Option<OneOrMany<NeckCfg>>,
    /// The proposal head, `RPNHead` (its `num_classes` is 1).
    pub rpn_head: RpnHeadCfg,
    /// `rpn`: anchor assignment and sampling.
    pub train_cfg: RpnOnlyTrainConfig,
    /// `rpn`: how the proposals are made at test time.
    pub test_cfg: RpnOnlyTestConfig,
    /// Normalisation, padding and batching, e.g. `DetDataPreprocessor`.
    #[serde(default)]
    pub data_preprocessor: Option<DataPreprocessorCfg>,
    /// Must be null: an initialiser over the whole detector is not supported yet.
    #[serde(default)]
    pub init_cfg: Null,
}
