"""MMDetection's own state-dict names, shapes and parameter counts for
QueryInst, Sparse R-CNN, Faster R-CNN, Mask R-CNN and Cascade Mask R-CNN
R50-FPN 1x, Faster R-CNN X101-32x4d-FPN 1x and Mask R-CNN R50-FPN with
GroupNorm and weight standardisation (gn+ws 2x), Mask R-CNN R50-C4,
Mask R-CNN Swin-T, Mask R-CNN RegNetX-3.2GF, Mask R-CNN R50 with DCN in
c3-c5, Faster R-CNN R50 with 4-group DCNv2 in c3-c5, Mask R-CNN
HRNetV2p-W18, the R50-FPN RPN, FCOS R50-Caffe GN-head and Faster R-CNN
ResNeSt-50 (SyncBN backbone and head) and Faster R-CNN Res2Net-101: the
reference `detc summary` is checked against (issues 4 and 7: "the full list
of state-dict names and shapes is equal").

Regenerate the fixtures (from the repository root):

    .venv-test/bin/python tests/models/state_dict_reference.py tests/fixtures

Without an argument it prints every record as one JSON object
`{"queryinst_r50_fpn_1x": {...}, "sparse-rcnn_r50_fpn_1x": {...}, ...}` on stdout
(what the integration test tests/it/summary.rs compares the fixtures with).
With OUT_DIR it writes

* OUT_DIR/queryinst_r50_fpn_1x_state_dict.json
* OUT_DIR/sparse-rcnn_r50_fpn_1x_state_dict.json
* OUT_DIR/faster-rcnn_r50_fpn_1x_state_dict.json
* OUT_DIR/mask-rcnn_r50_fpn_1x_state_dict.json
* OUT_DIR/cascade-mask-rcnn_r50_fpn_1x_state_dict.json
* OUT_DIR/faster-rcnn_x101-32x4d_fpn_1x_state_dict.json
* OUT_DIR/mask-rcnn_r50_fpn_gn-ws-all_2x_state_dict.json
* OUT_DIR/mask-rcnn_r50-caffe-c4_1x_state_dict.json
* OUT_DIR/mask-rcnn_swin-t-p4-w7_fpn_1x_state_dict.json
* OUT_DIR/mask-rcnn_regnetx-3.2GF_fpn_1x_state_dict.json
* OUT_DIR/mask-rcnn_r50-dconv-c3-c5_fpn_1x_state_dict.json
* OUT_DIR/faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x_state_dict.json
* OUT_DIR/mask-rcnn_hrnetv2p-w18-1x_state_dict.json
* OUT_DIR/rpn_r50_fpn_1x_state_dict.json
* OUT_DIR/fcos_r50-caffe_fpn_gn-head_1x_state_dict.json
* OUT_DIR/faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_state_dict.json
* OUT_DIR/faster-rcnn_res2net-101_fpn_2x_state_dict.json
* OUT_DIR/mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x_state_dict.json
* OUT_DIR/atss_r50_fpn_1x_state_dict.json
* OUT_DIR/gfl_r50_fpn_1x_state_dict.json
* OUT_DIR/faster-rcnn_r50_pafpn_1x_state_dict.json
* OUT_DIR/ms-rcnn_r50_fpn_1x_state_dict.json
* OUT_DIR/faster-rcnn_r50-attn1111_fpn_1x_state_dict.json
* OUT_DIR/libra-retinanet_r50_fpn_1x_state_dict.json
* OUT_DIR/libra-faster-rcnn_r50_fpn_1x_state_dict.json
* OUT_DIR/retinanet_r50_fpn_ghm-1x_state_dict.json
* OUT_DIR/mask-rcnn_r50_fpn_rpn-2conv_4conv1fc_syncbn-all_lsj-100e_state_dict.json
* OUT_DIR/mask-rcnn_r50_fpn_groie_1x_state_dict.json
* OUT_DIR/rtmdet_tiny_state_dict.json
* OUT_DIR/rtmdet_l_state_dict.json
* OUT_DIR/freeanchor_r50_fpn_1x_state_dict.json
* OUT_DIR/atss_r50_fpn_dyhead_1x_state_dict.json
* OUT_DIR/vfnet_r50_fpn_1x_state_dict.json
* OUT_DIR/vfnet_r50-mdconv-c3-c5_fpn_ms-2x_state_dict.json
* OUT_DIR/tood_r50_fpn_1x_state_dict.json
* OUT_DIR/tood_r101-dconv-c3-c5_fpn_ms-2x_state_dict.json
* OUT_DIR/fovea_r50_fpn_4xb4-1x_state_dict.json
* OUT_DIR/fovea_r50_fpn_gn-head-align_4xb4-2x_state_dict.json
* OUT_DIR/reppoints-moment_r50_fpn-gn_head-gn_1x_state_dict.json
* OUT_DIR/reppoints-bbox_r50_fpn-gn_head-gn-grid_1x_state_dict.json
* OUT_DIR/centernet-update_r50-caffe_fpn_ms-1x_state_dict.json

each `{"config": ..., "params": N, "trainable": T, "frozen": F,
"buffers": [name, ...], "state_dict": {name: [shape, ...]}}`:

* `params`: `sum(p.numel() for p in model.parameters())` (trainable and
  frozen, no buffers; a parameter shared by several modules, as RTMDet's
  head shares its convs across levels, once), as MMEngine counts them;
* `trainable` / `frozen`: the same sum split by `requires_grad` after the
  model is built and put in train mode (ResNet's `frozen_stages=1` freezes the
  stem and `layer1` in `_freeze_stages`, called by `__init__` and `train()`);
* `buffers`: the state-dict entries that are buffers (BatchNorm's running
  statistics);
* `shared` (only when there are any): the other names of a parameter
  registered under several (RTMDet's head convs shared across levels);
* `state_dict`: every `model.state_dict()` name with its shape.

The models are MMDetection 3.3.0's real `QueryInst` / `SparseRCNN` /
`FasterRCNN` / `MaskRCNN`, built through its registry from the configs
shipped in the PyPI wheel (`mmdet/.mim/configs/<model>/*_r50_fpn_1x_coco.py`, loaded
with MMEngine's `Config.fromfile`). Two substitutions, neither of which adds
or removes a state-dict entry:

* the backbone's `init_cfg` (torchvision://resnet50) is set to None, so no
  download is needed (`init_weights` is not called: initial values do not
  change names, shapes or `requires_grad`);
* mmcv's compiled `RoIAlign` (absent in mmcv-lite) is replaced by a module
  without parameters or buffers, as mmcv's own has none.

MMCV's deformable convs (`DCN`, `DCNv2`) are its own Python classes
(`mmdet_standins.install_mmcv_deform_convs`), so their names are MMCV's.
MMCV's `MMSyncBN` asks torch.distributed for its world size when built, so
a one-process Gloo group is started first.
"""

import json
import os
import sys

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGS = {
    "queryinst_r50_fpn_1x": "queryinst/queryinst_r50_fpn_1x_coco.py",
    "sparse-rcnn_r50_fpn_1x": "sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.py",
    "faster-rcnn_r50_fpn_1x": "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py",
    "mask-rcnn_r50_fpn_1x": "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py",
    "cascade-mask-rcnn_r50_fpn_1x": "cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py",
    "faster-rcnn_x101-32x4d_fpn_1x": "faster_rcnn/faster-rcnn_x101-32x4d_fpn_1x_coco.py",
    "mask-rcnn_r50_fpn_gn-ws-all_2x": "gn+ws/mask-rcnn_r50_fpn_gn-ws-all_2x_coco.py",
    "mask-rcnn_r50-caffe-c4_1x": "mask_rcnn/mask-rcnn_r50-caffe-c4_1x_coco.py",
    "mask-rcnn_swin-t-p4-w7_fpn_1x": "swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py",
    "mask-rcnn_regnetx-3.2GF_fpn_1x": "regnet/mask-rcnn_regnetx-3.2GF_fpn_1x_coco.py",
    "mask-rcnn_r50-dconv-c3-c5_fpn_1x": "dcn/mask-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py",
    "faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x": "dcnv2/faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x_coco.py",
    "mask-rcnn_hrnetv2p-w18-1x": "hrnet/mask-rcnn_hrnetv2p-w18-1x_coco.py",
    "rpn_r50_fpn_1x": "rpn/rpn_r50_fpn_1x_coco.py",
    "fcos_r50-caffe_fpn_gn-head_1x": "fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
    "faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x": "resnest/faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.py",
    "faster-rcnn_res2net-101_fpn_2x": "res2net/faster-rcnn_res2net-101_fpn_2x_coco.py",
    "mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x": "gcnet/mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x_coco.py",
    "atss_r50_fpn_1x": "atss/atss_r50_fpn_1x_coco.py",
    "gfl_r50_fpn_1x": "gfl/gfl_r50_fpn_1x_coco.py",
    "faster-rcnn_r50_pafpn_1x": "pafpn/faster-rcnn_r50_pafpn_1x_coco.py",
    "ms-rcnn_r50_fpn_1x": "ms_rcnn/ms-rcnn_r50_fpn_1x_coco.py",
    "faster-rcnn_r50-attn1111_fpn_1x": "empirical_attention/faster-rcnn_r50-attn1111_fpn_1x_coco.py",
    "libra-retinanet_r50_fpn_1x": "libra_rcnn/libra-retinanet_r50_fpn_1x_coco.py",
    "libra-faster-rcnn_r50_fpn_1x": "libra_rcnn/libra-faster-rcnn_r50_fpn_1x_coco.py",
    "retinanet_r50_fpn_ghm-1x": "ghm/retinanet_r50_fpn_ghm-1x_coco.py",
    "mask-rcnn_r50_fpn_rpn-2conv_4conv1fc_syncbn-all_lsj-100e":
        "strong_baselines/mask-rcnn_r50_fpn_rpn-2conv_4conv1fc_syncbn-all_lsj-100e_coco.py",
    "mask-rcnn_r50_fpn_groie_1x": "groie/mask-rcnn_r50_fpn_groie_1x_coco.py",
    "rtmdet_tiny": "rtmdet/rtmdet_tiny_8xb32-300e_coco.py",
    "rtmdet_l": "rtmdet/rtmdet_l_8xb32-300e_coco.py",
    "freeanchor_r50_fpn_1x": "free_anchor/freeanchor_r50_fpn_1x_coco.py",
    "atss_r50_fpn_dyhead_1x": "dyhead/atss_r50_fpn_dyhead_1x_coco.py",
    "vfnet_r50_fpn_1x": "vfnet/vfnet_r50_fpn_1x_coco.py",
    "vfnet_r50-mdconv-c3-c5_fpn_ms-2x": "vfnet/vfnet_r50-mdconv-c3-c5_fpn_ms-2x_coco.py",
    "tood_r50_fpn_1x": "tood/tood_r50_fpn_1x_coco.py",
    "tood_r101-dconv-c3-c5_fpn_ms-2x": "tood/tood_r101-dconv-c3-c5_fpn_ms-2x_coco.py",
    "fovea_r50_fpn_4xb4-1x": "foveabox/fovea_r50_fpn_4xb4-1x_coco.py",
    "fovea_r50_fpn_gn-head-align_4xb4-2x": "foveabox/fovea_r50_fpn_gn-head-align_4xb4-2x_coco.py",
    "reppoints-moment_r50_fpn-gn_head-gn_1x": "reppoints/reppoints-moment_r50_fpn-gn_head-gn_1x_coco.py",
    "reppoints-bbox_r50_fpn-gn_head-gn-grid_1x": "reppoints/reppoints-bbox_r50_fpn-gn_head-gn-grid_1x_coco.py",
    "centernet-update_r50-caffe_fpn_ms-1x": "centernet/centernet-update_r50-caffe_fpn_ms-1x_coco.py",
}


class RoIAlignStandIn(nn.Module):
    """mmcv.ops.RoIAlign's constructor signature; like mmcv's, no state."""

    def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=0,
                 pool_mode="avg", aligned=True, use_torchvision=False):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale


def load_mmdet():
    sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
    import mmdet_standins

    mmdet_standins.install()
    import mmcv.ops

    # An attribute set on the stand-in module wins over its __getattr__.
    mmcv.ops.RoIAlign = RoIAlignStandIn
    mmdet_standins.install_mmcv_deform_convs()
    # VFNetHead imports `DeformConv2d` from the package.
    mmcv.ops.DeformConv2d = sys.modules["mmcv.ops.deform_conv"].DeformConv2d
    mmdet_standins.install_mmcv_sync_bn()
    import mmdet.models  # noqa: F401  (registers the models)
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)


def record(rel_config):
    import mmdet
    from mmengine.config import Config
    from mmdet.registry import MODELS

    path = os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", rel_config)
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.train()
    params = dict(model.named_parameters())
    trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    state = model.state_dict()
    buffers = dict(model.named_buffers())
    rec = {
        "config": "mmdet/.mim/configs/" + rel_config,
        "params": total,
        "trainable": trainable,
        "frozen": total - trainable,
        "buffers": [k for k in state if k in buffers],
        "state_dict": {k: list(v.shape) for k, v in state.items()},
    }
    # A parameter under several names (RTMDet's head convs shared across
    # levels): its other names, which `named_parameters` leaves out.
    shared = [k for k in state if k not in params and k not in buffers]
    if shared:
        rec["shared"] = shared
    return rec


def one_process_group():
    """MMCV's SyncBatchNorm (`MMSyncBN`) reads the world size when built."""
    import tempfile

    import torch.distributed as dist

    if not dist.is_initialized():
        store = os.path.join(tempfile.mkdtemp(), "store")
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)


def main():
    torch.set_num_threads(1)
    load_mmdet()
    one_process_group()
    records = {name: record(rel) for name, rel in CONFIGS.items()}
    if len(sys.argv) < 2:
        json.dump(records, sys.stdout)
        sys.stdout.write("\n")
        return
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for name, rec in records.items():
        with open(os.path.join(out_dir, f"{name}_state_dict.json"), "w") as f:
            json.dump(rec, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
