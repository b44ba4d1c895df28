"""Reference outputs for detc's RetinaHead (src/models/dense_heads/retina_head.rs
and the shared anchor_head.rs), tested in src/models/dense_heads/retina_head.rs.

Usage: .venv-test/bin/python tests/models/retina_reference.py OUT_DIR

Writes OUT_DIR/retina.pth, a bare state dict of tensors, from MMDetection
3.3.0's own `RetinaHead` (CFG below, which the Rust test builds too); mmcv's
compiled `batched_nms` is re-stated over torchvision's nms
(tests/reference/mmdet_standins.py), and the focal loss runs MMDetection's
Python path (`py_sigmoid_focal_loss`), as it does on the CPU.

* init.*          the state dict after `init_weights()`;
* sd.*            the weights compared with (the init perturbed);
* x.{l}           a 2-image batch of features per level (strides 8, 16, 32);
* img.{i}.*       the images' ground truths (`bboxes`, `labels`; image 1 has
                  none) and `meta` [img_h, img_w, pad_h, pad_w, scale_w, scale_h];
* loss.*          `loss_cls` and `loss_bbox`, each summed over the levels;
* grad.*          gradients of the summed loss w.r.t. every parameter and
                  `grad.x.{l}` the features;
* pred{r}.{i}.*   `predict(rescale=r)`: `bboxes`, `scores`, `labels`.
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
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402

# Keep in sync with retina_cfg() in retina_head.rs.
CFG = dict(
    type="RetinaHead", num_classes=3, in_channels=8, stacked_convs=2, feat_channels=8,
    anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=2,
                          ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32]),
    bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
    loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type="L1Loss", loss_weight=1.0),
    train_cfg=ConfigDict(
        assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                      ignore_iof_thr=-1),
        sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=ConfigDict(nms_pre=50, min_bbox_size=0, score_thr=0.05,
                        nms=dict(type="nms", iou_threshold=0.5), max_per_img=20),
)
PAD = dense_head_images.PAD
IMAGES = [
    dict(img_shape=(60, 76), scale_factor=(1.25, 1.28),
         bboxes=[[4.0, 6.0, 30.0, 40.0], [35.0, 10.0, 70.0, 30.0], [10.0, 30.0, 50.0, 58.0]],
         labels=[0, 2, 1]),
    dict(img_shape=(64, 72), scale_factor=(1.5, 1.5), bboxes=[], labels=[]),
]


def samples():
    return dense_head_images.samples(IMAGES)


def main(out):
    register_all_modules()
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    d = {}
    head = MODELS.build(CFG)
    head.init_weights()
    for k, v in head.state_dict().items():
        d[f"init.{k}"] = v.clone()
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.1 * torch.randn_like(p))
        # Scores near 0.2 rather than the prior's 0.01: detections to compare.
        head.retina_cls.bias.add_(3.0)
    for k, v in head.state_dict().items():
        d[f"sd.{k}"] = v.clone()
    dense_head_images.record(d, IMAGES)
    x = [torch.randn(2, 8, PAD[0] // s, PAD[1] // s, requires_grad=True) for s in (8, 16, 32)]
    for i, t in enumerate(x):
        d[f"x.{i}"] = t.detach().clone()
    head.train()
    losses = head.loss(tuple(x), samples())
    total = 0
    for k, v in losses.items():
        v = sum(v)
        d[f"loss.{k}"] = v.detach().clone()
        total = total + v
    total.backward()
    for k, p in head.named_parameters():
        d[f"grad.{k}"] = p.grad.clone()
    for i, t in enumerate(x):
        d[f"grad.x.{i}"] = t.grad.clone()
    head.eval()
    with torch.no_grad():
        for rescale in (True, False):
            for i, r in enumerate(head.predict(tuple(x), samples(), rescale=rescale)):
                p = f"pred{int(rescale)}.{i}"
                d[f"{p}.bboxes"], d[f"{p}.scores"], d[f"{p}.labels"] = r.bboxes, r.scores, r.labels
    torch.save(d, os.path.join(out, "retina.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
