"""Checks .pth files written by detc: torch.load(weights_only=True) and
MMEngine's _load_checkpoint read them, with the tensors of the reference file.

Usage: python check_written.py WITH_META BARE REFERENCE
Exits non-zero (with a message) on any difference.
"""
import collections
import sys

import torch
from mmengine.runner.checkpoint import _load_checkpoint

with_meta_path, bare_path, reference_path = sys.argv[1:4]
reference = torch.load(reference_path, weights_only=True)


def same(a, b, where):
    assert list(a) == list(b), f"{where}: names {list(a)} != {list(b)}"
    for k in a:
        x, y = a[k], b[k]
        assert x.dtype == y.dtype, f"{where}: {k} dtype {x.dtype} != {y.dtype}"
        assert x.shape == y.shape, f"{where}: {k} shape {x.shape} != {y.shape}"
        assert torch.equal(x, y) or (x.numel() == 0), f"{where}: {k} values differ"
        assert x.is_contiguous(), f"{where}: {k} not contiguous"


bare = torch.load(bare_path, weights_only=True)
assert isinstance(bare, collections.OrderedDict), type(bare)
same(bare, reference, "bare")
# Storages are 64-byte aligned, so torch can also memory-map the file.
same(torch.load(bare_path, weights_only=True, mmap=True), reference, "bare, mmap")

ckpt = torch.load(with_meta_path, weights_only=True)
assert set(ckpt) == {"meta", "state_dict"}, list(ckpt)
same(ckpt["state_dict"], reference, "with_meta")
expected_meta = {"epoch": 3, "big": -(1 << 40), "lr": 0.5, "raw": bytes([0, 200, 255]),
                 "classes": ("a", "b"), "ok": [True, None]}
assert ckpt["meta"] == expected_meta, ckpt["meta"]

mm = _load_checkpoint(with_meta_path, map_location="cpu")
same(mm["state_dict"], reference, "mmengine")
assert mm["meta"] == expected_meta
print("ok")
