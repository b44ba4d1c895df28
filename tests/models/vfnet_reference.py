"""Reference outputs for detc's VFNetHead and VarifocalLoss
(src/models/dense_heads/vfnet_head.rs), tested in
src/models/dense_heads/vfnet_tests.rs.

Usage: .venv-test/bin/python tests/models/vfnet_reference.py OUT_DIR

Writes OUT_DIR/vfnet.pth, a bare state dict of tensors, from MMDetection
3.3.0's own `VFNetHead` (CASES below, which the Rust test builds too), as
tests/reference/dense_head_images.py's `record_head` records a case. MMCV's
`DeformConv2d` runs over torchvision's `deform_conv2d`
(`mmdet_standins.install_mmcv_deform_convs`), mmcv's compiled `batched_nms`
over torchvision's nms, and the focal loss MMDetection's Python path, as it
does on the CPU. Shared: `x.{l}` a 2-image batch of features per level
(strides 8, 16, 32), `img.{i}.*` the ground truths (image 1 has none).

Cases: `atss` (the vfnet/ configs' head: ATSS on one square anchor per
location, points at the anchors' centres, varifocal loss, initial boxes
scaled by the regress ranges) and `fcos` (FCOS's assignment with centre
sampling, focal loss on the labels, boxes scaled by the stride, no norm,
each tower's last conv a DCNv2, half of the offsets' gradient reaching the
initial box, positives not averaged over processes).
"""

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()
mmdet_standins.install_mmcv_deform_convs()
# vfnet_head.py imports `DeformConv2d` from the package.
import mmcv.ops  # noqa: E402

mmcv.ops.DeformConv2d = sys.modules["mmcv.ops.deform_conv"].DeformConv2d

import mmdet.models.dense_heads.base_dense_head as base_dense_head  # noqa: E402

base_dense_head.batched_nms = mmdet_standins.mmcv_batched_nms

import dense_head_images  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402

COMMON = dict(
    type="VFNetHead", num_classes=3, in_channels=8, stacked_convs=2, feat_channels=8, strides=[8, 16, 32],
    regress_ranges=((-1, 64), (64, 128), (128, 1e8)),
    norm_cfg=dict(type="GN", num_groups=4, requires_grad=True),
    anchor_generator=dict(type="AnchorGenerator", ratios=[1.0], octave_base_scale=8, scales_per_octave=1,
                          center_offset=0.0, strides=[8, 16, 32]),
    loss_cls=dict(type="VarifocalLoss", use_sigmoid=True, alpha=0.75, gamma=2.0, iou_weighted=True, loss_weight=1.0),
    loss_bbox=dict(type="GIoULoss", loss_weight=1.5),
    loss_bbox_refine=dict(type="GIoULoss", loss_weight=2.0),
    train_cfg=ConfigDict(assigner=dict(type="ATSSAssigner", topk=9), allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=ConfigDict(nms_pre=50, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                        max_per_img=20),
)
# Keep in sync with vfnet_tests.rs.
CASES = {
    "atss": COMMON,
    "fcos": dict(COMMON, use_atss=False, use_vfl=False, center_sampling=True, bbox_norm_type="stride",
                 norm_cfg=None, gradient_mul=0.5, sync_num_pos=False, dcn_on_last_conv=True),
}


def vfl_case(d):
    """`VarifocalLoss` alone, both weightings, with a weight and an avg_factor."""
    pred = torch.randn(6, 4, requires_grad=True)
    target = torch.zeros(6, 4)
    target[0, 1], target[2, 3], target[5, 0] = 0.8, 0.35, 0.6
    weight = torch.rand(6, 1)
    d["vfl.pred"], d["vfl.target"], d["vfl.weight"] = pred.detach().clone(), target, weight
    for iou_weighted in (True, False):
        loss = MODELS.build(dict(type="VarifocalLoss", alpha=0.6, gamma=1.5, iou_weighted=iou_weighted, loss_weight=2.0))
        value = loss(pred, target, weight=weight, avg_factor=3.0)
        (grad,) = torch.autograd.grad(value, pred)
        d[f"vfl.{int(iou_weighted)}.loss"], d[f"vfl.{int(iou_weighted)}.grad"] = value.detach(), grad


def main(out):
    dense_head_images.record_cases(out, "vfnet.pth", CASES, "vfnet_cls", extra=vfl_case)


if __name__ == "__main__":
    main(sys.argv[1])
