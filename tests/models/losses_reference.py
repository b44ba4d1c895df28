"""Reference outputs for detc's losses, match costs and Hungarian assigner.

Usage: .venv-test/bin/python tests/models/losses_reference.py OUT_DIR

Writes OUT_DIR/losses.pth, a bare state dict of tensors (torch.save) that
the Rust tests (src/models/losses/reference.rs) read through
detc::checkpoint. Each case stores its inputs, the reference output and, for
the losses, the gradient of the output's sum w.r.t. the prediction:

* focal.*   torchvision.ops.sigmoid_focal_loss (none/mean/sum, two alpha/gamma
            pairs) and mmdet's FocalLoss (class-index labels with background,
            per-sample weight, avg_factor, loss_weight; activated=True);
* giou.*    torchvision.ops.generalized_box_iou_loss and mmdet's GIoULoss;
* iouf.*    mmdet's IoULoss, BoundedIoULoss, DIoULoss, CIoULoss;
* l1.*, dice.*, ce.*   mmdet's L1Loss, DiceLoss, CrossEntropyLoss (softmax,
            sigmoid, mask) modules;
* cost.*    mmdet's FocalLossCost, BBoxL1Cost, IoUCost;
* assign.*  mmdet's HungarianAssigner (QueryInst's costs) on random images;
* lsa.*     scipy.optimize.linear_sum_assignment on random f64 matrices.

MMDetection modules are loaded from their files, with stand-ins for the
packages whose __init__ needs mmcv's compiled ops (absent in mmcv-lite).
"""

import importlib.util
import os
import sys
import types

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss


def load_mmdet():
    import mmdet

    root = os.path.dirname(mmdet.__file__)

    def load(name, rel):
        spec = importlib.util.spec_from_file_location(name, os.path.join(root, rel))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod

    ops = types.ModuleType("mmcv.ops")
    ops.sigmoid_focal_loss = None  # the CUDA kernel; CPU tensors take the PyTorch path
    sys.modules["mmcv.ops"] = ops
    sys.modules["mmdet.utils"] = types.ModuleType("mmdet.utils")
    sys.modules["mmdet.utils"].__path__ = []
    for pkg in ["mmdet.models", "mmdet.models.losses", "mmdet.models.task_modules",
                "mmdet.models.task_modules.assigners", "mmdet.structures", "mmdet.structures.bbox"]:
        sys.modules[pkg] = types.ModuleType(pkg)
        sys.modules[pkg].__path__ = []
    mixins = load("mmdet.utils.util_mixins", "utils/util_mixins.py")
    sys.modules["mmdet.utils"].util_mixins = mixins
    bb = sys.modules["mmdet.structures.bbox"]
    ov = load("mmdet.structures.bbox.bbox_overlaps", "structures/bbox/bbox_overlaps.py")
    bb.bbox_overlaps = ov.bbox_overlaps

    def xyxy_to_cxcywh(b):
        x1, y1, x2, y2 = b.split((1, 1, 1, 1), dim=-1)
        return torch.cat([(x2 + x1) / 2, (y2 + y1) / 2, (x2 - x1), (y2 - y1)], dim=-1)

    bb.bbox_xyxy_to_cxcywh = xyxy_to_cxcywh
    m = types.SimpleNamespace()
    load("mmdet.models.losses.accuracy", "models/losses/accuracy.py")
    load("mmdet.models.losses.utils", "models/losses/utils.py")
    m.focal = load("mmdet.models.losses.focal_loss", "models/losses/focal_loss.py")
    m.l1 = load("mmdet.models.losses.smooth_l1_loss", "models/losses/smooth_l1_loss.py")
    m.iou = load("mmdet.models.losses.iou_loss", "models/losses/iou_loss.py")
    m.dice = load("mmdet.models.losses.dice_loss", "models/losses/dice_loss.py")
    m.ce = load("mmdet.models.losses.cross_entropy_loss", "models/losses/cross_entropy_loss.py")
    load("mmdet.models.task_modules.assigners.assign_result",
         "models/task_modules/assigners/assign_result.py")
    load("mmdet.models.task_modules.assigners.base_assigner",
         "models/task_modules/assigners/base_assigner.py")
    m.cost = load("mmdet.models.task_modules.assigners.match_cost",
                  "models/task_modules/assigners/match_cost.py")
    m.hung = load("mmdet.models.task_modules.assigners.hungarian_assigner",
                  "models/task_modules/assigners/hungarian_assigner.py")
    return m


def with_grad(d, key, fn, pred):
    """d[key] = fn(pred); d[key + '.grad'] = d sum(fn(pred)) / d pred."""
    p = pred.clone().requires_grad_(True)
    out = fn(p)
    out.sum().backward()
    d[key] = out.detach().clone()
    d[key + ".grad"] = p.grad.detach().clone()


def boxes(g, n, size=100.0):
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size * 0.5 + 1.0
    return torch.cat([xy, xy + wh], 1)


def focal_cases(d, m, g):
    n, c = 20, 6
    pred = torch.randn(n, c, generator=g) * 2
    labels = torch.randint(0, c + 1, (n,), generator=g)  # c = background
    onehot = torch.nn.functional.one_hot(labels, c + 1)[:, :c].float()
    weight = torch.rand(n, generator=g)
    d.update({"focal.pred": pred, "focal.labels": labels, "focal.onehot": onehot, "focal.weight": weight})
    for tag, alpha, gamma in [("a", 0.25, 2.0), ("b", 0.5, 1.5)]:
        for red in ["none", "mean", "sum"]:
            with_grad(d, f"focal.tv.{tag}.{red}",
                      lambda p: sigmoid_focal_loss(p, onehot, alpha=alpha, gamma=gamma, reduction=red), pred)
    loss = m.focal.FocalLoss(use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=2.0)
    with_grad(d, "focal.mm.w_af", lambda p: loss(p, labels, weight=weight, avg_factor=7.0), pred)
    with_grad(d, "focal.mm.none", lambda p: loss(p, labels, reduction_override="none"), pred)
    act = m.focal.FocalLoss(use_sigmoid=True, activated=True, gamma=2.0, alpha=0.25)
    prob = pred.sigmoid()
    d["focal.prob"] = prob
    with_grad(d, "focal.mm.activated", lambda p: act(p, labels, weight=weight), prob)


def giou_cases(d, m, g):
    n = 15
    pred, target = boxes(g, n), boxes(g, n)
    target[:3] = pred[:3] + torch.rand(3, 4, generator=g)  # a few overlapping pairs
    weight = torch.rand(n, generator=g)
    d.update({"giou.pred": pred, "giou.target": target, "giou.weight": weight})
    for red in ["none", "mean", "sum"]:
        with_grad(d, f"giou.tv.{red}", lambda p: generalized_box_iou_loss(p, target, reduction=red), pred)
    loss = m.iou.GIoULoss(eps=1e-6, loss_weight=2.0)
    with_grad(d, "giou.mm.w_af", lambda p: loss(p, target, weight=weight, avg_factor=5.0), pred)
    with_grad(d, "giou.mm.mean", lambda p: loss(p, target), pred)


def iou_family_cases(d, m, g):
    """mmdet's IoULoss (3 modes), BoundedIoULoss, DIoULoss and CIoULoss on
    pairs that overlap a lot, a little and not at all, with (n, 4) weights
    (the R-CNN box head's) and avg_factor; a zero weight takes the early exit."""
    n = 16
    pred, target = boxes(g, n), boxes(g, n)
    target[:6] = pred[:6] + torch.rand(6, 4, generator=g) * 4  # close pairs (IoU > 0.5: CIoU's alpha)
    target[6:9] = pred[6:9] + torch.rand(3, 4, generator=g) * 30
    weight = (torch.rand(n, 4, generator=g) > 0.2).float() * torch.rand(n, 1, generator=g)
    d.update({"iouf.pred": pred, "iouf.target": target, "iouf.weight": weight})
    losses = {
        "iou_log": m.iou.IoULoss(loss_weight=2.0),
        "iou_linear": m.iou.IoULoss(mode="linear", eps=1e-4),
        "iou_square": m.iou.IoULoss(mode="square"),
        "bounded": m.iou.BoundedIoULoss(beta=0.2, eps=1e-3, loss_weight=10.0),
        "diou": m.iou.DIoULoss(loss_weight=3.0),
        "ciou": m.iou.CIoULoss(loss_weight=12.0),
    }
    for name, loss in losses.items():
        with_grad(d, f"iouf.{name}.mean", lambda p: loss(p, target), pred)
        with_grad(d, f"iouf.{name}.none", lambda p: loss(p, target, reduction_override="none"), pred)
        with_grad(d, f"iouf.{name}.w_af", lambda p: loss(p, target, weight=weight, avg_factor=7.0), pred)


def l1_cases(d, m, g):
    pred, target = torch.randn(12, 4, generator=g), torch.randn(12, 4, generator=g)
    weight = (torch.rand(12, 4, generator=g) > 0.3).float()
    d.update({"l1.pred": pred, "l1.target": target, "l1.weight": weight})
    loss = m.l1.L1Loss(loss_weight=5.0)
    for red in ["none", "mean", "sum"]:
        with_grad(d, f"l1.mm.{red}", lambda p: loss(p, target, reduction_override=red), pred)
    with_grad(d, "l1.mm.w_af", lambda p: loss(p, target, weight=weight, avg_factor=9.0), pred)


def dice_cases(d, m, g):
    n = 6
    logits = torch.randn(n, 28, 28, generator=g) * 2
    target = (torch.rand(n, 28, 28, generator=g) > 0.6).float()
    weight = torch.rand(n, generator=g)
    prob = logits.sigmoid()
    d.update({"dice.logits": logits, "dice.prob": prob, "dice.target": target, "dice.weight": weight})
    # QueryInst's mask loss: probabilities in, eps 1e-5, avg_factor = num_pos.
    qi = m.dice.DiceLoss(loss_weight=8.0, use_sigmoid=True, activate=False, eps=1e-5)
    with_grad(d, "dice.mm.queryinst", lambda p: qi(p, target, avg_factor=4.0), prob)
    naive = m.dice.DiceLoss(use_sigmoid=True, activate=True, naive_dice=True, reduction="sum")
    with_grad(d, "dice.mm.naive", lambda p: naive(p, target, weight=weight), logits)
    vnet = m.dice.DiceLoss()
    for red in ["none", "mean"]:
        with_grad(d, f"dice.mm.{red}", lambda p: vnet(p, target, reduction_override=red), logits)


def ce_cases(d, m, g):
    n, c = 16, 5
    pred = torch.randn(n, c, generator=g)
    labels = torch.randint(0, c, (n,), generator=g)
    labels[[2, 7]] = -100
    weight = torch.rand(n, generator=g)
    cw = [1.0, 2.0, 0.5, 1.5, 1.0]
    d.update({"ce.pred": pred, "ce.labels": labels, "ce.weight": weight, "ce.class_weight": torch.tensor(cw)})
    plain = m.ce.CrossEntropyLoss()
    with_grad(d, "ce.softmax.mean", lambda p: plain(p, labels), pred)
    with_grad(d, "ce.softmax.w_af", lambda p: plain(p, labels, weight=weight, avg_factor=6.0), pred)
    nonig = m.ce.CrossEntropyLoss(class_weight=cw, avg_non_ignore=True, loss_weight=1.5)
    with_grad(d, "ce.softmax.cw_nonig", lambda p: nonig(p, labels), pred)
    # sigmoid: labels in 0..=c (c = background row of zeros), a few ignored.
    slabels = torch.randint(0, c + 1, (n,), generator=g)
    slabels[3] = -100
    d["ce.sig_labels"] = slabels
    sig = m.ce.CrossEntropyLoss(use_sigmoid=True)
    with_grad(d, "ce.sigmoid.mean", lambda p: sig(p, slabels), pred)
    with_grad(d, "ce.sigmoid.w_sum", lambda p: sig(p, slabels, weight=weight, reduction_override="sum"), pred)
    signi = m.ce.CrossEntropyLoss(use_sigmoid=True, avg_non_ignore=True, class_weight=cw)
    with_grad(d, "ce.sigmoid.cw_nonig", lambda p: signi(p, slabels), pred)
    # mask: (R, C, H, W) logits, (R, H, W) targets, the RoIs' labels.
    mpred = torch.randn(7, c, 14, 14, generator=g)
    mtarget = (torch.rand(7, 14, 14, generator=g) > 0.5).float()
    mlabels = torch.randint(0, c, (7,), generator=g)
    d.update({"ce.mask_pred": mpred, "ce.mask_target": mtarget, "ce.mask_labels": mlabels})
    mask = m.ce.CrossEntropyLoss(use_mask=True, loss_weight=1.0)
    with_grad(d, "ce.mask", lambda p: mask(p, mtarget, mlabels), mpred)


def instances(g, n_pred, n_gt, c, h, w):
    from mmengine.structures import InstanceData

    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    pb = boxes(g, n_pred, 1.0) * scale
    gb = boxes(g, n_gt, 1.0) * scale
    pred = InstanceData(scores=torch.randn(n_pred, c, generator=g) * 2, bboxes=pb)
    gt = InstanceData(labels=torch.randint(0, c, (n_gt,), generator=g), bboxes=gb)
    return pred, gt


def cost_cases(d, m, g):
    h, w = 480, 640
    pred, gt = instances(g, 12, 5, 6, h, w)
    meta = {"img_shape": (h, w)}
    d.update({"cost.scores": pred.scores, "cost.pred_bboxes": pred.bboxes,
              "cost.gt_labels": gt.labels, "cost.gt_bboxes": gt.bboxes,
              "cost.img_shape": torch.tensor([h, w], dtype=torch.float64)})
    for key, c in {
        "focal": m.cost.FocalLossCost(weight=2.0),
        "focal_b": m.cost.FocalLossCost(alpha=0.4, gamma=1.5, eps=1e-8),
        "l1_xyxy": m.cost.BBoxL1Cost(weight=5.0, box_format="xyxy"),
        "l1_xywh": m.cost.BBoxL1Cost(weight=3.0, box_format="xywh"),
        "giou": m.cost.IoUCost(iou_mode="giou", weight=2.0),
        "iou": m.cost.IoUCost(iou_mode="iou", weight=1.0),
    }.items():
        d[f"cost.{key}"] = c(pred, gt, img_meta=meta)


def assign_cases(d, m, g):
    assigner = m.hung.HungarianAssigner.__new__(m.hung.HungarianAssigner)
    assigner.match_costs = [m.cost.FocalLossCost(weight=2.0),
                            m.cost.BBoxL1Cost(weight=5.0, box_format="xyxy"),
                            m.cost.IoUCost(iou_mode="giou", weight=2.0)]
    for i, (n_pred, n_gt, h, w) in enumerate([(100, 7, 480, 640), (30, 30, 320, 320), (10, 25, 600, 400),
                                              (20, 0, 300, 300), (0, 4, 300, 300)]):
        pred, gt = instances(g, n_pred, n_gt, 80, h, w)
        r = assigner.assign(pred, gt, img_meta={"img_shape": (h, w)})
        d.update({f"assign.{i}.scores": pred.scores, f"assign.{i}.pred_bboxes": pred.bboxes,
                  f"assign.{i}.gt_labels": gt.labels, f"assign.{i}.gt_bboxes": gt.bboxes,
                  f"assign.{i}.img_shape": torch.tensor([h, w], dtype=torch.float64),
                  f"assign.{i}.gt_inds": r.gt_inds, f"assign.{i}.labels": r.labels})


def lsa_cases(d, rng):
    for rows, cols in [(100, 7), (7, 100), (50, 50), (300, 30), (1, 1), (3, 8), (13, 2)]:
        cost = rng.standard_normal((rows, cols)) * 3 + rng.random((rows, cols))
        r, c = linear_sum_assignment(cost)
        key = f"lsa.{rows}x{cols}"
        d[key + ".cost"] = torch.from_numpy(cost)
        d[key + ".rows"] = torch.from_numpy(r.astype(np.int64))
        d[key + ".cols"] = torch.from_numpy(c.astype(np.int64))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    m = load_mmdet()
    g = torch.Generator().manual_seed(0)
    d = {}
    focal_cases(d, m, g)
    giou_cases(d, m, g)
    l1_cases(d, m, g)
    dice_cases(d, m, g)
    ce_cases(d, m, g)
    cost_cases(d, m, g)
    assign_cases(d, m, g)
    iou_family_cases(d, m, g)
    lsa_cases(d, np.random.default_rng(0))
    d = {k: v.detach().contiguous() for k, v in d.items()}
    torch.save(d, os.path.join(out, "losses.pth"))


if __name__ == "__main__":
    main()
