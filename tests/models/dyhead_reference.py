"""Reference outputs for detc's DyHead neck (src/models/necks/dyhead.rs),
tested in src/models/necks/dyhead_tests.rs, from MMDetection 3.3.0's own
`DyHead` built from the configs below.

Usage: .venv-test/bin/python tests/models/dyhead_reference.py OUT_DIR

Writes OUT_DIR/dyhead.pth, a bare state dict of tensors; per case CASE, as
tests/reference/module_cases.py records it: CASE.init.*, CASE.sd.*,
CASE.in.{0..2} (three levels of 16x20, 8x10 and 4x5), CASE.out.{i},
CASE.dy.{i}, CASE.gin.{i} and CASE.grad.*.

MMCV's compiled modulated deformable conv is re-stated over torchvision's
`deform_conv2d`. Where DyHead hands it offsets and masks of another size
than its output (the coarser level's conv takes the level's), MMCV's kernel
(mmcv/ops/csrc/pytorch/modulated_deform_conv.cpp: `offset[b]`, `mask[b]`
read with the output's height and width) uses each image's first
`18 * Ho * Wo` offset and `9 * Ho * Wo` mask values in memory order; the
stand-in passes torchvision exactly those.

Cases: `plain` (16 channels, two blocks; the offsets start at zero, so the
perturbation of the weights is what moves them) and `wide` (8 -> 32
channels, one block, `zero_init_offset=False`).
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
mmdet_standins.install_mmcv_deform_convs()

from torchvision.ops import deform_conv2d  # noqa: E402


def mmcv_modulated_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups):
    """MMCV's kernel: offsets and masks read with the output's size."""
    n, _, h, w = x.shape
    k = weight.shape[2] * weight.shape[3]
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    ho, wo = (h + 2 * ph - weight.shape[2]) // sh + 1, (w + 2 * pw - weight.shape[3]) // sw + 1
    offset = offset.reshape(n, -1)[:, :2 * k * ho * wo].reshape(n, 2 * k, ho, wo)
    mask = mask.reshape(n, -1)[:, :k * ho * wo].reshape(n, k, ho, wo)
    return deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask)


# MMCV's ModulatedDeformConv2d.forward calls its module's function.
sys.modules["mmcv.ops.modulated_deform_conv"].modulated_deform_conv2d = mmcv_modulated_deform_conv2d

from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402


# Keep in sync with src/models/necks/dyhead_tests.rs.
CASES = {
    "plain": (dict(type="DyHead", in_channels=16, out_channels=16, num_blocks=2), 16),
    "wide": (dict(type="DyHead", in_channels=8, out_channels=32, num_blocks=1, zero_init_offset=False), 8),
}


def main(out):
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    torch.manual_seed(0)
    d = {}
    for name, (cfg, c) in CASES.items():
        shapes = [(2, c, 16, 20), (2, c, 8, 10), (2, c, 4, 5)]
        record_module_case(d, name, MODELS.build(dict(cfg)), shapes, lambda m, x: list(m(x)))
    os.makedirs(out, exist_ok=True)
    torch.save(d, os.path.join(out, "dyhead.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
