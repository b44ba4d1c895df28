"""Reference outputs for detc's GCNet context blocks
(src/models/backbones/gcnet_tests.rs): MMCV's own `ContextBlock`, alone and
as a plugin of MMDetection 3.3.0's `ResNet` / `ResNeXt`, built from the
configs below.

Usage: .venv-test/bin/python tests/models/gcnet_reference.py OUT_DIR

Writes OUT_DIR/gcnet.pth, a bare state dict of tensors; per case CASE, as
tests/reference/module_cases.py records it: CASE.init.*, CASE.sd.*,
CASE.in.0, CASE.out.{i}, CASE.dy.{i}, CASE.gin.0 and CASE.grad.*.

Cases: `att_add` (attention pooling, channel add: GCNet's block, with its
own initialisation), `avg_both` (average pooling, a sigmoid gate and a
sum), `r50_gcb` (ResNet-50 at base width 16 with a block after conv3 of
stages 2-4, trained from scratch: the backbone's Kaiming init reaches the
blocks' convs; frozen_stages 1) and `x50_gcb` (ResNeXt-50 2x4d at base
width 16 with two blocks, after conv2 in every stage and after conv1 in
stages 3-4, told apart by their postfixes; both gate, as a batch norm
follows them and would cancel a sum's bias, leaving its gradient float
noise).
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

from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402

RESNET = dict(depth=50, base_channels=16, stem_channels=16, num_stages=4, out_indices=(0, 1, 2, 3),
              frozen_stages=1, norm_eval=False, style="pytorch")
# Keep in sync with src/models/backbones/gcnet_tests.rs.
BLOCKS = {
    "att_add": dict(type="ContextBlock", in_channels=32, ratio=1. / 4),
    "avg_both": dict(type="ContextBlock", in_channels=32, ratio=1. / 8, pooling_type="avg",
                     fusion_types=("channel_add", "channel_mul")),
}
BACKBONES = {
    "r50_gcb": dict(RESNET, type="ResNet", plugins=[
        dict(cfg=dict(type="ContextBlock", ratio=1. / 4), stages=(False, True, True, True), position="after_conv3"),
    ]),
    "x50_gcb": dict(RESNET, type="ResNeXt", groups=2, base_width=4, plugins=[
        dict(cfg=dict(type="ContextBlock", ratio=1. / 4, fusion_types=("channel_mul", ), postfix=1),
             position="after_conv2"),
        dict(cfg=dict(type="ContextBlock", ratio=1. / 4, pooling_type="avg", fusion_types=("channel_mul", ), postfix="_b"),
             stages=(False, False, True, True), position="after_conv1"),
    ]),
}


def main(out):
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    torch.manual_seed(0)
    d = {}
    for name, cfg in BLOCKS.items():
        record_module_case(d, name, MODELS.build(dict(cfg)), [(2, 32, 9, 7)], lambda m, x: [m(x[0])])
    for name, cfg in BACKBONES.items():
        record_module_case(d, name, MODELS.build(dict(cfg)), [(2, 3, 64, 64)], lambda m, x: m(x[0]))
    os.makedirs(out, exist_ok=True)
    torch.save(d, os.path.join(out, "gcnet.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
