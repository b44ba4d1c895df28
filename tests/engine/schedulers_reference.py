"""Reference learning rates from MMEngine's parameter schedulers.

Usage: .venv-test/bin/python tests/engine/schedulers_reference.py OUT_DIR

Writes OUT_DIR/schedulers.json: for each scenario its inputs (param-group
lrs, optimizer defaults, epoch length, max epochs, the `param_scheduler`
list) and the lr of every param group -- MMEngine's `OptimWrapper` param
groups, so with several groups the `base_param_settings` pseudo group last --
at every training iteration, as float64 bit patterns (exact comparison), and
the lines `verbose` schedulers log.

The loop mirrors MMEngine's runner: schedulers are built as
`Runner._build_param_scheduler` does (an omitted `end` becomes max_epochs or
max_iters, `epoch_length` passed for `convert_to_iter_based`), the lr is
read when the iteration runs, then `ParamSchedulerHook.after_train_iter`
steps the iteration-based schedulers and `after_train_epoch` the epoch-based
ones. Read by `src/engine/schedulers/tests.rs`.
"""

import copy
import json
import logging
import struct
import sys
import warnings
from pathlib import Path

import torch
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmengine.registry import PARAM_SCHEDULERS

SCENARIOS = [
    # QueryInst's schedule in small: iteration warm-up + multi-step by epoch,
    # AdamW with a backbone group at 0.1x (paramwise).
    dict(
        name="warmup_multistep",
        optimizer=dict(type="AdamW", lr=1e-4, weight_decay=1e-4),
        group_lrs=[1e-5, 1e-4],
        epoch_length=5,
        max_epochs=12,
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=20),
            dict(type="MultiStepLR", begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
        ],
    ),
    # The same with `end` omitted (the runner fills it) and a single group
    # (no base_param_settings).
    dict(
        name="warmup_multistep_default_end",
        optimizer=dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4),
        group_lrs=[0.02],
        epoch_length=5,
        max_epochs=12,
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=20),
            dict(type="MultiStepLR", by_epoch=True, milestones=[8, 11], gamma=0.1),
        ],
    ),
    # Warm-up then cosine by epoch converted to iterations (DETR/RTMDet style).
    dict(
        name="cosine_converted",
        optimizer=dict(type="AdamW", lr=4e-3, weight_decay=0.05),
        group_lrs=[4e-3, 4e-4],
        epoch_length=7,
        max_epochs=6,
        param_scheduler=[
            dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=10),
            dict(type="CosineAnnealingLR", eta_min=2e-4, begin=1, by_epoch=True, convert_to_iter_based=True),
        ],
    ),
    # Cosine by epoch with a short T_max (its restart branch) and eta_min_ratio.
    dict(
        name="cosine_epoch_restart",
        optimizer=dict(type="SGD", lr=0.1),
        group_lrs=[0.1, 0.05],
        epoch_length=3,
        max_epochs=14,
        param_scheduler=[
            dict(type="CosineAnnealingLR", T_max=4, eta_min_ratio=0.05, begin=2, by_epoch=True),
        ],
    ),
    # ConstantLR by epoch, then by iteration with an explicit end.
    dict(
        name="constant",
        optimizer=dict(type="SGD", lr=0.01),
        group_lrs=[0.01, 0.003],
        epoch_length=4,
        max_epochs=5,
        param_scheduler=[
            dict(type="ConstantLR", factor=0.5, by_epoch=True),
            dict(type="ConstantLR", factor=0.25, by_epoch=False, begin=2, end=9),
        ],
    ),
    # StepLR converted to iterations chained with ExponentialLR.
    dict(
        name="step_exponential",
        optimizer=dict(type="SGD", lr=0.05),
        group_lrs=[0.05],
        epoch_length=3,
        max_epochs=6,
        param_scheduler=[
            dict(type="StepLR", step_size=2, gamma=0.5, by_epoch=True, convert_to_iter_based=True),
            dict(type="ExponentialLR", gamma=0.9, by_epoch=False, begin=4, end=12),
        ],
    ),
    # StepLR by iteration with the default gamma and end, chained with
    # ExponentialLR by epoch (default end), two groups.
    dict(
        name="step_by_iter_exponential_by_epoch",
        optimizer=dict(type="SGD", lr=0.1, momentum=0.9),
        group_lrs=[0.1, 0.02],
        epoch_length=4,
        max_epochs=5,
        param_scheduler=[
            dict(type="StepLR", step_size=3, by_epoch=False, begin=2),
            dict(type="ExponentialLR", gamma=0.8, begin=1),
        ],
    ),
    # `verbose`: the lines MMEngine logs for each value it sets, two groups
    # (and the base settings), at build time and at every step in range.
    dict(
        name="verbose",
        optimizer=dict(type="SGD", lr=0.02, momentum=0.9),
        group_lrs=[0.02, 0.01],
        epoch_length=3,
        max_epochs=2,
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.5, by_epoch=False, begin=0, end=4, verbose=True),
            dict(type="MultiStepLR", milestones=[1], by_epoch=True, verbose=True),
        ],
    ),
]


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def build_optimizer(sc):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in sc["group_lrs"]]
    cfg = dict(sc["optimizer"])
    cls = getattr(torch.optim, cfg.pop("type"))
    groups = [dict(params=[p], lr=lr) for p, lr in zip(params, sc["group_lrs"])]
    return OptimWrapper(cls(groups, **cfg))


def build_schedulers(sc, wrapper):
    max_epochs = sc["max_epochs"]
    max_iters = max_epochs * sc["epoch_length"]
    out = []
    for cfg in sc["param_scheduler"]:
        cfg = copy.deepcopy(cfg)
        cfg.setdefault("end", max_epochs if cfg.get("by_epoch", True) else max_iters)
        out.append(PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=wrapper, epoch_length=sc["epoch_length"])))
    return out


class Lines(logging.Handler):
    """Collects what `verbose` schedulers log through MMEngine's current
    logger (`print_value`; the registry's debug lines are left out)."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        if record.getMessage().startswith("Adjusting parameter value"):
            self.lines.append(record.getMessage())


def run(sc, lines):
    logger = MMLogger.get_current_instance()
    logger.addHandler(lines)
    wrapper = build_optimizer(sc)
    schedulers = build_schedulers(sc, wrapper)
    lrs = []
    for _ in range(sc["max_epochs"]):
        for _ in range(sc["epoch_length"]):
            lrs.append([bits(g["lr"]) for g in wrapper.param_groups])
            wrapper.optimizer.step()
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
        for s in schedulers:
            if s.by_epoch:
                s.step()
    logger.removeHandler(lines)
    return lrs


def main():
    # The loop steps an optimizer without gradients; MMEngine's order warning is noise here.
    warnings.filterwarnings("ignore", category=UserWarning)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    result = []
    for sc in SCENARIOS:
        entry = dict(sc)
        entry["optimizer_lr_bits"] = bits(sc["optimizer"]["lr"])
        entry["group_lr_bits"] = [bits(x) for x in sc["group_lrs"]]
        lines = Lines()
        entry["lrs"] = run(sc, lines)
        entry["log"] = lines.lines
        result.append(entry)
    (out / "schedulers.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
