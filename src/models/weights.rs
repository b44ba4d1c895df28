//! Loading a checkpoint's state dict into a tch `VarStore` by name, as
//! MMEngine's `load_checkpoint` / `PretrainedInit` do: missing and unexpected
//! keys are reported (MMEngine's warning), and values are copied with a dtype
//! cast (an fp16 checkpoint loads into an fp32 model). A shape mismatch is
//! what [`Shapes`] says: for `load_from` and `init_cfg: Pretrained`, as
//! MMEngine's `strict=False` loading, the parameter keeps its initial value
//! and the warning names it (fine-tuning a COCO model on other classes); for
//! resuming and testing, where it can only mean the wrong checkpoint, an
//! error that names the key and both shapes.
//!
//! `scope` restricts the model side to one component (`backbone`), the way
//! `init_cfg` of a backbone loads into that backbone only; `prefix` keeps the
//! checkpoint keys under a prefix and strips it (`PretrainedInit(prefix=...)`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use detc::checkpoint::{self, compare, DType, KeyReport, TensorData};
use indexmap::IndexMap;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::layers::{ModelError, ModelResult};

/// torchvision ImageNet checkpoints that `torchvision://NAME` names, for the
/// backbones detc builds: MMEngine resolves these names to the same
/// `IMAGENET1K_V1` URLs (`mmengine/hub/torchvision_0.12.json`).
const TORCHVISION_URLS: &[(&str, &str)] = &[
    ("resnet18", "https://download.pytorch.org/models/resnet18-f37072fd.pth"),
    ("resnet34", "https://download.pytorch.org/models/resnet34-b627a593.pth"),
    ("resnet50", "https://download.pytorch.org/models/resnet50-0676ba61.pth"),
    ("resnet101", "https://download.pytorch.org/models/resnet101-63fe2227.pth"),
    ("resnet152", "https://download.pytorch.org/models/resnet152-394f9c45.pth"),
    ("resnext50_32x4d", "https://download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth"),
    ("resnext101_32x8d", "https://download.pytorch.org/models/resnext101_32x8d-8ba56ff5.pth"),
];

/// `open-mmlab://NAME` checkpoints of the ResNet and ResNeXt backbones (BN,
/// GN, GN + weight standardisation), the ResNeSt, Res2Net, RegNetX and HRNetV2 ones that MMDetection's configs name
/// (`mmengine/hub/openmmlab.json`; the first
/// two names are MMEngine's deprecated spellings of the `detectron/` ones).
const OPENMMLAB_URLS: &[(&str, &str)] = &[
    ("resnet50_caffe", "https://download.openmmlab.com/pretrain/third_party/resnet50_caffe-788b5fa3.pth"),
    ("resnet101_caffe", "https://download.openmmlab.com/pretrain/third_party/resnet101_caffe-3ad79236.pth"),
    ("detectron/resnet50_caffe", "https://download.openmmlab.com/pretrain/third_party/resnet50_caffe-788b5fa3.pth"),
    ("detectron/resnet101_caffe", "https://download.openmmlab.com/pretrain/third_party/resnet101_caffe-3ad79236.pth"),
    ("detectron2/resnet50_caffe", "https://download.openmmlab.com/pretrain/third_party/resnet50_msra-5891d200.pth"),
    ("detectron2/resnet101_caffe", "https://download.openmmlab.com/pretrain/third_party/resnet101_msra-6cc46731.pth"),
    ("detectron2/resnext101_32x8d", "https://download.openmmlab.com/pretrain/third_party/resnext101_32x8d-1516f1aa.pth"),
    ("resnext50_32x4d", "https://download.openmmlab.com/pretrain/third_party/resnext50-32x4d-0ab1a123.pth"),
    ("resnext101_32x4d", "https://download.openmmlab.com/pretrain/third_party/resnext101_32x4d-a5af3160.pth"),
    ("resnext101_64x4d", "https://download.openmmlab.com/pretrain/third_party/resnext101_64x4d-ee2c6f71.pth"),
    // GroupNorm (and weight-standardised) backbones of the gn/ and gn+ws/ configs.
    ("detectron/resnet50_gn", "https://download.openmmlab.com/pretrain/third_party/resnet50_gn-9186a21c.pth"),
    ("detectron/resnet101_gn", "https://download.openmmlab.com/pretrain/third_party/resnet101_gn-cac0ab98.pth"),
    ("contrib/resnet50_gn", "https://download.openmmlab.com/pretrain/third_party/resnet50_gn_thangvubk-ad1730dd.pth"),
    ("jhu/resnet50_gn_ws", "https://download.openmmlab.com/pretrain/third_party/resnet50_gn_ws-15beedd8.pth"),
    ("jhu/resnet101_gn_ws", "https://download.openmmlab.com/pretrain/third_party/resnet101_gn_ws-3e3c308c.pth"),
    ("jhu/resnext50_32x4d_gn_ws", "https://download.openmmlab.com/pretrain/third_party/resnext50_32x4d_gn_ws-0d87ac85.pth"),
    ("jhu/resnext101_32x4d_gn_ws", "https://download.openmmlab.com/pretrain/third_party/resnext101_32x4d_gn_ws-34ac1a9e.pth"),
    ("jhu/resnext50_32x4d_gn", "https://download.openmmlab.com/pretrain/third_party/resnext50_32x4d_gn-c7e8b754.pth"),
    ("jhu/resnext101_32x4d_gn", "https://download.openmmlab.com/pretrain/third_party/resnext101_32x4d_gn-ac3bb84e.pth"),
    // RegNetX (the regnet/ configs).
    ("regnetx_400mf", "https://download.openmmlab.com/pretrain/third_party/regnetx_400mf-a5b10d96.pth"),
    ("regnetx_800mf", "https://download.openmmlab.com/pretrain/third_party/regnetx_800mf-1f4be4c7.pth"),
    ("regnetx_1.6gf", "https://download.openmmlab.com/pretrain/third_party/regnetx_1.6gf-5791c176.pth"),
    ("regnetx_3.2gf", "https://download.openmmlab.com/pretrain/third_party/regnetx_3.2gf-c2599b0f.pth"),
    ("regnetx_4.0gf", "https://download.openmmlab.com/pretrain/third_party/regnetx_4.0gf-a88f671e.pth"),
    ("regnetx_6.4gf", "https://download.openmmlab.com/pretrain/third_party/regnetx_6.4gf-006af45d.pth"),
    ("regnetx_8.0gf", "https://download.openmmlab.com/pretrain/third_party/regnetx_8.0gf-3c68abe7.pth"),
    ("regnetx_12gf", "https://download.openmmlab.com/pretrain/third_party/regnetx_12gf-4c2a3350.pth"),
    // ResNeSt (the resnest/ configs).
    ("resnest50", "https://download.openmmlab.com/pretrain/third_party/resnest50_d2-7497a55b.pth"),
    ("resnest101", "https://download.openmmlab.com/pretrain/third_party/resnest101_d2-f3b931b2.pth"),
    ("resnest200", "https://download.openmmlab.com/pretrain/third_party/resnest200_d2-ca88e41f.pth"),
    // Res2Net (the res2net/ configs).
    ("res2net101_v1d_26w_4s", "https://download.openmmlab.com/pretrain/third_party/res2net101_v1d_26w_4s_mmdetv2-f0a600f9.pth"),
    // HRNetV2 (the hrnet/ configs).
    ("msra/hrnetv2_w18_small", "https://download.openmmlab.com/pretrain/third_party/hrnetv2_w18_small-b5a04e21.pth"),
    ("msra/hrnetv2_w18", "https://download.openmmlab.com/pretrain/third_party/hrnetv2_w18-00eb2006.pth"),
    ("msra/hrnetv2_w32", "https://download.openmmlab.com/pretrain/third_party/hrnetv2_w32-dc9eeb4f.pth"),
    ("msra/hrnetv2_w40", "https://download.openmmlab.com/pretrain/third_party/hrnetv2_w40-ed0b031c.pth"),
    ("msra/hrnetv2_w48", "https://download.openmmlab.com/pretrain/third_party/hrnetv2_w48-d2186c55.pth"),
];

/// The torch dtype of a checkpoint tensor.
fn kind_of(dtype: DType) -> Kind {
    match dtype {
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::I16 => Kind::Int16,
        DType::I8 => Kind::Int8,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
    }
}

/// A CPU tensor holding a copy of `t`.
pub fn to_tensor(t: &TensorData) -> ModelResult<Tensor> {
    Ok(Tensor::f_from_data_size(
        &t.data,
        &t.shape,
        kind_of(t.dtype),
    )?)
}

/// The model's state-dict names under `scope` (`""` for all, else the names
/// starting with `scope.`, with it stripped) and their shapes, sorted by name.
pub fn named_shapes(vs: &VarStore, scope: &str) -> Vec<(String, Vec<i64>)> {
    let mut out: Vec<(String, Vec<i64>)> = scoped(vs, scope)
        .into_iter()
        .map(|(k, t)| (k, t.size()))
        .collect();
    out.sort();
    out
}

fn scoped(vs: &VarStore, scope: &str) -> Vec<(String, Tensor)> {
    let lead = if scope.is_empty() {
        String::new()
    } else {
        format!("{scope}.")
    };
    vs.variables()
        .into_iter()
        .filter_map(|(k, t)| k.strip_prefix(&lead).map(|s| (s.to_string(), t)))
        .collect()
}

/// MMEngine's `_load_checkpoint_with_prefix`: the keys under `prefix`
/// (a trailing `.` added when absent) with it stripped.
pub fn with_prefix(
    state_dict: &IndexMap<String, TensorData>,
    prefix: &str,
) -> ModelResult<IndexMap<String, TensorData>> {
    let lead = if prefix.ends_with('.') {
        prefix.to_string()
    } else {
        format!("{prefix}.")
    };
    let out: IndexMap<String, TensorData> = state_dict
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(&lead).map(|s| (s.to_string(), v.clone())))
        .collect();
    if out.is_empty() {
        return Err(ModelError::new(
            "init_cfg",
            format!("prefix `{prefix}` is not found in the checkpoint"),
        ));
    }
    Ok(out)
}

/// What a parameter whose shape differs from the checkpoint's does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shapes {
    /// It keeps its value and the report lists it (MMEngine's `strict=False`).
    Skip,
    /// The load fails, naming every such key with both shapes.
    Refuse,
}

/// Copies `state_dict` into the variables of `vs` under `scope`. Returns the
/// missing/unexpected/mismatched report (for MMEngine's warning); shape
/// mismatches are handled as `on_mismatch` says.
pub fn load_state_dict(
    vs: &VarStore,
    scope: &str,
    state_dict: &IndexMap<String, TensorData>,
    on_mismatch: Shapes,
) -> ModelResult<KeyReport> {
    let mut vars = scoped(vs, scope);
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let shapes: Vec<(String, Vec<i64>)> = vars.iter().map(|(k, t)| (k.clone(), t.size())).collect();
    let report = compare(
        shapes.iter().map(|(k, s)| (k.as_str(), s.as_slice())),
        state_dict,
    );
    if !report.mismatched.is_empty() && on_mismatch == Shapes::Refuse {
        let lines: Vec<String> = report.mismatched.iter().map(|m| m.to_string()).collect();
        let what = if scope.is_empty() {
            "model".to_string()
        } else {
            format!("`{scope}`")
        };
        return Err(ModelError::new(
            what,
            format!("the checkpoint does not fit:\n  {}", lines.join("\n  ")),
        ));
    }
    tch::no_grad(|| -> ModelResult<()> {
        for (name, var) in &vars {
            if report.mismatched.iter().any(|m| &m.key == name) {
                continue;
            }
            if let Some(src) = state_dict.get(name) {
                let src = to_tensor(src).map_err(|e| ModelError::new(name.as_str(), e.message))?;
                let mut dst = var.shallow_clone();
                dst.f_copy_(&src)
                    .map_err(|e| ModelError::new(name.as_str(), e.to_string()))?;
            }
        }
        Ok(())
    })?;
    Ok(report)
}

/// Resolves an `init_cfg.checkpoint` / `load_from` string to a local file.
/// A URL (`http(s)://`, or a `torchvision://NAME` / `open-mmlab://NAME`
/// model name) is a download detc does not make: it resolves to the file
/// MMEngine downloads it to, torch's hub cache
/// (`$TORCH_HOME/hub/checkpoints/<file name of the URL>`, `TORCH_HOME`
/// defaulting to `$XDG_CACHE_HOME/torch` or `~/.cache/torch`), so a machine
/// that ran MMDetection has it already; otherwise the error gives the URL and
/// where to put the file.
pub fn resolve_checkpoint(spec: &str) -> ModelResult<PathBuf> {
    let named = |table: &[(&str, &'static str)], name: &str, kind: &str| {
        table.iter().find(|(n, _)| *n == name).map(|(_, url)| *url).ok_or_else(|| {
            let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            ModelError::new(
                "init_cfg",
                format!("unknown {kind} model `{name}` (detc knows {}); pass the local path of its .pth file", known.join(", ")),
            )
        })
    };
    let url = if let Some(name) = spec.strip_prefix("torchvision://") {
        named(TORCHVISION_URLS, name, "torchvision")?
    } else if let Some(name) = spec.strip_prefix("open-mmlab://").or_else(|| spec.strip_prefix("openmmlab://")) {
        named(OPENMMLAB_URLS, name, "open-mmlab")?
    } else if spec.starts_with("http://") || spec.starts_with("https://") {
        spec
    } else if spec.contains("://") {
        return Err(ModelError::new(
            "init_cfg",
            format!("`{spec}`: detc reads local files and http(s), torchvision:// and open-mmlab:// names"),
        ));
    } else {
        return Ok(PathBuf::from(spec));
    };
    // torch.hub's file name: the URL's path, without a query, after its last `/`.
    let file = url.split(['?', '#']).next().unwrap_or(url).rsplit('/').next().unwrap_or(url);
    let cached = torch_home().join("hub").join("checkpoints").join(file);
    if cached.is_file() {
        return Ok(cached);
    }
    Err(ModelError::new(
        "init_cfg",
        format!(
            "`{spec}` needs a download, which detc does not make: download {url} \
             and set `checkpoint:` (or `load_from`) to its local path, or place it at {} \
             (where MMEngine would have saved it)",
            cached.display()
        ),
    ))
}

fn torch_home() -> PathBuf {
    if let Some(h) = std::env::var_os("TORCH_HOME") {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("torch");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("torch")
}

/// `init_cfg: {type: Pretrained, checkpoint, prefix}` for the component at
/// `scope`: reads the file (`.pth` or safetensors), keeps `prefix`, loads.
pub fn load_pretrained(
    vs: &VarStore,
    scope: &str,
    checkpoint_spec: &str,
    prefix: Option<&str>,
) -> ModelResult<KeyReport> {
    let path = resolve_checkpoint(checkpoint_spec)?;
    let ckpt = checkpoint::load(Path::new(&path))
        .map_err(|e| ModelError::new("init_cfg", e.to_string()))?;
    match prefix {
        Some(p) => load_state_dict(vs, scope, &with_prefix(&ckpt.state_dict, p)?, Shapes::Skip),
        None => load_state_dict(vs, scope, &ckpt.state_dict, Shapes::Skip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    /// Each `open-mmlab://` name resolves to the URL MMEngine's own table gives it.
    #[test]
    fn open_mmlab_names_are_mmengines() {
        // MMEngine's table, with its deprecated names resolved as `_load_checkpoint` does.
        let script = "import json, os, mmengine; hub = os.path.join(os.path.dirname(mmengine.__file__), 'hub'); \
            urls = json.load(open(os.path.join(hub, 'openmmlab.json'))); \
            old = json.load(open(os.path.join(hub, 'deprecated.json'))); \
            urls.update({k: urls[v] for k, v in old.items() if v in urls}); print(json.dumps(urls))";
        let out = std::process::Command::new(crate::models::layers::fixtures::python()).args(["-c", script]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let table: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for (name, url) in OPENMMLAB_URLS {
            assert_eq!(table[name].as_str(), Some(*url), "open-mmlab://{name}");
        }
    }

    fn td(shape: &[i64], value: f32) -> TensorData {
        let n: i64 = shape.iter().product();
        let data = std::iter::repeat_n(value.to_le_bytes(), n as usize)
            .flatten()
            .collect();
        TensorData::new(DType::F32, shape.to_vec(), data).unwrap()
    }

    fn model() -> nn::VarStore {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let p = vs.root() / "backbone" / "a";
        let _ = p.zeros("weight", &[2, 3]);
        let _ = p.zeros("bias", &[2]);
        let _ = (vs.root() / "head").zeros("w", &[1]);
        vs
    }

    #[test]
    fn loads_by_name_into_a_scope_and_reports_keys() {
        let vs = model();
        let mut sd = IndexMap::new();
        sd.insert("a.weight".to_string(), td(&[2, 3], 1.5));
        sd.insert("fc.weight".to_string(), td(&[4], 0.0));
        let report = load_state_dict(&vs, "backbone", &sd, Shapes::Refuse).unwrap();
        assert_eq!(report.missing, ["a.bias"]);
        assert_eq!(report.unexpected, ["fc.weight"]);
        let w = &vs.variables()["backbone.a.weight"];
        assert_eq!(w.mean(Kind::Float).double_value(&[]), 1.5);
        assert!(w.requires_grad(), "loading keeps the parameter trainable");
        // prefix: keys under `model.` with it stripped
        let mut sd = IndexMap::new();
        sd.insert("model.a.bias".to_string(), td(&[2], 2.0));
        sd.insert("other.x".to_string(), td(&[1], 0.0));
        let report = load_state_dict(&vs, "backbone", &with_prefix(&sd, "model").unwrap(), Shapes::Refuse).unwrap();
        assert_eq!(report.unexpected, Vec::<String>::new());
        assert!(with_prefix(&sd, "nothing").is_err());
    }

    #[test]
    fn shape_mismatch_names_key_and_both_shapes() {
        let vs = model();
        let mut sd = IndexMap::new();
        sd.insert("a.weight".to_string(), td(&[3, 2], 1.0));
        let err = load_state_dict(&vs, "backbone", &sd, Shapes::Refuse).unwrap_err();
        assert!(
            err.message.contains("a.weight")
                && err.message.contains("[3, 2]")
                && err.message.contains("[2, 3]"),
            "{err}"
        );
        // nothing was copied
        assert_eq!(
            vs.variables()["backbone.a.weight"]
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
    }

    /// MMEngine's `strict=False`: a parameter of another shape keeps its
    /// value, the rest loads, and the warning names it first, as torch's
    /// `_load_from_state_dict` reports it before the missing keys.
    #[test]
    fn a_skipped_shape_mismatch_keeps_the_parameter_and_is_warned_about() {
        let vs = model();
        let mut sd = IndexMap::new();
        sd.insert("a.weight".to_string(), td(&[3, 2], 1.0));
        sd.insert("a.bias".to_string(), td(&[2], 2.0));
        let report = load_state_dict(&vs, "backbone", &sd, Shapes::Skip).unwrap();
        let variables = vs.variables();
        let sum = |name: &str| variables[name].sum(Kind::Float).double_value(&[]);
        assert_eq!((sum("backbone.a.weight"), sum("backbone.a.bias")), (0.0, 4.0));
        let warning = report.warning().unwrap();
        assert_eq!(
            warning,
            "The model and loaded state dict do not match exactly\n\n\
             size mismatch for a.weight: copying a param with shape [3, 2] from checkpoint, \
             the shape in current model is [2, 3]"
        );
    }
}
