"""Reference outputs for detc's GFLHead and its losses
(src/models/dense_heads/gfl_head.rs), tested in
src/models/dense_heads/gfl_tests.rs.

Usage: .venv-test/bin/python tests/models/gfl_reference.py OUT_DIR

Writes OUT_DIR/gfl.pth, a bare state dict of tensors, from MMDetection
3.3.0's own `GFLHead` (CASES below, which the Rust test builds too), as
tests/reference/dense_head_images.py's `record_head` records a case; mmcv's
compiled `batched_nms` is re-stated over torchvision's nms. Shared: `x.{l}`
a 2-image batch of features per level (strides 8, 16, 32), `img.{i}.*` the
ground truths (image 1 has none).

Cases: `plain` (the gfl/ configs' head at reg_max 16) and `small` (reg_max
4, so that distances reach the clamp, anchors of 4 strides, QFL beta 1.5,
topk 5, weighted positives, border anchors dropped, no norm).

Also `qfl.*` (`pred`, `label`, `score`, `weight`, `loss`, `grad`): MMDetection's
`QualityFocalLoss` in its label-and-score form, which the Rust loss takes as
a soft target.
"""

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

import mmdet.models.dense_heads.base_dense_head as base_dense_head  # noqa: E402

base_dense_head.batched_nms = mmdet_standins.mmcv_batched_nms

import dense_head_images  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402

COMMON = dict(
    type="GFLHead", num_classes=3, in_channels=8, stacked_convs=2, feat_channels=8,
    norm_cfg=dict(type="GN", num_groups=4, requires_grad=True),
    anchor_generator=dict(type="AnchorGenerator", ratios=[1.0], octave_base_scale=8, scales_per_octave=1,
                          strides=[8, 16, 32]),
    loss_cls=dict(type="QualityFocalLoss", use_sigmoid=True, beta=2.0, loss_weight=1.0),
    loss_dfl=dict(type="DistributionFocalLoss", loss_weight=0.25),
    reg_max=16,
    loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
    train_cfg=ConfigDict(assigner=dict(type="ATSSAssigner", topk=9), allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=ConfigDict(nms_pre=50, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                        max_per_img=20),
)
# Keep in sync with gfl_tests.rs.
CASES = {
    "plain": COMMON,
    "small": dict(COMMON, norm_cfg=None, reg_max=4,
                  anchor_generator=dict(type="AnchorGenerator", ratios=[1.0], octave_base_scale=4, scales_per_octave=1,
                                        strides=[8, 16, 32]),
                  loss_cls=dict(type="QualityFocalLoss", use_sigmoid=True, beta=1.5, loss_weight=1.0),
                  train_cfg=ConfigDict(assigner=dict(type="ATSSAssigner", topk=5), allowed_border=0, pos_weight=2.0,
                                       debug=False)),
}


def qfl_case(d):
    pred = torch.randn(12, 3, requires_grad=True)
    label = torch.tensor([3, 0, 2, 3, 1, 3, 3, 0, 2, 3, 3, 1])
    score = torch.rand(12) * (label < 3)
    score[4] = 0.0  # a positive of IoU 0
    weight = torch.rand(12)
    loss = MODELS.build(dict(type="QualityFocalLoss", beta=2.0, loss_weight=1.5))(pred, (label, score), weight=weight,
                                                                                   avg_factor=5.0)
    loss.backward()
    d["qfl.pred"], d["qfl.label"], d["qfl.score"], d["qfl.weight"] = pred.detach().clone(), label, score, weight
    d["qfl.loss"], d["qfl.grad"] = loss.detach().clone(), pred.grad.clone()


def main(out):
    dense_head_images.record_cases(out, "gfl.pth", CASES, "gfl_cls", extra=qfl_case)


if __name__ == "__main__":
    main(sys.argv[1])
