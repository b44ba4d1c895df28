"""Reference outputs for detc's deformable convolutions (`dcn: {type: DCN}`
and `{type: DCNv2}` in ResNet-family backbones; src/models/dcn_reference_tests.rs).

Usage: .venv-test/bin/python tests/models/dcn_reference.py OUT_DIR

Writes OUT_DIR/dcn.pth, a bare state dict of tensors.

The operator: `torchvision.ops.deform_conv2d`, MMCV's semantics (offsets as
(y, x) pairs per tap and deformable group, bilinear sampling that reads 0
outside the map), on inputs where many taps fall outside. For each case OP:
OP.{x,offset,mask,weight,bias} the inputs (mask/bias where the case has
them), OP.out the output, OP.dy random weights of the loss
(out * dy).sum(), and OP.grad.{x,offset,mask,weight,bias} its gradients.
`int` has whole-pixel offsets, where sampling sits on pixel and padding
borders (the offsets' gradient there is one-sided).

The backbones: MMDetection 3.3.0's ResNet / ResNeXt with MMCV's own
`DeformConv2dPack` / `ModulatedDeformConv2dPack` (mmcv/ops/*.py, loaded
from the mmcv-lite sources); mmcv-lite has no compiled kernels, so the
kernel those classes call is torchvision's (as MMCV's own MLU build does).
Per case CASE, as tests/models/norm_conv_reference.py: CASE.init.* (after
init_weights), CASE.sd.* (perturbed weights), CASE.in.0 / CASE.out.{i} /
CASE.dy.{i} (train mode), CASE.gin.0 and CASE.grad.*.
"""

import logging
import os
import sys

import torch
from torchvision.ops import deform_conv2d as tv_deform_conv2d

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402
from module_cases import record_module_case  # noqa: E402

mmdet_standins.install()

from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402


# Keep in sync with src/models/dcn_reference_tests.rs.
OPS = {
    # x, weight (Cout, C/groups, k, k), deform groups, stride, padding, dilation, mask, bias, offset scale
    "v1": ((2, 8, 9, 11), (6, 8, 3, 3), 2, 1, 1, 1, False, False, 2.5),
    "v2": ((2, 8, 10, 7), (4, 4, 3, 3), 4, 2, 2, 2, True, True, 3.0),
    "int": ((1, 4, 5, 6), (3, 4, 3, 3), 1, 1, 1, 1, True, False, None),
}

DCN = dict(type="DCN", deform_groups=1, fallback_on_stride=False)
CASES = {
    "r50_dcn": dict(type="ResNet", depth=50, base_channels=16, num_stages=4, out_indices=(0, 1, 2, 3),
                    frozen_stages=1, norm_eval=False, style="pytorch", dcn=DCN,
                    stage_with_dcn=(False, True, True, True)),
    "x50_mdcn": dict(type="ResNeXt", depth=50, groups=4, base_width=4, base_channels=16, num_stages=4,
                     out_indices=(0, 1, 2, 3), frozen_stages=1, norm_eval=False, style="pytorch",
                     dcn=dict(type="DCNv2", deform_groups=2, fallback_on_stride=False),
                     stage_with_dcn=(False, False, True, True)),
}


def op_case(name, spec, d):
    xs, ws, g, stride, pad, dil, with_mask, with_bias, scale = spec
    n, c, h, w = xs
    k = ws[2]
    ho = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dil * (k - 1) - 1) // stride + 1
    x = torch.randn(xs, requires_grad=True)
    if scale is None:
        offset = torch.randint(-2, 3, (n, g * 2 * k * k, ho, wo)).float().requires_grad_()
    else:
        offset = (scale * torch.randn(n, g * 2 * k * k, ho, wo)).requires_grad_()
    mask = torch.rand(n, g * k * k, ho, wo, requires_grad=True) if with_mask else None
    weight = torch.randn(ws, requires_grad=True)
    bias = torch.randn(ws[0], requires_grad=True) if with_bias else None
    out = tv_deform_conv2d(x, offset, weight, bias, stride, pad, dil, mask)
    dy = torch.randn_like(out)
    (out * dy).sum().backward()
    inputs = dict(x=x, offset=offset, mask=mask, weight=weight, bias=bias)
    for key, t in inputs.items():
        if t is not None:
            d[f"{name}.{key}"] = t.detach().clone()
            d[f"{name}.grad.{key}"] = t.grad.clone()
    d[f"{name}.out"] = out.detach().clone()
    d[f"{name}.dy"] = dy


def backbone_case(name, cfg, d):
    record_module_case(d, name, MODELS.build(dict(cfg)), [(2, 3, 64, 64)], lambda m, x: m(x[0]))


def main(out):
    mmdet_standins.install_mmcv_deform_convs()
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    torch.manual_seed(0)
    d = {}
    for name, spec in OPS.items():
        op_case(name, spec, d)
    for name, cfg in CASES.items():
        backbone_case(name, cfg, d)
    os.makedirs(out, exist_ok=True)
    torch.save(d, os.path.join(out, "dcn.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
