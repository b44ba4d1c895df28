"""Reference outputs for detc's StandardRoIHead, Shared2FCBBoxHead,
FCNMaskHead and multiclass_nms (src/models/roi_heads/standard_roi_head.rs,
bbox_heads/convfc_bbox_head.rs and its loss/predict files,
mask_heads/fcn_mask_head.rs, src/models/ops/multiclass_nms.rs).

Usage: .venv-test/bin/python tests/models/two_stage_roi_reference.py OUT_DIR

Writes OUT_DIR/two_stage_roi.pth, a bare state dict of tensors read back
through detc::checkpoint. Everything comes from MMDetection 3.3.0's real
modules; mmcv-lite lacks the compiled ops, so mmcv's RoIAlign becomes
torchvision's roi_align (aligned=True, the same op) and mmcv's batched_nms
is re-stated below over torchvision's nms (its Python logic, unchanged).

* box.*    a tiny Shared2FCBBoxHead (CFG_BOX), weights after init_weights()
           and a perturbation (box.sd.*), the init (box.init.*); two images
           assigned by MaxIoUAssigner and sampled by RandomSampler (num 512:
           every prior is taken, so the draw is deterministic), their
           SamplingResults (box.samp.{i}.*), RoI features, forward outputs,
           get_targets, loss_and_target, gradients of the summed loss;
* boxnp.*  the same head on two images without ground truth (no positive);
* agn.*    a class-agnostic head with reg_decoded_bbox and GIoULoss,
           pos_weight 2, on box's sampling;
* pred.*   `_predict_by_feat_single` of box (and agn): the inputs of
           multiclass_nms (decoded, clipped, rescaled boxes and scores) and
           the detections, with and without rescale, and without NMS;
* mnms.*   multiclass_nms with class_agnostic, score_threshold and max_num;
* mask.*   a tiny FCNMaskHead (CFG_MASK) after init_weights() and a
           perturbation, forward, mask targets and loss on box's positives
           with bitmap GT masks, gradients; maska.* its class-agnostic twin;
           maskp.* predict_by_feat (pasted masks, rescaled boxes);
* e2e.*    a tiny StandardRoIHead with both branches (own mask extractor):
           loss on 2 images (losses, sampling, gradients w.r.t. the features
           and a few weights) and predict with rescale true and false;
  e2es.*   the same with a shared extractor (mask_roi_extractor null): loss;
  ohem.*   the same with an OHEMSampler of 8 RoIs per image (fewer than the
           candidates: the hardest by loss_cls are kept): loss;
* shape.*  the state-dict shapes of Mask R-CNN's full StandardRoIHead;
* cas.*, casm.*  a tiny 3-stage CascadeRoIHead (cascade_cfg), without and
           with mask heads: every stage's losses, gradients, predictions;
* c4.*     the C4 configs' StandardRoIHead (c4_cfg): a ResLayer shared head,
           a BBoxHead, a conv-less FCNMaskHead: losses, gradients, predictions.
* ms.*     e2e's head as Mask Scoring R-CNN's MaskScoringRoIHead with a tiny
           MaskIoUHead (CFG_MASK_IOU): losses (loss_mask_iou too),
           gradients, predictions (scores times the predicted mask IoU);
  msinit.* that MaskIoUHead's state dict after init_weights().
"""

import math
import os
import sys

import numpy as np
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

mmdet_standins.install_tv_roi_align()


def tv_roi_align(input, rois, output_size, spatial_scale, sampling_ratio,
                 pool_mode, aligned):
    """mmcv.ops.roi_align's signature over torchvision's kernel."""
    assert pool_mode == "avg"
    return torchvision.ops.roi_align(input, rois, output_size, spatial_scale,
                                     sampling_ratio, aligned)


import mmdet.models.layers.bbox_nms as bbox_nms  # noqa: E402
import mmdet.structures.mask.structures as mask_structures  # noqa: E402

bbox_nms.batched_nms = mmdet_standins.mmcv_batched_nms
mask_structures.roi_align = tv_roi_align

import mmdet.models.roi_heads.bbox_heads.bbox_head as bbox_head_mod  # noqa: E402
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead  # noqa: E402
from mmdet.models.roi_heads.mask_heads import FCNMaskHead  # noqa: E402
from mmdet.models.task_modules.assigners import MaxIoUAssigner  # noqa: E402
from mmdet.models.task_modules.samplers import RandomSampler  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.bbox import bbox2roi  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

# Keep in sync with the Rust tests (box_cfg() etc. in convfc_bbox_head.rs).
CFG_BOX = dict(in_channels=8, fc_out_channels=16, roi_feat_size=7, num_classes=3,
               loss_bbox=dict(type="L1Loss", loss_weight=1.0))
CFG_AGN = dict(CFG_BOX, reg_class_agnostic=True, reg_decoded_bbox=True,
               loss_bbox=dict(type="GIoULoss", loss_weight=2.0))
CFG_MASK = dict(num_convs=2, roi_feat_size=14, in_channels=8, conv_out_channels=8,
                num_classes=3)
ASSIGNER = dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                match_low_quality=True, ignore_iof_thr=-1)
SAMPLER = dict(type="RandomSampler", num=512, pos_fraction=0.25, neg_pos_ub=-1,
               add_gt_as_proposals=True)
TEST = dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100,
            mask_thr_binary=0.5)
H, W = 64, 80
META = dict(img_shape=(H, W), ori_shape=(50, 64), scale_factor=(1.25, 1.28),
            pad_shape=(H, W), batch_input_shape=(H, W))
SAMP_FIELDS = ["pos_inds", "neg_inds", "pos_priors", "neg_priors", "pos_is_gt",
               "pos_assigned_gt_inds", "pos_gt_labels", "pos_gt_bboxes"]


def perturb(module, scale=0.1):
    """Moves every parameter off its init (zero biases, tiny fc_cls/fc_reg)
    so that the comparisons exercise every term."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def save_sd(module, prefix, d):
    for k, v in module.state_dict().items():
        d[f"{prefix}.sd.{k}"] = v.detach().clone()


def save_init(module, prefix, d):
    for k, v in module.state_dict().items():
        v = v.detach().double()
        d[f"{prefix}.init.{k}"] = torch.tensor([v.mean(), v.std() if v.numel() > 1 else 0.0,
                                                v.abs().max()])


def gt_masks(g, boxes):
    """Bitmap masks (G, H, W): an ellipse in each box plus noise pixels."""
    ys, xs = torch.meshgrid(torch.arange(H).float() + 0.5, torch.arange(W).float() + 0.5,
                            indexing="ij")
    out = []
    for x1, y1, x2, y2 in boxes.tolist():
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        m = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
        m ^= torch.rand(H, W, generator=g) > 0.97
        out.append(m)
    return torch.stack(out).to(torch.uint8)


def jitter(g, gts, n):
    """n proposals: ground truths moved by up to 30% of their size, plus random boxes."""
    out = []
    for i in range(n):
        if i % 3 == 2:
            xy = torch.rand(2, generator=g) * torch.tensor([W - 20.0, H - 20.0])
            wh = torch.rand(2, generator=g) * 25 + 6
            out.append(torch.cat([xy, xy + wh]))
        else:
            b = gts[i % len(gts)]
            wh = (b[2:] - b[:2]).repeat(2)
            out.append(b + (torch.rand(4, generator=g) - 0.5) * 0.6 * wh)
    return torch.stack(out)


def images(g):
    """Two images: boxes (G, 4), labels (G,), masks (G, H, W) and proposals."""
    gt0 = torch.tensor([[6.0, 8.0, 38.0, 40.0], [30.0, 20.5, 70.0, 50.0], [50.0, 4.0, 66.0, 22.0]])
    gt1 = torch.tensor([[10.0, 30.0, 34.0, 60.0], [40.0, 6.0, 76.0, 28.0]])
    out = []
    for gt, labels, n in [(gt0, torch.tensor([2, 0, 1]), 10), (gt1, torch.tensor([1, 1]), 8)]:
        out.append(dict(bboxes=gt, labels=labels, masks=gt_masks(g, gt), proposals=jitter(g, gt, n)))
    return out


def sample(imgs):
    assigner = MaxIoUAssigner(**{k: v for k, v in ASSIGNER.items() if k != "type"})
    sampler = RandomSampler(**{k: v for k, v in SAMPLER.items() if k != "type"})
    res = []
    for im in imgs:
        pred = InstanceData(priors=im["proposals"].clone())
        gt = InstanceData(bboxes=im["bboxes"], labels=im["labels"])
        ar = assigner.assign(pred, gt)
        res.append(sampler.sample(ar, pred, gt))
    return res


def save_samp(samp, prefix, d):
    for i, s in enumerate(samp):
        for name in SAMP_FIELDS:
            d[f"{prefix}.samp.{i}.{name}"] = getattr(s, name).clone()
        d[f"{prefix}.samp.{i}.num_gts"] = torch.tensor(s.num_gts)
        d[f"{prefix}.samp.{i}.avg_factor"] = torch.tensor(s.avg_factor)


def box_loss_case(head, samp, prefix, pos_weight, d, grad_keys):
    rois = bbox2roi([s.priors for s in samp])
    g = torch.Generator().manual_seed(5)
    feat = torch.randn(rois.shape[0], 8, 7, 7, generator=g).requires_grad_(True)
    head.zero_grad()
    cls_score, bbox_pred = head(feat)
    cfg = ConfigDict(pos_weight=pos_weight)
    targets = head.get_targets(samp, cfg)
    out = head.loss_and_target(cls_score, bbox_pred, rois, samp, cfg)["loss_bbox"]
    total = out["loss_cls"] + out["loss_bbox"]
    total.backward()
    d[f"{prefix}.rois"] = rois
    d[f"{prefix}.feat"] = feat.detach()
    d[f"{prefix}.cls_score"] = cls_score.detach()
    d[f"{prefix}.bbox_pred"] = bbox_pred.detach()
    for name, t in zip(["labels", "label_weights", "bbox_targets", "bbox_weights"], targets):
        d[f"{prefix}.t.{name}"] = t.clone()
    for k, v in out.items():
        d[f"{prefix}.out.{k}"] = v.detach().clone()
    params = dict(head.named_parameters())
    for k in grad_keys:
        d[f"{prefix}.grad.{k}"] = params[k].grad.clone()
    d[f"{prefix}.grad.feat"] = feat.grad.clone()


def predict_case(head, prefix, d, rescale, nms=True, max_per_img=100):
    """`_predict_by_feat_single` on 12 RoIs of image 0, recording what
    multiclass_nms receives."""
    g = torch.Generator().manual_seed(7)
    xy = torch.rand(12, 2, generator=g) * torch.tensor([60.0, 44.0])
    wh = torch.rand(12, 2, generator=g) * 20 + 8
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[6:] = boxes[:6] + torch.rand(6, 4, generator=g) * 3  # near-duplicates: NMS has work
    roi = torch.cat([torch.zeros(12, 1), boxes], 1)
    feat = torch.randn(12, 8, 7, 7, generator=g)
    seen = {}
    real = bbox_head_mod.multiclass_nms

    def spy(bboxes, scores, *args, **kwargs):
        seen["bboxes"], seen["scores"] = bboxes.clone(), scores.clone()
        return real(bboxes, scores, *args, **kwargs)

    bbox_head_mod.multiclass_nms = spy
    with torch.no_grad():
        cls_score, bbox_pred = head(feat)
        cfg = ConfigDict(dict(TEST, nms=TEST["nms"] if nms else None, max_per_img=max_per_img))
        res = head._predict_by_feat_single(roi, cls_score, bbox_pred, dict(META), rescale, cfg)
    bbox_head_mod.multiclass_nms = real
    d[f"{prefix}.roi"] = roi
    d[f"{prefix}.cls_score"] = cls_score
    d[f"{prefix}.bbox_pred"] = bbox_pred
    d[f"{prefix}.in_bboxes"] = seen["bboxes"]
    d[f"{prefix}.in_scores"] = seen["scores"]
    d[f"{prefix}.bboxes"] = res.bboxes.clone()
    d[f"{prefix}.scores"] = res.scores.clone()
    d[f"{prefix}.labels"] = res.labels.clone()


def mnms_case(d):
    from mmdet.models.layers import multiclass_nms
    g = torch.Generator().manual_seed(8)
    xy = torch.rand(20, 2, generator=g) * 30
    boxes = torch.cat([xy, xy + 10 + torch.rand(20, 2, generator=g) * 10], 1)
    boxes = torch.cat([boxes, boxes + torch.rand(20, 4, generator=g) * 2], 0)  # (40, 4)
    scores = torch.rand(40, 4, generator=g)
    d["mnms.boxes"], d["mnms.scores"] = boxes, scores
    cfgs = {
        "agn": dict(type="nms", iou_threshold=0.4, class_agnostic=True),
        "thr": dict(type="nms", iou_threshold=0.5, score_threshold=0.6, max_num=5),
    }
    for name, nms_cfg in cfgs.items():
        dets, labels = multiclass_nms(boxes, scores, 0.2, nms_cfg, 7)
        d[f"mnms.{name}.bboxes"] = dets[:, :4].contiguous()
        d[f"mnms.{name}.scores"] = dets[:, 4].contiguous()
        d[f"mnms.{name}.labels"] = labels


def mask_case(head, samp, imgs, prefix, d):
    num_pos = sum(len(s.pos_priors) for s in samp)
    g = torch.Generator().manual_seed(9)
    feat = torch.randn(num_pos, 8, 14, 14, generator=g).requires_grad_(True)
    head.zero_grad()
    head.train()
    preds = head(feat)
    gts = [InstanceData(masks=BitmapMasks(im["masks"].numpy(), H, W)) for im in imgs]
    out = head.loss_and_target(preds, samp, gts, ConfigDict(mask_size=28))
    out["loss_mask"]["loss_mask"].backward()
    d[f"{prefix}.feat"] = feat.detach()
    d[f"{prefix}.preds"] = preds.detach()
    d[f"{prefix}.targets"] = out["mask_targets"].clone()
    d[f"{prefix}.loss"] = out["loss_mask"]["loss_mask"].detach()
    params = dict(head.named_parameters())
    for k in ["convs.0.conv.weight", "upsample.weight", "conv_logits.weight"]:
        d[f"{prefix}.grad.{k}"] = params[k].grad.clone()
    d[f"{prefix}.grad.feat"] = feat.grad.clone()


def mask_predict_case(head, d):
    g = torch.Generator().manual_seed(10)
    preds = torch.randn(4, 3, 28, 28, generator=g) * 3
    bboxes = torch.tensor([[4.0, 6.0, 40.0, 30.0], [20.5, 10.2, 70.3, 60.7],
                           [-5.0, 30.0, 20.0, 70.0], [60.0, 2.0, 79.0, 20.0]])
    labels = torch.tensor([0, 2, 1, 2])
    res = InstanceData(bboxes=bboxes.clone(), labels=labels)
    out = head.predict_by_feat((preds,), [res], [dict(META)], ConfigDict(mask_thr_binary=0.5),
                               rescale=True)[0]
    d["maskp.preds"], d["maskp.bboxes"], d["maskp.labels"] = preds, bboxes, labels
    d["maskp.out_bboxes"], d["maskp.masks"] = out.bboxes.clone(), out.masks.clone()


def extractor(size):
    return dict(type="SingleRoIExtractor",
                roi_layer=dict(type="RoIAlign", output_size=size, sampling_ratio=0),
                out_channels=8, featmap_strides=[4, 8, 16, 32])


def e2e_cfg(shared):
    return dict(
        type="StandardRoIHead",
        bbox_roi_extractor=extractor(7),
        bbox_head=dict(type="Shared2FCBBoxHead", **CFG_BOX),
        mask_roi_extractor=None if shared else extractor(14),
        mask_head=dict(type="FCNMaskHead", **dict(CFG_MASK, roi_feat_size=7 if shared else 14)),
        train_cfg=ConfigDict(assigner=ASSIGNER, sampler=SAMPLER, mask_size=14 if shared else 28,
                             pos_weight=-1, debug=False),
        test_cfg=ConfigDict(dict(TEST, max_per_img=20)),  # truncates image 0
    )


def data_samples(imgs):
    out = []
    for im in imgs:
        s = DetDataSample(metainfo=dict(META))
        s.gt_instances = InstanceData(bboxes=im["bboxes"], labels=im["labels"],
                                      masks=BitmapMasks(im["masks"].numpy(), H, W))
        out.append(s)
    return out


OHEM = dict(type="OHEMSampler", num=8, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True)


# Keep in sync with mask_scoring_tests.rs.
CFG_MASK_IOU = dict(type="MaskIoUHead", num_convs=2, num_fcs=1, roi_feat_size=14, in_channels=8,
                    conv_out_channels=8, fc_out_channels=16, num_classes=3)


def e2e_case(prefix, shared, imgs, d, predict, sampler=None, scoring=False):
    torch.manual_seed(11)
    cfg = e2e_cfg(shared)
    if sampler is not None:  # more candidates than the sampler takes: OHEM ranks them
        cfg["train_cfg"]["sampler"] = sampler
    if scoring:
        cfg.update(type="MaskScoringRoIHead", mask_iou_head=CFG_MASK_IOU)
        cfg["train_cfg"]["mask_thr_binary"] = 0.5
    head = MODELS.build(cfg)
    head.init_weights()
    perturb(head, 0.2)
    save_sd(head, prefix, d)
    g = torch.Generator().manual_seed(12)
    sizes = [(16, 20), (8, 10), (4, 5), (2, 3)]
    x = [torch.randn(2, 8, h, w, generator=g).requires_grad_(True) for h, w in sizes]
    for i, t in enumerate(x):
        d[f"{prefix}.x.{i}"] = t.detach()
    head.train()
    rpn = [InstanceData(bboxes=im["proposals"].clone()) for im in imgs]
    losses = head.loss(tuple(x), rpn, data_samples(imgs))
    total = sum(v for k, v in losses.items() if "loss" in k)
    total.backward()
    for k, v in losses.items():
        d[f"{prefix}.out.{k}"] = v.detach().clone()
    params = dict(head.named_parameters())
    keys = ["bbox_head.shared_fcs.0.weight", "bbox_head.fc_cls.weight",
            "bbox_head.fc_reg.weight", "mask_head.convs.0.conv.weight",
            "mask_head.conv_logits.weight"]
    if scoring:
        keys += ["mask_iou_head.convs.0.weight", "mask_iou_head.convs.1.bias", "mask_iou_head.fcs.0.weight",
                 "mask_iou_head.fc_mask_iou.weight", "mask_iou_head.fc_mask_iou.bias"]
    for k in keys:
        d[f"{prefix}.grad.{k}"] = params[k].grad.clone()
    for i, t in enumerate(x):
        d[f"{prefix}.grad.x.{i}"] = t.grad.clone()
    if not predict:
        return
    head.eval()
    with torch.no_grad():
        for rescale in [True, False]:
            rpn = [InstanceData(bboxes=im["proposals"].clone()) for im in imgs]
            res = head.predict(tuple(x), rpn, data_samples(imgs), rescale=rescale)
            for i, r in enumerate(res):
                p = f"{prefix}.pred{int(rescale)}.{i}"
                d[f"{p}.bboxes"], d[f"{p}.scores"] = r.bboxes.clone(), r.scores.clone()
                d[f"{p}.labels"], d[f"{p}.masks"] = r.labels.clone(), r.masks.clone()


# Keep in sync with c4_cfg() in standard_roi_head.rs.
C4_FROZEN_BN = dict(type="BN", requires_grad=False)


def c4_cfg():
    """The C4 configs' StandardRoIHead at full width (ResLayer fixes it):
    RoIs pooled at 14 px from one stride-16 level of 1024 channels, `layer4`
    (stride 2, caffe style, frozen BN in eval mode) as the shared head, a
    plain BBoxHead on the average-pooled 7 px, 2048-channel features, and an
    FCNMaskHead without convs on the positives' shared-head features."""
    return dict(
        type="StandardRoIHead",
        shared_head=dict(type="ResLayer", depth=50, stage=3, stride=2, dilation=1, style="caffe",
                         norm_cfg=C4_FROZEN_BN, norm_eval=True),
        bbox_roi_extractor=dict(type="SingleRoIExtractor",
                                roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0),
                                out_channels=1024, featmap_strides=[16]),
        bbox_head=dict(type="BBoxHead", with_avg_pool=True, roi_feat_size=7, in_channels=2048,
                       num_classes=3, loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        mask_roi_extractor=None,
        mask_head=dict(type="FCNMaskHead", num_convs=0, in_channels=2048, conv_out_channels=16,
                       num_classes=3),
        train_cfg=ConfigDict(assigner=ASSIGNER, sampler=SAMPLER, mask_size=14, pos_weight=-1, debug=False),
        test_cfg=ConfigDict(dict(TEST, max_per_img=20)),
    )


def c4_case(imgs, d):
    """c4.*: loss (values, gradients of a few weights and of the feature map)
    and predict (with rescale) of c4_cfg() on the two images' proposals."""
    torch.manual_seed(31)
    head = MODELS.build(c4_cfg())
    head.init_weights()
    perturb(head, 0.02)
    save_sd(head, "c4", d)
    g = torch.Generator().manual_seed(32)
    x = [torch.randn(2, 1024, H // 16, W // 16, generator=g).requires_grad_(True)]
    d["c4.x.0"] = x[0].detach()
    head.train()
    rpn = [InstanceData(bboxes=im["proposals"].clone()) for im in imgs]
    losses = head.loss(tuple(x), rpn, data_samples(imgs))
    sum(v for k, v in losses.items() if "loss" in k).backward()
    for k, v in losses.items():
        d[f"c4.out.{k}"] = v.detach().clone()
    params = dict(head.named_parameters())
    for k in ["shared_head.layer4.0.conv1.weight", "shared_head.layer4.2.conv3.weight",
              "bbox_head.fc_cls.weight", "bbox_head.fc_reg.weight", "mask_head.upsample.weight",
              "mask_head.conv_logits.weight"]:
        d[f"c4.grad.{k}"] = params[k].grad.clone()
    d["c4.grad.x.0"] = x[0].grad.clone()
    head.eval()
    with torch.no_grad():
        rpn = [InstanceData(bboxes=im["proposals"].clone()) for im in imgs]
        for i, r in enumerate(head.predict(tuple(x), rpn, data_samples(imgs), rescale=True)):
            p = f"c4.pred1.{i}"
            d[f"{p}.bboxes"], d[f"{p}.scores"] = r.bboxes.clone(), r.scores.clone()
            d[f"{p}.labels"], d[f"{p}.masks"] = r.labels.clone(), r.masks.clone()


def cascade_cfg(with_mask):
    """A tiny 3-stage CascadeRoIHead: stricter IoU thresholds per stage, the
    middle head class-specific (the cascade configs' are class-agnostic)."""
    stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
    heads = [dict(type="Shared2FCBBoxHead", **dict(
        CFG_BOX, reg_class_agnostic=(s != 1),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=stds[s]),
        loss_bbox=dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0) if s == 0 else dict(type="L1Loss", loss_weight=1.0)))
        for s in range(3)]
    train = [ConfigDict(assigner=dict(ASSIGNER, pos_iou_thr=t, neg_iou_thr=t, min_pos_iou=t, match_low_quality=False),
                        sampler=SAMPLER, mask_size=28, pos_weight=-1, debug=False) for t in (0.5, 0.6, 0.7)]
    cfg = dict(type="CascadeRoIHead", num_stages=3, stage_loss_weights=[1, 0.5, 0.25],
               bbox_roi_extractor=extractor(7), bbox_head=heads,
               train_cfg=train, test_cfg=ConfigDict(dict(TEST, max_per_img=20)))
    if with_mask:
        cfg.update(mask_roi_extractor=extractor(14), mask_head=dict(type="FCNMaskHead", **CFG_MASK))
    return cfg


def cascade_case(prefix, with_mask, imgs, d):
    """loss (every stage's terms, gradients) and predict of cascade_cfg."""
    torch.manual_seed(21)
    head = MODELS.build(cascade_cfg(with_mask))
    head.init_weights()
    perturb(head, 0.2)
    save_sd(head, prefix, d)
    g = torch.Generator().manual_seed(22)
    sizes = [(16, 20), (8, 10), (4, 5), (2, 3)]
    x = [torch.randn(2, 8, h, w, generator=g).requires_grad_(True) for h, w in sizes]
    for i, t in enumerate(x):
        d[f"{prefix}.x.{i}"] = t.detach()
    head.train()
    rpn = [InstanceData(bboxes=im["proposals"].clone()) for im in imgs]
    losses = head.loss(tuple(x), rpn, data_samples(imgs))
    total = sum(v for k, v in losses.items() if "loss" in k)
    total.backward()
    for k, v in losses.items():
        d[f"{prefix}.out.{k}"] = v.detach().clone()
    params = dict(head.named_parameters())
    keys = ["bbox_head.0.fc_cls.weight", "bbox_head.1.fc_reg.weight", "bbox_head.2.shared_fcs.0.weight"]
    if with_mask:
        keys += ["mask_head.0.conv_logits.weight", "mask_head.2.convs.0.conv.weight"]
    for k in keys:
        d[f"{prefix}.grad.{k}"] = params[k].grad.clone()
    for i, t in enumerate(x):
        d[f"{prefix}.grad.x.{i}"] = t.grad.clone()
    head.eval()
    with torch.no_grad():
        for rescale in [True, False]:
            rpn = [InstanceData(bboxes=im["proposals"].clone()) for im in imgs]
            res = head.predict(tuple(x), rpn, data_samples(imgs), rescale=rescale)
            for i, r in enumerate(res):
                p = f"{prefix}.pred{int(rescale)}.{i}"
                d[f"{p}.bboxes"], d[f"{p}.scores"] = r.bboxes.clone(), r.scores.clone()
                d[f"{p}.labels"] = r.labels.clone()
                if with_mask:
                    d[f"{p}.masks"] = r.masks.clone()


def full_shapes(d):
    cfg = dict(
        type="StandardRoIHead",
        bbox_roi_extractor=dict(type="SingleRoIExtractor",
                                roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
                                out_channels=256, featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(type="Shared2FCBBoxHead", in_channels=256, fc_out_channels=1024,
                       roi_feat_size=7, num_classes=80,
                       loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
        mask_roi_extractor=dict(type="SingleRoIExtractor",
                                roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0),
                                out_channels=256, featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(type="FCNMaskHead", num_convs=4, in_channels=256, conv_out_channels=256,
                       num_classes=80),
    )
    head = MODELS.build(cfg)
    for k, v in head.state_dict().items():
        d[f"shape.{k}"] = torch.tensor(list(v.shape), dtype=torch.long)


def main(out):
    import warnings
    warnings.filterwarnings("ignore", message="indexing with dtype torch.uint8")
    os.makedirs(out, exist_ok=True)
    register_all_modules()
    d = {}
    g = torch.Generator().manual_seed(0)
    imgs = images(g)
    for i, im in enumerate(imgs):
        for k, v in im.items():
            d[f"img.{i}.{k}"] = v
    samp = sample(imgs)
    save_samp(samp, "box", d)

    torch.manual_seed(1)
    box = Shared2FCBBoxHead(**CFG_BOX)
    box.init_weights()
    save_init(box, "box", d)
    perturb(box, 0.2)
    save_sd(box, "box", d)
    box_keys = ["shared_fcs.0.weight", "shared_fcs.1.bias", "fc_cls.weight", "fc_reg.weight",
                "fc_reg.bias"]
    box_loss_case(box, samp, "box", -1, d, box_keys)
    no_gt = [dict(im, bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
             for im in imgs]
    samp_np = sample(no_gt)
    save_samp(samp_np, "boxnp", d)
    box_loss_case(box, samp_np, "boxnp", -1, d, box_keys)

    torch.manual_seed(2)
    agn = Shared2FCBBoxHead(**CFG_AGN)
    agn.init_weights()
    perturb(agn, 0.2)
    save_sd(agn, "agn", d)
    box_loss_case(agn, samp, "agn", 2.0, d, box_keys)

    predict_case(box, "pred.r1", d, rescale=True, max_per_img=8)
    predict_case(box, "pred.r0", d, rescale=False)
    predict_case(box, "pred.nonms", d, rescale=False, nms=False)
    predict_case(agn, "pred.agn", d, rescale=True)
    mnms_case(d)

    torch.manual_seed(3)
    mask = FCNMaskHead(**CFG_MASK)
    mask.init_weights()
    save_init(mask, "mask", d)
    perturb(mask, 0.05)
    save_sd(mask, "mask", d)
    mask_case(mask, samp, imgs, "mask", d)
    mask_predict_case(mask, d)
    torch.manual_seed(4)
    maska = FCNMaskHead(**dict(CFG_MASK, class_agnostic=True))
    maska.init_weights()
    perturb(maska, 0.05)
    save_sd(maska, "maska", d)
    mask_case(maska, samp, imgs, "maska", d)

    e2e_case("e2e", False, imgs, d, predict=True)
    e2e_case("e2es", True, imgs, d, predict=False)
    e2e_case("ohem", False, imgs, d, predict=False, sampler=OHEM)
    e2e_case("ms", False, imgs, d, predict=True, scoring=True)
    torch.manual_seed(5)
    mask_iou = MODELS.build(CFG_MASK_IOU)
    mask_iou.init_weights()
    save_init(mask_iou, "msinit", d)
    full_shapes(d)
    cascade_case("cas", False, imgs, d)
    cascade_case("casm", True, imgs, d)
    c4_case(imgs, d)
    torch.save(d, os.path.join(out, "two_stage_roi.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
