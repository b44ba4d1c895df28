//! `SparseRCNN` and `QueryInst` (`mmdet/models/detectors/{sparse_rcnn,queryinst}.py`):
//! a `TwoStageDetector` whose RPN is the learned `EmbeddingRPNHead` and whose
//! RoI head is the iterative `SparseRoIHead` (QueryInst adds its mask heads).
//! The parameters are named as MMDetection's: `backbone.*`, `neck.*`,
//! `rpn_head.*`, `roi_head.*`.

use detc::registry::models::data_preprocessors::DetDataPreprocessorConfig;
use detc::registry::models::dense_heads::EmbeddingRPNHeadConfig;
use detc::registry::models::detectors::{QueryInstConfig, SparseRCNNConfig};
use detc::registry::models::roi_heads::SparseRoIHeadConfig;
use detc::registry::models::train_test::{SparseTestConfig, SparseTrainConfig};
use detc::registry::models::common::OneOrMany;
use detc::registry::refs::{BackboneCfg, DataPreprocessorCfg, NeckCfg, RoiHeadCfg, RpnHeadCfg};
use indexmap::IndexMap;
use tch::{nn, Tensor};

use super::parts::{build_backbone, build_neck, extract_feat, img_shapes, preprocessor_config, roi_feats};
use crate::models::backbones::Backbone;
use crate::models::data_preprocessors::DetBatch;
use crate::models::dense_heads::EmbeddingRPNHead;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::necks::Neck;
use crate::models::roi_heads::sparse_roi_head::ReduceMean;
use crate::models::roi_heads::{DetInstances, SparseRoIHead};

/// The parts of a `SparseRCNN` / `QueryInst` config the builder reads.
struct Parts<'a> {
    backbone: &'a BackboneCfg,
    neck: Option<&'a OneOrMany<NeckCfg>>,
    rpn_head: &'a RpnHeadCfg,
    roi_head: &'a RoiHeadCfg,
    train_cfg: Option<&'a SparseTrainConfig>,
    test_cfg: Option<&'a SparseTestConfig>,
    data_preprocessor: Option<&'a DataPreprocessorCfg>,
}

#[derive(Debug)]
pub struct SparseRCNN {
    /// `SparseRCNN` or `QueryInst`.
    pub name: &'static str,
    pub backbone: Backbone,
    pub neck: Option<Neck>,
    pub rpn_head: EmbeddingRPNHead,
    pub roi_head: SparseRoIHead,
    /// The `data_preprocessor` config (the preprocessor itself is built per device).
    pub data_preprocessor: Option<DetDataPreprocessorConfig>,
}

impl SparseRCNN {
    /// `SparseRCNN` from its config, under `p` (the model root).
    pub fn from_sparse_rcnn_config(cfg: &SparseRCNNConfig, p: &nn::Path) -> ModelResult<Self> {
        Self::build(
            "SparseRCNN",
            Parts {
                backbone: &cfg.backbone,
                neck: cfg.neck.as_ref(),
                rpn_head: &cfg.rpn_head,
                roi_head: &cfg.roi_head,
                train_cfg: cfg.train_cfg.as_ref(),
                test_cfg: cfg.test_cfg.as_ref(),
                data_preprocessor: cfg.data_preprocessor.as_ref(),
            },
            p,
        )
    }

    /// `QueryInst` from its config, under `p` (the model root).
    pub fn from_query_inst_config(cfg: &QueryInstConfig, p: &nn::Path) -> ModelResult<Self> {
        let model = Self::build(
            "QueryInst",
            Parts {
                backbone: &cfg.backbone,
                neck: cfg.neck.as_ref(),
                rpn_head: &cfg.rpn_head,
                roi_head: &cfg.roi_head,
                train_cfg: Some(&cfg.train_cfg),
                test_cfg: Some(&cfg.test_cfg),
                data_preprocessor: cfg.data_preprocessor.as_ref(),
            },
            p,
        )?;
        if !model.roi_head.with_mask() {
            return Err(ModelError::new(
                "QueryInst",
                "roi_head needs mask_roi_extractor and mask_head",
            ));
        }
        Ok(model)
    }

    fn build(name: &'static str, parts: Parts, p: &nn::Path) -> ModelResult<Self> {
        let backbone = build_backbone(parts.backbone, name, p)?;
        let neck = build_neck(parts.neck, name, p)?;
        let rpn_head = match cfg_type(&parts.rpn_head.0, "rpn_head")? {
            "EmbeddingRPNHead" => EmbeddingRPNHead::new(
                &parse_cfg::<EmbeddingRPNHeadConfig>(&parts.rpn_head.0, "EmbeddingRPNHead")?,
                &(p / "rpn_head"),
            )?,
            other => {
                return Err(ModelError::new(
                    name,
                    format!("rpn_head {other:?}: Sparse R-CNN and QueryInst need EmbeddingRPNHead"),
                ))
            }
        };
        // TwoStageDetector hands `train_cfg.rcnn` / `test_cfg.rcnn` to the RoI head.
        let roi_head = match cfg_type(&parts.roi_head.0, "roi_head")? {
            "SparseRoIHead" => SparseRoIHead::new(
                &parse_cfg::<SparseRoIHeadConfig>(&parts.roi_head.0, "SparseRoIHead")?,
                parts.train_cfg.map(|t| t.rcnn.as_slice()),
                parts.test_cfg.map(|t| &t.rcnn),
                &(p / "roi_head"),
            )?,
            other => {
                return Err(ModelError::new(
                    name,
                    format!("roi_head {other:?} is not supported (only SparseRoIHead)"),
                ))
            }
        };
        let data_preprocessor = preprocessor_config(parts.data_preprocessor, name)?;
        Ok(SparseRCNN {
            name,
            backbone,
            neck,
            rpn_head,
            roi_head,
            data_preprocessor,
        })
    }

    /// Loads the backbone's `Pretrained` `init_cfg`, if any (MMEngine's
    /// `init_weights`; the other parts are initialised when built).
    pub fn init_weights(
        &self,
        vs: &nn::VarStore,
    ) -> ModelResult<Option<detc::checkpoint::KeyReport>> {
        self.backbone.init_weights(vs)
    }

    /// `extract_feat`: backbone, then neck.
    pub fn extract_feat(&self, inputs: &Tensor, train: bool) -> ModelResult<Vec<Tensor>> {
        extract_feat(&self.backbone, self.neck.as_ref(), inputs, train)
    }

    /// `loss`: the RoI head's per-stage losses (the RPN has none).
    pub fn loss(
        &self,
        batch: &DetBatch,
        reduce_mean: ReduceMean,
    ) -> ModelResult<IndexMap<String, Tensor>> {
        let x = self.extract_feat(&batch.inputs, true)?;
        crate::engine::profile::section("backbone and neck");
        let proposals = self.rpn_head.predict(&img_shapes(batch)?)?;
        self.roi_head
            .loss(&roi_feats(&x)?, proposals, &batch.data_samples, reduce_mean)
    }

    /// `predict` in eval mode (run it under `tch::no_grad`): per image, the
    /// top `max_per_img` detections, in original-image pixels with `rescale`.
    pub fn predict(&self, batch: &DetBatch, rescale: bool) -> ModelResult<Vec<DetInstances>> {
        let x = self.extract_feat(&batch.inputs, false)?;
        let proposals = self.rpn_head.predict(&img_shapes(batch)?)?;
        self.roi_head
            .predict(&roi_feats(&x)?, proposals, &batch.data_samples, rescale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::data_preprocessors::DetDataPreprocessor;
    use crate::models::detectors::{build, Detector};
    use detc::data::{Image, PackedInstances, PackedSample, SampleMeta};
    use tch::{Device, Kind};

    fn demo_model(vs: &nn::VarStore) -> SparseRCNN {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let (_, tree) =
            detc::config::resolve(&root.join("configs/demo/queryinst_r18_shapes.yaml"), &[]);
        let cfg = tree
            .unwrap_or_else(|_| panic!("the demo config resolves"))
            .to_json();
        let Detector::Sparse(model) = build(&cfg["model"], vs.root()).unwrap() else {
            panic!("a Sparse R-CNN config builds a Sparse R-CNN")
        };
        model
    }

    /// A packed test sample of a random `h x w` BGR image resized by 1.25.
    fn sample(id: u64, h: usize, w: usize, seed: u64) -> PackedSample {
        let mut state = seed;
        let data = (0..h * w * 3)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect();
        PackedSample {
            inputs: Image {
                data,
                height: h,
                width: w,
                channels: 3,
            },
            meta: SampleMeta {
                img_id: Some(id),
                ori_shape: Some((h * 4 / 5, w * 4 / 5)),
                img_shape: Some((h, w)),
                scale_factor: Some((1.25, 1.25)),
                ..SampleMeta::default()
            },
            gt_instances: PackedInstances::default(),
            ignored_instances: PackedInstances::default(),
        }
    }

    /// An image's detections do not depend on the other images of its batch:
    /// scores within 1e-4, boxes within 1e-4 relative (float32 convolutions
    /// sum in a batch-size-dependent order, about 1e-6 relative per layer;
    /// six refinement stages amplify that to ~1e-5 of the box size), the
    /// same labels, and the same masks but for pixels within rounding of the
    /// 0.5 threshold (the untrained model's mask probabilities crowd 0.5;
    /// whether any flips depends on the CPU's kernels: one does on some).
    #[test]
    fn batch_and_single_predictions_agree() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = {
            let _seeded = crate::models::layers::fixtures::seeded();
            tch::manual_seed(0);
            demo_model(&vs)
        };
        let pre = DetDataPreprocessor::new(model.data_preprocessor.as_ref().unwrap(), Device::Cpu)
            .unwrap();
        let (a, b) = (sample(1, 96, 128, 1), sample(2, 96, 128, 2));
        let predict = |samples: Vec<PackedSample>| {
            tch::no_grad(|| model.predict(&pre.forward(samples, false).unwrap(), true)).unwrap()
        };
        let both = predict(vec![a.clone(), b.clone()]);
        for (i, alone) in [predict(vec![a]), predict(vec![b])].into_iter().enumerate() {
            let (x, y) = (&alone[0], &both[i]);
            let score_diff = (&x.scores - &y.scores).abs().max().double_value(&[]);
            assert!(
                score_diff <= 1e-4,
                "image {i} scores: max difference {score_diff}"
            );
            let box_excess = ((&x.bboxes - &y.bboxes).abs() - y.bboxes.abs().clamp_min(1.0) * 1e-4)
                .max()
                .double_value(&[]);
            assert!(
                box_excess <= 0.0,
                "image {i} bboxes differ by more than 1e-4 relative"
            );
            assert_eq!(
                Vec::<i64>::try_from(&x.labels).unwrap(),
                Vec::<i64>::try_from(&y.labels).unwrap()
            );
            let (mx, my) = (x.masks.as_ref().unwrap(), y.masks.as_ref().unwrap());
            assert_eq!(mx.size(), vec![y.bboxes.size()[0], 76, 102]);
            let differ = mx
                .ne_tensor(my)
                .to_kind(Kind::Int64)
                .sum(Kind::Int64)
                .int64_value(&[]);
            let total = mx.numel();
            assert!(
                differ as f64 <= 1e-4 * total as f64,
                "image {i}: {differ} of {total} mask pixels differ"
            );
        }
    }
}
