"""MMEngine's samplers and MMDetection's AspectRatioBatchSampler, answering
the samplers tests (tests/it/samplers.rs).

Reads one JSON request per line on stdin and writes one JSON answer per line:

  {"kind": "default", "n", "shuffle", "seed", "round_up", "rank", "world_size", "epoch"}
      -> the indices `mmengine.dataset.DefaultSampler` yields on that rank
  {"kind": "infinite", "n", "shuffle", "seed", "rank", "world_size", "count"}
      -> the first `count` indices of `mmengine.dataset.InfiniteSampler`
  {"kind": "aspect", "sizes": [[w, h], ...], "batch_size", "drop_last",
   "sampler": <a default or infinite request>, "count": null or N}
      -> the batches of `mmdet.datasets.AspectRatioBatchSampler` (the first N if given)

Rank and world size are passed by replacing the `get_dist_info` the sampler
module imported (no process group is needed). MMDetection is imported with
the stand-ins of `tests/reference/mmdet_standins.py`.
"""
import itertools
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'reference'))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

import mmengine.dataset.sampler as mmengine_sampler  # noqa: E402
from mmdet.datasets.samplers.batch_sampler import \
    AspectRatioBatchSampler  # noqa: E402


class Dataset:
    """What the samplers read of a dataset: its length and each image's size."""

    def __init__(self, n, sizes=None):
        self.n = n
        self.sizes = sizes

    def __len__(self):
        return self.n

    def get_data_info(self, idx):
        width, height = self.sizes[idx]
        return {'width': width, 'height': height}


def sampler(req, dataset):
    mmengine_sampler.get_dist_info = lambda: (req['rank'], req['world_size'])
    if req['kind'] == 'default':
        s = mmengine_sampler.DefaultSampler(
            dataset,
            shuffle=req['shuffle'],
            seed=req['seed'],
            round_up=req['round_up'])
        s.set_epoch(req['epoch'])
        return s
    return mmengine_sampler.InfiniteSampler(
        dataset, shuffle=req['shuffle'], seed=req['seed'])


def answer(req):
    if req['kind'] == 'default':
        return list(sampler(req, Dataset(req['n'])))
    if req['kind'] == 'infinite':
        s = sampler(req, Dataset(req['n']))
        return list(itertools.islice(iter(s), req['count']))
    inner = req['sampler']
    s = sampler(inner, Dataset(inner['n'], req['sizes']))
    batches = AspectRatioBatchSampler(
        s, batch_size=req['batch_size'], drop_last=req['drop_last'])
    count = req.get('count')
    if count is None:
        return [list(b) for b in batches]
    return [list(b) for b in itertools.islice(iter(batches), count)]


for line in sys.stdin:
    print(json.dumps(answer(json.loads(line))), flush=True)
