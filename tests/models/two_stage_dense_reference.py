"""Reference outputs for detc's NMS, AnchorGenerator, MaxIoUAssigner,
RandomSampler and RPNHead (the dense half of Faster / Mask R-CNN).

Usage: .venv-test/bin/python tests/models/two_stage_dense_reference.py OUT_DIR

Writes OUT_DIR/two_stage_dense.pth, a bare state dict of tensors
(torch.save) that the Rust tests read through detc::checkpoint. Everything
comes from torchvision 0.26 and MMDetection 3.3.0's real modules:

* nms.{case}.*     torchvision.ops.nms / batched_nms on random boxes with
                   duplicated boxes, tied scores and several categories, on
                   both sides of batched_nms's 4000-coordinate dispatch;
                   `mmcv.{case}.*` mmcv's batched_nms (its Python, with
                   torchvision's nms as the kernel) for configs that split,
                   filter by score and cap the count;
* anchors.{case}.* mmdet's AnchorGenerator: base anchors, grid_priors and
                   valid_flags per level, for the R50-FPN settings and odd ones
                   (octave scales, center_offset, rectangular strides, centers);
* assign.{case}.*  MaxIoUAssigner gt_inds / labels on random priors (with
                   duplicates, so several priors tie for a ground truth's best
                   IoU), ground truths (one far from every prior) and ignored
                   boxes, for several configs, and with no ground truth;
* sample.*         RandomSampler with `num` large enough that nothing is drawn
                   at random (add_gt_as_proposals on), its SamplingResult;
* rpn.{case}.*     a small RPNHead (CFGS below): state dict, features of 2
                   images of different img_shape / pad_shape, the losses of
                   `loss_by_feat`, the input gradients of their sum, and the
                   proposals of `predict_by_feat` with the training proposal
                   and the test settings, and rescaled to the original
                   images (`rescaled.*`: boxes, scores, labels) as the
                   `RPN` detector predicts.

mmcv-lite has no compiled ops, so mmcv's `batched_nms` is reproduced below
around torchvision's nms (the same greedy NMS) and patched into rpn_head.
"""

import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

import mmdet.models.dense_heads.rpn_head as rpn_head_module  # noqa: E402
from mmdet.models.dense_heads import RPNHead  # noqa: E402
from mmdet.models.task_modules.assigners import MaxIoUAssigner  # noqa: E402
from mmdet.models.task_modules.prior_generators import AnchorGenerator  # noqa: E402
from mmdet.models.task_modules.samplers import RandomSampler  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

register_all_modules()
rpn_head_module.batched_nms = mmdet_standins.mmcv_batched_nms


def random_boxes(g, n, size=100.0, min_wh=0.5):
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size * 0.4 + min_wh
    return torch.cat([xy, xy + wh], 1)


def nms_cases(d, g):
    # (name, n boxes, categories, score levels (0 = continuous), iou threshold)
    cases = [
        ("small", 300, 3, 7, 0.5),  # coordinate-trick path of batched_nms
        ("large", 1500, 4, 9, 0.7),  # 6000 coordinates: per-category path
        ("ties", 400, 2, 1, 0.3),  # every score equal
        ("cont", 1200, 5, 0, 0.6),
    ]
    for name, n, cats, levels, thr in cases:
        boxes = random_boxes(g, n)
        dup = torch.randint(0, n, (n // 10,), generator=g)
        boxes[torch.randint(0, n, (n // 10,), generator=g)] = boxes[dup]  # exact duplicates
        if levels == 0:
            scores = torch.rand(n, generator=g)
        else:
            scores = torch.randint(0, levels, (n,), generator=g).float() / levels + 0.05
        idxs = torch.randint(0, cats, (n,), generator=g)
        p = f"nms.{name}."
        d[p + "boxes"], d[p + "scores"], d[p + "idxs"] = boxes, scores, idxs
        d[p + "thr"] = torch.tensor(thr, dtype=torch.float64)
        d[p + "keep"] = torchvision.ops.nms(boxes, scores, thr)
        d[p + "batched"] = torchvision.ops.batched_nms(boxes, scores, idxs, thr)
    # float64 boxes
    boxes = random_boxes(g, 200).double()
    scores = torch.rand(200, generator=g, dtype=torch.float64)
    d["nms.f64.boxes"], d["nms.f64.scores"] = boxes, scores
    d["nms.f64.keep"] = torchvision.ops.nms(boxes, scores, 0.4)
    # mmcv's batched_nms with split, score filter and cap (on the "small" case).
    b, s, i = d["nms.small.boxes"], d["nms.small.scores"], d["nms.small.idxs"]
    mm_cfgs = {
        "plain": dict(type="nms", iou_threshold=0.5),
        "split": dict(type="nms", iou_threshold=0.5, split_thr=100, max_num=40),
        "filter": dict(type="nms", iou_threshold=0.5, score_threshold=0.4, max_num=25),
        "split_filter": dict(type="nms", iou_threshold=0.5, split_thr=10, score_threshold=0.4, max_num=7),
        "agnostic": dict(type="nms", iou_threshold=0.5, class_agnostic=True),
    }
    for name, cfg in mm_cfgs.items():
        _, keep = mmdet_standins.mmcv_batched_nms(b, s, i, cfg)
        d[f"mmcv.{name}.keep"] = keep


ANCHOR_CASES = {
    "r50": dict(
        cfg=dict(strides=[4, 8, 16, 32, 64], ratios=[0.5, 1.0, 2.0], scales=[8]),
        featmap_sizes=[(56, 80), (28, 40), (14, 20), (7, 10), (4, 5)],
        pad_shape=(200, 300),
    ),
    "odd": dict(
        cfg=dict(
            strides=[(8, 16), 16],
            ratios=[0.5, 1.0, 2.0],
            octave_base_scale=4,
            scales_per_octave=3,
            base_sizes=[10, 20],
            scale_major=False,
            center_offset=0.5,
        ),
        featmap_sizes=[(5, 7), (3, 4)],
        pad_shape=(37, 45),
    ),
    "centers": dict(
        cfg=dict(strides=[8, 16], ratios=[1.0, 0.3], scales=[2, 3.5], centers=[(3.0, 5.5), (1.0, 2.0)]),
        featmap_sizes=[(4, 6), (2, 3)],
        pad_shape=(30, 20),
    ),
}


def anchor_cases(d):
    for name, case in ANCHOR_CASES.items():
        gen = AnchorGenerator(**case["cfg"])
        p = f"anchors.{name}."
        for lvl, a in enumerate(gen.base_anchors):
            d[p + f"base.{lvl}"] = a
        for lvl, a in enumerate(gen.grid_priors(case["featmap_sizes"], device="cpu")):
            d[p + f"grid.{lvl}"] = a
        for lvl, f in enumerate(gen.valid_flags(case["featmap_sizes"], case["pad_shape"], device="cpu")):
            d[p + f"valid.{lvl}"] = f


ASSIGN_CASES = {
    "rpn": dict(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True, ignore_iof_thr=-1),
    "rcnn": dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5, match_low_quality=False, ignore_iof_thr=-1),
    "range": dict(
        pos_iou_thr=0.6,
        neg_iou_thr=(0.1, 0.4),
        min_pos_iou=0.2,
        gt_max_assign_all=False,
        ignore_iof_thr=0.5,
    ),
    "iof_gt": dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.1, ignore_iof_thr=0.3, ignore_wrt_candidates=False),
    "zero_min": dict(pos_iou_thr=0.5, neg_iou_thr=0.3, min_pos_iou=0.0),
}


def assign_cases(d, g):
    priors = random_boxes(g, 240, size=120.0, min_wh=2.0)
    priors[200:220] = priors[0:20]  # duplicates: ties for a ground truth's best prior
    gts = random_boxes(g, 7, size=120.0, min_wh=5.0)
    gts[5] = gts[2]  # a repeated ground truth
    gts[6] = torch.tensor([500.0, 500.0, 510.0, 510.0])  # far from every prior
    labels = torch.randint(0, 5, (7,), generator=g)
    ignore = random_boxes(g, 3, size=120.0, min_wh=10.0)
    d["assign.priors"], d["assign.gts"], d["assign.labels"], d["assign.ignore"] = priors, gts, labels, ignore
    for name, cfg in ASSIGN_CASES.items():
        a = MaxIoUAssigner(**cfg)
        r = a.assign(InstanceData(priors=priors), InstanceData(bboxes=gts, labels=labels), InstanceData(bboxes=ignore))
        d[f"assign.{name}.gt_inds"], d[f"assign.{name}.labels"] = r.gt_inds, r.labels
    a = MaxIoUAssigner(**ASSIGN_CASES["rpn"])
    r = a.assign(InstanceData(priors=priors), InstanceData(bboxes=gts[:0], labels=labels[:0]))
    d["assign.nogt.gt_inds"], d["assign.nogt.labels"] = r.gt_inds, r.labels
    # Sampling on the "rpn" assignment: everything is kept (no draw), gts added.
    r = a.assign(InstanceData(priors=priors), InstanceData(bboxes=gts, labels=labels))
    s = RandomSampler(num=1000, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True)
    res = s.sample(r, InstanceData(priors=priors), InstanceData(bboxes=gts, labels=labels))
    for k in ["pos_inds", "neg_inds", "pos_is_gt", "pos_assigned_gt_inds", "pos_gt_labels", "pos_gt_bboxes", "pos_priors"]:
        d[f"sample.{k}"] = getattr(res, k)
    d["sample.avg_factor"] = torch.tensor(res.avg_factor)


IMG_METAS = [
    dict(img_shape=(60, 90), pad_shape=(64, 96), batch_input_shape=(64, 96), scale_factor=(0.45, 0.6)),
    dict(img_shape=(40, 62), pad_shape=(64, 64), batch_input_shape=(64, 96), scale_factor=(1.55, 1.6)),
]
FEAT_SIZES = [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
ANCHORS = dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64])

# Keep in sync with `rpn_cfg()` in src/models/dense_heads/rpn_head.rs.
CFGS = {
    # MMDetection's defaults (CrossEntropy + SmoothL1 beta 1/9); a sampler
    # whose num exceeds the anchors, so nothing is drawn at random.
    "a": dict(
        head=dict(in_channels=8, feat_channels=8, anchor_generator=ANCHORS),
        train=dict(
            assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type="RandomSampler", num=100000, pos_fraction=0.5, neg_pos_ub=-1,
                         add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False,
        ),
        gts=[4, 2],
    ),
    # Two shared convs, L1 on decoded boxes, PseudoSampler, border 0, pos_weight 2,
    # the second image without ground truth.
    "b": dict(
        head=dict(
            in_channels=8,
            feat_channels=8,
            num_convs=2,
            anchor_generator=ANCHORS,
            reg_decoded_bbox=True,
            loss_bbox=dict(type="L1Loss", loss_weight=2.0),
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=0.5),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.5, 0.5, 1.0, 1.0]),
        ),
        train=dict(
            assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.3, min_pos_iou=0.3,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=None,
            allowed_border=0,
            pos_weight=2.0,
            debug=False,
        ),
        gts=[3, 0],
    ),
}
PROPOSAL_CFG = dict(nms_pre=50, max_per_img=30, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0)
TEST_CFG = dict(nms_pre=-1, max_per_img=100, nms=dict(type="nms", iou_threshold=0.5), min_bbox_size=-1)


def rpn_case(d, g, name, case):
    head = RPNHead(**case["head"], train_cfg=ConfigDict(case["train"]), test_cfg=ConfigDict(TEST_CFG))
    head.init_weights()
    with torch.no_grad():  # larger weights than init's std 0.01, so scores spread
        for k, v in head.named_parameters():
            v.copy_(torch.randn(v.shape, generator=g) * (0.3 if v.dim() > 1 else 0.2))
    p = f"rpn.{name}."
    for k, v in head.state_dict().items():
        d[p + "sd." + k] = v.detach().clone()
    feats = [torch.randn(2, 8, h, w, generator=g, requires_grad=True) for h, w in FEAT_SIZES]
    for lvl, f in enumerate(feats):
        d[p + f"feat.{lvl}"] = f.detach().clone()
    gts = []
    for i, (n, meta) in enumerate(zip(case["gts"], IMG_METAS)):
        h, w = meta["img_shape"]
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.4, h * 0.4]) + 4.0
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(0, 3, (n,), generator=g)  # the head treats every one as class 0
        d[p + f"gt.{i}.bboxes"], d[p + f"gt.{i}.labels"] = boxes, labels
        # TwoStageDetector hands the RPN zeroed labels.
        gts.append(InstanceData(bboxes=boxes, labels=torch.zeros_like(labels)))
    cls_scores, bbox_preds = head(tuple(feats))
    losses = head.loss_by_feat(cls_scores, bbox_preds, gts, IMG_METAS)
    loss_cls, loss_bbox = sum(losses["loss_rpn_cls"]), sum(losses["loss_rpn_bbox"])
    d[p + "loss_cls"], d[p + "loss_bbox"] = loss_cls.detach(), loss_bbox.detach()
    (loss_cls + loss_bbox).backward()
    for lvl, f in enumerate(feats):
        d[p + f"grad.feat.{lvl}"] = f.grad.clone()
    for k, v in head.named_parameters():
        d[p + "grad.sd." + k] = v.grad.clone()
    for tag, cfg in [("proposal", PROPOSAL_CFG), ("test", TEST_CFG)]:
        res = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=IMG_METAS, cfg=ConfigDict(cfg))
        for i, r in enumerate(res):
            d[p + f"{tag}.{i}"] = r.bboxes.detach()
    # The RPN detector's predict: rescaled to the original image (before
    # the size filter and NMS), with scores and class-0 labels.
    res = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=IMG_METAS, cfg=ConfigDict(TEST_CFG), rescale=True)
    for i, r in enumerate(res):
        for field in ("bboxes", "scores", "labels"):
            d[p + f"rescaled.{i}.{field}"] = getattr(r, field).detach()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    d = {}
    g = torch.Generator().manual_seed(20240611)
    nms_cases(d, g)
    anchor_cases(d)
    assign_cases(d, g)
    for name, case in CFGS.items():
        rpn_case(d, g, name, case)
    d = {k: (v.contiguous() if isinstance(v, torch.Tensor) else v) for k, v in d.items()}
    torch.save(d, os.path.join(out, "two_stage_dense.pth"))


if __name__ == "__main__":
    main()
