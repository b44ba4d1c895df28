"""Reference outputs for detc's ResNet, FPN, RoIAlign and box ops.

Usage: .venv-test/bin/python tests/models/make_fixtures.py OUT_DIR

Writes bare state dicts of tensors (torch.save), which the Rust tests read
through detc::checkpoint:

* roi_align.pth  torchvision.ops.roi_align outputs and input gradients on
                 random features/boxes, for sampling_ratio 0 and 2 at strides
                 4, 8, 16, 32 (aligned=True), plus aligned=False cases; and
                 mmdet's SingleRoIExtractor over 4 levels (`extractor.*`);
* resnet50.pth   torchvision.models.resnet50(weights=None) state dict (seed 0,
                 BN statistics calibrated on random batches) as torch.save
                 writes it;
  resnet50_io.pth  input and torchvision's C2..C5 (eval), and the C5 of a
                 train-mode forward (batch statistics);
* resnet50_mmdet.pth  `shape.<name>` of every entry of mmdet's
                 ResNet(50, frozen_stages=1) state dict, and `trainable.<name>`;
* resnext50.pth, resnext50_io.pth, resnext50_mmdet.pth  the same for
                 torchvision's resnext50_32x4d (seed 1) and mmdet's
                 ResNeXt(50, groups=32, base_width=4, frozen_stages=1);
* fpn.pth        mmdet's FPN (several configs): state dict, inputs, outputs;
* boxes.pth      torchvision generalized_box_iou / box_iou and mmdet's
                 bbox_overlaps / bbox2delta / delta2bbox on random boxes.

MMDetection modules are loaded from their files with small stand-ins for the
packages whose __init__ needs mmcv's compiled ops (absent in mmcv-lite).
"""

import importlib.util
import os
import sys
import types

import torch
import torchvision
from torchvision.ops import box_iou, generalized_box_iou, roi_align


def mmdet_module(name, rel):
    import mmdet

    path = os.path.join(os.path.dirname(mmdet.__file__), rel)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def stub_mmdet():
    utils = types.ModuleType("mmdet.utils")
    for n in ["ConfigType", "MultiConfig", "OptConfigType", "OptMultiConfig"]:
        setattr(utils, n, object)
    sys.modules["mmdet.utils"] = utils
    for pkg in [
        "mmdet.models",
        "mmdet.models.backbones",
        "mmdet.models.necks",
        "mmdet.models.layers",
        "mmdet.models.task_modules",
        "mmdet.models.task_modules.coders",
        "mmdet.structures",
        "mmdet.structures.bbox",
    ]:
        sys.modules[pkg] = types.ModuleType(pkg)
        sys.modules[pkg].__path__ = []
    bb = sys.modules["mmdet.structures.bbox"]
    bb.BaseBoxes = type("BaseBoxes", (), {})
    bb.HorizontalBoxes = type("HorizontalBoxes", (), {})
    bb.get_box_tensor = lambda x: x


def random_rois(g, n_img, r, img_h, img_w):
    """Boxes inside, across and outside the image border, tiny and empty ones."""
    x1 = torch.rand(r, generator=g) * (img_w + 40) - 20
    y1 = torch.rand(r, generator=g) * (img_h + 40) - 20
    w = torch.rand(r, generator=g) * img_w * 0.8
    h = torch.rand(r, generator=g) * img_h * 0.8
    w[:2] = torch.tensor([0.0, 0.7])  # empty and sub-pixel
    h[:2] = torch.tensor([3.0, 0.3])
    b = torch.randint(0, n_img, (r,), generator=g).float()
    return torch.stack([b, x1, y1, x1 + w, y1 + h], 1)


def roi_align_fixtures(out):
    g = torch.Generator().manual_seed(0)
    img_h, img_w, n, c = 128, 160, 2, 3
    cases = [(s, r, True) for s in (4, 8, 16, 32) for r in (0, 2)]
    cases += [(8, 0, False), (8, 2, False)]
    d = {}
    for stride, ratio, aligned in cases:
        key = f"s{stride}_r{ratio}_a{int(aligned)}"
        x = torch.randn(n, c, img_h // stride, img_w // stride, generator=g, requires_grad=True)
        rois = random_rois(g, n, 16, img_h, img_w)
        y = roi_align(x, rois, (7, 7), 1.0 / stride, ratio, aligned)
        gw = torch.randn(y.shape, generator=g)
        (y * gw).sum().backward()
        d.update({f"{key}.x": x.detach(), f"{key}.rois": rois, f"{key}.out": y.detach(),
                  f"{key}.grad_w": gw, f"{key}.grad_x": x.grad})
    d.update(extractor_fixture(g))
    torch.save(d, os.path.join(out, "roi_align.pth"))


def extractor_fixture(g):
    """mmdet's SingleRoIExtractor (QueryInst's bbox extractor) with mmcv's
    RoIAlign stood in by torchvision's op (mmcv-lite has no compiled ops)."""

    class RoIAlign(torch.nn.Module):
        def __init__(self, output_size, spatial_scale, sampling_ratio=0, pool_mode="avg", aligned=True):
            super().__init__()
            self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
            self.args = (self.output_size, spatial_scale, sampling_ratio, aligned)

        def forward(self, x, rois):
            size, scale, ratio, aligned = self.args
            return roi_align(x, rois, size, scale, ratio, aligned)

    import mmcv

    mmcv.ops = types.ModuleType("mmcv.ops")
    mmcv.ops.RoIAlign = RoIAlign
    sys.modules["mmcv.ops"] = mmcv.ops
    for pkg in ["mmdet.models.roi_heads", "mmdet.models.roi_heads.roi_extractors"]:
        sys.modules[pkg] = types.ModuleType(pkg)
        sys.modules[pkg].__path__ = []
    mmdet_module("mmdet.models.roi_heads.roi_extractors.base_roi_extractor",
                 "models/roi_heads/roi_extractors/base_roi_extractor.py")
    ext = mmdet_module("mmdet.models.roi_heads.roi_extractors.single_level_roi_extractor",
                       "models/roi_heads/roi_extractors/single_level_roi_extractor.py")
    m = ext.SingleRoIExtractor(dict(type="RoIAlign", output_size=7, sampling_ratio=2), 4, [4, 8, 16, 32])
    feats = [torch.randn(2, 4, 256 // s, 320 // s, generator=g, requires_grad=True) for s in (4, 8, 16, 32)]
    rois = random_rois(g, 2, 40, 256, 320)
    rois[:, 3:] = rois[:, 1:3] + (rois[:, 3:] - rois[:, 1:3]) * 1.5  # reach every level
    y = m(feats, rois)
    gw = torch.randn(y.shape, generator=g)
    (y * gw).sum().backward()
    d = {"extractor.rois": rois, "extractor.out": y.detach(), "extractor.grad_w": gw}
    for i, f in enumerate(feats):
        d[f"extractor.feat.{i}"] = f.detach()
        d[f"extractor.grad.{i}"] = f.grad
    return d


def calibrated(m):
    """Random BN affine parameters, and statistics calibrated (cumulative
    average) on random batches so that features stay in range."""
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.normal_(0, 0.1)
    m.train()
    with torch.no_grad():
        for _ in range(2):
            m(torch.randn(2, 3, 64, 96))
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = 0.1
    return m


def backbone_io(m):
    """An input and torchvision's C2..C5 (eval), and a train-mode C5."""

    def feats(x):
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        outs = []
        for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
            x = layer(x)
            outs.append(x)
        return outs

    x = torch.randn(1, 3, 64, 96)
    m.eval()
    with torch.no_grad():
        c2, c3, c4, c5 = feats(x)
        xt = torch.randn(2, 3, 64, 96)
        m.train()
        c5_train = feats(xt)[3]
    return {"x": x, "c2": c2, "c3": c3, "c4": c4, "c5": c5, "x_train": xt, "c5_train": c5_train}


def mmdet_names(ref):
    """`shape.<name>` of every state-dict entry, `trainable.<name>` of every parameter."""
    d = {f"shape.{k}": torch.tensor(list(v.shape), dtype=torch.int64) for k, v in ref.state_dict().items()}
    d.update({f"trainable.{k}": torch.tensor(p.requires_grad) for k, p in ref.named_parameters()})
    return d


def resnet_fixtures(out):
    torch.manual_seed(0)
    m = calibrated(torchvision.models.resnet50(weights=None))
    torch.save(m.state_dict(), os.path.join(out, "resnet50.pth"))
    torch.save(backbone_io(m), os.path.join(out, "resnet50_io.pth"))

    rl = mmdet_module("mmdet.models.layers.res_layer", "models/layers/res_layer.py")
    sys.modules["mmdet.models.layers"].ResLayer = rl.ResLayer
    rn = mmdet_module("mmdet.models.backbones.resnet", "models/backbones/resnet.py")
    torch.save(mmdet_names(rn.ResNet(50, frozen_stages=1)), os.path.join(out, "resnet50_mmdet.pth"))

    # ResNeXt-50 32x4d: torchvision's model and mmdet's names (after the ResNet above).
    torch.manual_seed(1)
    m = calibrated(torchvision.models.resnext50_32x4d(weights=None))
    torch.save(m.state_dict(), os.path.join(out, "resnext50.pth"))
    torch.save(backbone_io(m), os.path.join(out, "resnext50_io.pth"))
    rx = mmdet_module("mmdet.models.backbones.resnext", "models/backbones/resnext.py")
    ref = rx.ResNeXt(depth=50, groups=32, base_width=4, frozen_stages=1)
    torch.save(mmdet_names(ref), os.path.join(out, "resnext50_mmdet.pth"))


FPN_CASES = {
    # QueryInst / Sparse R-CNN
    "a": dict(in_channels=[8, 16, 32, 64], out_channels=8, num_outs=4, add_extra_convs="on_input"),
    # Faster / Mask R-CNN: P6 by max pooling
    "b": dict(in_channels=[8, 16, 32, 64], out_channels=8, num_outs=5),
    # RetinaNet-like: from C3, extra convs on the output with ReLU
    "c": dict(in_channels=[8, 16, 32, 64], out_channels=8, num_outs=5, start_level=1,
              add_extra_convs="on_output", relu_before_extra_convs=True),
    "d": dict(in_channels=[8, 16, 32, 64], out_channels=8, num_outs=6, add_extra_convs="on_lateral"),
    "e": dict(in_channels=[8, 16, 32, 64], out_channels=8, num_outs=4,
              upsample_cfg=dict(mode="nearest", scale_factor=2.0)),
}


def fpn_fixtures(out):
    fpn = mmdet_module("mmdet.models.necks.fpn", "models/necks/fpn.py")
    torch.manual_seed(1)
    d = {}
    for key, cfg in FPN_CASES.items():
        m = fpn.FPN(**cfg)
        m.init_weights()
        for p in m.parameters():  # non-zero biases, so the test sees them
            p.data.normal_(0, 0.2)
        sizes = [(16, 24), (8, 12), (4, 6), (2, 3)] if key == "e" else [(17, 25), (9, 13), (5, 7), (3, 4)]
        xs = [torch.randn(2, c, h, w) for c, (h, w) in zip(cfg["in_channels"], sizes)]
        with torch.no_grad():
            ys = m(tuple(xs))
        d.update({f"{key}.sd.{k}": v for k, v in m.state_dict().items()})
        d.update({f"{key}.in.{i}": x for i, x in enumerate(xs)})
        d.update({f"{key}.out.{i}": y for i, y in enumerate(ys)})
    torch.save(d, os.path.join(out, "fpn.pth"))


def box_fixtures(out):
    ov = mmdet_module("mmdet_bbox_overlaps", "structures/bbox/bbox_overlaps.py")
    mmdet_module("mmdet.models.task_modules.coders.base_bbox_coder", "models/task_modules/coders/base_bbox_coder.py")
    coder = mmdet_module("mmdet.models.task_modules.coders.delta_xywh_bbox_coder",
                         "models/task_modules/coders/delta_xywh_bbox_coder.py")
    g = torch.Generator().manual_seed(2)

    def boxes(n):
        xy = torch.rand(n, 2, generator=g) * 100
        wh = torch.rand(n, 2, generator=g) * 60 + 1
        return torch.cat([xy, xy + wh], 1)

    a, b = boxes(7), boxes(5)
    a[0] = b[0]  # one exact match
    a2 = boxes(5)
    d = {"a": a, "b": b, "a2": a2,
         "tv_giou": generalized_box_iou(a, b), "tv_iou": box_iou(a, b),
         "mm_giou": ov.bbox_overlaps(a, b, mode="giou"), "mm_iou": ov.bbox_overlaps(a, b),
         "mm_iof": ov.bbox_overlaps(a, b, mode="iof"),
         "mm_giou_aligned": ov.bbox_overlaps(a2, b, mode="giou", is_aligned=True)}
    means, stds = (0.1, -0.1, 0.05, 0.0), (0.5, 0.5, 1.0, 1.0)
    d["enc"] = coder.bbox2delta(a2, b, means, stds)
    deltas = torch.randn(5, 8, generator=g) * 2  # some beyond the wh clip
    d["deltas"] = deltas
    d["dec"] = coder.delta2bbox(a2, deltas, means, stds, max_shape=None, clip_border=False)
    d["dec_clip"] = coder.delta2bbox(a2, deltas, means, stds, max_shape=(90, 120), clip_border=True)
    torch.save(d, os.path.join(out, "boxes.pth"))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    import mmdet  # noqa: F401  (the real package root, before the stand-ins)

    stub_mmdet()
    roi_align_fixtures(out)
    resnet_fixtures(out)
    fpn_fixtures(out)
    box_fixtures(out)
    print("ok")


if __name__ == "__main__":
    main()
