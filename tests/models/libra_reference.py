"""Reference outputs for detc's Libra R-CNN parts (src/models/necks/bfp.rs,
src/models/layers/non_local.rs, src/models/losses/balanced_l1_loss.rs),
tested in src/models/necks/bfp_tests.rs, from MMDetection 3.3.0's own `BFP`
(with MMCV's `NonLocal2d`) and `BalancedL1Loss`.

Usage: .venv-test/bin/python tests/models/libra_reference.py OUT_DIR

Writes OUT_DIR/libra.pth, a bare state dict of tensors; per module case
CASE, as tests/reference/module_cases.py records it: CASE.init.*, CASE.sd.*,
CASE.in.{i} (the levels), CASE.out.{i}, CASE.dy.{i}, CASE.gin.{i} and
CASE.grad.*. Cases: `nl` (five 8-channel levels balanced at the third,
refined by a NonLocal2d: the libra configs' BFP, scaled down) and `conv`
(four levels balanced at the second, refined by a 3x3 ConvModule with
GroupNorm). Also `bl1.*`: `BalancedL1Loss(alpha=0.5, gamma=1.5, beta=0.11,
loss_weight=2)` on errors both sides of beta, with a weight and an
avg_factor: `pred`, `target`, `weight`, `loss`, `grad`.
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

# Keep in sync with src/models/necks/bfp_tests.rs.
CASES = {
    "nl": (dict(type="BFP", in_channels=8, num_levels=5, refine_level=2, refine_type="non_local"),
           [(2, 8, 32, 40), (2, 8, 16, 20), (2, 8, 8, 10), (2, 8, 4, 5), (2, 8, 2, 3)]),
    "conv": (dict(type="BFP", in_channels=8, num_levels=4, refine_level=1, refine_type="conv",
                  norm_cfg=dict(type="GN", num_groups=2, requires_grad=True)),
             [(2, 8, 24, 30), (2, 8, 12, 15), (2, 8, 6, 8), (2, 8, 3, 4)]),
}


def balanced_l1_case(d):
    pred = torch.randn(6, 4).mul(0.2).requires_grad_()
    target = torch.randn(6, 4).mul(0.2)
    weight = torch.rand(6, 4)
    loss = MODELS.build(dict(type="BalancedL1Loss", alpha=0.5, gamma=1.5, beta=0.11, loss_weight=2.0))(
        pred, target, weight=weight, avg_factor=3.0)
    loss.backward()
    d["bl1.pred"], d["bl1.target"], d["bl1.weight"] = pred.detach().clone(), target, weight
    d["bl1.loss"], d["bl1.grad"] = loss.detach().clone(), pred.grad.clone()


def main(out):
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    torch.manual_seed(0)
    d = {}
    for name, (cfg, shapes) in CASES.items():
        record_module_case(d, name, MODELS.build(dict(cfg)), shapes, lambda m, x: list(m(tuple(x))))
    balanced_l1_case(d)
    os.makedirs(out, exist_ok=True)
    torch.save(d, os.path.join(out, "libra.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
