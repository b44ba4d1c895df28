"""Reference outputs for detc's DIIHead, its transformer bricks and PseudoSampler.

Usage: .venv-test/bin/python tests/models/dii_head_reference.py OUT_DIR

Writes OUT_DIR/dii_head.pth, a bare state dict of tensors (torch.save) that
the Rust tests (src/models/roi_heads/bbox_heads/dii_head*.rs) read through
detc::checkpoint. Everything comes from MMDetection 3.3.0's real modules:

* sd.*          a tiny DIIHead (CFG below) after `init_weights()`, its 1-d
                parameters then moved off their constants by small noise;
* init.const.*  the 1-d parameters that init leaves constant (LayerNorms,
                attention biases, fc_cls/fc_reg bias), with their values;
  init.bound.*  the 1-d parameters torch draws from U(+-1/sqrt(fan_in)),
                with that bound (checked here against the values);
* in.*          roi_feat (N*P, C, 7, 7) and proposal_feat (N, P, C), N=2, P=3;
* train.* / eval.*  forward outputs cls_score, bbox_pred, obj_feat, attn_feats;
* loss.*        loss_and_target on 2 images (image 0: 2 GTs matched to
                proposals 2 and 0; image 1: no GT): the proposals, the
                decoded boxes, gt boxes/labels, assignment, imgs_whwh, the
                PseudoSampler's results (samp.{i}.*), the losses, and the
                gradients grad.* of the summed loss (loss_cls + loss_bbox +
                loss_iou) w.r.t. a few parameters and the inputs;
* nopos.*       the same with no GT in either image;
* shape.*       the state-dict shapes of QueryInst's default DIIHead;
* dc.*          mmdet's DynamicConv with `with_proj=False` (the mask head's
                form, out_channels defaulting to in_channels): sd, inputs, output;
* ffn.*         MMCV's FFN with num_fcs=3: sd, input, output.
"""

import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

from mmdet.models.roi_heads.bbox_heads import DIIHead  # noqa: E402
from mmdet.models.task_modules.assigners import AssignResult  # noqa: E402
from mmdet.models.task_modules.samplers import PseudoSampler  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

# Keep in sync with `tiny_cfg()` in src/models/roi_heads/bbox_heads/dii_head.rs.
CFG = dict(
    num_classes=5,
    num_ffn_fcs=2,
    num_heads=2,
    num_cls_fcs=1,
    num_reg_fcs=3,
    feedforward_channels=32,
    in_channels=16,
    dropout=0.0,
    ffn_act_cfg=dict(type="ReLU", inplace=True),
    dynamic_conv_cfg=dict(
        type="DynamicConv",
        in_channels=16,
        feat_channels=4,
        out_channels=16,
        input_feat_shape=7,
        act_cfg=dict(type="ReLU", inplace=True),
        norm_cfg=dict(type="LN"),
    ),
    loss_bbox=dict(type="L1Loss", loss_weight=5.0),
    loss_iou=dict(type="GIoULoss", loss_weight=2.0),
    loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=2.0),
    bbox_coder=dict(
        type="DeltaXYWHBBoxCoder",
        clip_border=False,
        target_means=[0.0, 0.0, 0.0, 0.0],
        target_stds=[0.5, 0.5, 1.0, 1.0],
    ),
)

N, P, C, S = 2, 3, 16, 7
GRAD_KEYS = [
    "fc_cls.weight",
    "fc_reg.weight",
    "attention.attn.in_proj_weight",
    "instance_interactive_conv.dynamic_layer.weight",
    "instance_interactive_conv.fc_layer.weight",
    "ffn.layers.0.0.weight",
    "reg_fcs.3.weight",
]


def init_rules(head, d):
    named = dict(head.named_parameters())
    for k, v in named.items():
        if v.dim() > 1:
            continue
        if bool((v == v[0]).all()):
            d[f"init.const.{k}"] = v.detach().clone()
        else:
            w = named[k[: -len("bias")] + "weight"]
            bound = 1.0 / math.sqrt(w.shape[1])
            assert float(v.detach().abs().max()) <= bound, k
            d[f"init.bound.{k}"] = torch.tensor(bound)


def perturb_vectors(module):
    """Moves the 1-d parameters off their init constants (LayerNorm 1/0, zero
    biases) so that the comparisons exercise every affine term."""
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))


def sample_all(proposals, gts, assigns):
    sampler = PseudoSampler()
    res = []
    for i, (props, (boxes, labels), (gt_inds, a_labels)) in enumerate(zip(proposals, gts, assigns)):
        ar = AssignResult(len(boxes), gt_inds, None, labels=a_labels)
        pred = InstanceData(priors=props.detach())
        gt = InstanceData(bboxes=boxes, labels=labels)
        res.append(sampler.sample(ar, pred, gt))
    return res


def loss_case(head, prefix, gts, assigns, d):
    torch.manual_seed(2)
    roi = torch.randn(N * P, C, S, S, requires_grad=True)
    feat = torch.randn(N, P, C, requires_grad=True)
    head.zero_grad()
    head.train()
    cls_score, bbox_pred, _, _ = head(roi, feat)
    xy = torch.rand(N * P, 2) * 30
    wh = torch.rand(N * P, 2) * 20 + 5
    rois = torch.cat([xy, xy + wh], 1)
    decoded = head.bbox_coder.decode(rois, bbox_pred.view(-1, 4))
    proposals = list(decoded.detach().view(N, P, 4))
    samp = sample_all(proposals, gts, assigns)
    whwh = torch.tensor([[64.0, 48.0, 64.0, 48.0], [80.0, 60.0, 80.0, 60.0]])
    imgs_whwh = whwh[:, None, :].expand(N, P, 4).contiguous()
    out = head.loss_and_target(
        cls_score.view(-1, cls_score.size(-1)),
        decoded,
        samp,
        ConfigDict(pos_weight=1),
        imgs_whwh=imgs_whwh,
        concat=True,
    )["loss_bbox"]
    total = out["loss_cls"] + out["loss_bbox"] + out["loss_iou"]
    total.backward()
    d[f"{prefix}.roi_feat"] = roi.detach()
    d[f"{prefix}.proposal_feat"] = feat.detach()
    d[f"{prefix}.rois"] = rois
    d[f"{prefix}.imgs_whwh"] = imgs_whwh
    for i, ((boxes, labels), (gt_inds, a_labels), s) in enumerate(zip(gts, assigns, samp)):
        d[f"{prefix}.gt_bboxes.{i}"] = boxes
        d[f"{prefix}.gt_labels.{i}"] = labels
        d[f"{prefix}.gt_inds.{i}"] = gt_inds
        d[f"{prefix}.assigned_labels.{i}"] = a_labels
        for name in ["pos_inds", "neg_inds", "pos_priors", "neg_priors", "pos_assigned_gt_inds",
                     "pos_gt_labels", "pos_gt_bboxes", "pos_is_gt"]:
            d[f"{prefix}.samp.{i}.{name}"] = getattr(s, name).clone()
        d[f"{prefix}.samp.{i}.num_gts"] = torch.tensor(s.num_gts)
        d[f"{prefix}.samp.{i}.avg_factor"] = torch.tensor(s.avg_factor)
    d[f"{prefix}.decoded"] = decoded.detach()
    for k, v in out.items():
        d[f"{prefix}.out.{k}"] = v.detach()
    params = dict(head.named_parameters())
    for k in GRAD_KEYS:
        d[f"{prefix}.grad.{k}"] = params[k].grad.clone()
    d[f"{prefix}.grad.roi_feat"] = roi.grad.clone()
    d[f"{prefix}.grad.proposal_feat"] = feat.grad.clone()


def bricks(d):
    from mmcv.cnn.bricks.transformer import FFN
    from mmdet.models.layers import DynamicConv

    torch.manual_seed(3)
    dc = DynamicConv(in_channels=8, feat_channels=4, input_feat_shape=5, with_proj=False)
    perturb_vectors(dc)
    for k, v in dc.state_dict().items():
        d[f"dc.sd.{k}"] = v.clone()
    d["dc.param"], d["dc.input"] = torch.randn(3, 8), torch.randn(3, 8, 5, 5)
    with torch.no_grad():
        d["dc.out"] = dc(d["dc.param"], d["dc.input"])
    ffn = FFN(8, 12, 3, act_cfg=dict(type="ReLU", inplace=True), ffn_drop=0.0)
    for k, v in ffn.state_dict().items():
        d[f"ffn.sd.{k}"] = v.clone()
    d["ffn.in"] = torch.randn(2, 3, 8)
    with torch.no_grad():
        d["ffn.out"] = ffn(d["ffn.in"])


def main(out):
    os.makedirs(out, exist_ok=True)
    register_all_modules()
    torch.manual_seed(0)
    d = {}
    head = DIIHead(**CFG)
    head.init_weights()
    init_rules(head, d)
    perturb_vectors(head)
    for k, v in head.state_dict().items():
        d[f"sd.{k}"] = v.clone()

    torch.manual_seed(1)
    roi = torch.randn(N * P, C, S, S)
    feat = torch.randn(N, P, C)
    d["in.roi_feat"], d["in.proposal_feat"] = roi, feat
    names = ["cls_score", "bbox_pred", "obj_feat", "attn_feats"]
    with torch.no_grad():
        for mode in ["train", "eval"]:
            head.train(mode == "train")
            for name, v in zip(names, head(roi, feat)):
                d[f"{mode}.{name}"] = v.contiguous()

    gt0 = (torch.tensor([[4.0, 6.0, 30.0, 40.0], [10.0, 2.0, 50.0, 20.0]]), torch.tensor([3, 1]))
    no_gt = (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    a0 = (torch.tensor([2, 0, 1]), torch.tensor([1, -1, 3]))
    a_bg = (torch.zeros(P, dtype=torch.long), torch.full((P,), -1, dtype=torch.long))
    loss_case(head, "loss", [gt0, no_gt], [a0, a_bg], d)
    loss_case(head, "nopos", [no_gt, no_gt], [a_bg, a_bg], d)

    big = DIIHead(
        num_classes=80,
        num_ffn_fcs=2,
        num_heads=8,
        num_cls_fcs=1,
        num_reg_fcs=3,
        feedforward_channels=2048,
        in_channels=256,
        dropout=0.0,
        ffn_act_cfg=dict(type="ReLU", inplace=True),
        dynamic_conv_cfg=dict(
            type="DynamicConv",
            in_channels=256,
            feat_channels=64,
            out_channels=256,
            input_feat_shape=7,
            act_cfg=dict(type="ReLU", inplace=True),
            norm_cfg=dict(type="LN"),
        ),
        loss_bbox=dict(type="L1Loss", loss_weight=5.0),
        loss_iou=dict(type="GIoULoss", loss_weight=2.0),
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=2.0),
        bbox_coder=dict(
            type="DeltaXYWHBBoxCoder",
            clip_border=False,
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[0.5, 0.5, 1.0, 1.0],
        ),
    )
    for k, v in big.state_dict().items():
        d[f"shape.{k}"] = torch.tensor(list(v.shape), dtype=torch.long)
    bricks(d)
    torch.save(d, os.path.join(out, "dii_head.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
