"""Reference outputs for detc's generalized attention blocks
(src/models/backbones/attention_tests.rs): MMCV's own `GeneralizedAttention`,
alone with several `attention_type`s and strides, and as a plugin of
MMDetection 3.3.0's `ResNet`, built from the configs below.

Usage: .venv-test/bin/python tests/models/attention_reference.py OUT_DIR

Writes OUT_DIR/attention.pth, a bare state dict of tensors; per case CASE, as
tests/reference/module_cases.py records it: CASE.init.*, CASE.sd.*,
CASE.in.0, CASE.out.{i}, CASE.dy.{i}, CASE.gin.0 and CASE.grad.*.

Block cases (32 channels, a 9x7 map, the block's own init): `all` ('1111',
keys and values at stride 2: the empirical_attention/ attn1111 configs'
block), `key` ('0010', the attn0010 configs': key content alone), `mix`
('1010', no stride), `pos` ('0101': relative position with and without the
query, queries at stride 2 upsampled back, offsets doubled, a 16-channel
embedding), `geom` ('0011'). Backbone case `r50_attn`: ResNet-50 at base
width 16 with a '1111' block of 8 heads after conv3 in stages 3-4 (after conv2, as
the configs place it, a batch norm would cancel its output bias and leave
that gradient float noise), trained
from scratch (MMEngine runs the block's own init_weights after the
backbone's Kaiming init, so the block keeps its own).
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

BLOCK = dict(type="GeneralizedAttention", in_channels=32, num_heads=4, spatial_range=-1)
# Keep in sync with src/models/backbones/attention_tests.rs.
BLOCKS = {
    "all": dict(BLOCK, attention_type="1111", kv_stride=2),
    "key": dict(BLOCK, attention_type="0010", kv_stride=2),
    "mix": dict(BLOCK, attention_type="1010", kv_stride=1),
    "pos": dict(BLOCK, attention_type="0101", kv_stride=1, q_stride=2, position_magnitude=2,
                position_embedding_dim=16),
    "geom": dict(BLOCK, attention_type="0011", kv_stride=2),
}
RESNET = dict(type="ResNet", depth=50, base_channels=16, stem_channels=16, num_stages=4, out_indices=(0, 1, 2, 3),
              frozen_stages=1, norm_eval=False, style="pytorch", plugins=[
                  dict(cfg=dict(type="GeneralizedAttention", spatial_range=-1, num_heads=8, attention_type="1111",
                                kv_stride=2),
                       stages=(False, False, True, True), position="after_conv3")])


def main(out):
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    torch.manual_seed(0)
    d = {}
    for name, cfg in BLOCKS.items():
        record_module_case(d, name, MODELS.build(dict(cfg)), [(2, 32, 9, 7)], lambda m, x: [m(x[0])])
    record_module_case(d, "r50_attn", MODELS.build(dict(RESNET)), [(2, 3, 64, 64)], lambda m, x: m(x[0]))
    os.makedirs(out, exist_ok=True)
    torch.save(d, os.path.join(out, "attention.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
