"""Reference averages for detc's EMAHook model average (src/engine/ema.rs),
tested there, from MMDetection's `ExpMomentumEMA` and MMEngine's
`ExponentialMovingAverage` and `MomentumAnnealingEMA`.

Usage: .venv-test/bin/python tests/models/ema_reference.py OUT_DIR

Writes OUT_DIR/ema.pth, a bare state dict of tensors. The model is a
`Linear(3, 2)` (`fc`) and a `BatchNorm1d(2)` (`bn`, with its running
statistics and integer `num_batches_tracked`); before each of 6 updates
every entry of its state dict is set to new random values. Per case CASE
and update k: CASE.{k}.src.* (the model's state dict) and CASE.{k}.avg.*
(the average's after the update).

Cases (keep in sync with src/engine/ema.rs): `exp` (ExpMomentumEMA,
momentum 0.0002, gamma 3, buffers averaged), `plain` (ExponentialMovingAverage,
momentum 0.3, every 2nd update, buffers copied) and `annealing`
(MomentumAnnealingEMA, momentum 0.01, gamma 4, buffers averaged).
"""

import os
import sys

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

from mmdet.models.layers import ExpMomentumEMA  # noqa: E402
from mmengine.model import ExponentialMovingAverage, MomentumAnnealingEMA  # noqa: E402

CASES = {
    "exp": lambda m: ExpMomentumEMA(m, momentum=0.0002, gamma=3, update_buffers=True),
    "plain": lambda m: ExponentialMovingAverage(m, momentum=0.3, interval=2, update_buffers=False),
    "annealing": lambda m: MomentumAnnealingEMA(m, momentum=0.01, gamma=4, update_buffers=True),
}


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)


def main(out):
    torch.manual_seed(0)
    d = {}
    for name, make in CASES.items():
        model = Model()
        ema = make(model)
        for k in range(6):
            with torch.no_grad():
                for key, v in model.state_dict().items():
                    v.copy_(torch.randint(0, 100, v.shape) if not v.is_floating_point() else torch.randn(v.shape))
            ema.update_parameters(model)
            for key, v in model.state_dict().items():
                d[f"{name}.{k}.src.{key}"] = v.clone()
            for key, v in ema.module.state_dict().items():
                d[f"{name}.{k}.avg.{key}"] = v.clone()
    os.makedirs(out, exist_ok=True)
    torch.save(d, os.path.join(out, "ema.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
