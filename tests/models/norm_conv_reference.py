"""Reference outputs for detc's GroupNorm and weight-standardised convs
(`norm_cfg: {type: GN}`, `conv_cfg: {type: ConvWS}`) in the modules of
MMDetection's `gn/` and `gn+ws/` configs, and for `ConvFCBBoxHead`'s
layouts (src/models/norm_conv_reference_tests.rs).

Usage: .venv-test/bin/python tests/models/norm_conv_reference.py OUT_DIR

Writes OUT_DIR/norm_conv.pth, a bare state dict of tensors. Every module is
MMDetection 3.3.0's (and MMCV's `ConvWS2d` / `ConvModule`), built from the
configs below, which the Rust test builds too. For each case CASE:

* CASE.init.*   the state dict right after construction and init_weights()
                (names and shapes; the norms' constant init);
* CASE.sd.*     the weights compared with (the init moved by a random
                perturbation, so that GN's affine terms and every bias count);
* CASE.in.{i}   inputs; CASE.out.{i} outputs in train mode; CASE.dy.{i}
                random weights of the loss sum_i (out_i * dy_i).sum();
* CASE.gin.{i}  the loss's gradient w.r.t. each input; CASE.grad.* w.r.t.
                every parameter that gets one (frozen ones get none).

Cases: `resnet` (ResNet-50 at base_channels 16, GN with 4 groups, ConvWS,
frozen_stages 1), `fpn` (GN + ConvWS, extra convs on the input), `s4c1`
(Shared4Conv1FCBBoxHead, GN + ConvWS), `convfc_a` (ConvFCBBoxHead with
shared, cls and reg convs and BN in training mode), `convfc_b` (shared and
branch fcs after an average pool), `mask` (FCNMaskHead, GN + ConvWS).
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
from mmengine.logging import MMLogger  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

GN = dict(type="GN", num_groups=4, requires_grad=True)
GN2 = dict(type="GN", num_groups=2, requires_grad=True)
WS = dict(type="ConvWS")

# Keep in sync with src/models/norm_conv_reference_tests.rs.
CASES = {
    "resnet": (
        dict(type="ResNet", depth=50, base_channels=16, num_stages=4, out_indices=(0, 1, 2, 3),
             frozen_stages=1, norm_cfg=GN, conv_cfg=WS, norm_eval=True, style="pytorch"),
        [(2, 3, 64, 64)],
    ),
    "fpn": (
        dict(type="FPN", in_channels=[16, 32, 64, 128], out_channels=16, num_outs=5,
             add_extra_convs="on_input", norm_cfg=GN, conv_cfg=WS),
        [(2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4), (2, 128, 2, 2)],
    ),
    "s4c1": (
        dict(type="Shared4Conv1FCBBoxHead", in_channels=8, conv_out_channels=8, fc_out_channels=16,
             roi_feat_size=7, num_classes=3, norm_cfg=GN2, conv_cfg=WS),
        [(6, 8, 7, 7)],
    ),
    "convfc_a": (
        dict(type="ConvFCBBoxHead", num_shared_convs=1, num_cls_convs=1, num_cls_fcs=1,
             num_reg_convs=2, in_channels=8, conv_out_channels=8, fc_out_channels=16,
             roi_feat_size=7, num_classes=3, norm_cfg=dict(type="BN")),
        [(6, 8, 7, 7)],
    ),
    "convfc_b": (
        dict(type="ConvFCBBoxHead", num_shared_fcs=1, num_cls_fcs=1, num_reg_fcs=2,
             with_avg_pool=True, in_channels=8, fc_out_channels=16, roi_feat_size=7,
             num_classes=3, reg_class_agnostic=True),
        [(6, 8, 7, 7)],
    ),
    "mask": (
        dict(type="FCNMaskHead", num_convs=2, roi_feat_size=14, in_channels=8, conv_out_channels=8,
             num_classes=3, norm_cfg=GN2, conv_cfg=WS),
        [(4, 8, 14, 14)],
    ),
}


def outputs(module, inputs):
    name = type(module).__name__
    if name == "FPN":
        return list(module(tuple(inputs)))
    if name == "ResNet":
        return list(module(inputs[0]))
    out = module(inputs[0])
    return list(out) if isinstance(out, tuple) else [out]


def case(name, cfg, shapes, d):
    record_module_case(d, name, MODELS.build(dict(cfg)), shapes, outputs)


def main(out):
    register_all_modules()
    # MMEngine logs every parameter's init; only failures matter here.
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    torch.manual_seed(0)
    d = {}
    for name, (cfg, shapes) in CASES.items():
        case(name, cfg, shapes, d)
    os.makedirs(out, exist_ok=True)
    torch.save(d, os.path.join(out, "norm_conv.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
