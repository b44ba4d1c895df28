//! `EmbeddingRPNHead` (`mmdet/models/dense_heads/embedding_rpn_head.py`):
//! `P` learned proposal boxes and `P` learned proposal features, the same for
//! every image. It has no loss; each image decodes the boxes (cx, cy, w, h in
//! units of the image) against its own `img_shape`.

use detc::registry::models::dense_heads::EmbeddingRPNHeadConfig;
use tch::nn::{self, Init};
use tch::Tensor;

use crate::models::layers::{param, ModelResult};
use crate::models::ops::{cxcywh_to_xyxy, upload};

/// The proposals of one image.
#[derive(Debug)]
pub struct Proposals {
    /// (P, 4) x1y1x2y2 in pixels of the resized image.
    pub bboxes: Tensor,
    /// (P, 4): `[w, h, w, h]` of `img_shape`, repeated per proposal.
    pub imgs_whwh: Tensor,
    /// (P, C) proposal features: the embedding itself (nothing writes to it
    /// in place, so mmdet's `.clone()` is not needed); gradients flow into it.
    pub features: Tensor,
}

#[derive(Debug)]
pub struct EmbeddingRPNHead {
    /// `init_proposal_bboxes.weight`: (P, 4) cx, cy, w, h relative to the image.
    pub init_proposal_bboxes: Tensor,
    /// `init_proposal_features.weight`: (P, C).
    pub init_proposal_features: Tensor,
    pub num_proposals: i64,
}

impl EmbeddingRPNHead {
    /// Builds under `p` with MMDetection's initialisation: the features as
    /// `nn.Embedding` (N(0, 1)), the boxes cx = cy = 0.5, w = h = 1 (the whole image).
    pub fn new(cfg: &EmbeddingRPNHeadConfig, p: &nn::Path) -> ModelResult<Self> {
        let n = cfg.num_proposals as i64;
        let c = cfg.proposal_feature_channel as i64;
        let init_proposal_bboxes = param(
            &(p / "init_proposal_bboxes"),
            "weight",
            &[n, 4],
            Init::Const(0.0),
            true,
        )?;
        tch::no_grad(|| -> ModelResult<()> {
            let _ = init_proposal_bboxes.f_narrow(1, 0, 2)?.f_fill_(0.5)?;
            let _ = init_proposal_bboxes.f_narrow(1, 2, 2)?.f_fill_(1.0)?;
            Ok(())
        })?;
        let init_proposal_features = param(
            &(p / "init_proposal_features"),
            "weight",
            &[n, c],
            Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
            true,
        )?;
        Ok(EmbeddingRPNHead {
            init_proposal_bboxes,
            init_proposal_features,
            num_proposals: n,
        })
    }

    /// `_decode_init_proposals`: one [`Proposals`] per image of `img_shapes`
    /// (`(h, w)` of the resized image before padding).
    pub fn predict(&self, img_shapes: &[(f64, f64)]) -> ModelResult<Vec<Proposals>> {
        let xyxy = cxcywh_to_xyxy(&self.init_proposal_bboxes)?;
        let device = xyxy.device();
        img_shapes
            .iter()
            .map(|&(h, w)| {
                let whwh = upload(&[w as f32, h as f32, w as f32, h as f32], device)?;
                Ok(Proposals {
                    bboxes: xyxy.f_mul(&whwh)?,
                    imgs_whwh: whwh.f_unsqueeze(0)?.f_repeat([self.num_proposals, 1])?,
                    features: self.init_proposal_features.shallow_clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn decodes_whole_image_boxes_per_image() {
        let cfg: EmbeddingRPNHeadConfig = serde_json::from_value(
            serde_json::json!({"num_proposals": 3, "proposal_feature_channel": 8}),
        )
        .unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let head = EmbeddingRPNHead::new(&cfg, &(vs.root() / "rpn_head")).unwrap();
        let names: Vec<(String, Vec<i64>)> = crate::models::weights::named_shapes(&vs, "");
        assert_eq!(
            names,
            [
                (
                    "rpn_head.init_proposal_bboxes.weight".to_string(),
                    vec![3, 4]
                ),
                (
                    "rpn_head.init_proposal_features.weight".to_string(),
                    vec![3, 8]
                )
            ]
        );
        let out = head.predict(&[(100.0, 200.0), (50.0, 60.0)]).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(out[0].bboxes.get(0)).unwrap(),
            [0.0, 0.0, 200.0, 100.0]
        );
        assert_eq!(
            Vec::<f32>::try_from(out[1].imgs_whwh.get(2)).unwrap(),
            [60.0, 50.0, 60.0, 50.0]
        );
        assert!(out[0].features.requires_grad());
    }
}
