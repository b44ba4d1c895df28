"""MMDetection's own CocoDataset records, for comparison with detc's.

Reads one request per line on stdin: {"cfg": {...CocoDataset kwargs...},
"cwd": DIR}. Builds `mmdet.datasets.CocoDataset(**cfg, pipeline=[])` in DIR
(MMDetection resolves relative paths against the working directory), which
runs load_data_list, filter_data and indices, and prints one JSON line:
{"classes", "cat_ids", "records": [{img_id, img_path, height, width,
instances: [{bbox, bbox_label, ignore_flag, mask}]}]} or {"error": "..."}.
A mask is {"polygons": [[...]]} or {"rle": compressed counts string} (both
RLE forms through pycocotools' encoder), or null.

Without `metainfo.classes`, detc takes the file's categories in file order;
MMDetection would take COCO's 80 names, so the request gets those names.

Run: .venv-test/bin/python tests/data_ref/mmdet_records.py < requests.jsonl
"""
import contextlib
import io
import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _mmdet  # noqa: E402,F401  (stand-ins before mmdet)

warnings.simplefilter('ignore')
from mmdet.datasets import CocoDataset  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402


def mask_of(segm, h, w):
    if segm is None:
        return None
    if isinstance(segm, list):
        return {'polygons': segm}
    counts = segm['counts']
    if isinstance(counts, list):
        counts = mask_utils.frPyObjects(segm, h, w)['counts']
    if isinstance(counts, bytes):
        counts = counts.decode()
    return {'rle': counts}


def records(cfg):
    cfg = dict(cfg)
    cfg.pop('type', None)
    cfg.pop('skip_invalid_samples', None)
    if not (cfg.get('metainfo') or {}).get('classes'):
        ann = cfg['ann_file']
        if cfg.get('data_root') and not os.path.isabs(ann):
            ann = os.path.join(cfg['data_root'], ann)
        with open(ann) as f:
            names = [c['name'] for c in json.load(f)['categories']]
        cfg['metainfo'] = dict(cfg.get('metainfo') or {}, classes=names)
    with contextlib.redirect_stdout(io.StringIO()):
        ds = CocoDataset(pipeline=[], **cfg)
    out = []
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        out.append({
            'img_id': info['img_id'],
            'img_path': info['img_path'],
            'height': info['height'],
            'width': info['width'],
            'instances': [{
                'bbox': inst['bbox'],
                'bbox_label': inst['bbox_label'],
                'ignore_flag': inst['ignore_flag'],
                'mask': mask_of(inst.get('mask'), info['height'], info['width']),
            } for inst in info['instances']],
        })
    return {'classes': list(ds.metainfo['classes']), 'cat_ids': ds.cat_ids, 'records': out}


def main():
    for line in sys.stdin:
        req = json.loads(line)
        os.chdir(req['cwd'])
        try:
            answer = records(req['cfg'])
        except Exception as e:  # noqa: BLE001  (reported to the Rust side)
            answer = {'error': f'{type(e).__name__}: {e}'}
        print(json.dumps(answer), flush=True)


if __name__ == '__main__':
    main()
