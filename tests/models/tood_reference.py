"""Reference outputs for detc's TOODHead and TaskAlignedAssigner
(src/models/dense_heads/tood_head.rs), tested in
src/models/dense_heads/tood_tests.rs.

Usage: .venv-test/bin/python tests/models/tood_reference.py OUT_DIR

Writes OUT_DIR/tood.pth, a bare state dict of tensors, from MMDetection
3.3.0's own `TOODHead` (CASES below, which the Rust test builds too), as
tests/reference/dense_head_images.py's `record_head` records a case, with
MMEngine's message hub at the case's epoch. MMCV's `deform_conv2d` and
`ModulatedDeformConv2dPack` run over torchvision's kernel
(`mmdet_standins.install_mmcv_deform_convs`), mmcv's compiled
`batched_nms` over torchvision's nms, and the focal losses MMDetection's
Python path, as it does on the CPU. Shared: `x.{l}` a 2-image batch of
16-channel features per level (strides 8, 16, 32), `img.{i}.*` the ground
truths (image 1 has none).

Cases: `initial` (the tood/ configs' head, anchor-free, in an epoch before
`initial_epoch`: ATSS and focal loss), `aligned` (the same head after it:
task-aligned assignment and quality focal loss) and `based` (anchor-based,
the first conv a DCNv2, no norm, other alpha, beta and topk, weighted
positives, every score kept before NMS, after `initial_epoch`).
"""

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()
mmdet_standins.install_mmcv_deform_convs()
import mmcv.ops  # noqa: E402

# tood_head.py imports `deform_conv2d` from the package.
mmcv.ops.deform_conv2d = sys.modules["mmcv.ops.deform_conv"].deform_conv2d

import mmdet.models.dense_heads.base_dense_head as base_dense_head  # noqa: E402

base_dense_head.batched_nms = mmdet_standins.mmcv_batched_nms

import dense_head_images  # noqa: E402
from mmengine import MessageHub  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402

TRAIN = ConfigDict(initial_epoch=4, initial_assigner=dict(type="ATSSAssigner", topk=9),
                   assigner=dict(type="TaskAlignedAssigner", topk=13), alpha=1, beta=6, allowed_border=-1,
                   pos_weight=-1, debug=False)
COMMON = dict(
    type="TOODHead", num_classes=3, in_channels=16, stacked_convs=2, feat_channels=16, anchor_type="anchor_free",
    norm_cfg=dict(type="GN", num_groups=4, requires_grad=True),
    anchor_generator=dict(type="AnchorGenerator", ratios=[1.0], octave_base_scale=8, scales_per_octave=1,
                          strides=[8, 16, 32]),
    bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[0.1, 0.1, 0.2, 0.2]),
    initial_loss_cls=dict(type="FocalLoss", use_sigmoid=True, activated=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_cls=dict(type="QualityFocalLoss", use_sigmoid=True, activated=True, beta=2.0, loss_weight=1.0),
    loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
    train_cfg=TRAIN,
    test_cfg=ConfigDict(nms_pre=50, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                        max_per_img=20),
)
# Keep in sync with tood_tests.rs: (head, epoch).
CASES = {
    "initial": (COMMON, 0),
    "aligned": (COMMON, 4),
    "based": (dict(COMMON, anchor_type="anchor_based", num_dcn=1, norm_cfg=None,
                   train_cfg=ConfigDict(TRAIN, assigner=dict(type="TaskAlignedAssigner", topk=5), alpha=0.5, beta=4,
                                        pos_weight=2.0),
                   test_cfg=ConfigDict(COMMON["test_cfg"], score_thr=0.0)), 5),
}


def assign_case(d):
    """`TaskAlignedAssigner(topk=4)` alone on random priors, scores and boxes."""
    xy = torch.rand(30, 2) * 80
    priors = torch.cat([xy, xy + torch.rand(30, 2) * 30 + 4], 1)
    boxes = priors + torch.randn(30, 4) * 3
    scores = torch.rand(30, 3)
    gts = torch.tensor([[10.0, 10.0, 50.0, 60.0], [30.0, 20.0, 90.0, 45.0], [60.0, 60.0, 70.0, 72.0]])
    labels = torch.tensor([2, 0, 1])
    from mmdet.registry import TASK_UTILS
    from mmengine.structures import InstanceData
    assigner = TASK_UTILS.build(dict(type="TaskAlignedAssigner", topk=4))
    r = assigner.assign(InstanceData(priors=priors, scores=scores, bboxes=boxes), InstanceData(bboxes=gts, labels=labels),
                        alpha=1, beta=6)
    for k, v in dict(priors=priors, boxes=boxes, scores=scores, gts=gts, labels=labels, gt_inds=r.gt_inds,
                     assigned_labels=r.labels, metrics=r.assign_metrics).items():
        d[f"assign.{k}"] = v


def main(out):
    def set_epoch(name):
        MessageHub.get_current_instance().update_info("epoch", CASES[name][1])

    heads = {name: cfg for name, (cfg, _) in CASES.items()}
    dense_head_images.record_cases(out, "tood.pth", heads, "tood_cls", channels=16, before_case=set_epoch, extra=assign_case)


if __name__ == "__main__":
    main(sys.argv[1])
