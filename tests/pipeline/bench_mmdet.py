"""MMDetection's side of benches/pipeline.rs: the training pipeline of
`coco_instance.py` (LoadImageFromFile, LoadAnnotations with masks, Resize
1333x800 keep_ratio, RandomFlip 0.5, PackDetInputs) over a COCO-format
dataset through a torch DataLoader with WORKERS worker processes
(persistent, batch size 1, `pseudo_collate` as MMEngine's runner uses).

Usage: bench_mmdet.py DATA_ROOT WORKERS
Prints `ready` after a warm-up epoch, then for every `round` line read on
stdin runs one epoch and prints its wall time and the CPU time (user +
system) of this process and its workers, in seconds.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import mmdet_env  # noqa: E402,F401  (stand-ins for mmcv.ops)

import torch  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmdet.datasets import CocoDataset  # noqa: E402

PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]


def main():
    root, workers = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    init_default_scope('mmdet')
    dataset = CocoDataset(data_root=root, ann_file='annotations/instances_train.json',
                          data_prefix=dict(img='train/'), pipeline=PIPELINE)
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=workers, persistent_workers=True,
                                         collate_fn=pseudo_collate, shuffle=False)

    def cpu_seconds():
        """User + system CPU seconds of this process and its worker processes."""
        pids = [os.getpid()] + [w.pid for w in getattr(loader._iterator, '_workers', [])]
        ticks = 0
        for pid in pids:
            with open(f'/proc/{pid}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf('SC_CLK_TCK')

    def epoch():
        before = cpu_seconds()
        start = time.perf_counter()
        n = sum(len(batch['inputs']) for batch in loader)
        assert n == len(dataset)
        return time.perf_counter() - start, cpu_seconds() - before

    epoch()  # warm-up: starts the workers
    print('ready', len(dataset), flush=True)
    for line in sys.stdin:
        if line.strip() == 'round':
            wall, cpu = epoch()
            print(wall, cpu, flush=True)


if __name__ == '__main__':
    main()
