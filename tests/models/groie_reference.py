"""Reference outputs for detc's GenericRoIExtractor
(src/models/roi_heads/roi_extractors/generic_roi_extractor.rs, tested there)
from MMDetection 3.3.0's own `GenericRoIExtractor`, with MMCV's
`ConvModule` and `GeneralizedAttention` as its modules; mmcv-lite lacks the
compiled RoIAlign, so torchvision's `roi_align` (aligned=True, the same op)
stands in for it.

Usage: .venv-test/bin/python tests/models/groie_reference.py OUT_DIR

Writes OUT_DIR/groie.pth, a bare state dict of tensors; per module case
CASE, as tests/reference/module_cases.py records it (CASE.in.{i} are the
four levels), plus CASE.rois, the RoIs pooled. Cases: `sum` (the groie
configs' extractor scaled to 8 channels: levels summed, a 5x5 ConvModule
before, a GeneralizedAttention '0100' with kv_stride 2 after) and `concat`
(four 4-channel levels concatenated, a 3x3 ConvModule with GroupNorm
before, nothing after); also `ga7`, the `sum` case's GeneralizedAttention
alone on 7x7 maps.
"""

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402
from module_cases import record_module_case  # noqa: E402

mmdet_standins.install()

mmdet_standins.install_tv_roi_align()

import logging  # noqa: E402

from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402

# Keep in sync with the tests in src/models/roi_heads/roi_extractors/generic_roi_extractor.rs.
CASES = {
    "sum": dict(
        type="GenericRoIExtractor", aggregation="sum",
        roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=2),
        out_channels=8, featmap_strides=[4, 8, 16, 32],
        pre_cfg=dict(type="ConvModule", in_channels=8, out_channels=8, kernel_size=5, padding=2, inplace=False),
        post_cfg=dict(type="GeneralizedAttention", in_channels=8, spatial_range=-1, num_heads=2,
                      attention_type="0100", kv_stride=2)),
    "concat": dict(
        type="GenericRoIExtractor", aggregation="concat",
        roi_layer=dict(type="RoIAlign", output_size=5, sampling_ratio=0),
        out_channels=16, featmap_strides=[4, 8, 16, 32],
        pre_cfg=dict(type="ConvModule", in_channels=4, out_channels=4, kernel_size=3, padding=1,
                     norm_cfg=dict(type="GN", num_groups=2))),
}

ROIS = torch.tensor([
    [0, 3.0, 4.0, 30.0, 40.0],
    [0, 10.5, 2.0, 70.0, 60.0],
    [1, 0.0, 0.0, 8.0, 8.0],
    [1, 20.0, 15.0, 79.0, 63.0],
    [1, 40.0, 30.0, 55.0, 33.0],
])


def main(out):
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    torch.manual_seed(0)
    d = {}
    for name, cfg in CASES.items():
        c = 8 if name == "sum" else 4
        shapes = [(2, c, 16, 20), (2, c, 8, 10), (2, c, 4, 5), (2, c, 2, 3)]
        d[f"{name}.rois"] = ROIS
        record_module_case(d, name, MODELS.build(dict(cfg)), shapes, lambda m, x: [m(tuple(x), ROIS)])
    ga = dict(CASES["sum"]["post_cfg"])
    record_module_case(d, "ga7", MODELS.build(ga), [(5, 8, 7, 7)], lambda m, x: [m(x[0])])
    os.makedirs(out, exist_ok=True)
    torch.save(d, os.path.join(out, "groie.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
