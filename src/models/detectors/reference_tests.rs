//! End-to-end faithfulness of the QueryInst / Sparse R-CNN port: MMDetection
//! 3.3.0's real models (`tests/models/detector_reference.py`, run once per
//! test process) and ours are built from the same resolved `model:` section
//! (the demo config), load the same `.pth` checkpoint and see the same
//! 3-image batch (3, 1 and 0 ground truths). The losses, every parameter
//! gradient, the BatchNorm statistics after the train-mode forward and the
//! predictions (boxes, scores, labels, pasted masks) must agree.
//!
//! Run: `cargo test --bin detc-engine reference_tests -- --nocapture` (each
//! test prints what it measured); `DETC_REF_VERBOSE=1` also prints every
//! loss and every parameter's gradient difference.
//!
//! Shape shorthand: `N` images (3), `H, W` the padded batch (160), `G` ground
//! truths of an image, `k` detections of an image.

use std::path::PathBuf;
use std::sync::OnceLock;

use detc::checkpoint::{self, Checkpoint, Value};
use detc::data::SampleMeta;
use serde_json::Value as Json;
use tch::{nn, Device, Kind, Tensor};

use super::{build, Detector, SparseRCNN};
use crate::models::data_preprocessors::{DetBatch, DetDataSample, InstanceTensors, MaskTensors};
use crate::models::layers::fixtures::{max_abs_diff, run_script, tensor, StateDict};
use crate::models::roi_heads::DetInstances;
use crate::models::weights::{load_state_dict, Shapes};

const SCRIPT: &str = "tests/models/detector_reference.py";
const DIR_PREFIX: &str = "detc-detector-reference-";
const NUM_IMAGES: usize = 3;

/// The two runs the script records. Float32 is what users run: predictions
/// and losses must agree tightly, but a few ReLU inputs of this random model
/// lie within 1e-6 of zero and float rounding alone flips them (MMDetection
/// against itself with 1 and with 4 threads moves the mask heads' deconv
/// gradients by up to 3 %), so its gradients are only checked for gross
/// errors. Float64 leaves no such ties: its gradients must agree to 1e-7 of
/// each tensor's largest gradient.
#[derive(Clone, Copy, Debug)]
struct Precision {
    /// The fixture's key prefix.
    tag: &'static str,
    kind: Kind,
    /// Relative tolerance of each loss value.
    loss_rtol: f64,
    /// Gradient atol as a fraction of the tensor's largest |gradient|, and rtol.
    grad_scaled_atol: f64,
    grad_rtol: f64,
}

const F32: Precision = Precision {
    tag: "",
    kind: Kind::Float,
    loss_rtol: 1e-4,
    grad_scaled_atol: 0.1,
    grad_rtol: 0.0,
};
/// Float64 agrees to 1e-14 but for one MMDetection quirk: `DIIHead.loss`
/// takes `avg_factor = reduce_mean(num_pos)` of a float32 count, so
/// `weight_reduce_loss`'s `avg_factor + eps` (eps = 1.19e-7) rounds back to
/// the count in float32, where detc adds eps in float64: the box-head losses
/// and every gradient through them differ by 2^-25 = 2.98e-8 relative (the
/// mask loss, whose avg_factor is a Python float, agrees to 1e-15). In a
/// float32 model both round the same way.
const F64: Precision = Precision {
    tag: "f64.",
    kind: Kind::Double,
    loss_rtol: 1e-7,
    grad_scaled_atol: 1e-7,
    grad_rtol: 1e-6,
};

/// One model's reference: its checkpoint (read as a user's would be) and the
/// script's flat `{name: tensor}` record.
struct ModelReference {
    checkpoint: Checkpoint,
    io: StateDict,
}

struct References {
    /// The resolved `model:` section both sides build QueryInst from.
    model: Json,
    queryinst: ModelReference,
    sparse_rcnn: ModelReference,
}

/// The demo config's `model:` section, resolved. `test_cfg.rcnn.max_per_img`
/// becomes `num_proposals` (20): MMDetection's `SparseRoIHead.predict_bbox`
/// stores the `num_proposals` last-stage boxes in an `InstanceData` of
/// `max_per_img` detections, which fails unless the two are equal (the demo's
/// 100 would also fail `topk` over 20 x 4 scores).
fn model_config() -> Json {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let (_, tree) =
        detc::config::resolve(&root.join("configs/demo/queryinst_r18_shapes.yaml"), &[]);
    let mut model = tree
        .unwrap_or_else(|_| panic!("the demo config resolves"))
        .to_json()["model"]
        .clone();
    let num_proposals = model["rpn_head"]["num_proposals"].clone();
    model["test_cfg"]["rcnn"]["max_per_img"] = num_proposals;
    model
}

/// The Sparse R-CNN twin the script builds: no mask branch.
fn sparse_rcnn_config(model: &Json) -> Json {
    let mut cfg = model.clone();
    cfg["type"] = "SparseRCNN".into();
    let roi_head = cfg["roi_head"].as_object_mut().unwrap();
    roi_head.remove("mask_roi_extractor");
    roi_head.remove("mask_head");
    for stage in cfg["train_cfg"]["rcnn"].as_array_mut().unwrap() {
        stage.as_object_mut().unwrap().remove("mask_size");
    }
    cfg["test_cfg"]["rcnn"]
        .as_object_mut()
        .unwrap()
        .remove("mask_thr_binary");
    cfg["data_preprocessor"]["pad_mask"] = false.into();
    cfg
}

/// Runs the reference script once (about 15 s) and loads what it wrote; the
/// directory (about 70 MB) is removed once loaded.
fn references() -> &'static References {
    static REFS: OnceLock<References> = OnceLock::new();
    REFS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let model = model_config();
        std::fs::write(
            dir.join("model.json"),
            serde_json::to_string(&model).unwrap(),
        )
        .unwrap();
        run_script(SCRIPT, &dir);
        let load = |name: &str| ModelReference {
            checkpoint: checkpoint::load(&dir.join(format!("{name}.pth")))
                .unwrap_or_else(|e| panic!("{e}")),
            io: checkpoint::load(&dir.join(format!("{name}_io.pth")))
                .unwrap_or_else(|e| panic!("{e}"))
                .state_dict,
        };
        let refs = References {
            queryinst: load("queryinst"),
            sparse_rcnn: load("sparse_rcnn"),
            model,
        };
        let _ = std::fs::remove_dir_all(&dir);
        refs
    })
}

/// `meta[key]` of a checkpoint's non-state-dict part.
fn meta_entry<'a>(ckpt: &'a Checkpoint, key: &str) -> Option<&'a Value> {
    let dict = |v: &'a Value| match v {
        Value::Dict(items) => Some(items),
        _ => None,
    };
    let meta = dict(&ckpt.other)?
        .iter()
        .find(|(k, _)| matches!(k, Value::Str(s) if s == "meta"))?;
    dict(&meta.1)?
        .iter()
        .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
        .map(|(_, v)| v)
}

/// Our model from `cfg`, with the reference checkpoint loaded; the key report
/// must be exact (so every state-dict name and shape is MMDetection's).
fn load_model(cfg: &Json, reference: &ModelReference) -> (nn::VarStore, SparseRCNN) {
    let vs = nn::VarStore::new(Device::Cpu);
    let Detector::Sparse(model) = build(cfg, vs.root()).unwrap() else {
        panic!("a Sparse R-CNN config builds a Sparse R-CNN")
    };
    assert!(
        matches!(
            meta_entry(&reference.checkpoint, "epoch"),
            Some(Value::Int(3))
        ),
        "meta.epoch"
    );
    assert!(
        meta_entry(&reference.checkpoint, "some_object").is_some(),
        "meta.some_object"
    );
    let report = load_state_dict(&vs, "", &reference.checkpoint.state_dict, Shapes::Refuse).unwrap();
    assert!(report.is_exact(), "key report: {report:?}");
    (vs, model)
}

/// `[ori_h, ori_w, img_h, img_w, pad_h, pad_w, scale_w, scale_h]` of image `i`.
fn meta_values(io: &StateDict, i: usize) -> Vec<f64> {
    Vec::<f64>::try_from(tensor(io, &format!("img{i}.meta"))).unwrap()
}

/// The batch the script fed MMDetection, built directly (no preprocessor):
/// normalised padded inputs, metas, boxes, labels and padded bitmap masks.
fn batch(io: &StateDict, with_masks: bool, kind: Kind) -> DetBatch {
    let inputs = tensor(io, "inputs").to_kind(kind);
    let (_, _, h, w) = inputs.size4().unwrap();
    let data_samples = (0..NUM_IMAGES)
        .map(|i| {
            let m = meta_values(io, i);
            let shape = |a: usize| Some((m[a] as usize, m[a + 1] as usize));
            DetDataSample {
                meta: SampleMeta {
                    img_id: Some(i as u64),
                    ori_shape: shape(0),
                    img_shape: shape(2),
                    pad_shape: shape(4),
                    scale_factor: Some((m[6], m[7])),
                    flip: Some(false),
                    flip_direction: Some(None),
                    ..Default::default()
                },
                batch_input_shape: (h as usize, w as usize),
                gt_instances: InstanceTensors {
                    bboxes: tensor(io, &format!("img{i}.gt_bboxes")).to_kind(kind),
                    labels: tensor(io, &format!("img{i}.gt_labels")),
                    masks: with_masks
                        .then(|| MaskTensors::Bitmap(tensor(io, &format!("img{i}.gt_masks")))),
                },
                ignored_instances: InstanceTensors {
                    bboxes: Tensor::zeros([0, 4], (kind, Device::Cpu)),
                    labels: Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
                    masks: None,
                },
            }
        })
        .collect();
    DetBatch {
        inputs,
        data_samples,
    }
}

/// Losses: the same key set in the same order, each value within `loss_rtol`.
fn check_losses(ours: &indexmap::IndexMap<String, Tensor>, io: &StateDict, prec: Precision) -> f64 {
    let prefix = format!("{}loss.", prec.tag);
    let expected: Vec<&str> = io
        .keys()
        .filter_map(|k| k.strip_prefix(prefix.as_str()))
        .collect();
    let got: Vec<&str> = ours.keys().map(String::as_str).collect();
    assert_eq!(got, expected, "loss keys");
    let mut worst: f64 = 0.0;
    for (key, value) in ours {
        let (a, b) = (
            value.double_value(&[]),
            tensor(io, &format!("{prefix}{key}")).double_value(&[]),
        );
        let rel = (a - b).abs() / b.abs().max(1e-12);
        if std::env::var_os("DETC_REF_VERBOSE").is_some() {
            eprintln!("loss {key}: ours {a} mmdet {b} rel {rel:.3e}");
        }
        assert!(
            rel <= prec.loss_rtol,
            "{key}: ours {a}, mmdet {b} (relative {rel:.2e})"
        );
        worst = worst.max(rel);
    }
    worst
}

/// Gradients after `backward` of the summed `*loss*` terms: every parameter
/// MMDetection gives a gradient has one with |a-b| <= `grad_rtol`·|b| +
/// `grad_scaled_atol`·max|b| elementwise (the atol scales with the tensor:
/// gradients here reach 90), and every parameter it gives none has none (or
/// zero). Returns the largest `max|a-b| / max|b|` and its parameter.
fn check_gradients(vs: &nn::VarStore, io: &StateDict, prec: Precision) -> (f64, String) {
    let mut worst = (0.0, String::new());
    let mut failures = vec![];
    let mut trainable: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, v)| v.requires_grad())
        .collect();
    trainable.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in &trainable {
        let grad = var.grad();
        let key = format!("{}grad.{name}", prec.tag);
        match io.get(&key) {
            None => {
                if grad.defined() && grad.abs().max().double_value(&[]) > 0.0 {
                    failures.push(format!("{name}: mmdet has no gradient, ours is nonzero"));
                }
            }
            Some(_) => {
                let expected = tensor(io, &key);
                if !grad.defined() {
                    failures.push(format!("{name}: ours has no gradient"));
                    continue;
                }
                let diff = max_abs_diff(&grad, &expected);
                let scale = expected.abs().max().double_value(&[]).max(1e-12);
                if std::env::var_os("DETC_REF_VERBOSE").is_some() {
                    eprintln!(
                        "grad {name}: max|a-b| {diff:.3e} max|b| {scale:.3e} rel {:.3e}",
                        diff / scale
                    );
                }
                if diff / scale > worst.0 {
                    worst = (diff / scale, name.clone());
                }
                let excess = ((&grad - &expected).abs()
                    - expected.abs() * prec.grad_rtol
                    - prec.grad_scaled_atol * scale)
                    .max()
                    .double_value(&[]);
                if excess > 0.0 {
                    failures.push(format!(
                        "{name}: max |a-b| = {diff:.3e} (max |b| = {scale:.3e})"
                    ));
                }
            }
        }
    }
    let expected = io
        .keys()
        .filter(|k| k.starts_with(&format!("{}grad.", prec.tag)))
        .count();
    let ours = trainable.len();
    assert!(
        expected <= ours,
        "mmdet has {expected} parameters with gradients, ours {ours} parameters"
    );
    assert!(
        failures.is_empty(),
        "gradients differ:\n{}",
        failures.join("\n")
    );
    worst
}

/// BatchNorm running statistics after the train-mode forward (momentum 0.1).
fn check_buffers(vs: &nn::VarStore, io: &StateDict, prec: Precision) -> usize {
    let vars = vs.variables();
    let mut compared = 0;
    let prefix = format!("{}after.", prec.tag);
    for key in io.keys().filter_map(|k| k.strip_prefix(prefix.as_str())) {
        let Some(ours) = vars.get(key) else {
            assert!(
                key.ends_with("num_batches_tracked"),
                "buffer {key} is missing"
            );
            continue;
        };
        let expected = tensor(io, &format!("{prefix}{key}"));
        let diff = max_abs_diff(ours, &expected);
        let scale = expected.abs().max().double_value(&[]).max(1.0);
        assert!(diff <= 1e-4 * scale, "{key}: max |a-b| = {diff:.3e}");
        compared += 1;
    }
    compared
}

/// One image's detections as rows `(score, label, x1, y1, x2, y2)` sorted by
/// score descending, then label and box (MMDetection's top-k is unsorted).
fn sorted_rows(scores: &Tensor, labels: &Tensor, bboxes: &Tensor) -> (Vec<[f64; 6]>, Vec<usize>) {
    let s = Vec::<f64>::try_from(scores.to_kind(Kind::Double)).unwrap();
    let l = Vec::<i64>::try_from(labels).unwrap();
    let b = Vec::<f64>::try_from(bboxes.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    let rows: Vec<[f64; 6]> = (0..s.len())
        .map(|i| {
            [
                s[i],
                l[i] as f64,
                b[4 * i],
                b[4 * i + 1],
                b[4 * i + 2],
                b[4 * i + 3],
            ]
        })
        .collect();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&i, &j| {
        let (a, b) = (&rows[i], &rows[j]);
        b[0].total_cmp(&a[0]).then(
            a[1..]
                .iter()
                .zip(&b[1..])
                .fold(std::cmp::Ordering::Equal, |o, (x, y)| {
                    o.then(x.total_cmp(y))
                }),
        )
    });
    (order.iter().map(|&i| rows[i]).collect(), order)
}

/// Predictions: the same detections (as sets): labels equal, scores and boxes
/// within 1e-4, masks equal but for at most 0.1 % of the pixels. Returns
/// (max score/box difference, differing mask pixels, total mask pixels).
fn check_predictions(ours: &[DetInstances], io: &StateDict) -> (f64, i64, i64) {
    assert_eq!(ours.len(), NUM_IMAGES);
    let (mut worst, mut diff_px, mut total_px) = (0.0f64, 0i64, 0i64);
    for (i, det) in ours.iter().enumerate() {
        let key = |k: &str| format!("pred{i}.{k}");
        let (exp_rows, exp_order) = sorted_rows(
            &tensor(io, &key("scores")),
            &tensor(io, &key("labels")),
            &tensor(io, &key("bboxes")),
        );
        let (got_rows, got_order) = sorted_rows(&det.scores, &det.labels, &det.bboxes);
        assert_eq!(
            got_rows.len(),
            exp_rows.len(),
            "image {i}: number of detections"
        );
        for (r, (g, e)) in got_rows.iter().zip(&exp_rows).enumerate() {
            assert_eq!(
                g[1], e[1],
                "image {i}, detection {r}: label (ours {g:?}, mmdet {e:?})"
            );
            let d = (g[0] - e[0]).abs();
            assert!(
                d <= 1e-4,
                "image {i}, detection {r}: score (ours {g:?}, mmdet {e:?})"
            );
            // Relative to the box's scale: six refinements multiply each
            // stage's float32 rounding by the box size (a box 148 px wide
            // differs by 2e-4 px at its x1 = -1.08).
            let scale = e[2..].iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for c in 2..6 {
                let rel = (g[c] - e[c]).abs() / scale;
                assert!(
                    rel <= 1e-4,
                    "image {i}, detection {r}: box (ours {g:?}, mmdet {e:?})"
                );
                worst = worst.max(rel);
            }
            worst = worst.max(d);
        }
        match (&det.masks, io.get(&key("masks"))) {
            (None, None) => {}
            (Some(masks), Some(_)) => {
                let expected = tensor(io, &key("masks"));
                assert_eq!(masks.size(), expected.size(), "image {i}: mask shape");
                let idx = |o: &[usize]| {
                    Tensor::from_slice(&o.iter().map(|&x| x as i64).collect::<Vec<_>>())
                };
                let got = masks.index_select(0, &idx(&got_order));
                let exp = expected.index_select(0, &idx(&exp_order));
                let differing = got.ne_tensor(&exp).sum(Kind::Int64).int64_value(&[]);
                diff_px += differing;
                total_px += exp.numel() as i64;
            }
            (ours, _) => panic!(
                "image {i}: masks present in ours: {}, in mmdet: {}",
                ours.is_some(),
                !ours.is_some()
            ),
        }
    }
    assert!(
        diff_px as f64 <= 1e-3 * total_px as f64,
        "{diff_px} of {total_px} mask pixels differ"
    );
    (worst, diff_px, total_px)
}

/// The whole comparison for one model at one precision.
fn compare_with_mmdetection(
    cfg: &Json,
    reference: &ModelReference,
    with_masks: bool,
    prec: Precision,
) {
    let (mut vs, model) = load_model(cfg, reference);
    if prec.kind == Kind::Double {
        vs.double();
    }
    let io = &reference.io;
    let batch = batch(io, with_masks, prec.kind);

    let mut report = String::new();
    if prec.kind == Kind::Float {
        let preds = tch::no_grad(|| model.predict(&batch, true)).unwrap();
        let (pred_diff, diff_px, total_px) = check_predictions(&preds, io);
        report = format!(
            "; predictions within {pred_diff:.2e}; {diff_px}/{total_px} mask pixels differ"
        );
    }

    let losses = model.loss(&batch, &|n| Ok(n)).unwrap();
    let loss_rel = check_losses(&losses, io, prec);
    let total = super::parse_losses(&losses).unwrap();
    total.backward();
    let (grad_rel, grad_name) = check_gradients(&vs, io, prec);
    let buffers = check_buffers(&vs, io, prec);
    eprintln!(
        "{} {:?}: losses within {loss_rel:.2e} relative; gradients within {grad_rel:.2e} of max|grad| \
         (worst {grad_name}); {buffers} BN buffers equal{report}",
        model.name, prec.kind
    );
}

#[test]
fn queryinst_matches_mmdetection() {
    let refs = references();
    compare_with_mmdetection(&refs.model, &refs.queryinst, true, F32);
}

#[test]
fn queryinst_f64_gradients_match_mmdetection() {
    let refs = references();
    compare_with_mmdetection(&refs.model, &refs.queryinst, true, F64);
}

#[test]
fn sparse_rcnn_matches_mmdetection() {
    let refs = references();
    compare_with_mmdetection(
        &sparse_rcnn_config(&refs.model),
        &refs.sparse_rcnn,
        false,
        F32,
    );
}

#[test]
fn sparse_rcnn_f64_gradients_match_mmdetection() {
    let refs = references();
    compare_with_mmdetection(
        &sparse_rcnn_config(&refs.model),
        &refs.sparse_rcnn,
        false,
        F64,
    );
}
