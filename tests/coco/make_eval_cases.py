"""Generates COCO evaluation cases and pycocotools' answers for them.

    .venv-test/bin/python tests/coco/make_eval_cases.py OUT_DIR [CASE,CASE...]

writes OUT_DIR/<case>/{gt.json, dt.json, expected.json}; expected.json holds
{"metrics": [...], "stats": {metric: [12 numbers]}, "text": [summary lines]}
from COCO(gt).loadRes(dt) + COCOeval(...).evaluate/accumulate/summarize.
Deterministic (fixed seeds). The cases cover crowd regions, empty images,
images without detections, more than 100 detections per image, tiny, medium
and large objects, polygons, uncompressed and compressed RLE ground truth,
box and mask results (with and without `bbox`), score ties, ground truth with
id 0 and repeated annotation ids. tests/it/eval.rs runs `detc eval` on each.
"""
import contextlib
import io
import json
import os
import sys

import numpy as np
import pycocotools.mask as M
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def counts_str(rle):
    return rle['counts'].decode() if isinstance(rle['counts'], bytes) else rle['counts']


def polygon_for(rng, x, y, w, h):
    """A star-ish polygon inside the box."""
    n = int(rng.integers(3, 10))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(0.5, 1.0, n)
    cx, cy = x + w / 2, y + h / 2
    xs = cx + np.cos(ang) * rad * w / 2
    ys = cy + np.sin(ang) * rad * h / 2
    return [float(round(v, 2)) for v in np.stack([xs, ys], 1).reshape(-1)]


def random_box(rng, W, H, size_class):
    side = {0: rng.uniform(1, 20), 1: rng.uniform(25, 80), 2: rng.uniform(90, 250)}[size_class]
    w = min(side * rng.uniform(0.6, 1.4), W)
    h = min(side * rng.uniform(0.6, 1.4), H)
    x = rng.uniform(0, max(W - w, 0.0))
    y = rng.uniform(0, max(H - h, 0.0))
    return [float(round(v, 2)) for v in (x, y, w, h)]


def gt_segmentation(rng, box, H, W, style):
    """(segmentation, area) of one ground truth in one of the three JSON forms."""
    poly = polygon_for(rng, *box)
    rle = M.merge(M.frPyObjects([poly], H, W))
    if style == 'polygon':
        if rng.random() < 0.3:  # a second part
            return [poly, polygon_for(rng, box[0], box[1], box[2] / 2, box[3] / 2)], float(M.area(rle))
        return [poly], float(M.area(rle))
    if style == 'rle':
        return {'size': [H, W], 'counts': counts_str(rle)}, float(M.area(rle))
    flat = M.decode(rle).reshape(-1, order='F').astype(np.int8)
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(cuts).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    return {'size': [H, W], 'counts': [int(r) for r in runs]}, float(M.area(rle))


def jitter(rng, box, W, H, amount):
    x, y, w, h = box
    dx, dy = rng.normal(0, amount * max(w, 1)), rng.normal(0, amount * max(h, 1))
    sw, sh = np.exp(rng.normal(0, amount)), np.exp(rng.normal(0, amount))
    nw, nh = max(w * sw, 0.5), max(h * sh, 0.5)
    return [float(round(v, 2)) for v in (min(max(x + dx, 0), W - 1), min(max(y + dy, 0), H - 1), nw, nh)]


def make_case(seed, opts):
    rng = np.random.default_rng(seed)
    cat_ids = sorted(rng.choice(np.arange(1, 30), size=opts.get('cats', 3), replace=False).tolist())
    images, anns, dets = [], [], []
    n_images = opts.get('images', 8)
    ann_id = 1
    for i in range(n_images):
        img_id = int(1000 + 7 * i + seed)
        W, H = int(rng.integers(40, 400)), int(rng.integers(40, 400))
        images.append({'id': img_id, 'width': W, 'height': H, 'file_name': f'{img_id}.jpg'})
        n_gt = 0 if rng.random() < opts.get('empty', 0.15) else int(rng.integers(1, opts.get('max_gt', 8)))
        gts = []
        for _ in range(n_gt):
            box = random_box(rng, W, H, int(rng.integers(3)))
            style = opts.get('gt_style') or rng.choice(['polygon', 'rle', 'counts'])
            crowd = int(rng.random() < opts.get('crowd', 0.1))
            segm, area = gt_segmentation(rng, box, H, W, 'counts' if crowd and rng.random() < 0.7 else style)
            if opts.get('area_from_box'):
                area = box[2] * box[3]
            cat = int(rng.choice(cat_ids))
            ann = {'id': ann_id, 'image_id': img_id, 'category_id': cat, 'bbox': box, 'area': area,
                   'iscrowd': crowd, 'segmentation': segm}
            ann_id += 1
            anns.append(ann)
            gts.append(ann)
        if rng.random() < opts.get('no_dets', 0.1):
            continue
        n_det = int(rng.integers(opts.get('min_dets', 0), opts.get('max_dets', 20) + 1))
        for _ in range(n_det):
            if gts and rng.random() < 0.7:
                g = gts[int(rng.integers(len(gts)))]
                box = jitter(rng, g['bbox'], W, H, rng.choice([0.02, 0.1, 0.3]))
                cat = g['category_id'] if rng.random() < 0.85 else int(rng.choice(cat_ids))
            else:
                box = random_box(rng, W, H, int(rng.integers(3)))
                cat = int(rng.choice(cat_ids))
            score = float(rng.random())
            if opts.get('ties'):
                score = round(score, 1)
            det = {'image_id': img_id, 'category_id': cat, 'score': score}
            if opts.get('det_bbox', True):
                det['bbox'] = box
            if opts.get('det_segm'):
                det['segmentation'] = {'size': [H, W], 'counts': counts_str(
                    M.merge(M.frPyObjects([polygon_for(rng, *box)], H, W)))}
            dets.append(det)
    if opts.get('gt_id_zero') and anns:
        anns[0]['id'] = 0
    if opts.get('dup_ids') and len(anns) > 3:
        anns[2]['id'] = anns[1]['id']
    if not dets:  # pycocotools cannot load an empty results list
        img = images[0]
        dets.append({'image_id': img['id'], 'category_id': cat_ids[0], 'score': 0.5, 'bbox': [1.0, 1.0, 5.0, 5.0]})
        if opts.get('det_segm'):
            dets[-1]['segmentation'] = {'size': [img['height'], img['width']],
                                        'counts': counts_str(M.frPyObjects(np.array([[1.0, 1, 5, 5]]), img['height'], img['width'])[0])}
    cats = [{'id': c, 'name': f'class_{c}'} for c in cat_ids]
    if opts.get('unused_cat'):
        cats.append({'id': 99, 'name': 'never_annotated'})
    return {'images': images, 'annotations': anns, 'categories': cats}, dets


def evaluate(gt_path, dt_path, metrics):
    stats, text = {}, []
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        gt = COCO(gt_path)
        dt = gt.loadRes(dt_path)
        for metric in metrics:
            ev = COCOeval(gt, dt, metric)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats[metric] = [float(s) for s in ev.stats]
    for line in out.getvalue().splitlines():
        if line.startswith('Evaluate annotation type') or line.startswith(' Average'):
            text.append(line)
    return stats, text


CASES = [
    ('bbox_basic', {}, ['bbox']),
    ('bbox_many_dets', {'min_dets': 90, 'max_dets': 160, 'images': 5}, ['bbox']),
    ('bbox_ties', {'ties': True, 'max_dets': 40}, ['bbox']),
    ('bbox_crowd_heavy', {'crowd': 0.4}, ['bbox']),
    ('bbox_empty_images', {'empty': 0.5, 'no_dets': 0.4}, ['bbox']),
    ('bbox_one_cat', {'cats': 1}, ['bbox']),
    ('bbox_many_cats', {'cats': 12, 'images': 12}, ['bbox']),
    ('bbox_unused_cat', {'unused_cat': True}, ['bbox']),
    ('bbox_gt_id_zero', {'gt_id_zero': True, 'max_dets': 30}, ['bbox']),
    ('bbox_dup_ids', {'dup_ids': True}, ['bbox']),
    ('bbox_area_from_box', {'area_from_box': True}, ['bbox']),
    ('bbox_single_image', {'images': 1, 'max_gt': 12, 'max_dets': 130}, ['bbox']),
    ('segm_polygons', {'gt_style': 'polygon', 'det_segm': True}, ['segm']),
    ('segm_rle', {'gt_style': 'rle', 'det_segm': True}, ['segm']),
    ('segm_counts', {'gt_style': 'counts', 'det_segm': True}, ['segm']),
    ('segm_mixed', {'det_segm': True, 'crowd': 0.25}, ['segm', 'bbox']),
    ('segm_from_boxes', {}, ['segm']),
    ('segm_many_dets', {'det_segm': True, 'min_dets': 95, 'max_dets': 140, 'images': 3}, ['segm', 'bbox']),
    ('segm_no_bbox_key', {'det_segm': True, 'det_bbox': False}, ['segm', 'bbox']),
    ('segm_ties', {'det_segm': True, 'ties': True}, ['segm']),
    ('segm_empty_images', {'det_segm': True, 'empty': 0.5, 'no_dets': 0.4}, ['segm']),
    ('segm_crowd_heavy', {'det_segm': True, 'crowd': 0.5}, ['segm']),
    ('segm_gt_id_zero', {'det_segm': True, 'gt_id_zero': True}, ['segm']),
    ('segm_one_cat', {'det_segm': True, 'cats': 1, 'images': 10}, ['segm', 'bbox']),
]
# more random mixtures, to reach a broad sample
for n in range(12):
    CASES.append((f'mixed_{n:02d}', {'det_segm': n % 2 == 0, 'crowd': 0.05 * (n % 4), 'cats': 1 + n % 5,
                                     'images': 4 + n, 'max_dets': 10 + 15 * (n % 4), 'ties': n % 3 == 0},
                  ['bbox', 'segm']))


def main():
    out = sys.argv[1]
    only = sys.argv[2].split(',') if len(sys.argv) > 2 else None
    for seed, (name, opts, metrics) in enumerate(CASES):
        if only and name not in only:
            continue
        gt, dets = make_case(seed, opts)
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        gt_path, dt_path = os.path.join(d, 'gt.json'), os.path.join(d, 'dt.json')
        with open(gt_path, 'w') as f:
            json.dump(gt, f)
        with open(dt_path, 'w') as f:
            json.dump(dets, f)
        stats, text = evaluate(gt_path, dt_path, metrics)
        with open(os.path.join(d, 'expected.json'), 'w') as f:
            json.dump({'metrics': metrics, 'stats': stats, 'text': text}, f)


if __name__ == '__main__':
    main()
