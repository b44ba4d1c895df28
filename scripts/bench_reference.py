#!/usr/bin/env python3
"""The Python reference of `detc bench` for Faster R-CNN and Mask R-CNN
R50-FPN: torchvision's FasterRCNN (or MaskRCNN) trained at MMDetection's
settings on the same COCO data, timed the same way. Prints one JSON object.

    python3 scripts/bench_reference.py --data data/bench --batch 2 \
        --iters 50 --warmup 10 [--precision fp32|bf16|fp16] [--workers 4] \
        [--model faster-rcnn|mask-rcnn]

The model: ResNet-50 with frozen batch norm and its stem and first stage
frozen (MMDetection's `frozen_stages: 1`, `norm_eval: true`), FPN, RPN and
the two-FC box head (and for Mask R-CNN the four-conv mask head, its
targets the annotations' masks, decoded by pycocotools), random weights
(no download), 5 classes (4 and the background). Images are resized by the model's transform to 800 px on the
short side, at most 1333 on the long one (MMDetection's `Resize(1333, 800)`
with `keep_ratio`) and flipped at random (`RandomFlip(0.5)`). SGD, lr 0.02,
momentum 0.9, weight decay 1e-4, after MMDetection's linear warm-up
(`LinearLR`, start factor 0.001 over 500 iterations, stepped every
iteration): from random weights at the full 0.02 this model's losses reach
NaN within three steps, after which its RoI head sees only the ground
truths, a far cheaper step than training's. The last timed step's total
loss is reported (`train.loss`) to show the steps trained. bf16 and fp16 run under `torch.autocast`
(fp16 with a GradScaler), as MMEngine's AmpOptimWrapper does.

With `--trace FILE`, `--trace-steps` more steps (after the timed ones)
run under torch.profiler, and their Chrome trace goes to FILE for
`scripts/trace_summary.py`, which counts them as it counts detc's
(`DETC_TRACE`).

Timing as in detc: `--warmup` untimed steps, then `--iters` steps between
two device synchronisations; images per second over the timed steps
(data loading included, with `--workers` loader processes); peak memory is
`torch.cuda.max_memory_allocated` over the timed steps. Inference: the same
model in eval mode on the validation images, batch 1, in float32.
"""
import argparse
import json
import os
import time

import torch
import torchvision
from torchvision.io import ImageReadMode, decode_jpeg, read_file
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d


class CocoBoxes(torch.utils.data.Dataset):
    """Images and their boxes (xyxy) and labels (1.. in category order),
    with `masks` their (N, H, W) uint8 masks."""

    def __init__(self, root, split, flip, masks=False):
        with open(os.path.join(root, 'annotations', f'instances_{split}.json')) as f:
            coco = json.load(f)
        label = {c['id']: i + 1 for i, c in enumerate(coco['categories'])}
        anns = {}
        for a in coco['annotations']:
            x, y, w, h = a['bbox']
            if w >= 1 and h >= 1 and not a.get('iscrowd', 0):
                anns.setdefault(a['image_id'], []).append(([x, y, x + w, y + h], label[a['category_id']],
                                                           a.get('segmentation')))
        self.items = [(os.path.join(root, split, im['file_name']), (im['height'], im['width']), anns.get(im['id'], []))
                      for im in coco['images'] if anns.get(im['id'])]
        self.flip, self.masks = flip, masks

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, (h, w), anns = self.items[i]
        img = decode_jpeg(read_file(path), mode=ImageReadMode.RGB).float() / 255
        boxes = torch.tensor([a[0] for a in anns], dtype=torch.float32)
        target = {'labels': torch.tensor([a[1] for a in anns])}
        if self.masks:
            target['masks'] = torch.stack([decode_segmentation(a[2], h, w) for a in anns])
        if self.flip and torch.rand(()) < 0.5:
            img = img.flip(-1)
            w = img.shape[-1]
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
            if self.masks:
                target['masks'] = target['masks'].flip(-1)
        target['boxes'] = boxes
        return img, target


def decode_segmentation(segm, h, w):
    """A COCO segmentation (polygons, RLE or uncompressed RLE) as an (h, w)
    uint8 mask, as pycocotools' `annToMask`."""
    from pycocotools import mask as coco_mask
    if isinstance(segm, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(segm, h, w))
    elif isinstance(segm.get('counts'), list):
        rle = coco_mask.frPyObjects(segm, h, w)
    else:
        rle = segm
    return torch.from_numpy(coco_mask.decode(rle))


def model(name, num_classes, min_size, max_size):
    backbone = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(backbone, trainable_layers=3)
    detector = MaskRCNN if name == 'mask-rcnn' else FasterRCNN
    return detector(backbone, num_classes=num_classes, min_size=min_size, max_size=max_size)


def loader(data, split, batch, workers, flip, masks=False):
    dataset = CocoBoxes(data, split, flip, masks)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=flip, num_workers=workers, drop_last=flip,
        collate_fn=lambda b: tuple(zip(*b)), persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())


def batches(dl, n):
    while True:
        for b in dl:
            yield b
            n -= 1
            if n == 0:
                return


def timed(dl, step, device, warmup, iters):
    """Seconds of `iters` calls of `step` (on each batch of `dl`) after
    `warmup` untimed ones, between device synchronisations, and the peak
    memory over them (MiB; None on the CPU)."""
    cuda = device.type == 'cuda'
    for n, batch in enumerate(batches(dl, warmup + iters)):
        if n == warmup:
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
        step(batch)
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, torch.cuda.max_memory_allocated(device) >> 20 if cuda else None


def trace(dl, step, steps, path):
    """Writes the Chrome trace of `steps` calls of `step` (after one
    untraced) to `path`."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    it = batches(dl, steps + 1)
    step(next(it))
    with profile(activities=activities) as prof:
        for batch in it:
            step(batch)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    prof.export_chrome_trace(path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--data', default='data/bench')
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--iters', type=int, default=50)
    p.add_argument('--warmup', type=int, default=10)
    p.add_argument('--workers', type=int, default=4)
    p.add_argument('--precision', choices=['fp32', 'bf16', 'fp16'], default='fp32')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--scale', type=int, nargs=2, default=[800, 1333], metavar=('SHORT', 'LONG'),
                   help="the resize's short and long side (detc: the Resize scale (LONG, SHORT))")
    p.add_argument('--trace', metavar='FILE', help='a Chrome trace of --trace-steps more steps')
    p.add_argument('--trace-steps', type=int, default=3)
    p.add_argument('--model', choices=['faster-rcnn', 'mask-rcnn'], default='faster-rcnn')
    args = p.parse_args()
    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    torch.backends.cudnn.benchmark = True
    net = model(args.model, 5, *args.scale).to(device).train()
    masks = args.model == 'mask-rcnn'
    params = [q for q in net.parameters() if q.requires_grad]
    opt = torch.optim.SGD(params, lr=0.02, momentum=0.9, weight_decay=1e-4)
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(args.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == 'fp16')
    warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.001, total_iters=500)
    last_loss = [None]

    def train_step(images, targets):
        images = [i.to(device, non_blocking=True) for i in images]
        targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = sum(net(images, targets).values())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        warmup.step()
        last_loss[0] = loss.detach()

    def predict(images, _targets):
        # float32 at either precision, as MMEngine's test loop and detc bench.
        images = [i.to(device, non_blocking=True) for i in images]
        with torch.no_grad():
            net(images)

    train_s, train_peak = timed(loader(args.data, 'train', args.batch, args.workers, flip=True, masks=masks),
                                lambda b: train_step(*b), device, args.warmup, args.iters)
    if args.trace:
        trace(loader(args.data, 'train', args.batch, 0, flip=True, masks=masks), lambda b: train_step(*b),
              args.trace_steps, args.trace)
    net.eval()
    infer_s, infer_peak = timed(loader(args.data, 'val', 1, min(args.workers, 2), flip=False),
                                lambda b: predict(*b), device, args.warmup, args.iters)
    print(json.dumps({
        'reference': f'torchvision {torchvision.__version__} {type(net).__name__} R50-FPN, torch {torch.__version__}',
        'device': torch.cuda.get_device_name(device) if cuda else 'cpu',
        'precision': args.precision,
        'train': {'batch_size': args.batch, 'images_per_s': args.iters * args.batch / train_s,
                  'step_s': train_s / args.iters, 'peak_memory_mb': train_peak,
                  'loss': float(last_loss[0])},
        'inference': {'batch_size': 1, 'images_per_s': args.iters / infer_s,
                      'peak_memory_mb': infer_peak},
    }))


if __name__ == '__main__':
    main()
