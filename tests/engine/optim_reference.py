"""Reference optimizer steps, gradient clipping, accumulation and paramwise
groups from torch.optim / torch.nn.utils / MMEngine.

Usage: .venv-test/bin/python tests/engine/optim_reference.py OUT_DIR

Writes into OUT_DIR:
- optim.pth: a flat dict of tensors --
  `{f32,f64}.init.{p0,p1}` the start values, `{f32,f64}.grad{k}.{p0,p1}` the
  gradient of step k (k < 5), `{case}.{dtype}.step{k}.{p0,p1}` the parameters
  after step k, for each optimizer case below (two param groups: p0 with the
  optimizer's defaults, p1 with its own lr and weight decay);
  `clip.{i}.g{0,1}` the gradients and `clip.{i}.norm` / `clip.{i}.out{0,1}`
  what `clip_grad_norm_` returns and leaves; `accum.{case}.x{i}`, `.y{i}`,
  `.w_init`, `.w{i}` (w after iteration i) and `.grad_norm{i}` for the
  gradient-accumulation runs through MMEngine's `OptimWrapper`.
- torch_state_{case}.pth: torch's `optimizer.state_dict()` after 3 steps (f32),
  to check that detc reads torch's layout and continues identically.
- optim.json: the cases' configs, the clip settings, the accumulation
  settings, and MMEngine `DefaultOptimWrapperConstructor` groups for a small
  named module set (name, shape, lr and weight decay as float64 bits).
Read by `src/engine/optim/tests.rs`.
"""

import json
import struct
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

import mmengine.optim.optimizer.default_constructor as default_constructor
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.logging import MessageHub

STEPS = 5
CASES = [
    dict(name="sgd", cfg=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4), group1=dict(lr=0.005, weight_decay=0.0)),
    dict(name="sgd_nesterov", cfg=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4, nesterov=True), group1=dict(lr=0.02, weight_decay=1e-3)),
    dict(name="sgd_dampening", cfg=dict(type="SGD", lr=0.03, momentum=0.8, dampening=0.25, weight_decay=0.0), group1=dict(lr=0.01, weight_decay=1e-2)),
    dict(name="sgd_plain", cfg=dict(type="SGD", lr=0.1), group1=dict(lr=0.05, weight_decay=1e-3)),
    dict(name="adam", cfg=dict(type="Adam", lr=1e-3, weight_decay=1e-2), group1=dict(lr=5e-3, weight_decay=0.0)),
    dict(name="adam_amsgrad", cfg=dict(type="Adam", lr=1e-3, betas=[0.8, 0.99], amsgrad=True), group1=dict(lr=2e-3, weight_decay=1e-3)),
    dict(name="adamw", cfg=dict(type="AdamW", lr=1e-3, weight_decay=0.05), group1=dict(lr=1e-4, weight_decay=0.0)),
    dict(name="adamw_amsgrad", cfg=dict(type="AdamW", lr=2e-3, eps=1e-6, weight_decay=0.1, amsgrad=True), group1=dict(lr=1e-3, weight_decay=0.01)),
]
DTYPES = {"f32": torch.float32, "f64": torch.float64}
# Grad scales per step: shrinking then growing gradients make amsgrad's max matter.
GRAD_SCALE = [1.0, 0.3, 2.0, 0.05, 1.0]

CLIPS = [dict(max_norm=1.0, norm_type=2.0), dict(max_norm=0.5, norm_type="inf"), dict(max_norm=100.0, norm_type=2.0), dict(max_norm=2.0, norm_type=1.0)]

ACCUM = [
    dict(name="plain", accumulative_counts=3, max_iters=7, clip_grad=None),
    dict(name="clip", accumulative_counts=3, max_iters=7, clip_grad=dict(max_norm=0.5, norm_type=2)),
    dict(name="one", accumulative_counts=1, max_iters=4, clip_grad=dict(max_norm=0.2)),
]


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def make_optimizer(cfg, group1, p0, p1):
    cfg = dict(cfg)
    cls = getattr(torch.optim, cfg.pop("type"))
    if "betas" in cfg:
        cfg["betas"] = tuple(cfg["betas"])
    return cls([dict(params=[p0]), dict(params=[p1], **group1)], foreach=False, **cfg)


def optimizer_steps(out):
    gen = torch.Generator().manual_seed(0)
    base = {"p0": torch.randn(3, 4, generator=gen, dtype=torch.float64), "p1": torch.randn(5, generator=gen, dtype=torch.float64)}
    grads = [{k: torch.randn(v.shape, generator=gen, dtype=torch.float64) * GRAD_SCALE[s] for k, v in base.items()} for s in range(STEPS)]
    for dn, dt in DTYPES.items():
        for k, v in base.items():
            out[f"{dn}.init.{k}"] = v.to(dt)
        for s, g in enumerate(grads):
            for k, v in g.items():
                out[f"{dn}.grad{s}.{k}"] = v.to(dt)
        for case in CASES:
            p0 = nn.Parameter(base["p0"].to(dt).clone())
            p1 = nn.Parameter(base["p1"].to(dt).clone())
            opt = make_optimizer(case["cfg"], case["group1"], p0, p1)
            for s in range(STEPS):
                p0.grad = grads[s]["p0"].to(dt).clone()
                p1.grad = grads[s]["p1"].to(dt).clone()
                opt.step()
                out[f"{case['name']}.{dn}.step{s}.p0"] = p0.detach().clone()
                out[f"{case['name']}.{dn}.step{s}.p1"] = p1.detach().clone()
                if dn == "f32" and s == 2:
                    torch.save(opt.state_dict(), OUT / f"torch_state_{case['name']}.pth")


def clipping(out):
    gen = torch.Generator().manual_seed(1)
    for i, c in enumerate(CLIPS):
        g0 = torch.randn(3, 4, generator=gen) * 2
        g1 = torch.randn(5, generator=gen)
        params = [nn.Parameter(torch.zeros(3, 4)), nn.Parameter(torch.zeros(5))]
        params[0].grad, params[1].grad = g0.clone(), g1.clone()
        norm_type = float("inf") if c["norm_type"] == "inf" else c["norm_type"]
        norm = torch.nn.utils.clip_grad_norm_(params, c["max_norm"], norm_type=norm_type, foreach=False)
        out[f"clip.{i}.g0"], out[f"clip.{i}.g1"] = g0, g1
        out[f"clip.{i}.norm"] = norm.reshape(1)
        out[f"clip.{i}.out0"], out[f"clip.{i}.out1"] = params[0].grad.clone(), params[1].grad.clone()


class Tiny(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)


def accumulation(out):
    gen = torch.Generator().manual_seed(2)
    for a in ACCUM:
        key = f"accum.{a['name']}"
        w0 = torch.randn(4, generator=gen, dtype=torch.float64)
        model = Tiny(w0.clone())
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=False)
        kwargs = dict(accumulative_counts=a["accumulative_counts"])
        if a["clip_grad"] is not None:
            kwargs["clip_grad"] = dict(a["clip_grad"])
        wrapper = OptimWrapper(opt, **kwargs)
        wrapper.initialize_count_status(model, 0, a["max_iters"])
        hub = MessageHub.get_current_instance()
        out[f"{key}.w_init"] = w0
        for i in range(a["max_iters"]):
            x = torch.randn(4, generator=gen, dtype=torch.float64)
            y = torch.randn(1, generator=gen, dtype=torch.float64)
            loss = ((model.w * x).sum() - y[0]) ** 2
            hub.update_scalar("train/grad_norm", -1.0)
            wrapper.update_params(loss)
            out[f"{key}.x{i}"], out[f"{key}.y{i}"] = x, y
            out[f"{key}.w{i}"] = model.w.detach().clone()
            out[f"{key}.grad_norm{i}"] = torch.tensor([hub.get_scalar("train/grad_norm").current()], dtype=torch.float64)


class DeformConv2d(nn.Module):
    """Where `mmcv.ops.DeformConv2d` sits for MMEngine's `dcn_offset_lr_mult`
    rule: a `weight`, and the `conv_offset` child of MMCV's `DCN` pack."""

    def __init__(self, c, bias=False):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(c, c, 3, 3))
        self.bias = nn.Parameter(torch.zeros(c)) if bias else None
        self.conv_offset = nn.Conv2d(c, 18 if not bias else 27, 3, padding=1)


class ModulatedDeformConv2d(DeformConv2d):
    """`mmcv.ops.ModulatedDeformConv2d` (the `DCNv2` pack, with a bias)."""

    def __init__(self, c):
        super().__init__(c, bias=True)


def install_mmcv_deform_convs():
    """MMEngine looks the deformable conv types up in `mmcv.ops` only when
    mmcv-full is installed, which the test environment's mmcv-lite is not."""
    ops = type(sys)("mmcv.ops")
    ops.DeformConv2d, ops.ModulatedDeformConv2d = DeformConv2d, ModulatedDeformConv2d
    sys.modules["mmcv.ops"] = ops
    default_constructor.mmcv_full_available = lambda: True


class Block(nn.Module):
    """Names as in QueryInst: a backbone with BN, a DII-like stage with
    LayerNorms inside ModuleLists and nested modules, an embedding, and a
    parameter directly on the root."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv1 = nn.Conv2d(3, 4, 3, bias=False)
        self.backbone.bn1 = nn.BatchNorm2d(4)
        self.backbone.layer1 = nn.ModuleList([nn.Module()])
        self.backbone.layer1[0].conv1 = nn.Conv2d(4, 4, 1, bias=False)
        self.backbone.layer1[0].bn1 = nn.BatchNorm2d(4)
        self.backbone.layer1[0].downsample = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4))
        self.backbone.layer1[0].conv2 = DeformConv2d(4)
        self.backbone.layer1[0].conv3 = ModulatedDeformConv2d(4)
        self.neck = nn.Module()
        self.neck.lateral_convs = nn.ModuleList([nn.Module()])
        self.neck.lateral_convs[0].conv = nn.Conv2d(4, 4, 1)
        stage = nn.Module()
        stage.attention_norm = nn.LayerNorm(4)
        stage.cls_fcs = nn.ModuleList([nn.Linear(4, 4, bias=False), nn.LayerNorm(4), nn.ReLU()])
        stage.reg_fcs = nn.ModuleList([nn.Linear(4, 4, bias=False), nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 4, bias=False), nn.LayerNorm(4), nn.ReLU()])
        stage.instance_interactive_conv = nn.Module()
        stage.instance_interactive_conv.dynamic_layer = nn.Linear(4, 8)
        stage.instance_interactive_conv.norm_in = nn.LayerNorm(2)
        stage.fc_cls = nn.Linear(4, 3)
        mask = nn.Module()
        mask.convs = nn.ModuleList([nn.Module()])
        mask.convs[0].conv = nn.Conv2d(4, 4, 3, bias=False)
        mask.convs[0].bn = nn.BatchNorm2d(4)
        self.roi_head = nn.Module()
        self.roi_head.bbox_head = nn.ModuleList([stage])
        self.roi_head.mask_head = nn.ModuleList([mask])
        self.rpn_head = nn.Module()
        self.rpn_head.init_proposal_features = nn.Embedding(5, 4)
        self.query = nn.Parameter(torch.zeros(4))


PARAMWISE = [
    dict(name="none", optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.05), paramwise_cfg=None),
    dict(name="queryinst", optimizer=dict(type="AdamW", lr=1e-4, weight_decay=1e-4), paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1, decay_mult=1.0)})),
    dict(
        name="all_rules",
        optimizer=dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4),
        paramwise_cfg=dict(
            custom_keys={"backbone": dict(lr_mult=0.1), "backbone.bn1": dict(lr_mult=0.5, decay_mult=0.0), "fc_cls": dict(decay_mult=0.0), "query": dict(lr_mult=2.0), "cls": dict(lr_mult=3.0)},
            norm_decay_mult=0.0,
            bias_decay_mult=0.5,
            bias_lr_mult=2.0,
            flat_decay_mult=0.3,
        ),
    ),
    dict(
        name="no_weight_decay",
        optimizer=dict(type="AdamW", lr=1e-3),
        paramwise_cfg=dict(bias_lr_mult=0.5, flat_decay_mult=0.0, custom_keys={"neck": dict(lr_mult=0.25)}),
    ),
    dict(
        name="dcn_offsets",
        optimizer=dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4),
        paramwise_cfg=dict(dcn_offset_lr_mult=0.1, bias_lr_mult=2.0, bias_decay_mult=0.5, flat_decay_mult=0.3),
    ),
]


def paramwise():
    install_mmcv_deform_convs()
    model = Block()
    names = {id(p): n for n, p in model.named_parameters()}
    result = []
    for case in PARAMWISE:
        ctor = DefaultOptimWrapperConstructor(dict(type="OptimWrapper", optimizer=dict(case["optimizer"])), case["paramwise_cfg"])
        wrapper = ctor(model)
        groups = []
        for g in wrapper.optimizer.param_groups:
            for p in g["params"]:
                groups.append(dict(name=names[id(p)], shape=list(p.shape), lr=bits(g["lr"]), weight_decay=bits(g["weight_decay"])))
        result.append(dict(name=case["name"], optimizer=case["optimizer"], paramwise_cfg=case["paramwise_cfg"], num_groups=len(wrapper.optimizer.param_groups), params=groups))
    return result


def main():
    global OUT
    OUT = Path(sys.argv[1])
    OUT.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    out = {}
    optimizer_steps(out)
    clipping(out)
    accumulation(out)
    torch.save(out, OUT / "optim.pth")
    meta = dict(cases=CASES, steps=STEPS, clips=CLIPS, accum=ACCUM, paramwise=paramwise())
    (OUT / "optim.json").write_text(json.dumps(meta))


if __name__ == "__main__":
    main()
