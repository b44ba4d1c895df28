"""pycocotools end to end, timed: COCO(gt), loadRes, evaluate, accumulate, summarize.

    .venv-test/bin/python tests/coco/bench_pycocotools.py GT.json RESULTS.json METRIC

Prints pycocotools' output, then `seconds: S` (wall time of the whole run,
interpreter start-up excluded) on its last line. Used by scripts/bench-eval.
"""
import sys
import time

t0 = time.perf_counter()
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

gt = COCO(sys.argv[1])
dt = gt.loadRes(sys.argv[2])
ev = COCOeval(gt, dt, sys.argv[3])
ev.evaluate()
ev.accumulate()
ev.summarize()
print(f'seconds: {time.perf_counter() - t0:.3f}')
