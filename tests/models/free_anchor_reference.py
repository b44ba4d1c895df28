"""Reference outputs for detc's FreeAnchorRetinaHead
(src/models/dense_heads/free_anchor_retina_head.rs), tested there.

Usage: .venv-test/bin/python tests/models/free_anchor_reference.py OUT_DIR

Writes OUT_DIR/free_anchor.pth, a bare state dict of tensors, from
MMDetection 3.3.0's own `FreeAnchorRetinaHead` (CASES below, which the Rust
test builds too), as tests/reference/dense_head_images.py's `record_head`
records a case; mmcv's compiled `batched_nms` is re-stated over
torchvision's nms. Shared: `x.{l}` a 2-image batch of features per level
(strides 8, 16, 32), `img.{i}.*` the ground truths (image 1 has none).

Cases: `plain` (the free_anchor/ configs' head, scaled down: bags of 50
anchors, `bbox_thr` 0.6, gamma 2, alpha 0.5, SmoothL1 of beta 0.11 and
weight 0.75 on deltas of stds (0.1, 0.1, 0.2, 0.2)) and `tuned` (bags of 7,
`bbox_thr` 0.3, gamma 1.5, alpha 0.3, an L1 box loss). The losses are
`positive_bag_loss` and `negative_bag_loss`.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

import mmdet.models.dense_heads.base_dense_head as base_dense_head  # noqa: E402

base_dense_head.batched_nms = mmdet_standins.mmcv_batched_nms

import dense_head_images  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402

COMMON = dict(
    type="FreeAnchorRetinaHead", num_classes=3, in_channels=8, stacked_convs=2, feat_channels=8,
    anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=2, ratios=[0.5, 1.0, 2.0],
                          strides=[8, 16, 32]),
    bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[0.1, 0.1, 0.2, 0.2]),
    loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type="SmoothL1Loss", beta=0.11, loss_weight=0.75),
    train_cfg=ConfigDict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                                       ignore_iof_thr=-1),
                         sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=ConfigDict(nms_pre=50, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                        max_per_img=20),
)
# Keep in sync with src/models/dense_heads/free_anchor_retina_head.rs.
CASES = {
    "plain": COMMON,
    "tuned": dict(COMMON, pre_anchor_topk=7, bbox_thr=0.3, gamma=1.5, alpha=0.3,
                  loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
}


def main(out):
    dense_head_images.record_cases(out, "free_anchor.pth", CASES, "retina_cls")


if __name__ == "__main__":
    main(sys.argv[1])
