#!/usr/bin/env python
"""Checks that the YAML twins under configs/ resolve, through MMEngine, to
exactly what the MMDetection 3.3.0 Python originals resolve to.

    scripts/test-env && .venv-test/bin/python tests/mmengine/compare_twins.py

For each config: Config.fromfile(twin).to_dict() must equal
Config.fromfile(original).to_dict() with tuples read as lists, int/float/bool
types equal, dict key order ignored (reported, not checked). Prints one line per config when equal;
prints the differences and exits 1 otherwise.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, diff, mmdet_configs_dir, plain  # noqa: E402

from mmengine.config import Config  # noqa: E402

CONFIGS = [
    'queryinst/queryinst_r50_fpn_1x_coco',
    'queryinst/queryinst_r50_fpn_ms-480-800-3x_coco',
    'queryinst/queryinst_r50_fpn_300-proposals_crop-ms-480-800-3x_coco',
    'queryinst/queryinst_r101_fpn_ms-480-800-3x_coco',
    'queryinst/queryinst_r101_fpn_300-proposals_crop-ms-480-800-3x_coco',
    'sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco',
    'sparse_rcnn/sparse-rcnn_r50_fpn_ms-480-800-3x_coco',
    'sparse_rcnn/sparse-rcnn_r50_fpn_300-proposals_crop-ms-480-800-3x_coco',
    'sparse_rcnn/sparse-rcnn_r101_fpn_ms-480-800-3x_coco',
    'sparse_rcnn/sparse-rcnn_r101_fpn_300-proposals_crop-ms-480-800-3x_coco',
    'faster_rcnn/faster-rcnn_r50_fpn_1x_coco',
    'faster_rcnn/faster-rcnn_r50_fpn_2x_coco',
    'faster_rcnn/faster-rcnn_r50_fpn_amp-1x_coco',
    'faster_rcnn/faster-rcnn_r50-caffe_fpn_1x_coco',
    'faster_rcnn/faster-rcnn_r50-caffe_c4-1x_coco',
    'faster_rcnn/faster-rcnn_r50-caffe-c4_ms-1x_coco',
    'faster_rcnn/faster-rcnn_r50_fpn_ms-3x_coco',
    'faster_rcnn/faster-rcnn_r50_fpn_iou_1x_coco',
    'faster_rcnn/faster-rcnn_r50_fpn_ohem_1x_coco',
    'faster_rcnn/faster-rcnn_r50_fpn_giou_1x_coco',
    'faster_rcnn/faster-rcnn_r50_fpn_bounded-iou_1x_coco',
    'faster_rcnn/faster-rcnn_r50_fpn_ciou_1x_coco',
    'faster_rcnn/faster-rcnn_r50_fpn_soft-nms_1x_coco',
    'faster_rcnn/faster-rcnn_r50_fpn_8xb8-amp-lsj-200e_coco',
    'faster_rcnn/faster-rcnn_r101_fpn_1x_coco',
    'faster_rcnn/faster-rcnn_r101_fpn_2x_coco',
    'faster_rcnn/faster-rcnn_r101_fpn_ms-3x_coco',
    'faster_rcnn/faster-rcnn_r101_fpn_8xb8-amp-lsj-200e_coco',
    'faster_rcnn/faster-rcnn_r18_fpn_8xb8-amp-lsj-200e_coco',
    'faster_rcnn/faster-rcnn_x101-32x4d_fpn_1x_coco',
    'faster_rcnn/faster-rcnn_x101-64x4d_fpn_1x_coco',
    'faster_rcnn/faster-rcnn_x101-32x4d_fpn_ms-3x_coco',
    'faster_rcnn/faster-rcnn_x101-64x4d_fpn_ms-3x_coco',
    'mask_rcnn/mask-rcnn_r50_fpn_1x_coco',
    'mask_rcnn/mask-rcnn_r50_fpn_2x_coco',
    'mask_rcnn/mask-rcnn_r50_fpn_amp-1x_coco',
    'mask_rcnn/mask-rcnn_r50_fpn_poly-1x_coco',
    'mask_rcnn/mask-rcnn_r50-caffe_fpn_1x_coco',
    'mask_rcnn/mask-rcnn_r50-caffe-c4_1x_coco',
    'mask_rcnn/mask-rcnn_r50_fpn_ms-poly-3x_coco',
    'mask_rcnn/mask-rcnn_r50_fpn_8xb8-amp-lsj-200e_coco',
    'mask_rcnn/mask-rcnn_r101_fpn_1x_coco',
    'mask_rcnn/mask-rcnn_r101_fpn_2x_coco',
    'mask_rcnn/mask-rcnn_r101_fpn_ms-poly-3x_coco',
    'mask_rcnn/mask-rcnn_r101_fpn_8xb8-amp-lsj-200e_coco',
    'mask_rcnn/mask-rcnn_r18_fpn_8xb8-amp-lsj-200e_coco',
    'mask_rcnn/mask-rcnn_x101-32x4d_fpn_1x_coco',
    'mask_rcnn/mask-rcnn_x101-64x4d_fpn_1x_coco',
    'mask_rcnn/mask-rcnn_x101-32x4d_fpn_ms-poly-3x_coco',
    'cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco',
    'cascade_rcnn/cascade-rcnn_r50_fpn_20e_coco',
    'cascade_rcnn/cascade-rcnn_r50-caffe_fpn_1x_coco',
    'cascade_rcnn/cascade-rcnn_r101_fpn_1x_coco',
    'cascade_rcnn/cascade-rcnn_r101_fpn_20e_coco',
    'cascade_rcnn/cascade-rcnn_x101-32x4d_fpn_1x_coco',
    'cascade_rcnn/cascade-rcnn_x101-64x4d_fpn_1x_coco',
    'cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco',
    'cascade_rcnn/cascade-mask-rcnn_r50_fpn_20e_coco',
    'cascade_rcnn/cascade-mask-rcnn_r50-caffe_fpn_1x_coco',
    'cascade_rcnn/cascade-mask-rcnn_r50_fpn_ms-3x_coco',
    'cascade_rcnn/cascade-mask-rcnn_r101_fpn_1x_coco',
    'cascade_rcnn/cascade-mask-rcnn_r101_fpn_ms-3x_coco',
    'cascade_rcnn/cascade-mask-rcnn_x101-32x4d_fpn_1x_coco',
    'cascade_rcnn/cascade-mask-rcnn_x101-32x4d_fpn_ms-3x_coco',
    'gn/mask-rcnn_r101_fpn_gn-all_2x_coco',
    'gn/mask-rcnn_r101_fpn_gn-all_3x_coco',
    'gn/mask-rcnn_r50-contrib_fpn_gn-all_2x_coco',
    'gn/mask-rcnn_r50-contrib_fpn_gn-all_3x_coco',
    'gn/mask-rcnn_r50_fpn_gn-all_2x_coco',
    'gn/mask-rcnn_r50_fpn_gn-all_3x_coco',
    'gn+ws/faster-rcnn_r101_fpn_gn-ws-all_1x_coco',
    'gn+ws/faster-rcnn_r50_fpn_gn-ws-all_1x_coco',
    'gn+ws/faster-rcnn_x101-32x4d_fpn_gn-ws-all_1x_coco',
    'gn+ws/faster-rcnn_x50-32x4d_fpn_gn-ws-all_1x_coco',
    'gn+ws/mask-rcnn_r101_fpn_gn-ws-all_20-23-24e_coco',
    'gn+ws/mask-rcnn_r101_fpn_gn-ws-all_2x_coco',
    'gn+ws/mask-rcnn_r50_fpn_gn-ws-all_20-23-24e_coco',
    'gn+ws/mask-rcnn_r50_fpn_gn-ws-all_2x_coco',
    'gn+ws/mask-rcnn_x101-32x4d_fpn_gn-ws-all_20-23-24e_coco',
    'gn+ws/mask-rcnn_x101-32x4d_fpn_gn-ws-all_2x_coco',
    'gn+ws/mask-rcnn_x50-32x4d_fpn_gn-ws-all_20-23-24e_coco',
    'gn+ws/mask-rcnn_x50-32x4d_fpn_gn-ws-all_2x_coco',
    'swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco',
    'swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco',
    'swin/mask-rcnn_swin-t-p4-w7_fpn_amp-ms-crop-3x_coco',
    'swin/mask-rcnn_swin-s-p4-w7_fpn_amp-ms-crop-3x_coco',
    'retinanet/retinanet_r50_fpn_1x_coco',
    'retinanet/retinanet_r50_fpn_2x_coco',
    'retinanet/retinanet_r50_fpn_amp-1x_coco',
    'retinanet/retinanet_r50_fpn_90k_coco',
    'retinanet/retinanet_r50_fpn_ms-640-800-3x_coco',
    'retinanet/retinanet_r50_fpn_8xb8-amp-lsj-200e_coco',
    'retinanet/retinanet_r50-caffe_fpn_1x_coco',
    'retinanet/retinanet_r50-caffe_fpn_ms-1x_coco',
    'retinanet/retinanet_r50-caffe_fpn_ms-2x_coco',
    'retinanet/retinanet_r50-caffe_fpn_ms-3x_coco',
    'retinanet/retinanet_r101-caffe_fpn_1x_coco',
    'retinanet/retinanet_r101-caffe_fpn_ms-3x_coco',
    'retinanet/retinanet_r101_fpn_1x_coco',
    'retinanet/retinanet_r101_fpn_2x_coco',
    'retinanet/retinanet_r101_fpn_ms-640-800-3x_coco',
    'retinanet/retinanet_r101_fpn_8xb8-amp-lsj-200e_coco',
    'retinanet/retinanet_r18_fpn_1x_coco',
    'retinanet/retinanet_r18_fpn_1xb8-1x_coco',
    'retinanet/retinanet_r18_fpn_8xb8-amp-lsj-200e_coco',
    'retinanet/retinanet_x101-32x4d_fpn_1x_coco',
    'retinanet/retinanet_x101-32x4d_fpn_2x_coco',
    'retinanet/retinanet_x101-64x4d_fpn_1x_coco',
    'retinanet/retinanet_x101-64x4d_fpn_2x_coco',
    'retinanet/retinanet_x101-64x4d_fpn_ms-640-800-3x_coco',
    'swin/retinanet_swin-t-p4-w7_fpn_1x_coco',
    'regnet/faster-rcnn_regnetx-3.2GF_fpn_1x_coco',
    'regnet/faster-rcnn_regnetx-3.2GF_fpn_2x_coco',
    'regnet/faster-rcnn_regnetx-3.2GF_fpn_ms-3x_coco',
    'regnet/faster-rcnn_regnetx-400MF_fpn_ms-3x_coco',
    'regnet/faster-rcnn_regnetx-800MF_fpn_ms-3x_coco',
    'regnet/faster-rcnn_regnetx-1.6GF_fpn_ms-3x_coco',
    'regnet/faster-rcnn_regnetx-4GF_fpn_ms-3x_coco',
    'regnet/mask-rcnn_regnetx-3.2GF_fpn_1x_coco',
    'regnet/mask-rcnn_regnetx-3.2GF_fpn_ms-3x_coco',
    'regnet/mask-rcnn_regnetx-4GF_fpn_1x_coco',
    'regnet/mask-rcnn_regnetx-6.4GF_fpn_1x_coco',
    'regnet/mask-rcnn_regnetx-8GF_fpn_1x_coco',
    'regnet/mask-rcnn_regnetx-12GF_fpn_1x_coco',
    'regnet/mask-rcnn_regnetx-400MF_fpn_ms-poly-3x_coco',
    'regnet/mask-rcnn_regnetx-800MF_fpn_ms-poly-3x_coco',
    'regnet/mask-rcnn_regnetx-1.6GF_fpn_ms-poly-3x_coco',
    'regnet/mask-rcnn_regnetx-4GF_fpn_ms-poly-3x_coco',
    'regnet/cascade-mask-rcnn_regnetx-3.2GF_fpn_ms-3x_coco',
    'regnet/cascade-mask-rcnn_regnetx-400MF_fpn_ms-3x_coco',
    'regnet/cascade-mask-rcnn_regnetx-800MF_fpn_ms-3x_coco',
    'regnet/cascade-mask-rcnn_regnetx-1.6GF_fpn_ms-3x_coco',
    'regnet/cascade-mask-rcnn_regnetx-4GF_fpn_ms-3x_coco',
    'regnet/retinanet_regnetx-3.2GF_fpn_1x_coco',
    'regnet/retinanet_regnetx-800MF_fpn_1x_coco',
    'regnet/retinanet_regnetx-1.6GF_fpn_1x_coco',
    # the bases, each on its own
    '_base_/models/faster-rcnn_r50_fpn',
    '_base_/models/mask-rcnn_r50_fpn',
    '_base_/models/faster-rcnn_r50-caffe-c4',
    '_base_/models/mask-rcnn_r50-caffe-c4',
    '_base_/models/cascade-rcnn_r50_fpn',
    '_base_/models/cascade-mask-rcnn_r50_fpn',
    '_base_/models/retinanet_r50_fpn',
    'retinanet/retinanet_tta',
    '_base_/datasets/coco_detection',
    '_base_/datasets/coco_instance',
    '_base_/schedules/schedule_1x',
    '_base_/schedules/schedule_2x',
    '_base_/schedules/schedule_20e',
    '_base_/default_runtime',
    'common/ms_3x_coco',
    'common/ms_3x_coco-instance',
    'common/ms-poly_3x_coco-instance',
    'common/lsj-100e_coco-detection',
    'common/lsj-200e_coco-detection',
    'common/lsj-100e_coco-instance',
    'common/lsj-200e_coco-instance',
    'dcn/cascade-mask-rcnn_r101-dconv-c3-c5_fpn_1x_coco',
    'dcn/cascade-mask-rcnn_r50-dconv-c3-c5_fpn_1x_coco',
    'dcn/cascade-mask-rcnn_x101-32x4d-dconv-c3-c5_fpn_1x_coco',
    'dcn/cascade-rcnn_r101-dconv-c3-c5_fpn_1x_coco',
    'dcn/cascade-rcnn_r50-dconv-c3-c5_fpn_1x_coco',
    'dcn/faster-rcnn_r101-dconv-c3-c5_fpn_1x_coco',
    'dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco',
    'dcn/faster-rcnn_x101-32x4d-dconv-c3-c5_fpn_1x_coco',
    'dcn/mask-rcnn_r101-dconv-c3-c5_fpn_1x_coco',
    'dcn/mask-rcnn_r50-dconv-c3-c5_fpn_1x_coco',
    'dcn/mask-rcnn_r50-dconv-c3-c5_fpn_amp-1x_coco',
    'dcnv2/faster-rcnn_r50-mdconv-c3-c5_fpn_1x_coco',
    'dcnv2/faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x_coco',
    'dcnv2/mask-rcnn_r50-mdconv-c3-c5_fpn_1x_coco',
    'dcnv2/mask-rcnn_r50-mdconv-c3-c5_fpn_amp-1x_coco',
    'regnet/mask-rcnn_regnetx-3.2GF-mdconv-c3-c5_fpn_1x_coco',
    'hrnet/cascade-mask-rcnn_hrnetv2p-w18_20e_coco',
    'hrnet/cascade-mask-rcnn_hrnetv2p-w32_20e_coco',
    'hrnet/cascade-mask-rcnn_hrnetv2p-w40-20e_coco',
    'hrnet/cascade-rcnn_hrnetv2p-w18-20e_coco',
    'hrnet/cascade-rcnn_hrnetv2p-w32-20e_coco',
    'hrnet/cascade-rcnn_hrnetv2p-w40-20e_coco',
    'hrnet/faster-rcnn_hrnetv2p-w18-1x_coco',
    'hrnet/faster-rcnn_hrnetv2p-w18-2x_coco',
    'hrnet/faster-rcnn_hrnetv2p-w32-1x_coco',
    'hrnet/faster-rcnn_hrnetv2p-w32_2x_coco',
    'hrnet/faster-rcnn_hrnetv2p-w40-1x_coco',
    'hrnet/faster-rcnn_hrnetv2p-w40_2x_coco',
    'hrnet/mask-rcnn_hrnetv2p-w18-1x_coco',
    'hrnet/mask-rcnn_hrnetv2p-w18-2x_coco',
    'hrnet/mask-rcnn_hrnetv2p-w32-1x_coco',
    'hrnet/mask-rcnn_hrnetv2p-w32-2x_coco',
    'hrnet/mask-rcnn_hrnetv2p-w40-2x_coco',
    'hrnet/mask-rcnn_hrnetv2p-w40_1x_coco',
    'rpn/rpn_r50_fpn_1x_coco',
    'rpn/rpn_r50_fpn_2x_coco',
    'rpn/rpn_r50-caffe_fpn_1x_coco',
    'rpn/rpn_r50-caffe-c4_1x_coco',
    'rpn/rpn_r101_fpn_1x_coco',
    'rpn/rpn_r101_fpn_2x_coco',
    'rpn/rpn_r101-caffe_fpn_1x_coco',
    'rpn/rpn_x101-32x4d_fpn_1x_coco',
    'rpn/rpn_x101-32x4d_fpn_2x_coco',
    'rpn/rpn_x101-64x4d_fpn_1x_coco',
    'rpn/rpn_x101-64x4d_fpn_2x_coco',
]


def main() -> int:
    originals = mmdet_configs_dir()
    failed = 0
    for name in sys.argv[1:] or CONFIGS:
        twin = os.path.join(REPO, 'configs', name + '.yaml')
        original = os.path.join(originals, name + '.py')
        try:
            got = plain(Config.fromfile(twin).to_dict())
            want = plain(Config.fromfile(original).to_dict())
        except Exception as e:  # report and go on with the next config
            print(f'FAIL {name}: {type(e).__name__}: {e}')
            failed += 1
            continue
        lines = diff(got, want)
        if lines:
            failed += 1
            print(f'FAIL {name}: the YAML twin (first) differs from the Python original (second):')
            for line in lines:
                print('    ' + line)
        else:
            order = ('same key order' if json.dumps(got) == json.dumps(want)
                     else 'key order differs')
            print(f'ok   {name}: {len(want)} top-level keys, identical ({order})')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
