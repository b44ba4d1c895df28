"""Reference outputs for detc's ATSSHead and ATSSAssigner
(src/models/dense_heads/atss_head.rs), tested in
src/models/dense_heads/atss_tests.rs.

Usage: .venv-test/bin/python tests/models/atss_reference.py OUT_DIR

Writes OUT_DIR/atss.pth, a bare state dict of tensors, from MMDetection
3.3.0's own `ATSSHead` (CASES below, which the Rust test builds too), as
tests/reference/dense_head_images.py's `record_head` records a case; mmcv's
compiled `batched_nms` is re-stated over torchvision's nms, and the focal
loss runs MMDetection's Python path, as it does on the CPU. Shared: `x.{l}`
a 2-image batch of features per level (strides 8, 16, 32), `img.{i}.*` the
ground truths (image 1 has none).

Cases: `plain` (the atss/ configs' head: one square anchor per location,
topk 9, every anchor kept) and `k3` (two anchors per location, topk 3,
anchors crossing the image border dropped, positives weighted 2, 1x1
predictor convs, no norm).

Also `assign.*`: `ATSSAssigner(topk=3)` on random anchors of three levels
with an ignored box (`ignore_iof_thr` 0.5): `priors`, `levels`, `gts`,
`labels`, `ignore`, and its `gt_inds` and `assigned_labels`.
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
from mmdet.registry import TASK_UTILS  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

COMMON = dict(
    type="ATSSHead", num_classes=3, in_channels=8, stacked_convs=2, feat_channels=8,
    norm_cfg=dict(type="GN", num_groups=4, requires_grad=True),
    anchor_generator=dict(type="AnchorGenerator", ratios=[1.0], octave_base_scale=8, scales_per_octave=1,
                          strides=[8, 16, 32]),
    bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[0.1, 0.1, 0.2, 0.2]),
    loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
    loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
    train_cfg=ConfigDict(assigner=dict(type="ATSSAssigner", topk=9), allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=ConfigDict(nms_pre=50, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                        max_per_img=20),
)
# Keep in sync with atss_tests.rs.
CASES = {
    "plain": COMMON,
    "k3": dict(COMMON, norm_cfg=None, pred_kernel_size=1,
               anchor_generator=dict(type="AnchorGenerator", ratios=[0.5, 1.0], octave_base_scale=4,
                                     scales_per_octave=1, strides=[8, 16, 32]),
               train_cfg=ConfigDict(assigner=dict(type="ATSSAssigner", topk=3), allowed_border=0, pos_weight=2.0,
                                    debug=False)),
}


def assign_case(d):
    levels = [40, 12, 5]
    xy = torch.rand(sum(levels), 2) * 90
    wh = torch.rand(sum(levels), 2) * 40 + 4
    priors = torch.cat([xy, xy + wh], 1)
    gts = torch.tensor([[10.0, 10.0, 50.0, 60.0], [30.0, 20.0, 90.0, 45.0], [60.0, 60.0, 70.0, 72.0]])
    labels = torch.tensor([2, 0, 1])
    ignore = torch.tensor([[70.0, 0.0, 100.0, 30.0]])
    assigner = TASK_UTILS.build(dict(type="ATSSAssigner", topk=3, ignore_iof_thr=0.5))
    r = assigner.assign(InstanceData(priors=priors), levels, InstanceData(bboxes=gts, labels=labels),
                        InstanceData(bboxes=ignore))
    d["assign.priors"], d["assign.levels"] = priors, torch.tensor(levels)
    d["assign.gts"], d["assign.labels"], d["assign.ignore"] = gts, labels, ignore
    d["assign.gt_inds"], d["assign.assigned_labels"] = r.gt_inds, r.labels


def main(out):
    dense_head_images.record_cases(out, "atss.pth", CASES, "atss_cls", extra=assign_case)


if __name__ == "__main__":
    main(sys.argv[1])
