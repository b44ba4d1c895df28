"""MMDetection 3.3.0's CocoMetric.compute_metrics on predictions from stdin.

Input (one JSON object): {"runs": [{"cfg": {CocoMetric kwargs}, "classes": [...],
"preds": [{"img_id", "bboxes" (xyxy), "scores", "labels", "masks"?}],
"gts": [{"img_id", "width", "height", "anns"?}]}]}. Output: one JSON list per
run of [key, value] pairs, in the order MMDetection returns them (keys without
the `coco/` prefix that BaseMetric.evaluate adds).

mmdet's package __init__ files import compiled mmcv ops and matplotlib, absent
here: the packages on the way are stubbed so that only coco_metric.py, its
pycocotools wrapper, the recall functions of `proposal_fast` and mmengine
are real. terminaltables (the classwise log table) is stubbed too: only the
numbers are compared.

`eval_recalls` stacks the images' IoU matrices with `np.array`, which NumPy
before 1.24 (what MMDetection 3.3 was written against) made an object array
when their shapes differ and NumPy since refuses: its `np.array` is given
the old behaviour for that one case.
"""
import json
import os
import sys
import types

import numpy as np

# stdout carries only the answer: MMEngine's logger and pycocotools print to
# what they think is stdout, which goes to stderr from here on
RESULT_FD = os.dup(1)
os.dup2(2, 1)

import mmdet  # noqa: E402


def stub(name, path=None):
    m = types.ModuleType(name)
    m.__path__ = [path] if path else []
    sys.modules[name] = m
    return m


root = os.path.dirname(mmdet.__file__)
stub('mmdet.datasets', os.path.join(root, 'datasets'))
stub('mmdet.evaluation', os.path.join(root, 'evaluation'))
stub('mmdet.evaluation.metrics', os.path.join(root, 'evaluation/metrics'))
functional = stub('mmdet.evaluation.functional', os.path.join(root, 'evaluation/functional'))
stub('mmdet.structures')
stub('mmdet.structures.mask').encode_mask_results = None


class AsciiTable:
    def __init__(self, data):
        self.table = repr(data)


stub('terminaltables').AsciiTable = AsciiTable


class RaggedNumpy(types.ModuleType):
    """NumPy, with `np.array` of differently shaped arrays an object array."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def array(x, *args, **kwargs):
        try:
            return np.array(x, *args, **kwargs)
        except ValueError:
            out = np.empty(len(x), dtype=object)
            for i, item in enumerate(x):
                out[i] = item
            return out


import mmdet.evaluation.functional.recall as recall  # noqa: E402

recall.np = RaggedNumpy('numpy')
functional.eval_recalls = recall.eval_recalls

from mmdet.evaluation.metrics.coco_metric import CocoMetric  # noqa: E402


def run(spec):
    metric = CocoMetric(**spec['cfg'])
    metric.dataset_meta = {'classes': spec['classes']}
    results = []
    for gt, p in zip(spec['gts'], spec['preds']):
        pred = {'img_id': p['img_id'],
                'bboxes': np.array(p['bboxes'], dtype=np.float32).reshape(-1, 4),
                'scores': np.array(p['scores'], dtype=np.float32),
                'labels': np.array(p['labels'], dtype=np.int64)}
        if 'masks' in p:
            pred['masks'] = [{'size': m['size'], 'counts': m['counts'].encode()} for m in p['masks']]
        results.append((gt, pred))
    out = metric.compute_metrics(results)
    # NaN (a class without ground truth) as null, which JSON can carry
    return [[k, None if v != v else float(v)] for k, v in out.items()]


def main():
    spec = json.load(sys.stdin)
    answers = [run(r) for r in spec['runs']]
    with os.fdopen(RESULT_FD, 'w') as out:
        json.dump(answers, out)


if __name__ == '__main__':
    main()
