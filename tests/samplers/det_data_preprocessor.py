"""MMDetection 3.3.0's `DetDataPreprocessor` (on MMEngine 0.10.7's
`ImgDataPreprocessor`), run on the CPU for the unit tests of
src/models/data_preprocessors/det_data_preprocessor.rs.

One JSON request per line on stdin, one answer per line on stdout:

  request: {"config": {DetDataPreprocessor arguments}, "training": bool,
            "images": [{"h", "w", "c", "data": [bytes HWC BGR]}],
            "instances": [{"bboxes": [[x1, y1, x2, y2]], "labels": [...],
                           "masks": null or {"count", "h", "w", "data": [bytes]}}]}
  answer:  {"inputs": {"shape", "bits" (float32 bit patterns, exact)},
            "batch_input_shape", "pad_shapes",
            "bboxes": [[...]], "labels": [[...]],
            "masks": [null or {"shape", "data"}]}

Images enter as `PackDetInputs` leaves them (CHW uint8 tensors) and samples
as `DetDataSample`s with `BitmapMasks`, through `pseudo_collate`'s layout.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'reference'))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

import torch  # noqa: E402
from mmdet.models.data_preprocessors.data_preprocessor import \
    DetDataPreprocessor  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402


def sample(img, inst):
    ds = DetDataSample(metainfo={'img_shape': (img['h'], img['w'])})
    gt = InstanceData()
    gt.bboxes = torch.tensor(inst['bboxes'], dtype=torch.float32).reshape(-1, 4)
    gt.labels = torch.tensor(inst['labels'], dtype=torch.int64)
    m = inst['masks']
    if m is not None:
        arr = np.asarray(m['data'], dtype=np.uint8).reshape(m['count'], m['h'], m['w'])
        gt.masks = BitmapMasks(arr, m['h'], m['w'])
    ds.gt_instances = gt
    return ds


def answer(req):
    # Null means "the default" in detc's config (`non_blocking: null` would
    # reach `Tensor.to` as None in MMEngine).
    pre = DetDataPreprocessor(**{k: v for k, v in req['config'].items() if v is not None})
    inputs = []
    for img in req['images']:
        hwc = np.asarray(img['data'], dtype=np.uint8).reshape(img['h'], img['w'], img['c'])
        # PackDetInputs: HWC -> CHW, contiguous.
        inputs.append(torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1))))
    samples = [sample(img, inst) for img, inst in zip(req['images'], req['instances'])]
    out = pre({'inputs': inputs, 'data_samples': samples}, req['training'])
    batch = out['inputs'].contiguous().numpy()
    masks = []
    for ds in out['data_samples']:
        if 'masks' in ds.gt_instances:
            arr = ds.gt_instances.masks.masks
            masks.append({'shape': list(arr.shape), 'data': arr.ravel().tolist()})
        else:
            masks.append(None)
    return {
        'inputs': {'shape': list(batch.shape), 'bits': batch.ravel().view(np.uint32).tolist()},
        'batch_input_shape': list(out['data_samples'][0].batch_input_shape),
        'pad_shapes': [list(ds.pad_shape) for ds in out['data_samples']],
        'bboxes': [ds.gt_instances.bboxes.ravel().tolist() for ds in out['data_samples']],
        'labels': [ds.gt_instances.labels.tolist() for ds in out['data_samples']],
        'masks': masks,
    }


for line in sys.stdin:
    print(json.dumps(answer(json.loads(line))), flush=True)
