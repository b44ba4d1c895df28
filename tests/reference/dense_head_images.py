"""The two-image batch the dense-head references (retina_reference.py,
fcos_reference.py) run MMDetection's heads on, and its record for the Rust
tests (`reference_samples` in src/models/dense_heads/base_dense_head.rs).

`images`: dicts of `img_shape`, `scale_factor`, `bboxes`, `labels`, padded
to `PAD` (the batch's input shape).
"""

import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

PAD = (64, 80)


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
