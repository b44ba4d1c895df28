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

/// torchvision ImageNet checkpoints that `torchvision://NAME` names, with the
/// file name torch's hub cache stores them under (MMEngine resolves the same
/// names to these `IMAGENET1K_V1` URLs).
const TORCHVISION_FILES: &[(&str, &str)] = &[
    ("resnet18", "resnet18-f37072fd.pth"),
    ("resnet34", "resnet34-b627a593.pth"),
    ("resnet50", "resnet50-0676ba61.pth"),
    ("resnet101", "resnet101-63fe2227.pth"),
    ("resnet152", "resnet152-394f9c45.pth"),
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
/// `torchvision://NAME` is a download this tool does not make: it resolves to
/// torch's hub cache (`$TORCH_HOME/hub/checkpoints/FILE`, `TORCH_HOME`
/// defaulting to `$XDG_CACHE_HOME/torch` or `~/.cache/torch`) when the file
/// is there, and otherwise is an error saying which file to fetch.
pub fn resolve_checkpoint(spec: &str) -> ModelResult<PathBuf> {
    if let Some(name) = spec.strip_prefix("torchvision://") {
        let Some((_, file)) = TORCHVISION_FILES.iter().find(|(n, _)| *n == name) else {
            return Err(ModelError::new(
                "init_cfg",
                format!("unknown torchvision model `{name}`; pass the local path of its .pth file as `checkpoint`"),
            ));
        };
        let cached = torch_home().join("hub").join("checkpoints").join(file);
        if cached.is_file() {
            return Ok(cached);
        }
        return Err(ModelError::new(
            "init_cfg",
            format!(
                "`{spec}` needs a download, which detc does not make: download https://download.pytorch.org/models/{file} \
                 and set `checkpoint:` to its local path, or place it at {}",
                cached.display()
            ),
        ));
    }
    if spec.starts_with("http://") || spec.starts_with("https://") || spec.contains("://") {
        return Err(ModelError::new(
            "init_cfg",
            format!("`{spec}` is a URL; detc does not download checkpoints: download it and pass the local path"),
        ));
    }
    Ok(PathBuf::from(spec))
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
