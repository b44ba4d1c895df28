"""Reference loss scaling and mixed-precision steps from torch.amp.GradScaler
and MMEngine's AmpOptimWrapper, on the CPU.

Usage: .venv-test/bin/python tests/engine/amp_reference.py OUT_DIR

Writes into OUT_DIR:
- amp.pth: a flat dict of tensors --
  `scaler.p_init`, `scaler.g{k}` (the gradient of step k, some inf/NaN or
  overflowing once scaled) and `scaler.{case}.p{k}` (the parameter after
  step k) for the GradScaler cases; `train.x{k}`, `train.y{k}` (the batch of
  iteration k), `train.init.{name}` (the tiny model's start weights) and
  `train.{case}.{name}.{k}` (the weights after iteration k) for the
  AmpOptimWrapper training cases.
- amp.json: per GradScaler case its kwargs, static scale and, per step,
  the scale after `update()`, whether the step was skipped, and
  `state_dict()`; per training case the wrapper config and per iteration
  the forward's output dtype, the loss, the grad norm (a string when not
  finite) and the wrapper's `loss_scaler` state.
Read by `src/engine/optim/amp_tests.rs`.

MMEngine's AmpOptimWrapper refuses to run without CUDA; here it is given
torch.amp.GradScaler('cpu') and `torch.autocast('cpu')` (bfloat16, what
MMEngine's `autocast` picks on the CPU), which is what detc does on the CPU.
"""

import functools
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_wrapper
from mmengine.logging import MessageHub
from mmengine.optim import AmpOptimWrapper

OUT = Path(sys.argv[1])
OUT.mkdir(parents=True, exist_ok=True)
out: dict[str, torch.Tensor] = {}
meta: dict = {}

# --------------------------------------------------------------------------
# GradScaler: scale, skipped steps and growth on crafted gradients.

INF, NAN = float("inf"), float("nan")
GRADS = [
    [0.5, -1.0, 2.0],
    [1.0, INF, 0.0],       # inf: skip, back off
    [0.25, 0.5, -0.75],
    [NAN, 1.0, 1.0],       # NaN: skip
    [1e37, 1.0, 1.0],      # finite, but inf once scaled: skip
    [0.1, 0.2, 0.3],
    [0.3, -0.2, 0.1],
    [1.0, 1.0, 1.0],
    [-0.5, 0.5, -0.5],
    [2.0, 0.0, -2.0],
]
SCALER_CASES = [
    dict(name="dynamic", kwargs={}, static=None),
    dict(name="custom", kwargs=dict(init_scale=1024.0, growth_factor=4.0, backoff_factor=0.25, growth_interval=2), static=None),
    dict(name="static", kwargs=dict(init_scale=512.0), static=512.0),
]

p_init = torch.tensor([1.0, -2.0, 0.5])
out["scaler.p_init"] = p_init.clone()
for k, g in enumerate(GRADS):
    out[f"scaler.g{k}"] = torch.tensor(g)
meta["scaler"] = {"steps": len(GRADS), "cases": []}
for case in SCALER_CASES:
    p = p_init.clone().requires_grad_(True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", **case["kwargs"])
    steps = []
    for k in range(len(GRADS)):
        loss = (p * out[f"scaler.g{k}"]).sum()
        before = p.detach().clone()
        scaler.scale(loss).backward()
        scaler.step(opt)
        # MMEngine: `loss_scaler.update(self._scale_update_param)`.
        scaler.update(case["static"])
        opt.zero_grad()
        out[f"scaler.{case['name']}.p{k}"] = p.detach().clone()
        steps.append(dict(
            skipped=bool(torch.equal(before, p.detach())),
            scale=scaler.get_scale(),
            state=scaler.state_dict(),
        ))
    meta["scaler"]["cases"].append(dict(case, steps=steps))

# --------------------------------------------------------------------------
# AmpOptimWrapper on a tiny conv + linear model, bfloat16 autocast on the CPU.

amp_wrapper.is_cuda_available = lambda: True  # its CUDA-only assertion
amp_wrapper.GradScaler = functools.partial(torch.amp.GradScaler, "cpu")


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).flatten(1))


ITERS = 4
torch.manual_seed(0)
init = Tiny().state_dict()
for name, t in init.items():
    out[f"train.init.{name}"] = t.clone()
for k in range(ITERS):
    out[f"train.x{k}"] = torch.randn(2, 3, 6, 6)
    out[f"train.y{k}"] = torch.randn(2, 2) * 3.0

TRAIN_CASES = [
    dict(name="dynamic", cfg=dict(loss_scale="dynamic"), clip_grad=None),
    dict(name="clip", cfg=dict(loss_scale="dynamic", dtype="bfloat16"), clip_grad=dict(max_norm=0.5)),
    # 2**127 overflows the scaled loss: the first step is skipped.
    dict(name="overflow", cfg=dict(loss_scale=dict(init_scale=2.0**127, backoff_factor=2.0**-20, growth_interval=2)), clip_grad=dict(max_norm=10.0)),
]
meta["train"] = {"iters": ITERS, "names": list(init), "cases": []}
hub = MessageHub.get_current_instance()
for case in TRAIN_CASES:
    model = Tiny()
    model.load_state_dict(init)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    wrapper = AmpOptimWrapper(optimizer=opt, clip_grad=case["clip_grad"], **case["cfg"])
    iters = []
    for k in range(ITERS):
        with wrapper.optim_context(model):
            pred = model(out[f"train.x{k}"])
            loss = F.mse_loss(pred, out[f"train.y{k}"])
        hub.update_scalar("train/grad_norm", float("nan"))
        wrapper.update_params(loss)
        for name, t in model.state_dict().items():
            out[f"train.{case['name']}.{name}.{k}"] = t.detach().clone()
        norm = hub.get_scalar("train/grad_norm").current()
        iters.append(dict(
            pred_dtype=str(pred.dtype),
            loss=loss.item(),
            # None without clipping; JSON has no inf, so a non-finite norm is a string.
            grad_norm=None if case["clip_grad"] is None else (norm if abs(norm) < INF else str(norm)),
            loss_scaler=wrapper.state_dict()["loss_scaler"],
        ))
    wrapper_cfg = dict(type="AmpOptimWrapper", optimizer=dict(type="SGD", lr=0.05, momentum=0.9), **case["cfg"])
    if case["clip_grad"] is not None:
        wrapper_cfg["clip_grad"] = case["clip_grad"]
    meta["train"]["cases"].append(dict(name=case["name"], wrapper=wrapper_cfg, iters=iters))

torch.save(out, OUT / "amp.pth")
(OUT / "amp.json").write_text(json.dumps(meta))
