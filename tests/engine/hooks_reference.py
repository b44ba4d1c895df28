"""MMEngine 0.10.7 reference for detc's CheckpointHook policy and log lines.

Usage: hooks_reference.py checkpoint|log  < scenarios.json  > results.json

Run by the engine tests (src/engine/checkpoint_hook/tests.rs,
src/engine/logging/tests.rs) with the test environment's Python
(.venv-test/bin/python). Each scenario is replayed through MMEngine's real
classes with a minimal stub runner:

checkpoint: a fake training run (MMEngine's EpochBasedTrainLoop /
  IterBasedTrainLoop call order and counters) driving the real
  `CheckpointHook`; `runner.save_checkpoint` only touches the file. Optionally
  the run is "resumed" part-way: a fresh hook gets the message hub's infos.
  Output per scenario: the files left under the temporary root, the content of
  `last_checkpoint` (root replaced by `[ROOT]`), and every save made.

log: a sequence of `update_scalar` calls and log requests fed to the real
  `LogProcessor`; output per request: the log line and the `scalars.json`
  line written by the real `LocalVisBackend`.
"""
import json
import logging
import os
import sys
import tempfile

from mmengine.hooks import CheckpointHook
from mmengine.logging import MessageHub
from mmengine.runner import log_processor as log_processor_module
from mmengine.runner.log_processor import LogProcessor
from mmengine.visualization import LocalVisBackend

_hub_count = 0


def new_hub():
    global _hub_count
    _hub_count += 1
    return MessageHub.get_instance(f'detc-ref-{_hub_count}')


class Runner:
    """What CheckpointHook and LogProcessor read from mmengine's Runner."""

    def __init__(self, work_dir, max_epochs=1, max_iters=1):
        self.work_dir = work_dir
        self.epoch = 0
        self.iter = 0
        self.max_epochs = max_epochs
        self.max_iters = max_iters
        self.logger = logging.getLogger('detc-ref')
        self.message_hub = new_hub()
        self.saves = []
        self._train_loop = object()

    def save_checkpoint(self, out_dir, filename, file_client_args=None, save_optimizer=True,
                        save_param_scheduler=True, meta=None, by_epoch=True, backend_args=None, **kwargs):
        meta = dict(meta or {})
        if by_epoch:
            meta.setdefault('epoch', self.epoch + 1)
            meta.setdefault('iter', self.iter)
        else:
            meta.setdefault('epoch', self.epoch)
            meta.setdefault('iter', self.iter + 1)
        path = os.path.join(out_dir, filename)
        os.makedirs(out_dir, exist_ok=True)
        with open(path, 'w') as f:
            f.write('ckpt')
        self.saves.append([path, save_optimizer, save_param_scheduler, meta['epoch'], meta['iter']])


def relative(path, root):
    return path.replace(root, '[ROOT]')


def run_checkpoint(sc):
    root = tempfile.mkdtemp(prefix='detc-ckpt-ref-')
    work_dir = os.path.join(root, 'work_dirs', 'exp')
    os.makedirs(work_dir)
    hook_cfg = dict(sc['hook'])
    if 'out_dir' in hook_cfg:
        hook_cfg['out_dir'] = os.path.join(root, hook_cfg['out_dir'])
    loop = sc['loop']
    metrics = sc.get('metrics', [])
    resume_at = sc.get('resume_at')  # epochs (epoch loop) or iterations (iter loop) done before the "crash"

    by_epoch_loop = loop['type'] == 'epoch'
    if by_epoch_loop:
        max_epochs, per_epoch = loop['max_epochs'], loop['iters_per_epoch']
        max_iters = max_epochs * per_epoch
    else:
        max_epochs, max_iters = 1, loop['max_iters']
    runner = Runner(work_dir, max_epochs, max_iters)
    saves = runner.saves
    n_val = [0]

    def start_hook(hub_infos, overrides):
        cfg = dict(hook_cfg)
        cfg.update(overrides)
        hook = CheckpointHook(**cfg)
        runner.message_hub = new_hub()
        for k, v in hub_infos.items():
            runner.message_hub.update_info(k, v)
        hook.before_train(runner)
        return hook

    def validate(hook):
        m = metrics[n_val[0] % len(metrics)] if metrics else {}
        n_val[0] += 1
        hook.after_val_epoch(runner, dict(m))

    def infos():
        keys = ('keep_ckpt_ids', 'best_score', 'best_ckpt', 'last_ckpt')
        return {k: v for k, v in runner.message_hub.runtime_info.items()
                if k in keys or k.startswith('best_score_') or k.startswith('best_ckpt_')}

    hook = start_hook({}, {})
    val_interval, val_begin = loop.get('val_interval', 1), loop.get('val_begin', 1)
    has_val = loop.get('val', True)
    if by_epoch_loop:
        while runner.epoch < max_epochs:
            if resume_at is not None and runner.epoch == resume_at:
                hook = start_hook(infos(), sc.get('resume_overrides', {}))
                resume_at = None
            for _ in range(per_epoch):
                hook.after_train_iter(runner, 0)
                runner.iter += 1
            hook.after_train_epoch(runner)
            runner.epoch += 1
            if has_val and runner.epoch >= val_begin and (
                    runner.epoch % val_interval == 0 or runner.epoch == max_epochs):
                validate(hook)
    else:
        while runner.iter < max_iters:
            if resume_at is not None and runner.iter == resume_at:
                hook = start_hook(infos(), sc.get('resume_overrides', {}))
                resume_at = None
            hook.after_train_iter(runner, 0)
            runner.iter += 1
            if has_val and runner.iter >= val_begin and (
                    runner.iter % val_interval == 0 or runner.iter == max_iters):
                validate(hook)
        hook.after_train_epoch(runner)

    files = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            files.append(relative(os.path.join(dirpath, n), root))
    last = os.path.join(work_dir, 'last_checkpoint')
    last_text = relative(open(last).read(), root) if os.path.exists(last) else None
    return dict(
        files=sorted(files),
        last_checkpoint=last_text,
        saves=[[relative(p, root)] + rest for p, *rest in saves],
    )


class Loop:

    def __init__(self, n):
        self.dataloader = range(n)


def run_log(sc):
    cuda_memory = sc.get('cuda_memory')
    log_processor_module.is_cuda_available = lambda: cuda_memory is not None
    LogProcessor._get_max_memory = lambda self, runner: cuda_memory
    proc = LogProcessor(**sc['processor'])
    r = sc['runner']
    runner = Runner('/nonexistent', r['max_epochs'], r['max_iters'])
    runner._train_loop = object() if r.get('has_train_loop', True) else None
    runner.train_loop = Loop(r.get('train_len', 1))
    runner.val_loop = Loop(r.get('val_len', 1))
    runner.test_loop = Loop(r.get('test_len', 1))
    vis_dir = tempfile.mkdtemp(prefix='detc-log-ref-')
    vis = LocalVisBackend(vis_dir)
    out = []
    for ev in sc['events']:
        if ev['op'] == 'scalar':
            runner.message_hub.update_scalar(ev['key'], ev['value'])
            continue
        runner.epoch, runner.iter = ev['epoch'], ev['iter']
        if ev.get('eta') is not None:
            runner.message_hub.update_info('eta', ev['eta'])
        if ev['op'] == 'log_iter':
            tag, line = proc.get_log_after_iter(runner, ev['batch_idx'], ev['mode'])
        else:
            n = len(getattr(runner, f"{ev['mode']}_loop").dataloader)
            tag, line = proc.get_log_after_epoch(runner, n, ev['mode'])
        vis.add_scalars(tag, step=ev['step'])
        with open(os.path.join(vis_dir, 'scalars.json')) as f:
            record = f.read().splitlines()[-1]
        out.append(dict(line=line, record=record))
    return out


def main():
    mode = sys.argv[1]
    scenarios = json.load(sys.stdin)
    run = dict(checkpoint=run_checkpoint, log=run_log)[mode]
    # MMEngine's logger prints on stdout: keep stdout for the results alone.
    results, sys.stdout = sys.stdout, sys.stderr
    json.dump([run(sc) for sc in scenarios], results)


if __name__ == '__main__':
    main()
