"""The two-image batch the dense-head references (retina_reference.py,
fcos_reference.py, atss_reference.py) run MMDetection's heads on, its
record for the Rust tests (`reference_samples` in
src/models/dense_heads/base_dense_head.rs), and one head's case as the Rust
tests check it (`check_grads_and_predictions` there).

`images`: dicts of `img_shape`, `scale_factor`, `bboxes`, `labels`, padded
to `PAD` (the batch's input shape); `IMAGES` the batch every reference uses
(image 1 has no object), and `record_cases` a reference's whole run.
"""

import logging
import os

import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

PAD = (64, 80)
IMAGES = [
    dict(img_shape=(60, 76), scale_factor=(1.25, 1.28),
         bboxes=[[4.0, 6.0, 30.0, 40.0], [35.0, 10.0, 70.0, 30.0], [10.0, 30.0, 50.0, 58.0], [40.0, 36.0, 48.0, 44.0]],
         labels=[0, 2, 1, 1]),
    dict(img_shape=(64, 72), scale_factor=(1.5, 1.5), bboxes=[], labels=[]),
]


def samples(images):
    """MMDetection's data samples of `images`."""
    out = []
    for im in images:
        h, w = im["img_shape"]
        sw, sh = im["scale_factor"]
        s = DetDataSample(metainfo=dict(img_shape=im["img_shape"], pad_shape=PAD, batch_input_shape=PAD,
                                        scale_factor=im["scale_factor"],
                                        ori_shape=(round(h / sh), round(w / sw))))
        s.gt_instances = InstanceData(bboxes=torch.tensor(im["bboxes"]).reshape(-1, 4),
                                      labels=torch.tensor(im["labels"], dtype=torch.long))
        out.append(s)
    return out


def record(d, images):
    """`img.{i}.bboxes`, `img.{i}.labels` and `img.{i}.meta` [img_h, img_w,
    pad_h, pad_w, scale_w, scale_h] of each image."""
    for i, im in enumerate(images):
        d[f"img.{i}.bboxes"] = torch.tensor(im["bboxes"]).reshape(-1, 4)
        d[f"img.{i}.labels"] = torch.tensor(im["labels"], dtype=torch.long)
        d[f"img.{i}.meta"] = torch.tensor([*im["img_shape"], *PAD, *im["scale_factor"]], dtype=torch.float64)


def features(d, channels=8):
    """A 2-image batch of random `channels`-channel features per level
    (strides 8, 16, 32 of `PAD`), recorded as `x.{l}`."""
    x = [torch.randn(2, channels, PAD[0] // s, PAD[1] // s) for s in (8, 16, 32)]
    for i, t in enumerate(x):
        d[f"x.{i}"] = t.clone()
    return x


def record_head(d, name, head, x, images, cls_conv):
    """One head's case on features `x` (a list per level): NAME.init.* after
    `init_weights()`, NAME.sd.* (perturbed, `cls_conv`'s bias, or each
    level's if it is a ModuleList, raised so that scores near 0.2 give
    detections to compare), NAME.loss.*, NAME.grad.*
    (every parameter, and NAME.grad.x.{l} the features) and
    NAME.pred{r}.{i}.{bboxes,scores,labels} for `predict(rescale=r)`."""
    head.init_weights()
    for k, v in head.state_dict().items():
        d[f"{name}.init.{k}"] = v.clone()
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.1 * torch.randn_like(p))
        cls = getattr(head, cls_conv)
        # A ModuleList (RTMDetSepBNHead's `rtm_cls`): one classifier per level.
        for conv in (cls if isinstance(cls, torch.nn.ModuleList) else [cls]):
            conv.bias.add_(3.0)
    for k, v in head.state_dict().items():
        d[f"{name}.sd.{k}"] = v.clone()
    head.train()
    xs = [t.clone().requires_grad_() for t in x]
    losses = head.loss(tuple(xs), samples(images))
    total = 0
    for k, v in losses.items():
        v = sum(v) if isinstance(v, list) else v  # per-level lists, as MMEngine's parse_losses sums them
        d[f"{name}.loss.{k}"] = v.detach().clone()
        total = total + v
    total.backward()
    for k, p in head.named_parameters():
        # Zero for a parameter the losses never reach (TOOD's unused reduction bias).
        d[f"{name}.grad.{k}"] = p.grad.clone() if p.grad is not None else torch.zeros_like(p)
    for i, t in enumerate(xs):
        d[f"{name}.grad.x.{i}"] = t.grad.clone()
    head.eval()
    with torch.no_grad():
        for rescale in (True, False):
            for i, r in enumerate(head.predict(tuple(x), samples(images), rescale=rescale)):
                p = f"{name}.pred{int(rescale)}.{i}"
                d[f"{p}.bboxes"], d[f"{p}.scores"], d[f"{p}.labels"] = r.bboxes, r.scores, r.labels


def record_cases(out, file_name, cases, cls_conv, channels=8, before_case=None, extra=None):
    """A dense-head reference's run: seed 0, the `IMAGES` and their features
    (`channels` each), `record_head` for each config of `cases` (after
    `before_case(name)`, e.g. setting the epoch), `extra(d)` for any further
    records, all saved to `out/file_name`."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.logging import MMLogger

    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    d = {}
    record(d, IMAGES)
    x = features(d, channels)
    for name, cfg in cases.items():
        if before_case is not None:
            before_case(name)
        record_head(d, name, MODELS.build(cfg), x, IMAGES, cls_conv)
    if extra is not None:
        extra(d)
    torch.save(d, os.path.join(out, file_name))
