"""Reference outputs for tests/it/pipeline.rs, computed by OpenCV and by
MMDetection 3.3.0's own transforms on JPEG files this script writes.

Usage: reference.py OUT_DIR

Writes into OUT_DIR the JPEG files, arrays as .npy and `manifest.json`:
  images:    [{name, file, decoded: npy of cv2.imread (IMREAD_COLOR)}]
  resizes:   [{image, width, height, interpolation, file}] from cv2.resize
  cases:     [{name, data_info}] records as CocoDataset makes them
  pipelines: {name: [transform dicts]} (JSON form; tuples as lists)
  results:   [{case, pipeline, meta, inputs, gt/ignored: {bboxes, labels,
              masks (npy) or polygons}}] from MMDetection's transforms
  crops:     [{case, crop: [h, w], offset: [y, x], options, dropped, and
              when kept meta, inputs, gt/ignored}] from MMDetection's
              LoadImageFromFile -> LoadAnnotations -> RandomCrop -> PackDetInputs
              with RandomCrop's random offset set to `offset`
"""
import json
import os
import sys

import cv2
import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from mmdet_env import TRANSFORMS  # noqa: E402

import mmcv  # noqa: E402

OUT = sys.argv[1]
rng = np.random.default_rng(7)


def save(name, array):
    np.save(os.path.join(OUT, name), np.ascontiguousarray(array))
    return name


def picture(h, w, channels=3):
    """Smooth gradients plus noise: JPEG-like content with real detail."""
    y, x = np.mgrid[0:h, 0:w]
    planes = [(x * (3 + c) + y * (5 - c) + 40 * np.sin((x + 2 * y) / (7 + c))) for c in range(channels)]
    img = np.stack(planes, -1) + rng.normal(0, 12, (h, w, channels))
    return np.clip(img, 0, 255).astype(np.uint8)


IMAGES = {  # name -> (height, width)
    'landscape': (480, 640),
    'tiny': (37, 53),
    'large': (901, 1203),
    'portrait': (333, 201),
}


def write_images():
    images = []
    for name, (h, w) in IMAGES.items():
        path = os.path.join(OUT, f'{name}.jpg')
        cv2.imwrite(path, picture(h, w), [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append(name)
    cv2.imwrite(os.path.join(OUT, 'gray.jpg'), picture(45, 61, 1)[:, :, 0])
    images.append('gray')
    # EXIF orientation 6 (rotate 90° clockwise to view), written by Pillow.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(picture(40, 64)).save(os.path.join(OUT, 'exif.jpg'), exif=exif.tobytes(), quality=92)
    images.append('exif')
    out = []
    for name in images:
        decoded = cv2.imread(os.path.join(OUT, f'{name}.jpg'), cv2.IMREAD_COLOR)
        out.append({'name': name, 'file': f'{name}.jpg', 'decoded': save(f'{name}.imread.npy', decoded)})
    return out


def resize_refs():
    out = []
    for name, (h, w) in IMAGES.items():
        img = cv2.imread(os.path.join(OUT, f'{name}.jpg'))
        new_w, new_h = mmcv.rescale_size((w, h), (1333, 800))
        sizes = [(new_w, new_h), (w // 2, h // 2), (97, 61), (int(w * 2.3), int(h * 1.7)), (w - 1, h + 1)]
        for (sw, sh) in sizes:
            for interp, flag in [('linear', cv2.INTER_LINEAR), ('nearest', cv2.INTER_NEAREST)]:
                ref = cv2.resize(img, (sw, sh), interpolation=flag)
                file = save(f'{name}.{interp}.{sw}x{sh}.npy', ref)
                out.append({'image': name, 'width': sw, 'height': sh, 'interpolation': interp, 'file': file})
    return out


def polygon(cx, cy, r, n):
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = r * rng.uniform(0.5, 1.0, n)
    return [float(round(v, 2)) for a, rr in zip(angles, radii) for v in (cx + rr * np.cos(a), cy + rr * np.sin(a))]


def make_case(name):
    h, w = IMAGES[name]
    instances = []
    for k in range(4):
        r = min(h, w) * rng.uniform(0.1, 0.4)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)  # some reach over the border
        polys = [polygon(cx, cy, r, 7)]
        if k == 1:
            polys.append(polygon(cx + r, cy, r / 2, 5))
        xs, ys = np.concatenate([p[0::2] for p in polys]), np.concatenate([p[1::2] for p in polys])
        bbox = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
        instances.append({'bbox': bbox, 'bbox_label': int(k % 3), 'ignore_flag': 0, 'mask': polys})
    instances[2]['ignore_flag'] = 1  # a crowd region
    # an RLE object (uncompressed counts, as in crowd annotations)
    m = np.zeros((h, w), np.uint8, order='F')
    m[h // 4:h // 2, w // 3:w // 2] = 1
    rle = mask_utils.encode(m)
    counts = rle_counts(m)
    instances.append({'bbox': [w / 3, h / 4, w / 2, h / 2], 'bbox_label': 2, 'ignore_flag': 0,
                      'mask': {'counts': counts, 'size': [h, w]}})
    assert mask_utils.area(rle) == m.sum()
    # a broken polygon (4 coordinates): MMDetection ignores the instance
    instances.append({'bbox': [1.0, 2.0, 5.0, 6.0], 'bbox_label': 0, 'ignore_flag': 0, 'mask': [[1.0, 2.0, 5.0, 6.0]]})
    return {'img_id': len(name), 'img_path': os.path.join(OUT, f'{name}.jpg'), 'height': h, 'width': w,
            'instances': instances}


def rle_counts(m):
    flat = m.flatten(order='F')
    counts, prev, run = [], 0, 0
    for v in flat:
        if v != prev:
            counts.append(run)
            run, prev = 0, v
        run += 1
    counts.append(run)
    return counts


PIPELINES = {
    'train': [
        {'type': 'LoadImageFromFile'},
        {'type': 'LoadAnnotations', 'with_bbox': True, 'with_mask': True},
        {'type': 'Resize', 'scale': [1333, 800], 'keep_ratio': True},
        {'type': 'RandomFlip', 'prob': 1.0},
        {'type': 'PackDetInputs'},
    ],
    'stretch_pad': [
        {'type': 'LoadImageFromFile'},
        {'type': 'LoadAnnotations', 'with_bbox': True, 'with_mask': True},
        {'type': 'Resize', 'scale': [300, 200], 'keep_ratio': False},
        {'type': 'RandomFlip', 'prob': 1.0, 'direction': 'vertical'},
        {'type': 'Pad', 'size_divisor': 32, 'pad_val': {'img': 114, 'masks': 0}},
        {'type': 'PackDetInputs', 'meta_keys': ['img_id', 'img_path', 'ori_shape', 'img_shape', 'pad_shape',
                                                 'scale_factor', 'flip', 'flip_direction']},
    ],
    'polygons': [
        {'type': 'LoadImageFromFile'},
        {'type': 'LoadAnnotations', 'with_bbox': True, 'with_mask': True, 'poly2mask': False},
        {'type': 'Resize', 'scale_factor': 0.7, 'keep_ratio': True},
        {'type': 'RandomFlip', 'prob': [0.0, 1.0], 'direction': ['horizontal', 'diagonal']},
        {'type': 'Pad', 'pad_to_square': True, 'pad_val': 7},
        {'type': 'PackDetInputs', 'meta_keys': ['img_id', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor']},
    ],
    # FilterAnnotations: boxes not above 60 x 40 px, then masks under 1500 px
    # (bitmaps: set pixels) and under 900 px (polygons: shoelace area).
    'filter_boxes_masks': [
        {'type': 'LoadImageFromFile'},
        {'type': 'LoadAnnotations', 'with_bbox': True, 'with_mask': True},
        {'type': 'FilterAnnotations', 'min_gt_bbox_wh': [60, 40]},
        {'type': 'FilterAnnotations', 'by_box': False, 'by_mask': True, 'min_gt_mask_area': 1500},
        {'type': 'Resize', 'scale_factor': 1.0, 'keep_ratio': True},
        {'type': 'PackDetInputs'},
    ],
    'filter_polygons': [
        {'type': 'LoadImageFromFile'},
        {'type': 'LoadAnnotations', 'with_bbox': True, 'with_mask': True, 'poly2mask': False},
        {'type': 'FilterAnnotations', 'min_gt_bbox_wh': [1, 1], 'by_mask': True, 'min_gt_mask_area': 900},
        {'type': 'Resize', 'scale_factor': 1.0, 'keep_ratio': True},
        {'type': 'PackDetInputs'},
    ],
    'upscale_square': [
        {'type': 'LoadImageFromFile'},
        {'type': 'LoadAnnotations', 'with_bbox': True, 'with_mask': True},
        {'type': 'Resize', 'scale': 512, 'keep_ratio': False, 'clip_object_border': False},
        {'type': 'Pad', 'size': [600, 520]},
        {'type': 'PackDetInputs'},
    ],
}

TUPLE_KEYS = ('scale', 'scale_factor', 'size')


def to_mmdet(cfg):
    """JSON lists back into the tuples MMCV expects (as a Python config writes them)."""
    return {k: tuple(v) if k in TUPLE_KEYS and isinstance(v, list) else v for k, v in cfg.items()}


def instances_out(inst, prefix):
    out = {}
    out['bboxes'] = save(prefix + '.bboxes.npy', inst.bboxes.tensor.numpy().astype(np.float32).reshape(-1, 4))
    out['labels'] = save(prefix + '.labels.npy', inst.labels.numpy().astype(np.int64))
    masks = inst.masks
    if hasattr(masks, 'masks') and isinstance(masks.masks, np.ndarray):
        out['masks'] = save(prefix + '.masks.npy', masks.masks.astype(np.uint8))
    else:
        out['polygons'] = [[p.astype(np.float64).tolist() for p in obj] for obj in masks.masks]
    out['mask_shape'] = [int(masks.height), int(masks.width)]
    return out


def jsonable(v):
    if isinstance(v, (tuple, list)):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def run_pipelines(cases):
    results = []
    for case in cases:
        for pname, pipeline in PIPELINES.items():
            transforms = [TRANSFORMS.build(to_mmdet(t)) for t in pipeline]
            data = json.loads(json.dumps(case['data_info']))
            for t in transforms:
                data = t(data)
                if data is None:  # dropped (FilterAnnotations keeps no instance)
                    break
            if data is None:
                results.append({'case': case['name'], 'pipeline': pname, 'dropped': True})
                continue
            sample = data['data_samples']
            prefix = f"{case['name']}.{pname}"
            inputs = data['inputs'].permute(1, 2, 0).contiguous().numpy()
            meta = {k: jsonable(v) for k, v in sample.metainfo.items()}
            results.append({
                'case': case['name'], 'pipeline': pname, 'meta': meta,
                'inputs': save(prefix + '.inputs.npy', inputs),
                'gt': instances_out(sample.gt_instances, prefix + '.gt'),
                'ignored': instances_out(sample.ignored_instances, prefix + '.ignored'),
            })
    return results


def empty_window(info, size):
    """The first `size` x `size` window (y, x) that no box reaches into."""
    h, w = info['height'], info['width']
    for y in range(0, h - size + 1):
        for x in range(0, w - size + 1):
            if all(b[2] <= x or b[0] >= x + size or b[3] <= y or b[1] >= y + size
                   for b in (i['bbox'] for i in info['instances'])):
                return y, x
    raise AssertionError('no empty window')


def crop_windows(info):
    """(crop, offset, options) of the RandomCrop cases of one record."""
    h, w = info['height'], info['width']
    empty = empty_window(info, 2)
    return [
        ((h // 2, w // 2), (h // 4, w // 3), {}),
        ((h // 3, w), (h - h // 3, 0), {'bbox_clip_border': False}),
        ((2 * h // 3, 2 * w // 3), (0, w // 3), {'recompute_bbox': True}),
        ((2, 2), empty, {}),
        ((2, 2), empty, {'allow_negative_crop': True}),
    ]


def run_crops(cases):
    results = []
    for case in cases:
        info = case['data_info']
        for crop, offset, options in crop_windows(info):
            load = TRANSFORMS.build({'type': 'LoadImageFromFile'})
            annotations = TRANSFORMS.build({'type': 'LoadAnnotations', 'with_bbox': True, 'with_mask': True})
            cropper = TRANSFORMS.build({'type': 'RandomCrop', 'crop_size': (crop[1], crop[0]), **options})
            margin = (info['height'] - crop[0], info['width'] - crop[1])
            assert 0 <= offset[0] <= margin[0] and 0 <= offset[1] <= margin[1], (crop, offset)
            cropper._rand_offset = lambda m, o=offset: o
            data = cropper(annotations(load(json.loads(json.dumps(info)))))
            out = {'case': case['name'], 'crop': list(crop), 'offset': list(offset), 'options': options,
                   'dropped': data is None}
            if data is not None:
                packed = TRANSFORMS.build({'type': 'PackDetInputs'})(data)
                sample = packed['data_samples']
                prefix = f"{case['name']}.crop{len(results)}"
                out['meta'] = {k: jsonable(v) for k, v in sample.metainfo.items()}
                out['inputs'] = save(prefix + '.inputs.npy', packed['inputs'].permute(1, 2, 0).contiguous().numpy())
                out['gt'] = instances_out(sample.gt_instances, prefix + '.gt')
                out['ignored'] = instances_out(sample.ignored_instances, prefix + '.ignored')
            results.append(out)
    return results


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = {'images': write_images(), 'resizes': resize_refs()}
    cases = [{'name': name, 'data_info': make_case(name)} for name in ('landscape', 'tiny', 'portrait')]
    manifest['cases'] = cases
    manifest['pipelines'] = PIPELINES
    manifest['results'] = run_pipelines(cases)
    manifest['crops'] = run_crops(cases)
    with open(os.path.join(OUT, 'manifest.json'), 'w') as f:
        json.dump(manifest, f)


if __name__ == '__main__':
    main()
