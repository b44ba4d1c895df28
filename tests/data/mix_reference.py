"""MMDetection 3.3.0's `CachedMosaic` and `CachedMixUp` (OpenCV 4.10) on
small synthetic samples with their random draws fixed, for detc's
`cached_mosaic` and `cached_mix_up` tests.

Writes `tests/fixtures/mix_transforms.json`:
  images:  {name: {height, width, img (hex of the HWC bytes)}}
  samples: {name: {image, bboxes, labels, flags, masks (the 0/1 planes,
           one per box, packed 8 pixels a byte, first in the high bit; hex)
           or null}}
  mosaic:  [{cfg, sample, partners, center: [x, y], out}]
  mixup:   [{cfg, sample, partner, jit_factor, flip, offset: [y, x], out,
            masks_as_mmdet}]
where `out` is {img, height, width, bboxes, labels, flags, masks}, and
`masks_as_mmdet` says whether MMDetection's mix-up masks are where detc puts
them (see `masks_aligned`).

Each transform runs with its cache filled with the partners and numpy's
`uniform`/`randint` (which the transforms call as `random.*`) replaced by
the listed draws.

Regenerate (from the repository root):

    .venv-test/bin/python tests/data/mix_reference.py
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()
from mmdet.datasets.transforms import CachedMixUp, CachedMosaic  # noqa: E402
from mmdet.datasets.transforms import transforms as mmdet_transforms  # noqa: E402
from mmdet.structures.bbox import HorizontalBoxes  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402

rng = np.random.default_rng(11)
IMAGES = {}
SAMPLES = {}


def image(name, h, w):
    IMAGES[name] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return name


def sample(name, img, boxes, labels, masks):
    h, w = IMAGES[img].shape[:2]
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    planes = None
    if masks:
        # A noisy filled box per instance.
        planes = np.zeros((len(boxes), h, w), dtype=np.uint8)
        for k, b in enumerate(boxes):
            x1, y1, x2, y2 = (int(max(v, 0)) for v in b)
            planes[k, y1:y2, x1:x2] = 1
        planes &= rng.integers(0, 8, planes.shape, dtype=np.uint8) > 0
    SAMPLES[name] = dict(image=img, bboxes=boxes, labels=np.array(labels, dtype=np.int64),
                         flags=np.array([i % 3 == 2 for i in range(len(boxes))]), masks=planes)
    return name


def results(name):
    s = SAMPLES[name]
    img = IMAGES[s["image"]]
    r = dict(img=img.copy(), img_shape=img.shape[:2], gt_bboxes=HorizontalBoxes(s["bboxes"].copy()),
             gt_bboxes_labels=s["labels"].copy(), gt_ignore_flags=s["flags"].copy())
    if s["masks"] is not None:
        r["gt_masks"] = BitmapMasks(s["masks"].copy(), *img.shape[:2])
    return r


def bits(planes):
    """Hex of the 0/1 mask planes packed 8 to a byte, first pixel in the high bit."""
    return np.packbits(np.ascontiguousarray(planes, dtype=np.uint8).reshape(-1)).tobytes().hex()


def draws(uniform, randint):
    """numpy.random.uniform / randint returning the listed values in turn."""
    uniform, randint = list(uniform), list(randint)

    def fake_uniform(low=0.0, high=1.0, size=None):
        return uniform.pop(0)

    def fake_randint(low, high=None, size=None):
        v = randint.pop(0)
        assert low <= v < high, (low, v, high)
        return v

    mmdet_transforms.random.uniform = fake_uniform
    mmdet_transforms.random.randint = fake_randint
    return uniform, randint


def out(r):
    masks = r.get("gt_masks")
    return dict(img=r["img"].tobytes().hex(), height=r["img"].shape[0], width=r["img"].shape[1],
                bboxes=[float(v) for v in r["gt_bboxes"].numpy().reshape(-1)],
                labels=[int(v) for v in r["gt_bboxes_labels"]],
                flags=[bool(v) for v in r["gt_ignore_flags"]],
                masks=None if masks is None else bits(masks.masks))


def mosaic(cfg, main, partners, ratios):
    t = CachedMosaic(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    t.results_cache = [results(p) for p in partners] + [results(partners[0])]
    left = draws([0.0, *ratios], [0, 1, 2])
    r = t.transform(results(main))
    assert left == ([], []), left
    center = [int(ratios[0] * cfg["img_scale"][0]), int(ratios[1] * cfg["img_scale"][1])]
    return dict(cfg=cfg, sample=main, partners=partners, center=center, out=out(r))


def mixup(cfg, main, partner, jit, flip, offset):
    t = CachedMixUp(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    t.results_cache = [results(partner)]
    flip_ratio = cfg.get("flip_ratio", 0.5)
    u_flip = (flip_ratio + 1.0) / 2 if flip else flip_ratio / 2
    # `randint` gives the cache index, then the offsets (drawn only where there is a margin).
    left = draws([0.0, jit, u_flip], [0] + [o for o in offset if o is not None])
    r = t.transform(results(main))
    assert left == ([], []), left
    offset = [o or 0 for o in offset]
    return dict(cfg=cfg, sample=main, partner=partner, jit_factor=jit, flip=flip, offset=offset, out=out(r),
                masks_as_mmdet=masks_aligned(cfg, main, partner, jit, flip, offset))


def masks_aligned(cfg, main, partner, jit, flip, offset):
    """Whether MMDetection's mix-up masks stay where the partner's image is,
    as detc's do: it flips them across their own width rather than the
    jittered canvas, and cuts them to the sample's size before shifting them
    by the crop offset."""
    ph, pw = IMAGES[SAMPLES[partner]["image"]].shape[:2]
    th, tw = IMAGES[SAMPLES[main]["image"]].shape[:2]
    w, h = cfg["img_scale"]
    s = min(h / ph, w / pw) * jit
    mw, mh = int(pw * s + 0.5), int(ph * s + 0.5)
    ow = int(w * jit)
    return (not flip or mw == ow) and (offset[1] == 0 or mw <= tw) and (offset[0] == 0 or mh <= th)


def main():
    a = sample("a", image("a", 10, 7), [[1, 1, 6, 9], [0, 4.5, 3.25, 10], [5, 0, 7, 2]], [0, 1, 2], True)
    b = sample("b", image("b", 5, 4), [[0.5, 0.5, 3.5, 4.5]], [3], True)
    c = sample("c", image("c", 12, 20), [[2, 2, 18, 11], [15, 0, 20, 3], [0, 9, 4, 12]], [1, 2, 0], True)
    d = sample("d", image("d", 6, 8), [[1, 1, 7, 5], [6.5, 4.5, 8, 6]], [2, 3], True)
    e = sample("e", image("e", 9, 9), [], [], True)
    tgt = sample("target", image("target", 9, 11), [[0, 0, 4, 4], [3, 2, 11, 9]], [4, 5], True)
    big = sample("big", image("big", 12, 14), [[1, 2, 13, 11]], [6], True)
    small = sample("small", image("small", 6, 7), [[0, 0, 7, 6]], [1], True)
    part = sample("partner", image("partner", 13, 9), [[0, 0, 9, 13], [2, 3, 8, 7], [7, 11, 9, 13]], [7, 8, 9], True)
    wide = sample("wide", image("wide", 6, 15), [[1, 1, 14, 5], [12, 0, 15, 2]], [3, 4], True)
    for name in [a, b, c, d]:
        SAMPLES[name + "_nomask"] = dict(SAMPLES[name], masks=None)

    mosaics = [
        # Non-square quarters ((w, h) order); masks are left out, which MMDetection
        # translates with (2w, 2h) as their height and width.
        mosaic({"img_scale": [8, 6], "pad_val": 114.0}, "a_nomask", ["b_nomask", "c_nomask", "d_nomask"], [0.7, 1.3]),
        mosaic({"img_scale": [8, 8], "pad_val": [10, 20, 30], "bbox_clip_border": False}, a, [b, c, d], [1.9, 0.2]),
        mosaic({"img_scale": [6, 6], "center_ratio_range": [1.0, 1.0]}, c, [a, e, b], [1.0, 1.0]),
        mosaic({"img_scale": [7, 7], "center_ratio_range": [0.2, 0.6]}, d, [c, c, a], [0.25, 0.55]),
    ]
    mixups = [
        # Float pad: the jitter resizes a float64 canvas (then truncated).
        mixup({"img_scale": [10, 8], "ratio_range": [1.3, 1.3]}, tgt, part, 1.3, True, [0, 1]),
        mixup({"img_scale": [10, 8], "ratio_range": [0.5, 0.5]}, small, part, 0.5, False, [None, None]),
        mixup({"img_scale": [10, 8], "ratio_range": [0.8, 1.6], "pad_val": [114.0, 100.5, 90.25]},
              big, part, 0.83, True, [None, None]),
        mixup({"img_scale": [11, 9], "ratio_range": [1.0, 1.5], "pad_val": [114.0, 100.5, 90.25],
               "bbox_clip_border": False}, small, wide, 1.21, True, [3, 5]),
        # Integer pad: 8-bit resizes.
        mixup({"img_scale": [10, 8], "pad_val": 114}, tgt, part, 1.37, True, [0, 1]),
        mixup({"img_scale": [10, 8], "pad_val": 114, "flip_ratio": 0.2}, big, wide, 1.5, False, [None, 0]),
        mixup({"img_scale": [12, 12], "pad_val": [114, 114, 114], "ratio_range": [1.0, 1.0]}, big, c, 1.0, True,
              [None, None]),
    ]
    fixture = dict(
        images={k: dict(height=v.shape[0], width=v.shape[1], img=v.tobytes().hex()) for k, v in IMAGES.items()},
        samples={k: dict(image=v["image"], bboxes=[float(x) for x in v["bboxes"].reshape(-1)],
                         labels=[int(x) for x in v["labels"]], flags=[bool(x) for x in v["flags"]],
                         masks=None if v["masks"] is None else bits(v["masks"]))
                 for k, v in SAMPLES.items()},
        mosaic=mosaics, mixup=mixups)
    path = Path(__file__).resolve().parents[1] / "fixtures" / "mix_transforms.json"
    path.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
