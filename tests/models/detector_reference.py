"""End-to-end reference of the QueryInst / Sparse R-CNN port: MMDetection
3.3.0's real `QueryInst` and `SparseRCNN`, built from the same resolved
`model:` section as detc's, run on a fixed 3-image batch (3, 1 and 0 ground
truths). The Rust test `src/models/detectors/reference_tests.rs` (which runs
this script into a temporary directory) loads the same checkpoint into its
own model and compares losses, gradients, BatchNorm statistics and
predictions.

Run it by hand (from the repository root):

    mkdir -p /tmp/detref
    target/debug/detc expand configs/demo/queryinst_r18_shapes.yaml --format json \
        | .venv-test/bin/python -c 'import json, sys; m = json.load(sys.stdin)["model"]; \
    m["test_cfg"]["rcnn"]["max_per_img"] = m["rpn_head"]["num_proposals"]; json.dump(m, sys.stdout)' \
        > /tmp/detref/model.json
    .venv-test/bin/python tests/models/detector_reference.py /tmp/detref

Input: OUT_DIR/model.json, the resolved `model:` section of a `QueryInst`
config, with `test_cfg.rcnn.max_per_img` equal to `rpn_head.num_proposals`:
MMDetection's `SparseRoIHead.predict_bbox` stores the last stage's
`num_proposals` boxes into an `InstanceData` of `max_per_img` detections and
fails unless the two are equal (the demo's 100 against its 20 proposals would
also fail `topk` over 20 x 4 scores). The Sparse R-CNN twin is the same dict
with `type='SparseRCNN'` and no `mask_roi_extractor` / `mask_head` /
`mask_size`.

Output, for MODEL in {queryinst, sparse_rcnn}:

* OUT_DIR/MODEL.pth: `{'state_dict': ..., 'meta': {...}}` as MMEngine's
  CheckpointHook writes it, `meta` holding arbitrary Python objects (a
  dataclass, a set, a tuple) that a reader must get past;
* OUT_DIR/MODEL_io.pth: a flat `{name: tensor}` dict:
  - `inputs` (3, 3, H, W), `img{i}.gt_bboxes` (G, 4), `img{i}.gt_labels` (G,),
    `img{i}.gt_masks` (G, H, W) uint8 padded to the batch shape (what
    `DetDataPreprocessor(pad_mask=True)` hands the model), `img{i}.meta`:
    float64 [ori_h, ori_w, img_h, img_w, pad_h, pad_w, scale_w, scale_h];
  - `pred{i}.bboxes` (k, 4), `pred{i}.scores` (k,), `pred{i}.labels` (k,),
    `pred{i}.masks` (k, ori_h, ori_w) bool: `model.predict(rescale=True)` in
    eval mode on the checkpoint's weights;
  - `loss.{key}`: every entry of `model.loss` (train mode), as 0-d tensors;
  - `grad.{name}`: the gradient of every parameter that gets one after
    `sum(v for k, v in losses if 'loss' in k).backward()` (MMEngine's
    `parse_losses`);
  - `after.{name}`: every BatchNorm running statistic after that train-mode
    forward (momentum updates, num_batches_tracked);
  - `f64.loss.*`, `f64.grad.*`, `f64.after.*`: the same with the model and
    inputs in float64 (no predictions: MMDetection's mask paste builds a
    float32 grid and fails on float64 masks). In float32 a few ReLU inputs
    of a random model sit within 1e-6 of zero, and float rounding alone
    (MMDetection with 1 thread against 4) flips them, moving the deconv
    gradients of the mask heads by several percent; float64 leaves no such
    ties, so gradients are compared tightly there.

Substitutions (MMCV's compiled ops are absent in mmcv-lite):
`mmcv.ops.RoIAlign` becomes a module calling `torchvision.ops.roi_align`
with the same arguments (`aligned=True`, `sampling_ratio`,
`spatial_scale`), and so does the functional `roi_align` that
`BitmapMasks.crop_and_resize` (the mask targets) calls; torchvision's kernel
has the same semantics as MMCV's (both return no gradient for the boxes).

Weights: `init_weights()` after `torch.manual_seed(0)`, then the class bias
and mask-logit layers are spread out (see `spread_outputs`) so that scores
and mask probabilities are not clustered at the prior (0.01) and at 0.5,
which would make top-k and mask thresholds hinge on float noise.
"""

import copy
import dataclasses
import json
import os
import sys

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (ori_shape, img_shape, scale_factor (w, h)): every image pads to 160x160.
METAS = [
    ((128, 120), (160, 150), (1.25, 1.25)),
    ((96, 107), (144, 160), (160 / 107, 1.5)),
    ((120, 80), (150, 100), (1.25, 1.25)),
]
PAD = (160, 160)
# GT instances per image as (label, ellipse centre x, y, radius x, y) in
# resized (img_shape) pixels; image 1 has exactly one, image 2 none.
GTS = [
    [(0, 40.0, 50.0, 22.0, 30.0), (2, 110.0, 70.0, 30.0, 18.0), (3, 75.0, 125.0, 40.0, 20.0)],
    [(1, 90.0, 60.0, 45.0, 35.0)],
    [],
]


@dataclasses.dataclass
class RunInfo:
    """An arbitrary object in `meta`, as MMEngine's hooks leave there."""

    seed: int
    tags: tuple


class TorchvisionRoIAlign(nn.Module):
    """`mmcv.ops.RoIAlign` on torchvision's kernel (same semantics)."""

    def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=0,
                 pool_mode="avg", aligned=True, use_torchvision=False):
        super().__init__()
        assert pool_mode == "avg" and aligned
        self.output_size = output_size if isinstance(output_size, tuple) else (output_size, output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)

    def forward(self, feats, rois):
        from torchvision.ops import roi_align

        return roi_align(feats, rois, self.output_size, self.spatial_scale,
                         self.sampling_ratio, aligned=True)


def torchvision_roi_align_fn(feats, rois, output_size, spatial_scale=1.0,
                             sampling_ratio=0, pool_mode="avg", aligned=True):
    """`mmcv.ops.roi_align` (the function) on torchvision's kernel."""
    assert pool_mode == "avg"
    from torchvision.ops import roi_align

    return roi_align(feats, rois, output_size, spatial_scale, sampling_ratio, aligned=aligned)


def load_mmdet():
    sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
    import mmdet_standins

    mmdet_standins.install()
    import mmcv.ops

    # An attribute set on the stand-in module wins over its __getattr__.
    mmcv.ops.RoIAlign = TorchvisionRoIAlign
    import mmdet.models  # noqa: F401  (registers the models)
    import mmdet.structures.mask.structures as mask_structures
    from mmdet.utils import register_all_modules

    # `BitmapMasks.crop_and_resize` (mask targets) calls mmcv's functional
    # `roi_align`, bound at import.
    mask_structures.roi_align = torchvision_roi_align_fn

    register_all_modules(init_default_scope=True)


def sparse_rcnn_cfg(model):
    cfg = json.loads(json.dumps(model))
    cfg["type"] = "SparseRCNN"
    cfg["roi_head"].pop("mask_roi_extractor", None)
    cfg["roi_head"].pop("mask_head", None)
    for stage in cfg["train_cfg"]["rcnn"]:
        stage.pop("mask_size", None)
    cfg["test_cfg"]["rcnn"].pop("mask_thr_binary", None)
    if cfg.get("data_preprocessor"):
        cfg["data_preprocessor"]["pad_mask"] = False
    return cfg


def ellipse(cx, cy, rx, ry, img_shape):
    """A filled ellipse clipped to img_shape, on the padded canvas."""
    ys, xs = np.mgrid[0:PAD[0], 0:PAD[1]]
    inside = ((xs + 0.5 - cx) / rx) ** 2 + ((ys + 0.5 - cy) / ry) ** 2 <= 1.0
    inside &= (ys < img_shape[0]) & (xs < img_shape[1])
    return inside.astype(np.uint8)


def make_batch():
    """Inputs (already normalised and padded) and DetDataSamples."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(len(METAS), 3, *PAD, generator=g)
    for i, (_, img_shape, _) in enumerate(METAS):
        # Padding is zero after normalisation, as DetDataPreprocessor pads.
        inputs[i, :, img_shape[0]:, :] = 0
        inputs[i, :, :, img_shape[1]:] = 0
    samples, io = [], {"inputs": inputs}
    for i, ((ori, img_shape, scale), gts) in enumerate(zip(METAS, GTS)):
        masks = np.zeros((0, *PAD), dtype=np.uint8)
        if gts:
            masks = np.stack([ellipse(cx, cy, rx, ry, img_shape) for _, cx, cy, rx, ry in gts])
        boxes = []
        for m in masks:
            ys, xs = np.nonzero(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        sample = DetDataSample(metainfo=dict(
            img_id=i, ori_shape=ori, img_shape=img_shape, pad_shape=PAD,
            batch_input_shape=PAD, scale_factor=scale, flip=False, flip_direction=None))
        gt = InstanceData()
        gt.bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        gt.labels = torch.tensor([l for l, *_ in gts], dtype=torch.int64)
        gt.masks = BitmapMasks(masks, *PAD)
        sample.gt_instances = gt
        sample.ignored_instances = InstanceData()
        samples.append(sample)
        io[f"img{i}.gt_bboxes"] = gt.bboxes
        io[f"img{i}.gt_labels"] = gt.labels
        io[f"img{i}.gt_masks"] = torch.from_numpy(masks)
        io[f"img{i}.meta"] = torch.tensor([*ori, *img_shape, *PAD, *scale], dtype=torch.float64)
    return inputs, samples, io


def spread_outputs(model):
    """Moves scores away from the focal prior and mask probabilities away
    from 0.5 (random but fixed), so comparisons do not sit on ties."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("fc_cls.bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 1.5 - 2.0)
            elif name.endswith("fc_cls.weight"):
                p.mul_(3.0)
            elif name.endswith("fc_reg.weight"):
                # Six random refinements would otherwise throw boxes far off
                # the image (MMDetection's mask paste then fails).
                p.mul_(0.2)
            elif name.endswith("conv_logits.weight"):
                p.mul_(8.0)
            elif name.endswith("conv_logits.bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.25 + 0.75)


def run(name, cfg_dict, out_dir):
    from mmengine.config import Config
    from mmdet.registry import MODELS

    cfg = Config(dict(model=cfg_dict)).model
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    spread_outputs(model)
    torch.save({
        "state_dict": model.state_dict(),
        "meta": {
            "epoch": 3,
            "mmdet_version": "3.3.0",
            "some_object": RunInfo(seed=0, tags=("tiny", 2)),
            "a_set": {1, 2, 3},
            "a_tuple": (1, "x", 2.5),
        },
    }, os.path.join(out_dir, f"{name}.pth"))

    inputs, samples, io = make_batch()
    checkpoint_state = copy.deepcopy(model.state_dict())
    for tag, dtype in (("", torch.float32), ("f64.", torch.float64)):
        model.load_state_dict(checkpoint_state)
        model.to(dtype)
        record(model, inputs.to(dtype), cast_boxes(samples, dtype), tag, io)
    torch.save(io, os.path.join(out_dir, f"{name}_io.pth"))


def cast_boxes(samples, dtype):
    """Copies of `samples` with GT boxes in `dtype` (the match costs'
    `cdist` needs one dtype)."""
    out = [s.clone() for s in samples]
    for s in out:
        s.gt_instances.bboxes = s.gt_instances.bboxes.to(dtype)
    return out


def record(model, inputs, samples, tag, io):
    """Predictions (eval mode, the checkpoint's BN statistics; float32
    only), then losses, gradients and BN statistics after one train-mode
    forward, into `io` under `tag`."""
    model.eval()
    results = []
    if inputs.dtype == torch.float32:
        with torch.no_grad():
            results = model.predict(inputs, [s.clone() for s in samples], rescale=True)
    for i, res in enumerate(results):
        pred = res.pred_instances
        io[f"{tag}pred{i}.bboxes"] = pred.bboxes.contiguous()
        io[f"{tag}pred{i}.scores"] = pred.scores.contiguous()
        io[f"{tag}pred{i}.labels"] = pred.labels.contiguous()
        if "masks" in pred:
            io[f"{tag}pred{i}.masks"] = pred.masks.contiguous()

    model.train()
    model.zero_grad(set_to_none=True)
    losses = model.loss(inputs, [s.clone() for s in samples])
    total = sum(v for k, v in losses.items() if "loss" in k)
    total.backward()
    for k, v in losses.items():
        io[f"{tag}loss.{k}"] = v.detach().reshape(())
    for pname, p in model.named_parameters():
        if p.grad is not None:
            io[f"{tag}grad.{pname}"] = p.grad.detach().clone()
    params = dict(model.named_parameters())
    for k, v in model.state_dict().items():
        if k not in params:
            io[f"{tag}after.{k}"] = v.clone()


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out_dir = sys.argv[1]
    with open(os.path.join(out_dir, "model.json")) as f:
        model = json.load(f)
    load_mmdet()
    run("queryinst", model, out_dir)
    run("sparse_rcnn", sparse_rcnn_cfg(model), out_dir)


if __name__ == "__main__":
    main()
