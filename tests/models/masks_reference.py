"""Reference outputs for detc's mask ops (src/models/ops/masks.rs).

Usage: .venv-test/bin/python tests/models/masks_reference.py OUT_DIR

Writes OUT_DIR/masks.pth, a bare state dict of tensors read back through
detc::checkpoint:

* ``bitmap.*``   MMDetection 3.3's ``mask_target_single`` on ``BitmapMasks``
                 (3 masks of 40x50: an ellipse, noise, a ring) for random
                 positive boxes (inside, across the border, tiny, inverted,
                 outside, the whole canvas), at ``mask_size`` 28 and (13, 21);
* ``poly.*``     the same on ``PolygonMasks`` (3 objects, one of two parts),
                 with the polygons as ``poly.obj{g}.{j}`` (float64);
* ``ties.*``     both again, at ``mask_size`` 28 and 7, for 40 boxes on integer
                 and half-integer coordinates (bins that average to 0.5);
* ``paste.*``    ``FCNMaskHead._predict_by_feat_single`` (the CPU path) of a
                 real mmdet ``FCNMaskHead`` on random logits and boxes, for
                 rescale, activate_map and mask_thr_binary in {0.5, -1};
* ``full.*``     ``_do_paste_mask(skip_empty=False)``: the whole-image paste
                 mmdet uses on GPU, and its thresholding there.

mmcv's compiled ``roi_align`` is absent from mmcv-lite; ``BitmapMasks`` gets
torchvision's ``roi_align`` (aligned=True, sampling_ratio=0, avg), which
computes the same op.
"""

import os
import sys

import numpy as np
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

from mmengine.config import ConfigDict  # noqa: E402

import mmdet.structures.mask.structures as mask_structures  # noqa: E402
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import (  # noqa: E402
    FCNMaskHead, _do_paste_mask)
from mmdet.structures.mask import BitmapMasks, PolygonMasks  # noqa: E402
from mmdet.structures.mask.mask_target import mask_target_single  # noqa: E402


def tv_roi_align(input, rois, output_size, spatial_scale, sampling_ratio,
                 pool_mode, aligned):
    """mmcv.ops.roi_align's signature over torchvision's kernel."""
    assert pool_mode == "avg"
    return torchvision.ops.roi_align(input, rois, output_size, spatial_scale,
                                     sampling_ratio, aligned)


mask_structures.roi_align = tv_roi_align

H, W = 40, 50


def bitmaps(g):
    ys, xs = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    ellipse = ((xs - 20.3) / 14.0) ** 2 + ((ys - 18.7) / 9.0) ** 2 <= 1.0
    noise = torch.rand(H, W, generator=g) > 0.5
    r = ((xs - 33.0) ** 2 + (ys - 22.0) ** 2).sqrt()
    ring = (r >= 5.0) & (r <= 12.5)
    return torch.stack([ellipse, noise, ring]).to(torch.uint8)


def polygons():
    star = []
    for k in range(10):
        rad = 14.0 if k % 2 == 0 else 6.0
        a = k * np.pi / 5 + 0.3
        star += [30.0 + rad * np.cos(a), 20.0 + rad * np.sin(a)]
    return [
        [np.array([3.2, 4.7, 28.9, 2.1, 35.4, 17.3, 20.05, 31.8, 6.6, 22.4])],
        [np.array([10.0, 10.0, 22.5, 10.0, 22.5, 25.25, 10.0, 25.25]),
         np.array([30.3, 30.1, 47.9, 33.3, 41.2, 39.6])],
        [np.array(star)],
    ]


def proposals(g):
    k = 12
    x1 = torch.rand(k, generator=g) * (W + 10) - 8
    y1 = torch.rand(k, generator=g) * (H + 10) - 8
    bw = torch.rand(k, generator=g) * 40 + 2
    bh = torch.rand(k, generator=g) * 30 + 2
    b = torch.stack([x1, y1, x1 + bw, y1 + bh], 1)
    b[0] = torch.tensor([0.0, 0.0, W, H])  # the whole canvas
    b[1] = torch.tensor([12.3, 7.9, 12.6, 8.05])  # tiny
    b[2] = torch.tensor([30.0, 20.0, 25.0, 28.0])  # inverted
    b[3] = torch.tensor([55.0, -9.0, 70.0, -2.0])  # outside: clips to a line
    b[4] = torch.tensor([-6.5, 3.25, 20.75, 45.5])  # across two borders
    b[5] = torch.tensor([10.0, 12.0, 38.0, 26.0])  # integers
    inds = torch.randint(0, 3, (k,), generator=g)
    return b.float(), inds


def tie_proposals(g):
    """Boxes on integer and half-integer coordinates, where many bins average
    to exactly 0.5 before rounding (the binarisation's ties)."""
    k = 40
    x1 = torch.randint(-4, W, (k,), generator=g).float()
    y1 = torch.randint(-4, H, (k,), generator=g).float()
    bw = torch.randint(1, 45, (k,), generator=g).float()
    bh = torch.randint(1, 35, (k,), generator=g).float()
    b = torch.stack([x1, y1, x1 + bw, y1 + bh], 1)
    b[k // 2:] += 0.5 * torch.randint(0, 2, (k - k // 2, 4), generator=g).float()
    return b, torch.randint(0, 3, (k,), generator=g)


def target_fixtures(g, d):
    boxes, inds = proposals(g)
    d["boxes"], d["inds"] = boxes, inds
    masks = bitmaps(g)
    d["bitmap.masks"] = masks
    polys = polygons()
    for gi, obj in enumerate(polys):
        for j, p in enumerate(obj):
            d[f"poly.obj{gi}.{j}"] = torch.from_numpy(p)
    for name, size in [("s28", 28), ("s13x21", (13, 21))]:
        cfg = ConfigDict(mask_size=size)
        bm = BitmapMasks(masks.numpy(), H, W)
        d[f"bitmap.{name}"] = mask_target_single(boxes.clone(), inds, bm, cfg)
        pm = PolygonMasks(polys, H, W)
        d[f"poly.{name}"] = mask_target_single(boxes.clone(), inds, pm, cfg)
    ties, tie_inds = tie_proposals(g)
    d["ties.boxes"], d["ties.inds"] = ties, tie_inds
    for name, size in [("s28", 28), ("s7", 7)]:
        cfg = ConfigDict(mask_size=size)
        d[f"ties.bitmap.{name}"] = mask_target_single(ties.clone(), tie_inds, BitmapMasks(masks.numpy(), H, W), cfg)
        d[f"ties.poly.{name}"] = mask_target_single(ties.clone(), tie_inds, PolygonMasks(polys, H, W), cfg)


ORI = (30, 40)  # (H, W)
SCALE = (1.5, 1.6)  # (w, h): the resized image is 48 x 60


def paste_boxes(g, k):
    x1 = torch.rand(k, generator=g) * 70 - 8
    y1 = torch.rand(k, generator=g) * 55 - 6
    bw = torch.rand(k, generator=g) * 45 + 1
    bh = torch.rand(k, generator=g) * 35 + 1
    b = torch.stack([x1, y1, x1 + bw, y1 + bh], 1)
    b[0] = torch.tensor([10.2, 5.3, 10.2, 30.1])  # zero width: inf -> 0
    b[1] = torch.tensor([20.1, 14.3, 20.5, 14.55])  # sub-pixel
    b[2] = torch.tensor([-5.3, -4.1, 70.2, 55.3])  # wider than the image
    return b


def paste_fixtures(g, d):
    k, c = 7, 3
    head = FCNMaskHead(num_convs=0, num_classes=c)
    logits = torch.randn(k, c, 28, 28, generator=g) * 3
    probs = logits.sigmoid()
    labels = torch.randint(0, c, (k,), generator=g)
    boxes = paste_boxes(g, k)
    d["paste.logits"], d["paste.probs"] = logits, probs
    d["paste.labels"], d["paste.boxes"] = labels, boxes
    meta = {"ori_shape": ORI, "scale_factor": SCALE}
    for rescale in (False, True):
        for act in (False, True):
            for thr in (0.5, -1):
                key = f"paste.r{int(rescale)}_a{int(act)}_t{'n' if thr < 0 else '05'}"
                b = boxes.clone()  # rescale divides it in place
                out = head._predict_by_feat_single(
                    probs if act else logits, b, labels, meta,
                    ConfigDict(mask_thr_binary=thr), rescale=rescale,
                    activate_map=act)
                d[key] = out
                d[key + ".boxes"] = b
    sel = probs[torch.arange(k), labels][:, None]
    full, _ = _do_paste_mask(sel, boxes.clone(), 48, 60, skip_empty=False)
    d["full.probs"] = full
    # what _predict_by_feat_single does with it on GPU (one chunk)
    d["full.t05"] = full >= 0.5
    d["full.tn"] = (full * 255).to(dtype=torch.uint8)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    d = {}
    target_fixtures(g, d)
    paste_fixtures(g, d)
    torch.save({k: v.contiguous() for k, v in d.items()}, os.path.join(out, "masks.pth"))


if __name__ == "__main__":
    main()
