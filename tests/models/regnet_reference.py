"""Reference outputs for detc's RegNet (`ResNet::regnet` in
src/models/backbones/resnet.rs, tested in src/models/backbones/regnet_tests.rs).

Usage: .venv-test/bin/python tests/models/regnet_reference.py OUT_DIR

Writes OUT_DIR/regnet.pth, a bare state dict of tensors, from MMDetection
3.3.0's own `RegNet`:

* design.{name}  for each of MMDetection's named RegNetX designs, one row
                 per stage: [width, blocks, group width, groups], as its
                 `generate_regnet`, `get_stages_from_blocks`,
                 `adjust_width_group` and `__init__` compute them;
* init.*         a tiny custom RegNet (ARCH, frozen_stages 1) after
                 `init_weights()`; trainable.* 1 for each parameter that
                 trains, 0 for each frozen one;
* sd.*           its weights perturbed, BatchNorm statistics included;
* in, eval.{i}, train.{i}: an input and the four stage outputs in eval
                 mode and in train mode (batch statistics, `norm_eval` off).
"""

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

from mmdet.models.backbones import RegNet  # noqa: E402

# Keep in sync with regnet_tests.rs.
ARCH = dict(w0=16, wa=24.0, wm=2.0, group_w=8, depth=6, bot_mul=1.0)


def design(arch):
    widths, num_stages = RegNet.generate_regnet(None, arch["w0"], arch["wa"], arch["wm"], arch["depth"])
    stage_widths, stage_blocks = RegNet.get_stages_from_blocks(None, widths)
    ratios = [arch["bot_mul"]] * num_stages
    stage_widths, group_widths = RegNet.adjust_width_group(RegNet, stage_widths, ratios, [arch["group_w"]] * num_stages)
    rows = []
    for w, n, g, b in zip(stage_widths, stage_blocks, group_widths, ratios):
        rows.append([w, n, g, int(round(w * b)) // g])
    return torch.tensor(rows, dtype=torch.long)


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    d = {}
    for name, arch in RegNet.arch_settings.items():
        d[f"design.{name}"] = design(arch)
    net = RegNet(arch=ARCH, frozen_stages=1, norm_eval=False)
    net.init_weights()
    for k, v in net.state_dict().items():
        d[f"init.{k}"] = v.clone()
    net.train()
    for k, p in net.named_parameters():
        d[f"trainable.{k}"] = torch.tensor(int(p.requires_grad))
    with torch.no_grad():
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                v.add_(0.1 * torch.randn_like(v).abs() if "running_var" in k else 0.1 * torch.randn_like(v))
    for k, v in net.state_dict().items():
        d[f"sd.{k}"] = v.clone()
    x = torch.randn(2, 3, 64, 64)
    d["in"] = x
    net.eval()
    with torch.no_grad():
        for i, y in enumerate(net(x)):
            d[f"eval.{i}"] = y
    net.train()
    with torch.no_grad():
        for i, y in enumerate(net(x)):
            d[f"train.{i}"] = y
    torch.save(d, os.path.join(out, "regnet.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
