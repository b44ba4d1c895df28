"""Random masks, polygons and boxes through pycocotools.mask, as JSON on stdout.

The Rust test (tests/it/eval.rs, `mask_api_matches_pycocotools`) redoes each
case with `detc::evaluation::mask` and compares: compressed strings, areas,
boxes, merges and IoUs (with crowd flags). Deterministic: a fixed seed.

    .venv-test/bin/python tests/coco/mask_cases.py > cases.json
"""
import json
import sys

import numpy as np
import pycocotools.mask as M


def s(rle):
    c = rle['counts']
    return c.decode() if isinstance(c, bytes) else c


def random_mask(rng, h, w):
    kind = rng.integers(4)
    if kind == 0:
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
    elif kind == 1:
        m = np.zeros((h, w), np.uint8)
        y0, x0 = rng.integers(h), rng.integers(w)
        m[y0:y0 + rng.integers(1, h + 1), x0:x0 + rng.integers(1, w + 1)] = 1
    elif kind == 2:
        m = np.zeros((h, w), np.uint8)
    else:
        m = np.ones((h, w), np.uint8)
    return m


def random_polygon(rng, h, w):
    n = int(rng.integers(3, 12))
    cx, cy = rng.uniform(-5, w + 5), rng.uniform(-5, h + 5)
    r = rng.uniform(0.3, max(h, w) * 0.7)
    ang = np.sort(rng.uniform(0, 2 * np.pi, n)) if rng.random() < 0.7 else rng.uniform(0, 2 * np.pi, n)
    rad = r * rng.uniform(0.2, 1.0, n)
    xs, ys = cx + rad * np.cos(ang), cy + rad * np.sin(ang)
    if rng.random() < 0.3:  # integer and half-integer vertices hit the rounding edges
        xs, ys = np.round(xs * 2) / 2, np.round(ys * 2) / 2
    poly = np.stack([xs, ys], 1).reshape(-1)
    return [float(v) for v in poly]


def main():
    rng = np.random.default_rng(20260328)
    cases = []
    for _ in range(60):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        masks = [random_mask(rng, h, w) for _ in range(int(rng.integers(1, 5)))]
        polys = [[random_polygon(rng, h, w) for _ in range(int(rng.integers(1, 3)))]
                 for _ in range(int(rng.integers(1, 4)))]
        # repeated vertices, a polygon outside the image, a sliver
        polys.append([[1.0, 1.0, 1.0, 1.0, 6.2, 1.0, 6.2, 1.0, 3.0, 5.5, 1.0, 1.0],
                      [w + 3.0, 2.0, w + 9.0, 2.0, w + 6.0, 8.0],
                      [0.0, 0.5, float(w), 0.7, float(w), 0.9]])
        boxes = [[float(v) for v in (rng.uniform(-3, w), rng.uniform(-3, h),
                                     rng.uniform(0, w), rng.uniform(0, h))] for _ in range(3)]
        boxes.append([1.0, 2.0, 0.0, 3.0])  # degenerate
        enc = M.encode(np.asfortranarray(np.stack(masks, 2)))
        poly_rles = [M.merge(M.frPyObjects(p, h, w)) for p in polys]
        box_rles = M.frPyObjects(np.array(boxes, dtype=np.float64), h, w)
        all_rles = list(enc) + poly_rles + list(box_rles)
        crowd = [int(rng.random() < 0.3) for _ in all_rles]
        iou = M.iou(all_rles, all_rles, crowd)
        dboxes = [[float(v) for v in b] for b in M.toBbox(all_rles)]
        allb = boxes + dboxes
        bb_iou = M.iou(allb, allb, [i % 2 for i in range(len(allb))])
        cases.append({
            'height': h, 'width': w,
            'masks': [[int(v) for v in m.reshape(-1)] for m in masks],
            'polygons': polys,
            'boxes': boxes,
            'strings': [s(r) for r in all_rles],
            'areas': [int(a) for a in M.area(all_rles)],
            'bboxes': dboxes,
            'union': s(M.merge(all_rles, intersect=False)),
            'intersection': s(M.merge(all_rles[:3], intersect=True)),
            'iscrowd': crowd,
            'iou': np.asarray(iou).reshape(-1).tolist(),
            'bbox_iou': np.asarray(bb_iou).reshape(-1).tolist(),
        })
    json.dump(cases, sys.stdout)


if __name__ == '__main__':
    main()
