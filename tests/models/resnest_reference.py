"""Reference outputs for detc's ResNeSt and Res2Net backbones
(src/models/backbones/resnest_tests.rs), from MMDetection 3.3.0's own
`ResNeSt` and `Res2Net` built from the configs below.

Usage: .venv-test/bin/python tests/models/resnest_reference.py OUT_DIR

Writes OUT_DIR/resnest.pth, a bare state dict of tensors; per case CASE, as
tests/models/norm_conv_reference.py: CASE.init.* (after init_weights),
CASE.sd.* (the init moved by a random perturbation), CASE.in.0,
CASE.out.{i} and CASE.dy.{i} (train mode), CASE.gin.0 and CASE.grad.*.

Cases: `s50` (ResNeSt-50 at base width 16: radix 2, the strided 3x3
average pool after the split-attention conv, frozen_stages 1), `s50_g2`
(2 cardinal groups of base width 4, radix 1, the stride in the conv) and
`r2_50` (Res2Net-50 at base width 16: 4 scales of 6 channels, frozen_stages
1), all with batch norms in training mode.
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

COMMON = dict(type="ResNeSt", depth=50, base_channels=16, stem_channels=16, num_stages=4, out_indices=(0, 1, 2, 3),
              frozen_stages=1, norm_eval=False, style="pytorch")
# Keep in sync with src/models/backbones/resnest_tests.rs.
CASES = {
    "s50": dict(COMMON, radix=2, reduction_factor=4, avg_down_stride=True),
    "s50_g2": dict(COMMON, groups=2, base_width=4, radix=1, reduction_factor=2, avg_down_stride=False),
    "r2_50": dict(COMMON, type="Res2Net", scales=4, base_width=6),
}


def case(name, cfg, d):
    record_module_case(d, name, MODELS.build(dict(cfg)), [(2, 3, 64, 64)], lambda m, x: m(x[0]))


def main(out):
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    torch.manual_seed(0)
    d = {}
    for name, cfg in CASES.items():
        case(name, cfg, d)
    os.makedirs(out, exist_ok=True)
    torch.save(d, os.path.join(out, "resnest.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
