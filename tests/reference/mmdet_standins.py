"""Stand-ins that let MMDetection import in the test-only environment.

`mmcv.ops` exists in mmcv-lite but fails on its compiled `_ext`, and
`mmdet.utils`/`mmdet.models.utils` import packages the environment does not
install (plotting, `six`). The references here never call any of them, so
each missing name becomes a class that raises when used. The compiled ops
they do need run on torchvision's kernels: `batched_nms` is
`mmcv_batched_nms` below, which the two-stage references patch into the
modules that call it, and `RoIAlign` is `install_tv_roi_align`'s.
"""
import importlib.abc
import importlib.machinery
import sys
import types


class _StandIn:

    def __init__(self, *args, **kwargs):
        raise RuntimeError('stand-in for a module the references do not use')


def _stand_in_module(name):
    module = types.ModuleType(name)
    module.__path__ = []

    def __getattr__(attr):
        if attr.startswith('__'):
            raise AttributeError(attr)
        return type(attr, (_StandIn, ), {})

    module.__getattr__ = __getattr__
    return module


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):

    def __init__(self, prefixes):
        self.prefixes = prefixes

    def find_spec(self, name, path, target=None):
        if any(name == p or name.startswith(p + '.') for p in self.prefixes):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _stand_in_module(spec.name)

    def exec_module(self, module):
        pass


def install():
    # Ahead of the real (broken) package.
    sys.meta_path.insert(0, _StandInFinder(('mmcv.ops', )))
    # Only where the package is missing.
    sys.meta_path.append(
        _StandInFinder(('matplotlib', 'scipy', 'terminaltables', 'seaborn')))
    try:
        import six  # noqa: F401
    except ImportError:
        # `from six.moves import map, zip`: the builtins.
        six = types.ModuleType('six')
        six.moves = types.ModuleType('six.moves')
        six.moves.map, six.moves.zip = map, zip
        sys.modules['six'], sys.modules['six.moves'] = six, six.moves


def _import_mmcv_op(name):
    """Imports `mmcv/ops/{name}.py` (registering its modules) with the
    compiled `_ext` loader stubbed out: its Python classes, no kernels."""
    import importlib.util
    import os

    import mmcv
    import mmcv.utils.ext_loader

    mmcv.utils.ext_loader.load_ext = lambda name, funcs: None
    path = os.path.join(os.path.dirname(mmcv.__file__), "ops", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"mmcv.ops.{name}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def install_mmcv_deform_convs():
    """Imports MMCV's deform_conv.py and modulated_deform_conv.py (which
    register `DCN` and `DCNv2`) with torchvision's kernel in place of the
    compiled `_ext` one."""
    from torchvision.ops import deform_conv2d as tv_deform_conv2d

    mods = {name: _import_mmcv_op(name) for name in ("modulated_deform_conv", "deform_conv")}

    def deform(x, offset, weight, stride, padding, dilation, groups, deform_groups, bias=False, im2col_step=32):
        x = x.type_as(offset)
        return tv_deform_conv2d(x, offset, weight.type_as(x), None, stride, padding, dilation)

    def modulated(x, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups):
        return tv_deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask)

    mods["deform_conv"].deform_conv2d = deform
    mods["modulated_deform_conv"].modulated_deform_conv2d = modulated


def install_mmcv_sync_bn():
    """Imports MMCV's sync_bn.py, which registers `MMSyncBN`, without its
    compiled kernels: enough to build the module (its names and shapes),
    not to run it. Building one needs torch.distributed initialised."""
    _import_mmcv_op("sync_bn")


def install_tv_roi_align():
    """mmcv.ops.RoIAlign (its constructor) over torchvision's roi_align
    (aligned=True, the same op): mmcv-lite lacks the compiled one."""
    import mmcv.ops
    import torch
    import torchvision

    class TvRoIAlign(torch.nn.Module):

        def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=0,
                     pool_mode="avg", aligned=True, use_torchvision=False):
            super().__init__()
            assert pool_mode == "avg"
            self.output_size = torch.nn.modules.utils._pair(output_size)
            self.spatial_scale = float(spatial_scale)
            self.sampling_ratio = int(sampling_ratio)
            self.aligned = aligned

        def forward(self, input, rois):
            return torchvision.ops.roi_align(input, rois, self.output_size, self.spatial_scale,
                                             self.sampling_ratio, self.aligned)

    # An attribute set on the stand-in module wins over its __getattr__.
    mmcv.ops.RoIAlign = TvRoIAlign


def mmcv_batched_nms(boxes, scores, idxs, nms_cfg, class_agnostic=False):
    """mmcv.ops.batched_nms (and, with `nms_cfg=None`, its sort-only case)
    for `type: nms`, with torchvision's nms as the kernel: mmcv's compiled
    ops do not load here."""
    import torch
    import torchvision

    if nms_cfg is None:
        scores, inds = scores.sort(descending=True)
        return torch.cat([boxes[inds], scores[:, None]], -1), inds
    cfg = dict(nms_cfg)
    class_agnostic = cfg.pop("class_agnostic", class_agnostic)
    if class_agnostic:
        boxes_for_nms = boxes
    else:
        max_coordinate = boxes.max()
        offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
        boxes_for_nms = boxes + offsets[:, None]
    assert cfg.pop("type", "nms") == "nms"
    split_thr = cfg.pop("split_thr", 10000)
    iou = cfg.pop("iou_threshold")
    score_thr = cfg.pop("score_threshold", 0)
    max_num = cfg.pop("max_num", -1)
    assert cfg.pop("offset", 0) == 0 and not cfg, cfg

    def nms_op(b, s):
        if score_thr > 0:
            valid = s > score_thr
            b, s = b[valid], s[valid]
            valid_inds = torch.nonzero(valid, as_tuple=False).squeeze(dim=1)
        inds = torchvision.ops.nms(b, s, float(iou))
        if max_num > 0:
            inds = inds[:max_num]
        if score_thr > 0:
            inds = valid_inds[inds]
        return inds

    if boxes_for_nms.shape[0] < split_thr:
        keep = nms_op(boxes_for_nms, scores)
        boxes, scores = boxes[keep], scores[keep]
    else:
        total_mask = scores.new_zeros(scores.size(), dtype=torch.bool)
        for cid in torch.unique(idxs):
            mask = (idxs == cid).nonzero(as_tuple=False).view(-1)
            k = nms_op(boxes_for_nms[mask], scores[mask])
            total_mask[mask[k]] = True
        keep = total_mask.nonzero(as_tuple=False).view(-1)
        scores, inds = scores[keep].sort(descending=True)
        keep = keep[inds]
        boxes = boxes[keep]
        if max_num > 0:
            keep, boxes, scores = keep[:max_num], boxes[:max_num], scores[:max_num]
    return torch.cat([boxes, scores[:, None]], -1), keep
