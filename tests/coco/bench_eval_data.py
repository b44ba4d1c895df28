"""Writes a COCO-val-sized synthetic evaluation case for `scripts/bench-eval`.

    .venv-test/bin/python tests/coco/bench_eval_data.py OUT_DIR [IMAGES] [DETS_PER_IMAGE]

OUT_DIR/gt.json: IMAGES (5000) images of 640x480 or so, ~7 objects each over
80 categories with COCO's ids, polygons (1-2 parts) and ~1% crowd regions as
uncompressed RLE, COCO's mix of small/medium/large; OUT_DIR/bbox.json and
OUT_DIR/segm.json: DETS_PER_IMAGE (100) detections per image, jittered ground
truth and random boxes, masks as compressed RLE. Deterministic (seed 0).
"""
import json
import os
import sys

import numpy as np
import pycocotools.mask as M

COCO_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
            33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
            60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90]


def ellipse(rng, x, y, w, h, parts=1):
    polys = []
    for p in range(parts):
        n = int(rng.integers(8, 16))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(0.75, 1.0, n) / (p + 1)
        xs = x + w / 2 + np.cos(ang) * rad * w / 2
        ys = y + h / 2 + np.sin(ang) * rad * h / 2
        polys.append([round(float(v), 2) for v in np.stack([xs, ys], 1).reshape(-1)])
    return polys


def box(rng, W, H):
    side = np.exp(rng.uniform(np.log(6), np.log(min(W, H) * 0.9)))
    w, h = min(side * rng.uniform(0.6, 1.5), W - 1), min(side * rng.uniform(0.6, 1.5), H - 1)
    return [round(float(v), 2) for v in (rng.uniform(0, W - w), rng.uniform(0, H - h), w, h)]


def runs_of(rle):
    flat = M.decode(rle).reshape(-1, order='F').astype(np.int8)
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(cuts).tolist()
    return [0] + runs if flat[0] == 1 else runs


def main():
    out = sys.argv[1]
    n_images = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    n_dets = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    rng = np.random.default_rng(0)
    images, anns, bbox_res, segm_res = [], [], [], []
    for i in range(n_images):
        img_id = 100000 + 13 * i
        W, H = int(rng.choice([640, 480, 500, 612])), int(rng.choice([480, 427, 375, 640]))
        images.append({'id': img_id, 'width': W, 'height': H, 'file_name': f'{img_id:012d}.jpg'})
        gts = []
        for _ in range(int(rng.poisson(7.3))):
            b = box(rng, W, H)
            crowd = int(rng.random() < 0.01)
            polys = ellipse(rng, *b, parts=1 + int(rng.random() < 0.2))
            rle = M.merge(M.frPyObjects(polys, H, W))
            segm = {'size': [H, W], 'counts': runs_of(rle)} if crowd else polys
            ann = {'id': len(anns) + 1, 'image_id': img_id, 'category_id': int(rng.choice(COCO_IDS)), 'bbox': b,
                   'area': float(M.area(rle)), 'iscrowd': crowd, 'segmentation': segm}
            anns.append(ann)
            gts.append(ann)
        det_boxes, det_cats = [], []
        for _ in range(n_dets):
            if gts and rng.random() < 0.6:
                g = gts[int(rng.integers(len(gts)))]
                x, y, w, h = g['bbox']
                s = rng.choice([0.03, 0.1, 0.3])
                w2, h2 = w * np.exp(rng.normal(0, s)), h * np.exp(rng.normal(0, s))
                x2 = min(max(x + rng.normal(0, s * w), 0), W - 2)
                y2 = min(max(y + rng.normal(0, s * h), 0), H - 2)
                b = [round(float(v), 2) for v in (x2, y2, min(w2, W - x2), min(h2, H - y2))]
                cat = g['category_id'] if rng.random() < 0.8 else int(rng.choice(COCO_IDS))
            else:
                b, cat = box(rng, W, H), int(rng.choice(COCO_IDS))
            det_boxes.append(b)
            det_cats.append(cat)
        scores = rng.random(n_dets)
        rles = M.frPyObjects([ellipse(rng, *b)[0] for b in det_boxes], H, W)
        for b, c, s, r in zip(det_boxes, det_cats, scores, rles):
            bbox_res.append({'image_id': img_id, 'category_id': c, 'bbox': b, 'score': round(float(s), 5)})
            segm_res.append({'image_id': img_id, 'category_id': c, 'score': round(float(s), 5),
                             'segmentation': {'size': [H, W], 'counts': r['counts'].decode()}})
    cats = [{'id': c, 'name': f'class_{c}', 'supercategory': 'thing'} for c in COCO_IDS]
    os.makedirs(out, exist_ok=True)
    for name, obj in [('gt.json', {'images': images, 'annotations': anns, 'categories': cats}),
                      ('bbox.json', bbox_res), ('segm.json', segm_res)]:
        with open(os.path.join(out, name), 'w') as f:
            json.dump(obj, f)


if __name__ == '__main__':
    main()
