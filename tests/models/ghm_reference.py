"""Reference outputs for detc's GHM losses (src/models/losses/ghm_loss.rs),
tested in src/models/losses/ghm_tests.rs, from MMDetection 3.3.0's own
`GHMC` and `GHMR`.

Usage: .venv-test/bin/python tests/models/ghm_reference.py OUT_DIR

Writes OUT_DIR/ghm.pth, a bare state dict of tensors. Per loss CASE
(`c`: the ghm configs' GHMC, bins=30, momentum=0.75; `c0`: GHMC, bins=10,
no momentum; `r`: the ghm configs' GHMR, mu=0.02, bins=10, momentum=0.7;
`r0`: GHMR without momentum), three calls in a row as a head's three FPN
levels make them, call i with CASE.{i}.pred, CASE.{i}.target (GHMC: labels
in [0, 5], 5 the background; GHMR: (M, 4) deltas), CASE.{i}.weight (some
zeros: ignored samples) and its outputs CASE.{i}.loss, CASE.{i}.grad and,
with momentum, CASE.{i}.acc_sum after the call; CASE.edges is the buffer.
`cn.*`: GHMC without momentum, reduction "none": pred, target, weight,
loss.
"""

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

# Keep in sync with src/models/losses/ghm_tests.rs.
CASES = {
    "c": dict(type="GHMC", bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0),
    "c0": dict(type="GHMC", bins=10, momentum=0, use_sigmoid=True, loss_weight=2.0),
    "r": dict(type="GHMR", mu=0.02, bins=10, momentum=0.7, loss_weight=10.0),
    "r0": dict(type="GHMR", mu=0.02, bins=10, momentum=0, loss_weight=1.0),
}


def inputs(kind, m):
    if kind == "GHMC":
        pred = torch.randn(m, 5) * 2
        target = torch.randint(0, 6, (m,))
        weight = (torch.rand(m) > 0.2).float()
    else:
        pred = torch.randn(m, 4) * 0.1
        target = torch.randn(m, 4) * 0.1
        weight = (torch.rand(m, 1) > 0.3).float().expand(m, 4).contiguous()
    return pred, target, weight


def main(out):
    register_all_modules()
    torch.manual_seed(0)
    d = {}
    for case, cfg in CASES.items():
        loss = MODELS.build(dict(cfg))
        d[f"{case}.edges"] = loss.edges.clone()
        for i, m in enumerate([40, 25, 12]):
            pred, target, weight = inputs(cfg["type"], m)
            pred.requires_grad_()
            value = loss(pred, target, weight, avg_factor=7.0)
            value.backward()
            d[f"{case}.{i}.pred"], d[f"{case}.{i}.target"] = pred.detach().clone(), target
            d[f"{case}.{i}.weight"] = weight
            d[f"{case}.{i}.loss"], d[f"{case}.{i}.grad"] = value.detach().clone(), pred.grad.clone()
            if cfg["momentum"] > 0:
                d[f"{case}.{i}.acc_sum"] = loss.acc_sum.clone()
    loss = MODELS.build(dict(type="GHMC", bins=10, reduction="none"))
    pred, target, weight = inputs("GHMC", 30)
    d["cn.pred"], d["cn.target"], d["cn.weight"] = pred, target, weight
    d["cn.loss"] = loss(pred, target, weight)
    os.makedirs(out, exist_ok=True)
    torch.save(d, os.path.join(out, "ghm.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
