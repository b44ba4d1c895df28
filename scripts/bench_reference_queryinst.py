#!/usr/bin/env python3
"""The Python reference of `detc bench` for QueryInst R50-FPN: MMDetection
3.3.0's own `QueryInst`, trained through MMEngine on the same COCO data,
timed as scripts/bench_reference.py times torchvision's Faster R-CNN. Prints
one JSON object of the same shape.

    python3 scripts/bench_reference_queryinst.py --data data/bench \
        --iters 30 --warmup 10 [--precision fp32|bf16] [--workers 4]

Needs MMEngine 0.10.7, MMDetection 3.3.0 and mmcv-lite 2.1.0 (on the GPU
machine: the wheels of scripts/gpu-bench-wheels, which scripts/gpu-bench
installs).

Everything is MMDetection's or MMEngine's own, built from MMDetection's
config `queryinst_r50_fpn_1x_coco.py` (the one inside the mmdet wheel) with
only the data and the classes changed, as configs/bench/
queryinst_r50_fpn_shapes1024.yaml changes its YAML twin: num_classes 4 in
every stage's DIIHead and DynamicMaskHead, random weights (the backbone's
`init_cfg` dropped: no download). The model is `MODELS.build` of that config
after `init_weights()`; the data is the config's `CocoDataset` with its
training pipeline (LoadImageFromFile, LoadAnnotations with masks, Resize
1333x800 keep-ratio, RandomFlip 0.5, PackDetInputs), sampler
(DefaultSampler, AspectRatioBatchSampler, batch 2) and `pseudo_collate`,
through `Runner.build_dataloader` with `--workers` loader processes; the
optimizer wrapper is `build_optim_wrapper` of the config's `optim_wrapper`
(AdamW lr 1e-4, weight decay 1e-4, backbone lr x0.1, gradient clipping at
max_norm 0.1 as the config has it), for bf16 an `AmpOptimWrapper` with
`dtype='bfloat16'` (what `detc bench --amp --cfg-options
optim_wrapper.dtype=bfloat16` runs). A training step is
`model.train_step(data, optim_wrapper)` (data preprocessor, losses,
backward, clip, AdamW), what MMEngine's training loop calls, then the step
of the config's warm-up (`LinearLR` by iteration, as its
ParamSchedulerHook steps it), without other hooks; the last timed step's
total loss is reported (`train.loss`) to show the steps trained.
The loader's multiprocessing settings come from the config's `env_cfg`, as
the Runner sets them; cudnn.benchmark is on (the config's is off), as on
every side of scripts/gpu-bench.

Substitutions, since mmcv-lite has no compiled ops (tests/reference/
mmdet_standins.py and `load_mmdet()` of tests/models/detector_reference.py,
imported from there):
  * `mmcv.ops.RoIAlign` and the functional `roi_align` of the mask targets
    are torchvision's `roi_align` (the same semantics, aligned=True);
  * on CUDA, `FocalLoss` calls mmcv's compiled `sigmoid_focal_loss`; here it
    calls mmdet's own `py_sigmoid_focal_loss` on one-hot labels, which is
    what MMDetection itself does on the CPU;
  * the remaining `mmcv.ops` names, and packages not installed
    (terminaltables; matplotlib or scipy where missing), are stand-ins
    that QueryInst never calls.

Timing as in scripts/bench_reference.py and detc: `--warmup` untimed steps,
then `--iters` steps between two device synchronisations; images per second
over the timed steps, data loading included; peak memory is
`torch.cuda.max_memory_allocated` over the timed steps. Inference:
`model.test_step` (data preprocessor and `predict`, masks pasted at the
original size) in eval mode under `no_grad` on the validation images, batch
1, in float32 at either precision, as MMEngine's test loop (fp16 off) and
`detc bench` run it.

On the CPU (only to check this script end to end) two things differ.
bf16 trains under CPU autocast: MMEngine's AmpOptimWrapper refuses to be
built without an accelerator, so that check is bypassed there (its
GradScaler then disables itself). And masks are pasted over the whole image,
as on CUDA: MMDetection's CPU path pastes over the boxes' span only and
fails (an empty `arange`) when an untrained model's boxes all lie outside
the image.
"""
import argparse
import contextlib
import copy
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'models'))
import detector_reference  # noqa: E402  (load_mmdet: the stand-ins and RoIAlign)
from bench_reference import timed, trace  # noqa: E402


def load_mmdet(device):
    detector_reference.load_mmdet()
    import torch.nn.functional as F
    from mmdet.models.losses import focal_loss

    def py_focal_loss_on_labels(pred, target, *args, **kwargs):
        # FocalLoss.forward's CPU branch: labels (num_classes = background)
        # to one-hot over the classes, then the PyTorch focal loss.
        num_classes = pred.size(1)
        target = F.one_hot(target, num_classes=num_classes + 1)[:, :num_classes]
        return focal_loss.py_sigmoid_focal_loss(pred, target, *args, **kwargs)

    # FocalLoss.forward looks the name up in its module when it runs.
    focal_loss.sigmoid_focal_loss = py_focal_loss_on_labels
    if device.type == 'cpu':
        # Only for the CPU check of this script (see the docstring): AMP
        # allowed, masks pasted as on CUDA.
        from mmdet.models.roi_heads.mask_heads import fcn_mask_head
        from mmengine.optim.optimizer import amp_optimizer_wrapper

        amp_optimizer_wrapper.is_cuda_available = lambda: True
        paste = fcn_mask_head._do_paste_mask
        fcn_mask_head._do_paste_mask = lambda masks, boxes, h, w, skip_empty=True: paste(
            masks, boxes, h, w, skip_empty=False)


def config(data, workers):
    """MMDetection's QueryInst R50-FPN 1x config, on `data` with its classes."""
    import mmdet
    from mmengine.config import Config

    cfg = Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'configs',
                                       'queryinst', 'queryinst_r50_fpn_1x_coco.py'))
    with open(os.path.join(data, 'annotations', 'instances_train.json')) as f:
        classes = [c['name'] for c in json.load(f)['categories']]
    cfg.model.backbone.init_cfg = None
    for head in cfg.model.roi_head.bbox_head + cfg.model.roi_head.mask_head:
        head.num_classes = len(classes)
    for loader, split, n in ((cfg.train_dataloader, 'train', workers), (cfg.val_dataloader, 'val', min(workers, 2))):
        loader.num_workers = n
        loader.persistent_workers = n > 0
        loader.dataset.update(data_root=os.path.join(data, ''), ann_file=f'annotations/instances_{split}.json',
                              data_prefix=dict(img=f'{split}/'), metainfo=dict(classes=classes))
    return cfg


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--data', default='data/bench')
    p.add_argument('--iters', type=int, default=30)
    p.add_argument('--warmup', type=int, default=10)
    p.add_argument('--workers', type=int, default=4)
    p.add_argument('--precision', choices=['fp32', 'bf16'], default='fp32')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--trace', metavar='FILE', help='a Chrome trace of --trace-steps more steps '
                   '(scripts/bench_reference.py --trace)')
    p.add_argument('--trace-steps', type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    out = sys.stdout
    # pycocotools and MMEngine's logger print to stdout, which is the JSON's.
    with contextlib.redirect_stdout(sys.stderr):
        result = run(args, device, cuda)
    print(json.dumps(result), file=out)


def run(args, device, cuda):
    load_mmdet(device)
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS
    from mmengine.runner import Runner
    from mmengine.utils.dl_utils import set_multi_processing
    import mmdet
    import mmengine

    cfg = config(args.data, args.workers)
    set_multi_processing(**cfg.env_cfg.mp_cfg, distributed=False)
    # Autotuned convolutions, as every side of scripts/gpu-bench runs them
    # (the config leaves them off).
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.to(device).train()
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    if args.precision == 'bf16':
        wrapper_cfg.update(type='AmpOptimWrapper', dtype='bfloat16')
    optim_wrapper = build_optim_wrapper(model, wrapper_cfg)
    # The config's warm-up (LinearLR by iteration), stepped as MMEngine's
    # ParamSchedulerHook steps it after every iteration.
    from mmengine.registry import PARAM_SCHEDULERS
    warmup = PARAM_SCHEDULERS.build(dict(cfg.param_scheduler[0], optimizer=optim_wrapper))
    train_loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    batch = cfg.train_dataloader.batch_size
    last_loss = [None]

    def train_step(data):
        log_vars = model.train_step(data, optim_wrapper)
        warmup.step()
        last_loss[0] = log_vars['loss'].detach()

    train_s, train_peak = timed(train_loader, train_step, device, args.warmup, args.iters)
    if args.trace:
        trace(train_loader, train_step, args.trace_steps, args.trace)
    model.eval()
    val_loader = Runner.build_dataloader(cfg.val_dataloader, seed=0)
    with torch.no_grad():
        infer_s, infer_peak = timed(val_loader, model.test_step, device, args.warmup, args.iters)
    return {
        'reference': f'MMDetection {mmdet.__version__} QueryInst R50-FPN (MMEngine {mmengine.__version__}; '
                     f'RoIAlign: torchvision; focal loss: py_sigmoid_focal_loss), torch {torch.__version__}',
        'device': torch.cuda.get_device_name(device) if cuda else 'cpu',
        'precision': args.precision,
        'train': {'batch_size': batch, 'images_per_s': args.iters * batch / train_s,
                  'step_s': train_s / args.iters, 'peak_memory_mb': train_peak,
                  'loss': float(last_loss[0])},
        'inference': {'batch_size': cfg.val_dataloader.batch_size, 'images_per_s': args.iters / infer_s,
                      'peak_memory_mb': infer_peak},
    }


if __name__ == '__main__':
    main()
