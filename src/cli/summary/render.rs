//! What `detc summary` prints, from a flat list of variables: the module tree
//! with parameter counts (trainable and frozen), the state-dict listing, and
//! the JSON `{"params": N, "trainable": T, "frozen": F, "state_dict": {...}}`.
//!
//! Pure (no tch): the engine gathers the list from its `VarStore` and prints
//! what this returns, so the layout is tested without libtorch. Counts follow
//! MMEngine: `params` is `sum(p.numel() for p in model.parameters())`, frozen
//! parameters included, buffers (BatchNorm's running statistics) excluded.

use serde_json::{json, Map, Value};

use super::tree::{sorted, Node};

/// What a state-dict entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarKind {
    /// A parameter the optimizer updates (`requires_grad = True`).
    Trainable,
    /// A parameter with `requires_grad = False` (`frozen_stages`, `norm_cfg.requires_grad: false`).
    Frozen,
    /// A buffer: in the state dict, not in `model.parameters()`.
    Buffer,
    /// Another name of a parameter listed under an earlier name (RTMDet's
    /// head convs shared across levels): in the state dict, counted once.
    Shared,
}

/// The state-dict entries torch registers as buffers, by their last name
/// segment: BatchNorm's, a Swin window's `relative_position_index`, the
/// bin distances of GFL's `integral.project`, and GHM's region `edges` and
/// running counts `acc_sum`.
pub const BUFFER_NAMES: &[&str] =
    &["running_mean", "running_var", "num_batches_tracked", "relative_position_index", "project", "edges", "acc_sum"];

impl VarKind {
    /// The kind of the entry `name` (e.g. `backbone.bn1.running_mean`): a tch
    /// `VarStore` holds buffers as non-trainable variables, so the name tells them apart.
    pub fn classify(name: &str, requires_grad: bool) -> VarKind {
        let last = name.rsplit('.').next().unwrap_or(name);
        if BUFFER_NAMES.contains(&last) {
            VarKind::Buffer
        } else if requires_grad {
            VarKind::Trainable
        } else {
            VarKind::Frozen
        }
    }
}

/// One state-dict entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Var {
    /// MMDetection's state-dict name, e.g. `roi_head.bbox_head.0.fc_cls.weight`.
    pub name: String,
    pub shape: Vec<i64>,
    pub kind: VarKind,
}

impl Var {
    pub fn new(name: impl Into<String>, shape: Vec<i64>, kind: VarKind) -> Var {
        Var {
            name: name.into(),
            shape,
            kind,
        }
    }

    /// Number of elements (a scalar has one).
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d.max(0) as u64).product()
    }
}

/// Output format of `detc summary`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// The options `detc summary` takes and passes on to `detc-engine summary`.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Also list every state-dict name with its shape.
    #[arg(long)]
    pub state_dict: bool,
    /// `text` (the module tree) or `json` (`{"params": N, "trainable": T, "frozen": F, "state_dict": {...}}`).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Levels of the module tree to print (text); list elements count as a level.
    #[arg(long, default_value_t = 2)]
    pub depth: usize,
}

impl Options {
    /// The same options as command-line arguments, for the engine.
    pub fn to_args(&self) -> Vec<String> {
        let format = match self.format {
            Format::Text => "text",
            Format::Json => "json",
        };
        let mut args = vec![
            "--format".into(),
            format.into(),
            "--depth".into(),
            self.depth.to_string(),
        ];
        if self.state_dict {
            args.push("--state-dict".into());
        }
        args
    }
}

/// Element counts of a module (or the whole model).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub trainable: u64,
    pub frozen: u64,
    /// Elements of buffers (not parameters).
    pub buffer: u64,
}

impl Counts {
    pub(super) fn add(&mut self, var: &Var) {
        let n = var.numel();
        match var.kind {
            VarKind::Trainable => self.trainable += n,
            VarKind::Frozen => self.frozen += n,
            VarKind::Buffer => self.buffer += n,
            VarKind::Shared => {}
        }
    }

    /// Parameters, trainable and frozen (MMEngine's count).
    pub fn params(&self) -> u64 {
        self.trainable + self.frozen
    }

    /// The counts of all of `vars`.
    pub fn of(vars: &[Var]) -> Counts {
        let mut c = Counts::default();
        vars.iter().for_each(|v| c.add(v));
        c
    }
}

/// What `detc summary` prints for the resolved `model:` section and its variables.
pub fn render(model: &Value, vars: &[Var], opts: &Options) -> String {
    match opts.format {
        Format::Json => to_json(model, vars, opts.state_dict).to_string() + "\n",
        Format::Text => to_text(model, vars, opts.depth, opts.state_dict),
    }
}

/// `{"model": TYPE, "params": N, "trainable": T, "frozen": F}`, plus with
/// `state_dict` `"state_dict": {name: [shape...]}`, `"buffers": [name...]`
/// and, when a parameter has several names, `"shared": [name...]` (all but
/// its first) (names in natural order: `layer1.2` before `layer1.10`).
pub fn to_json(model: &Value, vars: &[Var], state_dict: bool) -> Value {
    let c = Counts::of(vars);
    let mut out = json!({
        "model": model_type(model),
        "params": c.params(),
        "trainable": c.trainable,
        "frozen": c.frozen,
    });
    if state_dict {
        let sorted = sorted(vars);
        let entries: Map<String, Value> = sorted
            .iter()
            .map(|v| (v.name.clone(), json!(v.shape)))
            .collect();
        let buffers: Vec<&str> = sorted
            .iter()
            .filter(|v| v.kind == VarKind::Buffer)
            .map(|v| v.name.as_str())
            .collect();
        out["state_dict"] = Value::Object(entries);
        out["buffers"] = json!(buffers);
        let shared: Vec<&str> = sorted.iter().filter(|v| v.kind == VarKind::Shared).map(|v| v.name.as_str()).collect();
        if !shared.is_empty() {
            out["shared"] = json!(shared);
        }
    }
    out
}

/// The module tree down to `depth` levels, the exact totals, and with
/// `state_dict` one line per entry: name, shape, kind.
pub fn to_text(model: &Value, vars: &[Var], depth: usize, state_dict: bool) -> String {
    let root = Node::build(model, vars);
    let mut rows = vec![];
    root.rows(model, "", "", depth, &mut rows);
    let width = rows
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let c = root.counts;
    out += &format!(
        "{:<width$}  {:>8} params ({} trainable, {} frozen)\n",
        model_type(model),
        human(c.params()),
        human(c.trainable),
        human(c.frozen),
    );
    for (label, counts) in &rows {
        out += &format!(
            "{label:<width$}  {:>8}{}\n",
            human(counts.params()),
            detail(counts)
        );
    }
    let buffers = vars.iter().filter(|v| v.kind == VarKind::Buffer).count();
    out += &format!(
        "total: {} params ({} trainable, {} frozen); {} buffers ({} values)\n",
        grouped(c.params()),
        grouped(c.trainable),
        grouped(c.frozen),
        buffers,
        grouped(c.buffer),
    );
    if state_dict {
        out += &state_dict_text(vars);
    }
    out
}

fn state_dict_text(vars: &[Var]) -> String {
    let sorted = sorted(vars);
    let shapes: Vec<String> = sorted.iter().map(|v| shape_text(&v.shape)).collect();
    let name_w = sorted.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let shape_w = shapes.iter().map(String::len).max().unwrap_or(0);
    let mut out = format!("\nstate dict: {} entries\n", sorted.len());
    for (v, shape) in sorted.iter().zip(&shapes) {
        let kind = match v.kind {
            VarKind::Trainable => "trainable",
            VarKind::Frozen => "frozen",
            VarKind::Buffer => "buffer",
            VarKind::Shared => "shared",
        };
        out += &format!("{:<name_w$}  {shape:<shape_w$}  {kind}\n", v.name);
    }
    out
}

/// `[256, 256, 3, 3]`.
fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// The counts after a tree row's total: nothing when all of it trains.
fn detail(c: &Counts) -> String {
    match (c.trainable, c.frozen) {
        (_, 0) => String::new(),
        (0, _) => "  frozen".into(),
        (t, f) => format!("  ({} trainable, {} frozen)", human(t), human(f)),
    }
}

/// The detector's `type`, the tree's root.
fn model_type(model: &Value) -> &str {
    model.get("type").and_then(Value::as_str).unwrap_or("model")
}

/// `172.7 M`, `225.3 K`, `128`.
pub fn human(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1} K", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} M", n as f64 / 1e6),
        _ => format!("{:.1} G", n as f64 / 1e9),
    }
}

/// `172,688,808`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<Var> {
        use VarKind::*;
        vec![
            Var::new("roi_head.bbox_head.1.fc_cls.weight", vec![4, 8], Trainable),
            Var::new("roi_head.bbox_head.0.fc_cls.weight", vec![4, 8], Trainable),
            Var::new("backbone.conv1.weight", vec![8, 3, 3, 3], Frozen),
            Var::new("backbone.bn1.weight", vec![8], Frozen),
            Var::new("backbone.bn1.running_mean", vec![8], Buffer),
            Var::new("backbone.bn1.num_batches_tracked", vec![], Buffer),
            Var::new(
                "backbone.layer1.10.conv1.weight",
                vec![8, 8, 1, 1],
                Trainable,
            ),
            Var::new(
                "backbone.layer1.2.conv1.weight",
                vec![8, 8, 1, 1],
                Trainable,
            ),
            Var::new(
                "rpn_head.init_proposal_bboxes.weight",
                vec![5, 4],
                Trainable,
            ),
        ]
    }

    fn model() -> Value {
        json!({
            "type": "QueryInst",
            "backbone": {"type": "ResNet"},
            "rpn_head": {"type": "EmbeddingRPNHead"},
            "roi_head": {"type": "SparseRoIHead", "bbox_head": [{"type": "DIIHead"}, {"type": "DIIHead"}]},
        })
    }

    #[test]
    fn classify_tells_buffers_by_name() {
        assert_eq!(
            VarKind::classify("backbone.bn1.running_var", false),
            VarKind::Buffer
        );
        assert_eq!(
            VarKind::classify("bn1.num_batches_tracked", false),
            VarKind::Buffer
        );
        assert_eq!(
            VarKind::classify("backbone.bn1.weight", false),
            VarKind::Frozen
        );
        assert_eq!(
            VarKind::classify("neck.fpn_convs.0.conv.weight", true),
            VarKind::Trainable
        );
    }

    #[test]
    fn json_counts_parameters_not_buffers() {
        let out = to_json(&model(), &vars(), true);
        // 32+32 + 216+8 + 64+64 + 20 = 436; frozen 216+8 = 224; buffers 8+1.
        assert_eq!(out["params"], 436);
        assert_eq!(out["trainable"], 212);
        assert_eq!(out["frozen"], 224);
        assert_eq!(out["model"], "QueryInst");
        assert_eq!(
            out["state_dict"]["backbone.bn1.num_batches_tracked"],
            json!([])
        );
        assert_eq!(
            out["buffers"],
            json!([
                "backbone.bn1.num_batches_tracked",
                "backbone.bn1.running_mean"
            ])
        );
        let names: Vec<&String> = out["state_dict"].as_object().unwrap().keys().collect();
        let i2 = names.iter().position(|n| n.contains("layer1.2.")).unwrap();
        let i10 = names.iter().position(|n| n.contains("layer1.10.")).unwrap();
        assert!(i2 < i10, "natural order: {names:?}");
        assert!(to_json(&model(), &vars(), false)
            .get("state_dict")
            .is_none());
    }

    #[test]
    fn text_tree_follows_the_config_order_and_groups_lists() {
        let text = to_text(&model(), &vars(), 2, false);
        let want = "\
QueryInst                           436 params (212 trainable, 224 frozen)
├─ backbone  ResNet                 352  (128 trainable, 224 frozen)
│  ├─ bn1                             8  frozen
│  ├─ conv1                         216  frozen
│  └─ layer1  ×2                    128
├─ rpn_head  EmbeddingRPNHead        20
│  └─ init_proposal_bboxes           20
└─ roi_head  SparseRoIHead           64
   └─ bbox_head  2 × DIIHead         64
total: 436 params (212 trainable, 224 frozen); 2 buffers (9 values)
";
        assert_eq!(text, want, "\n{text}");
    }

    #[test]
    fn deeper_trees_list_the_elements() {
        let text = to_text(&model(), &vars(), 3, false);
        assert!(text.contains("│  └─ layer1  "), "{text}");
        assert!(text.contains("│     ├─ 2 "), "{text}");
        assert!(text.contains("│     └─ 10 "), "{text}");
        assert!(text.contains("      ├─ 0  DIIHead"), "{text}");
        let shallow = to_text(&model(), &vars(), 0, false);
        assert_eq!(shallow.lines().count(), 2, "{shallow}");
    }

    #[test]
    fn state_dict_listing_has_shapes_and_kinds() {
        let text = to_text(&model(), &vars(), 1, true);
        assert!(text.contains("\nstate dict: 9 entries\n"), "{text}");
        let line = text
            .lines()
            .find(|l| l.starts_with("backbone.conv1.weight"))
            .unwrap();
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            ["backbone.conv1.weight", "[8,", "3,", "3,", "3]", "frozen"]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(human(128), "128");
        assert_eq!(human(225_344), "225.3 K");
        assert_eq!(human(172_688_808), "172.7 M");
        assert_eq!(grouped(172_688_808), "172,688,808");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        let opts = Options {
            state_dict: true,
            format: Format::Json,
            depth: 3,
        };
        assert_eq!(
            opts.to_args(),
            ["--format", "json", "--depth", "3", "--state-dict"]
        );
    }
}
