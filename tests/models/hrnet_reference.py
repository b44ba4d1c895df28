"""Reference outputs for detc's HRNet backbone and HRFPN neck
(src/models/hrnet_reference_tests.rs), from MMDetection 3.3.0's own
modules built from the configs below.

Usage: .venv-test/bin/python tests/models/hrnet_reference.py OUT_DIR

Writes OUT_DIR/hrnet.pth, a bare state dict of tensors; per case CASE, as
tests/models/norm_conv_reference.py: CASE.init.* (after init_weights),
CASE.sd.* (the init moved by a random perturbation), CASE.in.{i},
CASE.out.{i} and CASE.dy.{i} (train mode), CASE.gin.{i} and CASE.grad.*.

Cases: `hrnet` (a narrow HRNet, Bottleneck stage 1 and Basic stages 2-4,
two modules in stages 3 and 4, batch norms in training mode), `hrnet_one`
(the same with `multiscale_output=False` and `norm_eval=True`), `hrfpn`
(MMDetection's default init, average pooling) and `hrfpn_max` (max pooling,
stride-2 output convs, `init_cfg=None`).
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

EXTRA = dict(
    stage1=dict(num_modules=1, num_branches=1, block="BOTTLENECK", num_blocks=(2,), num_channels=(8,)),
    stage2=dict(num_modules=1, num_branches=2, block="BASIC", num_blocks=(1, 1), num_channels=(4, 8)),
    stage3=dict(num_modules=2, num_branches=3, block="BASIC", num_blocks=(1, 1, 1), num_channels=(4, 8, 16)),
    stage4=dict(num_modules=2, num_branches=4, block="BASIC", num_blocks=(1, 2, 1, 1), num_channels=(4, 8, 16, 32)),
)
BRANCHES = [(2, 4, 16, 16), (2, 8, 8, 8), (2, 16, 4, 4), (2, 32, 2, 2)]

# Keep in sync with src/models/hrnet_reference_tests.rs.
CASES = {
    "hrnet": (dict(type="HRNet", extra=EXTRA, norm_eval=False), [(2, 3, 64, 64)]),
    "hrnet_one": (dict(type="HRNet", extra=EXTRA, norm_eval=True, multiscale_output=False), [(2, 3, 64, 64)]),
    "hrfpn": (dict(type="HRFPN", in_channels=[4, 8, 16, 32], out_channels=8), BRANCHES),
    "hrfpn_max": (dict(type="HRFPN", in_channels=[4, 8, 16, 32], out_channels=8, num_outs=4, pooling_type="MAX",
                       stride=2, init_cfg=None), BRANCHES),
}


def case(name, cfg, shapes, d):
    def forward(module, inputs):
        return module(inputs[0]) if cfg["type"] == "HRNet" else module(tuple(inputs))

    record_module_case(d, name, MODELS.build(cfg), shapes, forward)


def main(out):
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    torch.manual_seed(0)
    d = {}
    for name, (cfg, shapes) in CASES.items():
        case(name, cfg, shapes, d)
    os.makedirs(out, exist_ok=True)
    torch.save(d, os.path.join(out, "hrnet.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
