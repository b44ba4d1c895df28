"""Reference outputs for detc's FCOSHead (src/models/dense_heads/fcos_head.rs),
tested in src/models/dense_heads/fcos_tests.rs.

Usage: .venv-test/bin/python tests/models/fcos_reference.py OUT_DIR

Writes OUT_DIR/fcos.pth, a bare state dict of tensors, from MMDetection
3.3.0's own `FCOSHead` (CASES below, which the Rust test builds too);
mmcv's compiled `batched_nms` is re-stated over torchvision's nms
(tests/reference/mmdet_standins.py), and the focal loss runs MMDetection's
Python path, as it does on the CPU. Per case CASE:

* CASE.init.*        the state dict after `init_weights()`;
* CASE.sd.*          the weights compared with (the init perturbed);
* CASE.loss.*        `loss_cls`, `loss_bbox`, `loss_centerness`;
* CASE.grad.*        gradients of their sum w.r.t. every parameter and
                     `CASE.grad.x.{l}` the features;
* CASE.pred{r}.{i}.* `predict(rescale=r)`: `bboxes`, `scores`, `labels`.

Shared: `x.{l}` a 2-image batch of features per level (strides 8, 16, 32),
`img.{i}.*` the ground truths (image 1 has none) and `meta` [img_h, img_w,
pad_h, pad_w, scale_w, scale_h].

Cases: `plain` (GroupNorm convs, IoULoss, MMDetection's default target
assignment) and `center` (centre sampling, `norm_on_bbox`,
`centerness_on_reg`, convs with a bias, GIoULoss: the `*-center-normbbox-
centeronreg-giou` configs).
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

INF = 1e8
COMMON = dict(
    type="FCOSHead", num_classes=3, in_channels=8, stacked_convs=2, feat_channels=8, strides=[8, 16, 32],
    regress_ranges=((-1, 16), (16, 32), (32, INF)), norm_cfg=dict(type="GN", num_groups=4, requires_grad=True),
    loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
    test_cfg=ConfigDict(nms_pre=50, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                        max_per_img=20),
)
# Keep in sync with fcos_tests.rs.
CASES = {
    "plain": dict(COMMON, loss_bbox=dict(type="IoULoss", loss_weight=1.0)),
    # Wide first range: the centre regions, not the ranges, pick the positives.
    "center": dict(COMMON, loss_bbox=dict(type="GIoULoss", loss_weight=1.0), center_sampling=True,
                   center_sample_radius=1.5, norm_on_bbox=True, centerness_on_reg=True, conv_bias=True,
                   regress_ranges=((-1, 64), (64, 128), (128, INF))),
}


def main(out):
    dense_head_images.record_cases(out, "fcos.pth", CASES, "conv_cls")


if __name__ == "__main__":
    main(sys.argv[1])
