"""Reference outputs for detc's SwinTransformer (src/models/backbones/swin.rs,
tested in src/models/swin_reference_tests.rs).

Usage: .venv-test/bin/python tests/models/swin_reference.py OUT_DIR

Everything comes from MMDetection 3.3.0's own `SwinTransformer`, built from
the configs below (which the Rust test builds too): a tiny two-stage Swin
with 3x3 windows on a 26x38 image, so that the patch embedding, the windows
and the patch merging all pad, and odd blocks shift.

* OUT_DIR/swin.pth, a bare state dict of tensors:
  - `init.*`  the state dict after `init_weights()` without a checkpoint;
  - `sd.*`    the weights compared with (the init moved by a perturbation,
              the relative position bias tables included);
  - `in`, `out.{i}`, `dy.{i}`, `gin`, `grad.*`: a train-mode forward (no
    drop path, so deterministic), its outputs, random weights of the loss
    sum_i (out_i * dy_i).sum(), and the gradients of the input and of every
    parameter;
  - `frozen.trainable.*`: 1 for each parameter that trains with
    `frozen_stages: 1`, 0 for each frozen one;
  - `resize.*`: the state dict of the same Swin with 4x4 windows after
    loading OUT_DIR/swin_original_no_index.pth (its 3x3 windows' bias
    tables resized bicubically by MMDetection).
* OUT_DIR/swin_original.pth: `{'model': ...}`, `sd` in the original Swin
  repository's names and patch-merging order (`layers.*`, `attn.*`,
  `mlp.fc1`, `patch_embed.proj`, a classifier `head`), which MMDetection's
  `convert_weights=True` turns back into `sd` (checked here);
  OUT_DIR/swin_original_no_index.pth the same without the
  `relative_position_index` buffers (whose size differs for other windows).
"""

import logging
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402

# Keep in sync with src/models/swin_reference_tests.rs.
CFG = dict(type="SwinTransformer", embed_dims=16, depths=[2, 2], num_heads=[2, 4], window_size=3,
           mlp_ratio=2, strides=[4, 2], out_indices=(0, 1), drop_path_rate=0.0)
SHAPE = (2, 3, 26, 38)


def to_original(sd):
    """MMDetection's names and order back to the original repository's (the
    inverse of `swin_converter`)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("stages."):
            k = k.replace("stages.", "layers.", 1)
            if "attn.w_msa." in k:
                k = k.replace("attn.w_msa.", "attn.")
            elif "ffn.layers.0.0." in k:
                k = k.replace("ffn.layers.0.0.", "mlp.fc1.")
            elif "ffn.layers.1." in k:
                k = k.replace("ffn.layers.1.", "mlp.fc2.")
            elif "downsample.reduction" in k:
                o, i = v.shape
                v = v.reshape(o, i // 4, 4).transpose(1, 2)[:, [0, 2, 1, 3], :].reshape(o, i)
            elif "downsample.norm" in k:
                i = v.shape[0]
                v = v.reshape(i // 4, 4).transpose(0, 1)[[0, 2, 1, 3], :].reshape(i)
        elif k.startswith("patch_embed.projection"):
            k = k.replace("projection", "proj")
        out[k] = v.clone()
    out["head.weight"] = torch.zeros(10, 32)
    return out


def main(out):
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    d = {}
    swin = MODELS.build(dict(CFG))
    swin.init_weights()
    for k, v in swin.state_dict().items():
        d[f"init.{k}"] = v.clone()
    with torch.no_grad():
        for p in swin.parameters():
            p.add_(0.05 * torch.randn_like(p))
    sd = {k: v.clone() for k, v in swin.state_dict().items()}
    for k, v in sd.items():
        d[f"sd.{k}"] = v
    swin.train()
    x = torch.randn(SHAPE, requires_grad=True)
    outs = swin(x)
    loss = 0
    for i, y in enumerate(outs):
        dy = torch.randn_like(y)
        d[f"out.{i}"], d[f"dy.{i}"] = y.detach().clone(), dy
        loss = loss + (y * dy).sum()
    loss.backward()
    d["in"], d["gin"] = x.detach().clone(), x.grad.clone()
    for k, p in swin.named_parameters():
        if p.grad is not None:
            d[f"grad.{k}"] = p.grad.clone()

    frozen = MODELS.build(dict(CFG, frozen_stages=1))
    frozen.train()
    for k, p in frozen.named_parameters():
        d[f"frozen.trainable.{k}"] = torch.tensor(int(p.requires_grad))

    original = os.path.join(out, "swin_original.pth")
    torch.save({"model": to_original(sd)}, original)
    # A ConfigDict, as a config file gives it (Swin reads `init_cfg.checkpoint`).
    pretrained = ConfigDict(type="Pretrained", checkpoint=original)
    check = MODELS.build(dict(CFG, convert_weights=True, init_cfg=pretrained))
    check.init_weights()
    for k, v in check.state_dict().items():
        assert torch.equal(v, sd[k]), f"swin_converter does not give back {k}"
    # Without the index buffers, whose other size torch's load_state_dict refuses.
    no_index = os.path.join(out, "swin_original_no_index.pth")
    torch.save({"model": {k: v for k, v in to_original(sd).items() if "relative_position_index" not in k}}, no_index)
    pretrained = ConfigDict(type="Pretrained", checkpoint=no_index)
    resized = MODELS.build(dict(CFG, window_size=4, convert_weights=True, init_cfg=pretrained))
    resized.init_weights()
    for k, v in resized.state_dict().items():
        d[f"resize.{k}"] = v.clone()
    torch.save(d, os.path.join(out, "swin.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
