"""MMEngine's dataset wrappers over MMDetection's CocoDataset, for comparison
with detc's `Dataset` (tests/it/data.rs).

Reads one request per line on stdin: {"cfg": {...a dataset config, wrappers
included...}, "cwd": DIR}. Builds it with MMDetection's registry in DIR
(`RepeatDataset`, `ClassBalancedDataset` from MMEngine, `ConcatDataset` from
MMDetection; every CocoDataset with `pipeline=[]`) and prints one JSON line:
{"len", "samples": [[img_path, img_id], ...]} (`get_data_info(i)` for every
index) or {"error": "..."}.

Run: .venv-test/bin/python tests/data_ref/mmdet_wrappers.py < requests.jsonl
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
from mmdet.registry import DATASETS  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

init_default_scope('mmdet')


def build(cfg):
    with contextlib.redirect_stdout(io.StringIO()):
        dataset = DATASETS.build(cfg)
    return {
        'len': len(dataset),
        'samples': [[info['img_path'], info['img_id']]
                    for info in map(dataset.get_data_info, range(len(dataset)))],
    }


for line in sys.stdin:
    request = json.loads(line)
    os.chdir(request['cwd'])
    try:
        answer = build(request['cfg'])
    except Exception as e:  # noqa: BLE001 - reported to the test
        answer = {'error': f'{type(e).__name__}: {e}'}
    print(json.dumps(answer), flush=True)
