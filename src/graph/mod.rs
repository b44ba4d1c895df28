//! The model's module graph, built from the resolved config before any tensor
//! exists: nodes are components (backbone, neck, heads), edges the feature
//! maps between them with their channel counts. Static checks run on it —
//! channels agree along every edge, and every head's `num_classes` equals the
//! dataset's class count — and `detc graph` prints it as DOT.

use petgraph::graph::DiGraph;

use crate::config::diagnostic::{Diagnostic, Diagnostics, Result};
use crate::config::source::Span;
use crate::config::value::{Node, Value};

/// Number of COCO classes, MMDetection's `CocoDataset.METAINFO`.
pub const COCO_CLASSES: i64 = 80;
/// Objects365's classes (`Objects365V1Dataset`, `Objects365V2Dataset`).
pub const OBJECTS365_CLASSES: i64 = 365;

/// A component in the graph.
#[derive(Debug, Clone)]
pub struct Module {
    /// Where it sits in the config, e.g. `model.roi_head.bbox_head.0`.
    pub path: String,
    /// Its `type`.
    pub kind: String,
}

/// Feature maps passed along an edge.
#[derive(Debug, Clone)]
pub struct Features {
    pub channels: Vec<i64>,
}

pub type ModuleGraph = DiGraph<Module, Features>;

/// Builds the graph and runs the static checks; all problems are returned at once.
pub fn build(config: &Node) -> (ModuleGraph, Diagnostics) {
    let mut graph = ModuleGraph::new();
    let mut errors = vec![];
    let Some(model) = config.at_path(&["model"]) else { return (graph, errors) };
    let module = |path: &str, node: &Node| Module {
        path: path.into(),
        kind: node.at_path(&["type"]).and_then(Node::as_str).unwrap_or("?").into(),
    };

    let backbone = model.at_path(&["backbone"]);
    let neck = model.at_path(&["neck"]);
    let b_ix = backbone.map(|b| graph.add_node(module("model.backbone", b)));
    let n_ix = neck.map(|n| graph.add_node(module("model.neck", n)));
    errors.extend(backbone.and_then(resnext_without_bottlenecks));
    let backbone_out = backbone.and_then(backbone_channels);
    if let (Some(b), Some(n), Some((out, out_span, source))) = (b_ix, neck, &backbone_out) {
        graph.add_edge(b, n_ix.expect("neck node exists"), Features { channels: out.clone() });
        if let Some(in_node) = n.at_path(&["in_channels"]) {
            let given = int_list(in_node);
            // One number (YOLOF's DilatedEncoder, CenterNet's CTResNetNeck):
            // the neck reads the backbone's last output.
            let scalar_fits = in_node.value.as_int().is_some_and(|c| out.last() == Some(&c));
            if given.as_ref() != Some(out) && !scalar_fits {
                errors.push(Diagnostic::error("detc::graph::channel_mismatch",
                    format!("neck `in_channels` {} does not match the backbone's output channels {}", show(in_node), fmt_list(out)))
                    .label(in_node.span, format!("the neck expects {}", show(in_node)))
                    .label(*out_span, format!("the backbone gives {} {source}", fmt_list(out)))
                    .help(format!("set `model.neck.in_channels: {}`", fmt_list(out))));
            }
        }
    }

    // Heads fed by the neck (or the backbone when there is no neck).
    let feed = n_ix.or(b_ix);
    let feed_channels = neck.and_then(|n| n.at_path(&["out_channels"])).and_then(|c| c.value.as_int().map(|v| (v, c.span)));
    for head in ["rpn_head", "bbox_head", "roi_head"] {
        let Some(h) = model.at_path(&[head]) else { continue };
        if matches!(h.value, Value::Null) {
            continue;
        }
        let ix = graph.add_node(module(&format!("model.{head}"), h));
        if let Some(f) = feed {
            graph.add_edge(f, ix, Features { channels: feed_channels.map(|c| vec![c.0]).unwrap_or_default() });
        }
        if let Some((want, want_span)) = feed_channels {
            let inputs: Vec<(&str, Option<&Node>)> = match head {
                "roi_head" => vec![
                    ("bbox_roi_extractor.out_channels", h.at_path(&["bbox_roi_extractor"])),
                    ("mask_roi_extractor.out_channels", h.at_path(&["mask_roi_extractor"])),
                ],
                _ => vec![("in_channels", Some(h))],
            };
            for (what, node) in inputs {
                for (i, part) in each(node).into_iter().enumerate() {
                    let field = if what.contains('.') { "out_channels" } else { "in_channels" };
                    let Some(got) = part.at_path(&[field]) else { continue };
                    let levels = concatenated_levels(part);
                    let expected = want * levels.unwrap_or(1);
                    if got.value.as_int().is_some_and(|g| g != expected) {
                        let _ = i;
                        let (message, help) = match levels {
                            None => (format!("`model.{head}.{what}` is {} but the neck gives {want} channels", show(got)), format!("make both {want}")),
                            Some(l) => (
                                format!("`model.{head}.{what}` is {} but {l} concatenated levels of the neck's {want} channels give {expected}", show(got)),
                                format!("set it to {expected}"),
                            ),
                        };
                        errors.push(Diagnostic::error("detc::graph::channel_mismatch", message)
                            .label(got.span, format!("expects {}", show(got)))
                            .label(want_span, format!("the neck's `out_channels` is {want}"))
                            .help(help));
                    }
                }
            }
        }
        for sub in ["bbox_head", "mask_head"] {
            for (i, part) in each(h.at_path(&[sub])).into_iter().enumerate() {
                let sub_ix = graph.add_node(module(&format!("model.{head}.{sub}.{i}"), part));
                graph.add_edge(ix, sub_ix, Features { channels: vec![] });
            }
        }
    }
    errors.extend(check_num_classes(config, model));
    errors.extend(check_rcnn_stages(model));
    (graph, errors)
}

/// How many levels an RoI extractor concatenates along channels (GRoIE's
/// `aggregation: concat`), so that its `out_channels` are the neck's times
/// that; `None` for one that keeps the neck's channels.
fn concatenated_levels(extractor: &Node) -> Option<i64> {
    let is = |key: &str, want: &str| extractor.at_path(&[key]).and_then(Node::as_str) == Some(want);
    if !(is("type", "GenericRoIExtractor") && is("aggregation", "concat")) {
        return None;
    }
    match &extractor.at_path(&["featmap_strides"])?.value {
        Value::List(items) => Some(items.len() as i64),
        _ => None,
    }
}

/// Runs the static checks only.
pub fn check(config: &Node) -> Result<()> {
    let (_, errors) = build(config);
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// The graph as Graphviz DOT.
pub fn to_dot(graph: &ModuleGraph) -> String {
    let mut out = String::from("digraph model {\n  rankdir=LR;\n  node [shape=box];\n");
    for ix in graph.node_indices() {
        let m = &graph[ix];
        out.push_str(&format!("  n{} [label=\"{}\\n{}\"];\n", ix.index(), m.kind, m.path));
    }
    for e in graph.edge_indices() {
        let (a, b) = graph.edge_endpoints(e).expect("edge exists");
        let ch = &graph[e].channels;
        let label = if ch.is_empty() { String::new() } else { format!(" [label=\"{}\"]", fmt_list(ch)) };
        out.push_str(&format!("  n{} -> n{}{};\n", a.index(), b.index(), label));
    }
    out.push_str("}\n");
    out
}

/// Output channels of a ResNet, a Swin Transformer (for its `out_indices`)
/// an HRNet or a CSPNeXt, and the span to blame.
/// The third item says what decides them, for the label.
fn backbone_channels(backbone: &Node) -> Option<(Vec<i64>, Span, &'static str)> {
    match backbone.at_path(&["type"])?.as_str()? {
        "ResNet" | "ResNeXt" | "ResNeSt" | "Res2Net" => {}
        "SwinTransformer" => return swin_channels(backbone),
        "HRNet" => return hrnet_channels(backbone),
        "CSPNeXt" => return cspnext_channels(backbone),
        _ => return None,
    }
    let depth_node = backbone.at_path(&["depth"])?;
    let expansion = match depth_node.value.as_int()? {
        18 | 34 => 1,
        50 | 101 | 152 => 4,
        _ => return None,
    };
    let base = backbone.at_path(&["base_channels"]).and_then(|n| n.value.as_int()).unwrap_or(64);
    let (indices, span) = match backbone.at_path(&["out_indices"]) {
        Some(n) => (int_list(n)?, n.span),
        None => (vec![0, 1, 2, 3], depth_node.span),
    };
    let out = indices.iter().map(|&i| base * (1 << i.clamp(0, 8)) * expansion).collect();
    Some((out, span, OUT_INDICES))
}

const OUT_INDICES: &str = "for these `out_indices`";

/// A Swin Transformer's stage `i` has `embed_dims * 2^i` channels.
fn swin_channels(backbone: &Node) -> Option<(Vec<i64>, Span, &'static str)> {
    let embed = backbone.at_path(&["embed_dims"]);
    let dims = embed.map_or(Some(96), |n| n.value.as_int())?;
    let (indices, span) = match backbone.at_path(&["out_indices"]) {
        Some(n) => (int_list(n)?, n.span),
        None => (vec![0, 1, 2, 3], embed.or_else(|| backbone.at_path(&["type"]))?.span),
    };
    Some((indices.iter().map(|&i| dims * (1 << i.clamp(0, 8))).collect(), span, OUT_INDICES))
}

/// A CSPNeXt's output 0 (the stem) has `int(64 * widen_factor)` channels,
/// output `i` its stage's `int(c_i * widen_factor)` (`arch` P5: 128, 256,
/// 512, 1024; P6: 128, 256, 512, 768, 1024).
fn cspnext_channels(backbone: &Node) -> Option<(Vec<i64>, Span, &'static str)> {
    let stages: &[i64] = match backbone.at_path(&["arch"]).map(|n| n.as_str()) {
        None => &[128, 256, 512, 1024],
        Some(Some("P5")) => &[128, 256, 512, 1024],
        Some(Some("P6")) => &[128, 256, 512, 768, 1024],
        Some(_) => return None,
    };
    let widen = match backbone.at_path(&["widen_factor"]).map(|n| &n.value) {
        None => 1.0,
        Some(Value::Int(i)) => *i as f64,
        Some(Value::Float(f)) => *f,
        Some(_) => return None,
    };
    let (indices, span) = match backbone.at_path(&["out_indices"]) {
        Some(n) => (int_list(n)?, n.span),
        None => (vec![2, 3, 4], backbone.at_path(&["widen_factor"]).or_else(|| backbone.at_path(&["type"]))?.span),
    };
    let channels = |i: i64| -> Option<i64> {
        let base = if i == 0 { 64 } else { *stages.get(usize::try_from(i - 1).ok()?)? };
        Some((base as f64 * widen) as i64)
    };
    // In layer order, as the backbone returns them.
    let mut sorted = indices;
    sorted.sort_unstable();
    sorted.dedup();
    Some((sorted.into_iter().map(channels).collect::<Option<Vec<_>>>()?, span, OUT_INDICES))
}

/// An HRNet returns its last stage's branches: `extra.stage4.num_channels`
/// times the block's expansion (only the first with `multiscale_output: false`).
fn hrnet_channels(backbone: &Node) -> Option<(Vec<i64>, Span, &'static str)> {
    let stage = backbone.at_path(&["extra", "stage4"])?;
    let channels = stage.at_path(&["num_channels"])?;
    let expansion = match stage.at_path(&["block"])?.as_str()? {
        "BASIC" => 1,
        "BOTTLENECK" => 4,
        _ => return None,
    };
    let mut out: Vec<i64> = int_list(channels)?.iter().map(|c| c * expansion).collect();
    if backbone.at_path(&["multiscale_output"]).is_some_and(|n| matches!(n.value, Value::Bool(false))) {
        out.truncate(1);
    }
    Some((out, channels.span, "from its last stage"))
}

/// A ResNeXt of depth 18 or 34: MMDetection's `ResNeXt.arch_settings` has
/// bottleneck depths only (its builder raises a `KeyError`).
fn resnext_without_bottlenecks(backbone: &Node) -> Option<Diagnostic> {
    if backbone.at_path(&["type"])?.as_str()? != "ResNeXt" {
        return None;
    }
    let depth = backbone.at_path(&["depth"])?;
    matches!(depth.value.as_int()?, 18 | 34).then(|| {
        Diagnostic::error("detc::graph::depth", format!("ResNeXt has no depth {}", show(depth)))
            .label(depth.span, "a depth of basic blocks")
            .help("ResNeXt's grouped convolutions are in bottlenecks: use depth 50, 101 or 152 (or `type: ResNet`)")
    })
}

/// `train_cfg.rcnn` and the per-stage lists of a two-stage detector's RoI
/// head: one dict for `StandardRoIHead`, one per stage for `CascadeRoIHead`
/// (whose `stage_loss_weights` and listed heads have `num_stages` entries).
fn check_rcnn_stages(model: &Node) -> Diagnostics {
    let Some(head_type) = model.at_path(&["roi_head", "type"]).and_then(Node::as_str) else { return vec![] };
    let rcnn = model.at_path(&["train_cfg", "rcnn"]);
    let list_len = |node: Option<&Node>| match node.map(|n| &n.value) {
        Some(Value::List(items)) => Some(items.len() as i64),
        _ => None,
    };
    let mut errors = vec![];
    match head_type {
        "StandardRoIHead" => {
            if let (Some(n), Some(node)) = (list_len(rcnn), rcnn) {
                errors.push(
                    Diagnostic::error("detc::graph::stages", format!("`train_cfg.rcnn` is a list of {n} for a StandardRoIHead"))
                        .label(node.span, "one dict per stage is for CascadeRoIHead")
                        .help("give StandardRoIHead one `rcnn` dict"),
                );
            }
        }
        "CascadeRoIHead" => {
            let Some(stages) = model.at_path(&["roi_head", "num_stages"]) else { return errors };
            let Some(n) = stages.value.as_int() else { return errors };
            let mut lists = vec![("model.train_cfg.rcnn", rcnn, true)];
            for key in ["stage_loss_weights", "bbox_head", "bbox_roi_extractor", "mask_head", "mask_roi_extractor"] {
                // The weights are always a list; a head or extractor may be one for all stages.
                lists.push((key, model.at_path(&["roi_head", key]), key == "stage_loss_weights"));
            }
            for (key, node, must_list) in lists {
                let Some(node) = node else { continue };
                let len = list_len(Some(node));
                if len.is_some_and(|l| l != n) || (must_list && len.is_none() && !matches!(node.value, Value::Null)) {
                    let got = len.map_or("one dict".to_string(), |l| format!("{l} entries"));
                    errors.push(
                        Diagnostic::error("detc::graph::stages", format!("`{key}` has {got} for num_stages {n}"))
                            .label(node.span, format!("needs {n}, one per stage"))
                            .label(stages.span, "the number of stages"),
                    );
                }
            }
        }
        _ => {}
    }
    errors
}

/// Checks `num_classes` of every head against the dataset's classes.
fn check_num_classes(config: &Node, model: &Node) -> Diagnostics {
    let Some((classes, classes_span, source)) = dataset_classes(config) else { return vec![] };
    let mut errors = vec![];
    // (path shown, path to type in `--cfg-options`, head)
    let mut heads: Vec<(String, String, &Node)> = vec![];
    if let Some(h) = model.at_path(&["bbox_head"]) {
        heads.push(("model.bbox_head".into(), "model.bbox_head".into(), h));
    }
    for sub in ["bbox_head", "mask_head"] {
        let node = model.at_path(&["roi_head", sub]);
        let many = matches!(node.map(|n| &n.value), Some(Value::List(_)));
        for (i, h) in each(node).into_iter().enumerate() {
            let (path, pattern) = match many {
                true => (format!("model.roi_head.{sub}.{i}"), format!("model.roi_head.{sub}.*")),
                false => (format!("model.roi_head.{sub}"), format!("model.roi_head.{sub}")),
            };
            heads.push((path, pattern, h));
        }
    }
    // One diagnostic per head list: QueryInst's six stages share one fix.
    let mut reported: Vec<String> = vec![];
    for (path, pattern, head) in &heads {
        let Some(n) = head.at_path(&["num_classes"]) else { continue };
        if n.value.as_int().is_none_or(|v| v == classes) || reported.contains(pattern) {
            continue;
        }
        reported.push(pattern.clone());
        let wrong: Vec<i64> = heads
            .iter()
            .filter(|(_, p, _)| p == pattern)
            .filter_map(|(_, _, h)| h.at_path(&["num_classes"]).and_then(|n| n.value.as_int()))
            .filter(|v| *v != classes)
            .collect();
        let what = match wrong.len() {
            1 => format!("`{path}.num_classes` is {}", show(n)),
            k if wrong.iter().all(|v| *v == wrong[0]) => format!("`{pattern}.num_classes` is {} in {k} stages", wrong[0]),
            k => format!("`{pattern}.num_classes` is wrong in {k} stages"),
        };
        let mut diag = Diagnostic::error("detc::graph::num_classes_mismatch", format!("{what}, but the dataset has {classes} classes"))
            .label(n.span, format!("{} classes here", show(n)))
            .help(format!("set it to {classes}, e.g. `--cfg-options '{pattern}.num_classes={classes}'`"));
        if let Some(span) = classes_span {
            diag = diag.label(span, format!("{classes} classes in {source}"));
        }
        errors.push(diag);
    }
    errors
}

/// Class count of the training (else val/test) dataset: `metainfo.classes`, or
/// 80 for COCO and 365 for Objects365.
fn dataset_classes(config: &Node) -> Option<(i64, Option<Span>, &'static str)> {
    for loader in ["train_dataloader", "val_dataloader", "test_dataloader"] {
        // A ConcatDataset's datasets share their classes: the first tells.
        let Some((dataset, _)) = crate::data::pipeline_check::loader_datasets(config, loader).into_iter().next() else {
            continue;
        };
        if let Some(classes) = dataset.at_path(&["metainfo", "classes"]) {
            if let Value::List(items) = &classes.value {
                return Some((items.len() as i64, Some(classes.span), "`metainfo.classes`"));
            }
        }
        match dataset.at_path(&["type"]).and_then(Node::as_str) {
            Some("CocoDataset") => return Some((COCO_CLASSES, None, "COCO")),
            Some("Objects365V1Dataset" | "Objects365V2Dataset") => return Some((OBJECTS365_CLASSES, None, "Objects365")),
            _ => {}
        }
    }
    None
}

/// The dicts of a field that is one dict or a list of per-stage dicts.
fn each(node: Option<&Node>) -> Vec<&Node> {
    match node {
        Some(Node { value: Value::List(items), .. }) => items.iter().collect(),
        Some(n @ Node { value: Value::Map(_), .. }) => vec![n],
        _ => vec![],
    }
}

fn int_list(node: &Node) -> Option<Vec<i64>> {
    match &node.value {
        Value::List(items) => items.iter().map(|n| n.value.as_int()).collect(),
        _ => None,
    }
}

fn fmt_list(values: &[i64]) -> String {
    format!("[{}]", values.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))
}

fn show(node: &Node) -> String {
    match &node.value {
        Value::Int(i) => i.to_string(),
        Value::List(_) => int_list(node).map_or("a list".into(), |l| fmt_list(&l)),
        other => other.kind().into(),
    }
}
