"""Reference outputs for detc's RTMDet parts: the CSPNeXt backbone, the
CSPNeXtPAFPN neck, RTMDetSepBNHead and its DynamicSoftLabelAssigner, tested
in src/models/backbones/cspnext_tests.rs,
src/models/necks/cspnext_pafpn_tests.rs and
src/models/dense_heads/rtmdet_tests.rs.

Usage: .venv-test/bin/python tests/models/rtmdet_reference.py OUT_DIR

Writes OUT_DIR/rtmdet.pth, a bare state dict of tensors, from MMDetection
3.3.0's own modules built from the configs below (which the Rust tests
build too).

Backbone and neck cases, as tests/reference/module_cases.py records them
(CASE.init.*, CASE.sd.*, CASE.in.{i}, CASE.out.{i}, CASE.dy.{i},
CASE.gin.{i}, CASE.grad.*): `cspnext_p5` (P5, channel attention, outputs of
stages 2 to 4), `cspnext_p6` (P6, depthwise, no channel attention, stem and
stage 1 frozen: no grads for them, BN in eval mode there; outputs of stages
2 to 5), `cspnext_noinit` (`cspnext_p5` with `init_cfg=None`: ConvModule's
own Kaiming init, torch's for the attention conv), `pafpn` (three levels of 8 to 32 channels, one block per CSP layer)
and `pafpn_dw` (depthwise, two blocks, BN of momentum 0.1 and eps 1e-5).

Head cases, as tests/reference/dense_head_images.py's `record_head` records
a case (each level's `rtm_cls` bias raised); mmcv's compiled `batched_nms`
is re-stated over torchvision's nms. Shared: `x.{l}` a 2-image batch of
features per level (strides 8, 16, 32), `img.{i}.*` the ground truths
(image 1 has none). `sepbn` (the rtmdet configs' head, scaled down: shared
convs, separate BN per level, exp on the regression, 1x1 predictors) and
`tiny` (no sharing, no exp, 3x3 predictors, topk 5). With `share_conv` the
state dict names each level's (shared) conv, `cls_convs.{n}.{i}.conv.weight`;
the gradients name only level 0's.

Also `dsl.*`: MMDetection's `DynamicSoftLabelAssigner(topk=13)` on
hand-made inputs: `priors` (N, 4) points (x, y, stride_w, stride_h) of
strides 8 and 16 in a 40x48 image, `bboxes` (N, 4) decoded boxes, `scores`
(N, 3) classification logits (as the head passes them: the assigner applies
the sigmoid), `gt_bboxes` (3, 4) (one tiny), `gt_labels` (3,); and its
`gt_inds` (0 background, else 1-based gt index), `max_overlaps` (IoU with
the assigned gt, -1e8 elsewhere), `labels` (-1 elsewhere). `dsl0.*`: the
outputs for the same predictions and no ground truths.
"""

import logging
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402
from module_cases import record_module_case  # noqa: E402

mmdet_standins.install()

import mmdet.models.dense_heads.base_dense_head as base_dense_head  # noqa: E402

base_dense_head.batched_nms = mmdet_standins.mmcv_batched_nms

import dense_head_images  # noqa: E402
from mmdet.registry import MODELS, TASK_UTILS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

# Keep in sync with src/models/backbones/cspnext_tests.rs.
BACKBONES = {
    "cspnext_p5": (dict(type="CSPNeXt", arch="P5", deepen_factor=0.167, widen_factor=0.125, expand_ratio=0.5,
                        channel_attention=True, act_cfg=dict(type="SiLU"), out_indices=(2, 3, 4)),
                   [(2, 3, 64, 64)]),
    "cspnext_p6": (dict(type="CSPNeXt", arch="P6", deepen_factor=0.33, widen_factor=0.125, expand_ratio=0.5,
                        channel_attention=False, use_depthwise=True, frozen_stages=1, act_cfg=dict(type="SiLU"),
                        out_indices=(2, 3, 4, 5)),
                   [(1, 3, 64, 96)]),
    "cspnext_noinit": (dict(type="CSPNeXt", arch="P5", deepen_factor=0.167, widen_factor=0.125, expand_ratio=0.5,
                            channel_attention=True, act_cfg=dict(type="SiLU"), out_indices=(2, 3, 4), init_cfg=None),
                       [(2, 3, 64, 64)]),
}
# Keep in sync with src/models/necks/cspnext_pafpn_tests.rs.
NECKS = {
    "pafpn": dict(type="CSPNeXtPAFPN", in_channels=[8, 16, 32], out_channels=8, num_csp_blocks=1, expand_ratio=0.5,
                  act_cfg=dict(type="SiLU")),
    "pafpn_dw": dict(type="CSPNeXtPAFPN", in_channels=[8, 16, 32], out_channels=8, num_csp_blocks=2, expand_ratio=0.5,
                     use_depthwise=True, norm_cfg=dict(type="BN", momentum=0.1, eps=1e-5), act_cfg=dict(type="SiLU")),
}
NECK_SHAPES = [(2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4)]

COMMON = dict(
    type="RTMDetSepBNHead", num_classes=3, in_channels=8, stacked_convs=2, feat_channels=8,
    anchor_generator=dict(type="MlvlPointGenerator", offset=0, strides=[8, 16, 32]),
    bbox_coder=dict(type="DistancePointBBoxCoder"),
    loss_cls=dict(type="QualityFocalLoss", use_sigmoid=True, beta=2.0, loss_weight=1.0),
    loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
    with_objectness=False, exp_on_reg=True, share_conv=True, pred_kernel_size=1,
    norm_cfg=dict(type="BN"), act_cfg=dict(type="SiLU"),
    train_cfg=ConfigDict(assigner=dict(type="DynamicSoftLabelAssigner", topk=13), allowed_border=-1, pos_weight=-1,
                         debug=False),
    test_cfg=ConfigDict(nms_pre=50, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.6),
                        max_per_img=20),
)
# Keep in sync with src/models/dense_heads/rtmdet_tests.rs.
HEADS = {
    "sepbn": COMMON,
    "tiny": dict(COMMON, exp_on_reg=False, share_conv=False, pred_kernel_size=3,
                 train_cfg=ConfigDict(assigner=dict(type="DynamicSoftLabelAssigner", topk=5), allowed_border=-1,
                                      pos_weight=-1, debug=False)),
}
IMAGES = dense_head_images.IMAGES

# The assigner case: a 40x48 (h x w) image, its points of strides 8 and 16,
# three ground truths (the third tiny: one point inside it).
DSL_IMG = (40, 48)
DSL_GT_BBOXES = [[2.0, 3.0, 30.0, 34.0], [12.0, 10.0, 40.0, 38.0], [33.0, 1.0, 43.0, 9.0]]
DSL_GT_LABELS = [0, 2, 1]


def dsl_case(d):
    h, w = DSL_IMG
    priors = []
    for s in (8, 16):
        ys, xs = torch.meshgrid(torch.arange(0, h, s), torch.arange(0, w, s), indexing="ij")
        pts = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).float()
        priors.append(torch.cat([pts, torch.full_like(pts, float(s))], 1))
    priors = torch.cat(priors)
    gt_bboxes = torch.tensor(DSL_GT_BBOXES)
    gt_labels = torch.tensor(DSL_GT_LABELS, dtype=torch.long)
    # Each prediction a jittered copy of the ground truth nearest its point;
    # at a point inside two, of their mean, so that both may pick it (the
    # matching's conflict case).
    centers = (gt_bboxes[:, :2] + gt_bboxes[:, 2:]) / 2
    near = torch.cdist(priors[:, :2], centers).argmin(1)
    inside = ((priors[:, None, :2] > gt_bboxes[:, :2]) & (priors[:, None, :2] < gt_bboxes[:, 2:])).all(-1)
    base = gt_bboxes[near]
    shared = inside.sum(1) > 1
    base[shared] = (inside[shared].float() @ gt_bboxes) / inside[shared].sum(1, keepdim=True)
    jitter = torch.randn(priors.size(0), 4) * priors[:, 2:3] * 0.4
    b = base + jitter
    bboxes = torch.cat([torch.min(b[:, :2], b[:, 2:] - 1), torch.max(b[:, 2:], b[:, :2] + 1)], 1)
    scores = torch.randn(priors.size(0), 3)
    scores[torch.arange(priors.size(0)), gt_labels[near]] += 1.0
    assigner = TASK_UTILS.build(dict(type="DynamicSoftLabelAssigner", topk=13))
    pred = InstanceData(priors=priors, bboxes=bboxes, scores=scores)
    r = assigner.assign(pred, InstanceData(bboxes=gt_bboxes, labels=gt_labels))
    d["dsl.priors"], d["dsl.bboxes"], d["dsl.scores"] = priors, bboxes, scores
    d["dsl.gt_bboxes"], d["dsl.gt_labels"] = gt_bboxes, gt_labels
    d["dsl.gt_inds"], d["dsl.max_overlaps"], d["dsl.labels"] = r.gt_inds, r.max_overlaps, r.labels
    r = assigner.assign(pred, InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long)))
    d["dsl0.gt_inds"], d["dsl0.max_overlaps"], d["dsl0.labels"] = r.gt_inds, r.max_overlaps, r.labels


def main(out):
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    d = {}
    for name, (cfg, shapes) in BACKBONES.items():
        record_module_case(d, name, MODELS.build(dict(cfg)), shapes, lambda m, x: list(m(x[0])))
    for name, cfg in NECKS.items():
        record_module_case(d, name, MODELS.build(dict(cfg)), NECK_SHAPES, lambda m, x: list(m(x)))
    dense_head_images.record(d, IMAGES)
    x = dense_head_images.features(d)
    for name, cfg in HEADS.items():
        dense_head_images.record_head(d, name, MODELS.build(cfg), x, IMAGES, "rtm_cls")
    dsl_case(d)
    torch.save(d, os.path.join(out, "rtmdet.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
