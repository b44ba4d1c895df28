//! Tests of the losses, match costs, the Hungarian solver and assigner
//! against outside references: torchvision's `sigmoid_focal_loss` and
//! `generalized_box_iou_loss`, MMDetection 3.3.0's loss / match-cost /
//! assigner modules, and scipy's `linear_sum_assignment`. The script
//! `tests/models/losses_reference.py` writes every fixture once per test
//! process (about 4 s); values and input gradients must agree.

use std::sync::OnceLock;

use detc::registry::models::losses::{
    CrossEntropyLossConfig, DiceLossConfig, FocalLossConfig, GIoULossConfig, L1LossConfig,
};
use detc::registry::refs::{AssignerCfg, LossCfg, MatchCostCfg};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::*;
use crate::models::layers::fixtures::{assert_close, script_state_dict, tensor, StateDict};
use crate::models::task_modules::{
    linear_sum_assignment, HungarianAssigner, MatchCost, MatchInputs,
};

fn fx() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/losses_reference.py", "detc-losses-ref", "losses.pth"))
}

fn t(key: &str) -> Tensor {
    tensor(fx(), key)
}

const ATOL: f64 = 1e-6;
const RTOL: f64 = 1e-5;

/// Runs `f` on a grad-requiring copy of `pred`; its output must equal the
/// fixture `key` and the gradient of its sum must equal `key.grad`.
fn check(key: &str, pred: &Tensor, f: impl Fn(&Tensor) -> ModelResult<Tensor>) {
    let p = pred.detach().copy().set_requires_grad(true);
    let out = f(&p).unwrap_or_else(|e| panic!("{key}: {e}"));
    let want = t(key);
    assert_close(&out.detach().reshape(want.size()), &want, ATOL, RTOL, key);
    out.sum(Kind::Float).backward();
    assert_close(
        &p.grad(),
        &t(&format!("{key}.grad")),
        ATOL,
        RTOL,
        &format!("{key} grad"),
    );
}

fn loss(cfg: serde_json::Value) -> Loss {
    Loss::from_cfg(&LossCfg(cfg)).unwrap()
}

fn red(name: &str) -> Reduction {
    match name {
        "none" => Reduction::None,
        "mean" => Reduction::Mean,
        _ => Reduction::Sum,
    }
}

#[test]
fn focal_loss_matches_torchvision_and_mmdet() {
    let (pred, labels, onehot, w) = (
        t("focal.pred"),
        t("focal.labels"),
        t("focal.onehot"),
        t("focal.weight"),
    );
    for (tag, alpha, gamma) in [("a", 0.25, 2.0), ("b", 0.5, 1.5)] {
        for r in ["none", "mean", "sum"] {
            let l =
                loss(json!({"type": "FocalLoss", "alpha": alpha, "gamma": gamma, "reduction": r}));
            // torchvision takes one-hot targets; ours also takes the class indices.
            check(&format!("focal.tv.{tag}.{r}"), &pred, |p| {
                l.forward(p, &onehot, LossArgs::default())
            });
            check(&format!("focal.tv.{tag}.{r}"), &pred, |p| {
                l.forward(p, &labels, LossArgs::default())
            });
        }
    }
    let l = loss(
        json!({"type": "FocalLoss", "use_sigmoid": true, "gamma": 2.0, "alpha": 0.25, "loss_weight": 2.0}),
    );
    check("focal.mm.w_af", &pred, |p| {
        l.forward(p, &labels, LossArgs::default().weight(&w).avg_factor(7.0))
    });
    check("focal.mm.none", &pred, |p| {
        l.forward(p, &labels, LossArgs::default().reduction(Reduction::None))
    });
    let act = loss(json!({"type": "FocalLoss", "activated": true}));
    check("focal.mm.activated", &t("focal.prob"), |p| {
        act.forward(p, &labels, LossArgs::default().weight(&w))
    });
    // Out-of-range labels are an error, not a panic.
    let bad = Tensor::from_slice(&[0i64, 9]);
    assert!(l
        .forward(&pred.narrow(0, 0, 2), &bad, LossArgs::default())
        .is_err());
    let cfg: FocalLossConfig = serde_json::from_value(json!({"use_sigmoid": false})).unwrap();
    assert!(FocalLoss::new(&cfg).is_err());
}

#[test]
fn giou_loss_matches_torchvision_and_mmdet() {
    let (pred, target, w) = (t("giou.pred"), t("giou.target"), t("giou.weight"));
    for r in ["none", "mean", "sum"] {
        let l = loss(json!({"type": "GIoULoss", "reduction": r}));
        check(&format!("giou.tv.{r}"), &pred, |p| {
            l.forward(p, &target, LossArgs::default())
        });
    }
    let cfg: GIoULossConfig =
        serde_json::from_value(json!({"eps": 1e-6, "loss_weight": 2.0})).unwrap();
    let l = GIoULoss::new(&cfg);
    check("giou.mm.w_af", &pred, |p| {
        l.forward(p, &target, LossArgs::default().weight(&w).avg_factor(5.0))
    });
    check("giou.mm.mean", &pred, |p| {
        l.forward(p, &target, LossArgs::default())
    });
    // No positive weight: a zero that keeps the graph (as mmdet).
    let zero = l
        .forward(&pred, &target, LossArgs::default().weight(&w.zeros_like()))
        .unwrap();
    assert_eq!(zero.double_value(&[]), 0.0);
}

#[test]
fn l1_loss_matches_mmdet() {
    let (pred, target, w) = (t("l1.pred"), t("l1.target"), t("l1.weight"));
    let cfg: L1LossConfig = serde_json::from_value(json!({"loss_weight": 5.0})).unwrap();
    let l = L1Loss::new(&cfg);
    for r in ["none", "mean", "sum"] {
        check(&format!("l1.mm.{r}"), &pred, |p| {
            l.forward(p, &target, LossArgs::default().reduction(red(r)))
        });
    }
    check("l1.mm.w_af", &pred, |p| {
        l.forward(p, &target, LossArgs::default().weight(&w).avg_factor(9.0))
    });
    let sum_af = l.forward(
        &pred,
        &target,
        LossArgs::default()
            .avg_factor(2.0)
            .reduction(Reduction::Sum),
    );
    assert!(sum_af.is_err(), "avg_factor with sum must be refused");
}

#[test]
fn dice_loss_matches_mmdet() {
    let (logits, prob, target, w) = (
        t("dice.logits"),
        t("dice.prob"),
        t("dice.target"),
        t("dice.weight"),
    );
    let qi = loss(
        json!({"type": "DiceLoss", "loss_weight": 8.0, "use_sigmoid": true, "activate": false, "eps": 1e-5}),
    );
    check("dice.mm.queryinst", &prob, |p| {
        qi.forward(p, &target, LossArgs::default().avg_factor(4.0))
    });
    let naive = loss(json!({"type": "DiceLoss", "naive_dice": true, "reduction": "sum"}));
    check("dice.mm.naive", &logits, |p| {
        naive.forward(p, &target, LossArgs::default().weight(&w))
    });
    let cfg: DiceLossConfig = serde_json::from_value(json!({})).unwrap();
    assert_eq!(cfg.eps, 1e-3, "DiceLoss eps default");
    let vnet = DiceLoss::new(&cfg).unwrap();
    for r in ["none", "mean"] {
        check(&format!("dice.mm.{r}"), &logits, |p| {
            vnet.forward(p, &target, LossArgs::default().reduction(red(r)))
        });
    }
}

#[test]
fn cross_entropy_loss_matches_mmdet() {
    let (pred, labels, w) = (t("ce.pred"), t("ce.labels"), t("ce.weight"));
    let cw = vec![1.0, 2.0, 0.5, 1.5, 1.0];
    let plain = loss(json!({"type": "CrossEntropyLoss"}));
    check("ce.softmax.mean", &pred, |p| {
        plain.forward(p, &labels, LossArgs::default())
    });
    check("ce.softmax.w_af", &pred, |p| {
        plain.forward(p, &labels, LossArgs::default().weight(&w).avg_factor(6.0))
    });
    let nonig = loss(
        json!({"type": "CrossEntropyLoss", "class_weight": cw, "avg_non_ignore": true, "loss_weight": 1.5}),
    );
    check("ce.softmax.cw_nonig", &pred, |p| {
        nonig.forward(p, &labels, LossArgs::default())
    });
    let sl = t("ce.sig_labels");
    let sig = loss(json!({"type": "CrossEntropyLoss", "use_sigmoid": true}));
    check("ce.sigmoid.mean", &pred, |p| {
        sig.forward(p, &sl, LossArgs::default())
    });
    check("ce.sigmoid.w_sum", &pred, |p| {
        sig.forward(
            p,
            &sl,
            LossArgs::default().weight(&w).reduction(Reduction::Sum),
        )
    });
    let signi = loss(
        json!({"type": "CrossEntropyLoss", "use_sigmoid": true, "avg_non_ignore": true, "class_weight": cw}),
    );
    check("ce.sigmoid.cw_nonig", &pred, |p| {
        signi.forward(p, &sl, LossArgs::default())
    });
    let cfg: CrossEntropyLossConfig = serde_json::from_value(json!({"use_mask": true})).unwrap();
    let mask = CrossEntropyLoss::new(&cfg).unwrap();
    let (mt, ml) = (t("ce.mask_target"), t("ce.mask_labels"));
    check("ce.mask", &t("ce.mask_pred"), |p| {
        mask.forward_mask(p, &mt, &ml, LossArgs::default())
    });
    assert!(mask.forward(&pred, &labels, LossArgs::default()).is_err());
}

fn inputs<'a>(
    scores: &'a Tensor,
    pb: &'a Tensor,
    gl: &'a Tensor,
    gb: &'a Tensor,
    shape: &Tensor,
) -> MatchInputs<'a> {
    MatchInputs {
        pred_scores: scores,
        pred_bboxes: pb,
        gt_labels: gl,
        gt_bboxes: gb,
        img_shape: (shape.double_value(&[0]), shape.double_value(&[1])),
    }
}

#[test]
fn match_costs_match_mmdet() {
    let (s, pb, gl, gb) = (
        t("cost.scores"),
        t("cost.pred_bboxes"),
        t("cost.gt_labels"),
        t("cost.gt_bboxes"),
    );
    let x = inputs(&s, &pb, &gl, &gb, &t("cost.img_shape"));
    for (key, cfg) in [
        ("focal", json!({"type": "FocalLossCost", "weight": 2.0})),
        (
            "focal_b",
            json!({"type": "FocalLossCost", "alpha": 0.4, "gamma": 1.5, "eps": 1e-8}),
        ),
        (
            "l1_xyxy",
            json!({"type": "BBoxL1Cost", "weight": 5.0, "box_format": "xyxy"}),
        ),
        (
            "l1_xywh",
            json!({"type": "BBoxL1Cost", "weight": 3.0, "box_format": "xywh"}),
        ),
        (
            "giou",
            json!({"type": "IoUCost", "iou_mode": "giou", "weight": 2.0}),
        ),
        ("iou", json!({"type": "IoUCost", "iou_mode": "iou"})),
    ] {
        let c = MatchCost::from_cfg(&MatchCostCfg(cfg)).unwrap();
        assert_close(
            &c.cost(&x).unwrap(),
            &t(&format!("cost.{key}")),
            ATOL,
            RTOL,
            key,
        );
    }
    let bad = MatchCost::from_cfg(&MatchCostCfg(
        json!({"type": "FocalLossCost", "binary_input": true}),
    ));
    assert!(bad.is_err());
}

fn queryinst_assigner() -> HungarianAssigner {
    let cfg = serde_json::from_value(json!({"match_costs": [
        {"type": "FocalLossCost", "weight": 2.0},
        {"type": "BBoxL1Cost", "weight": 5.0, "box_format": "xyxy"},
        {"type": "IoUCost", "iou_mode": "giou", "weight": 2.0},
    ]}))
    .unwrap();
    HungarianAssigner::new(&cfg).unwrap()
}

#[test]
fn hungarian_assigner_matches_mmdet() {
    let a = queryinst_assigner();
    for i in 0..5 {
        let k = |n: &str| t(&format!("assign.{i}.{n}"));
        let (s, pb, gl, gb) = (
            k("scores"),
            k("pred_bboxes"),
            k("gt_labels"),
            k("gt_bboxes"),
        );
        let r = a
            .assign(&inputs(&s, &pb, &gl, &gb, &k("img_shape")))
            .unwrap();
        assert_eq!(r.num_gts, gl.size()[0]);
        assert_eq!(r.gt_inds.kind(), Kind::Int64);
        assert!(r.gt_inds.equal(&k("gt_inds")), "case {i}: gt_inds differ");
        assert!(r.labels.equal(&k("labels")), "case {i}: labels differ");
    }
    // The five cases as one batch (one copy of the costs to the host), with
    // an image without ground truths among them: the same assignments.
    let cases: Vec<[Tensor; 5]> = (0..5)
        .map(|i| ["scores", "pred_bboxes", "gt_labels", "gt_bboxes", "img_shape"].map(|n| t(&format!("assign.{i}.{n}"))))
        .chain(std::iter::once({
            let [s, pb, _, _, shape] = ["scores", "pred_bboxes", "gt_labels", "gt_bboxes", "img_shape"].map(|n| t(&format!("assign.0.{n}")));
            [s, pb, Tensor::zeros([0], (Kind::Int64, Device::Cpu)), Tensor::zeros([0, 4], (Kind::Float, Device::Cpu)), shape]
        }))
        .collect();
    let batch: Vec<_> = cases.iter().map(|[s, pb, gl, gb, shape]| inputs(s, pb, gl, gb, shape)).collect();
    let all = a.assign_all(&batch).unwrap();
    for (i, r) in all.iter().enumerate().take(5) {
        assert!(r.gt_inds.equal(&t(&format!("assign.{i}.gt_inds"))), "batch case {i}: gt_inds differ");
        assert!(r.labels.equal(&t(&format!("assign.{i}.labels"))), "batch case {i}: labels differ");
        let on_host: Vec<i64> = r.matches.as_ref().unwrap().iter().map(|&(p, g)| p * 1000 + g + 1).collect();
        let from_device: Vec<i64> = Vec::<i64>::try_from(&r.gt_inds)
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(_, &g)| g > 0)
            .map(|(p, &g)| p as i64 * 1000 + g)
            .collect();
        assert_eq!(on_host, from_device, "batch case {i}: host matches");
    }
    // The batch's costs, computed at once, are each image's own to the bit
    // (with either box format, each box divided by its own image's size).
    let xywh = HungarianAssigner::new(&serde_json::from_value(json!({"match_costs": [
        {"type": "FocalLossCost", "weight": 2.0},
        {"type": "BBoxL1Cost", "weight": 5.0, "box_format": "xywh"},
        {"type": "IoUCost", "iou_mode": "iou", "weight": 2.0},
    ]})).unwrap()).unwrap();
    let shapes: Vec<_> = batch.iter().take(5).map(|x| x.img_shape).collect();
    assert!(shapes.windows(2).any(|w| w[0] != w[1]), "the cases should differ in image size: {shapes:?}");
    for assigner in [&a, &xywh] {
        let own: Vec<&MatchInputs> = batch.iter().take(5).collect();
        let together = assigner.own_costs(&own).unwrap();
        let alone: Vec<f64> = own
            .iter()
            .flat_map(|x| Vec::<f64>::try_from(assigner.cost_matrix(x).unwrap().to_kind(Kind::Double).flatten(0, -1)).unwrap())
            .collect();
        assert_eq!(together.len(), alone.len());
        assert!(together.iter().zip(&alone).all(|(x, y)| x.to_bits() == y.to_bits()), "batched costs differ");
    }
    let empty = &all[5];
    assert!(empty.matches.as_ref().unwrap().is_empty() && i64::try_from(empty.gt_inds.abs().sum(Kind::Int64)).unwrap() == 0);
    // A NaN prediction is a clear error, not a panic or a silent matching.
    let (s, pb, gl, gb) = (
        t("assign.0.scores"),
        t("assign.0.pred_bboxes"),
        t("assign.0.gt_labels"),
        t("assign.0.gt_bboxes"),
    );
    let s = s.copy();
    let _ = s.get(3).fill_(f64::NAN);
    let e = a
        .assign(&inputs(&s, &pb, &gl, &gb, &t("assign.0.img_shape")))
        .unwrap_err();
    assert!(e.to_string().contains("NaN"), "{e}");
}

#[test]
fn linear_sum_assignment_matches_scipy() {
    for shape in ["100x7", "7x100", "50x50", "300x30", "1x1", "3x8", "13x2"] {
        let cost = t(&format!("lsa.{shape}.cost"));
        let (rows, cols) = (cost.size()[0] as usize, cost.size()[1] as usize);
        let host = Vec::<f64>::try_from(cost.to_kind(Kind::Double).flatten(0, -1)).unwrap();
        let (r, c) = linear_sum_assignment(&host, rows, cols).unwrap();
        let want_r = Vec::<i64>::try_from(t(&format!("lsa.{shape}.rows"))).unwrap();
        let want_c = Vec::<i64>::try_from(t(&format!("lsa.{shape}.cols"))).unwrap();
        let got_r: Vec<i64> = r.iter().map(|&x| x as i64).collect();
        let got_c: Vec<i64> = c.iter().map(|&x| x as i64).collect();
        assert_eq!(got_r, want_r, "{shape}: rows");
        assert_eq!(got_c, want_c, "{shape}: cols");
    }
    let (r, c) = linear_sum_assignment(&[], 0, 7).unwrap();
    assert!(r.is_empty() && c.is_empty());
}

/// Every loss, match cost and assigner of the QueryInst config builds from
/// the resolved config, with the values MMDetection would use.
#[test]
fn queryinst_config_builds() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("configs/queryinst/queryinst_r50_fpn_1x_coco.yaml");
    let (_, tree) = detc::config::resolve(&path, &[]);
    let tree = tree
        .unwrap_or_else(|_| panic!("{} does not resolve", path.display()))
        .to_json();
    fn walk(v: &serde_json::Value, found: &mut Vec<serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("type").and_then(|t| t.as_str()).is_some() {
                    found.push(v.clone());
                }
                m.values().for_each(|x| walk(x, found));
            }
            serde_json::Value::Array(xs) => xs.iter().for_each(|x| walk(x, found)),
            _ => {}
        }
    }
    let mut found = vec![];
    walk(&tree, &mut found);
    let (mut losses, mut assigners) = (vec![], vec![]);
    for v in found {
        match v["type"].as_str().unwrap_or("") {
            "FocalLoss" | "L1Loss" | "GIoULoss" | "DiceLoss" | "CrossEntropyLoss" => {
                losses.push(loss(v))
            }
            "HungarianAssigner" => {
                assigners.push(HungarianAssigner::from_cfg(&AssignerCfg(v)).unwrap());
            }
            _ => {}
        }
    }
    // 6 stages x (cls, bbox, iou, mask) and one assigner per stage.
    assert_eq!(losses.len(), 24);
    assert_eq!(assigners.len(), 6);
    assert!(assigners.iter().all(|a| a.match_costs.len() == 3));
    let dice = losses.iter().find_map(|l| match l {
        Loss::Dice(d) => Some(d.clone()),
        _ => None,
    });
    let dice = dice.expect("a DiceLoss");
    assert!(!dice.activate && dice.eps == 1e-5 && dice.loss_weight == 8.0 && !dice.naive_dice);
}

/// MMDetection's `IoULoss` (log, linear, square), `BoundedIoULoss`,
/// `DIoULoss` and `CIoULoss`: values and input gradients, plain, per pair
/// and with (N, 4) weights and `avg_factor` (the R-CNN box head's call).
#[test]
fn iou_family_losses_match_mmdet() {
    let (pred, target, w) = (t("iouf.pred"), t("iouf.target"), t("iouf.weight"));
    let cases = [
        ("iou_log", json!({"type": "IoULoss", "loss_weight": 2.0})),
        ("iou_linear", json!({"type": "IoULoss", "mode": "linear", "eps": 1e-4})),
        ("iou_square", json!({"type": "IoULoss", "mode": "square"})),
        ("bounded", json!({"type": "BoundedIoULoss", "beta": 0.2, "eps": 1e-3, "loss_weight": 10.0})),
        ("diou", json!({"type": "DIoULoss", "loss_weight": 3.0})),
        ("ciou", json!({"type": "CIoULoss", "loss_weight": 12.0})),
    ];
    for (name, cfg) in cases {
        let l = loss(cfg);
        check(&format!("iouf.{name}.mean"), &pred, |p| l.forward(p, &target, LossArgs::default()));
        check(&format!("iouf.{name}.none"), &pred, |p| {
            l.forward(p, &target, LossArgs::default().reduction(Reduction::None))
        });
        check(&format!("iouf.{name}.w_af"), &pred, |p| {
            l.forward(p, &target, LossArgs::default().weight(&w).avg_factor(7.0))
        });
        let zero = l.forward(&pred, &target, LossArgs::default().weight(&w.zeros_like())).unwrap();
        assert_eq!(zero.double_value(&[]), 0.0, "{name}");
    }
}
