"""Checks a `detc data shapes` folder with pycocotools and OpenCV.

For each split: COCO(ann_file) loads; every annotation's annToMask has as
many pixels as its `area`, and toBbox(annToRLE) equals its `bbox`; every
image decodes with cv2 at its declared size. Prints one JSON object:
{"splits": {split: {"images", "annotations", "kinds": {polygon, rle_list,
rle_string}, "small", "medium", "large"}}, "errors": [...]}.

Run: .venv-test/bin/python tests/data_ref/check_shapes.py OUT
"""
import contextlib
import io
import json
import os
import sys

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO


def check_split(out, split, errors):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(os.path.join(out, 'annotations', f'instances_{split}.json'))
    kinds = {'polygon': 0, 'rle_list': 0, 'rle_string': 0}
    sizes = {'small': 0, 'medium': 0, 'large': 0}
    for img_id in coco.getImgIds():
        info = coco.loadImgs([img_id])[0]
        img = cv2.imread(os.path.join(out, split, info['file_name']), cv2.IMREAD_COLOR)
        if img is None or img.shape != (info['height'], info['width'], 3):
            errors.append(f'{split}/{info["file_name"]}: decodes as {None if img is None else img.shape}')
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img_id])):
            segm = ann['segmentation']
            if isinstance(segm, list):
                kinds['polygon'] += 1
            elif isinstance(segm['counts'], list):
                kinds['rle_list'] += 1
            else:
                kinds['rle_string'] += 1
            mask = coco.annToMask(ann)
            if mask.shape != (info['height'], info['width']) or int(mask.sum()) != ann['area']:
                errors.append(f'{split} annotation {ann["id"]}: mask {mask.shape} has {int(mask.sum())} pixels, area {ann["area"]}')
            bbox = mask_utils.toBbox(coco.annToRLE(ann)).tolist()
            if bbox != ann['bbox']:
                errors.append(f'{split} annotation {ann["id"]}: toBbox {bbox} != bbox {ann["bbox"]}')
            area = ann['area']
            sizes['small' if area < 32 ** 2 else 'medium' if area < 96 ** 2 else 'large'] += 1
    return {'images': len(coco.getImgIds()), 'annotations': len(coco.getAnnIds()), 'kinds': kinds, **sizes}


def main():
    out = sys.argv[1]
    errors = []
    splits = {s: check_split(out, s, errors) for s in ('train', 'val')}
    print(json.dumps({'splits': splits, 'errors': errors[:20]}))


if __name__ == '__main__':
    main()
