"""Reference outputs for detc's PAFPN neck (src/models/necks/fpn.rs), tested
in src/models/necks/pafpn_tests.rs, from MMDetection 3.3.0's own `PAFPN`
built from the configs below.

Usage: .venv-test/bin/python tests/models/pafpn_reference.py OUT_DIR

Writes OUT_DIR/pafpn.pth, a bare state dict of tensors; per case CASE, as
tests/reference/module_cases.py records it: CASE.init.*, CASE.sd.*,
CASE.in.{0..3} (four levels of 8 to 64 channels), CASE.out.{i},
CASE.dy.{i}, CASE.gin.{i} and CASE.grad.*.

Cases: `plain` (the pafpn/ config's neck, scaled down: five outputs, the
fifth by max pooling) and `extra` (from the second level, stride-2 extra
convs on the outputs with a ReLU before the second, GroupNorm convs).
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

# Keep in sync with src/models/necks/pafpn_tests.rs.
CASES = {
    "plain": dict(type="PAFPN", in_channels=[8, 16, 32, 64], out_channels=8, num_outs=5),
    "extra": dict(type="PAFPN", in_channels=[8, 16, 32, 64], out_channels=8, num_outs=5, start_level=1,
                  add_extra_convs="on_output", relu_before_extra_convs=True,
                  norm_cfg=dict(type="GN", num_groups=2, requires_grad=True)),
}
SHAPES = [(2, 8, 32, 40), (2, 16, 16, 20), (2, 32, 8, 10), (2, 64, 4, 5)]


def main(out):
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    torch.manual_seed(0)
    d = {}
    for name, cfg in CASES.items():
        record_module_case(d, name, MODELS.build(dict(cfg)), SHAPES, lambda m, x: list(m(x)))
    os.makedirs(out, exist_ok=True)
    torch.save(d, os.path.join(out, "pafpn.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
