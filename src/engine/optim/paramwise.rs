//! Parameter groups from `paramwise_cfg`, as MMEngine's
//! `DefaultOptimWrapperConstructor.add_params` makes them.
//!
//! Rules mirrored (mmengine 0.10.7 `default_constructor.py`):
//! - an empty (or absent) `paramwise_cfg` gives one group with every
//!   parameter; a non-empty one gives every parameter its own group, in
//!   the caller's order (MMEngine: module registration order);
//! - `custom_keys` are tried longest first, ties in alphabetical order
//!   (`sorted(sorted(keys), key=len, reverse=True)`), as substrings of the
//!   full parameter name (`.name` for a top-level parameter, since MMEngine
//!   matches `f'{prefix}.{name}'` with an empty prefix); the first match sets
//!   `lr = base_lr * lr_mult` and `weight_decay = base_wd * decay_mult` (both
//!   default 1) and no other rule applies;
//! - otherwise `bias_lr_mult` applies to a `bias` not of a norm layer;
//!   `norm_decay_mult` to norm-layer parameters, else `bias_decay_mult` to
//!   biases, else `flat_decay_mult` to 1-D parameters.
//!
//! MMEngine decides "norm layer" by module type (`_BatchNorm`,
//! `_InstanceNorm`, `GroupNorm`, `LayerNorm`); a tch `VarStore` only has
//! names, so the caller passes `is_norm` per parameter, and
//! [`is_norm_param_name`] guesses it from detc's module names.
//! `dwconv_decay_mult` needs the conv's groups, which names do not carry: it
//! is refused. The offset convs of deformable convs (`*.conv_offset.*`, see
//! [`is_dcn_offset_param_name`]) get `dcn_offset_lr_mult` instead of
//! `bias_lr_mult`, and neither `bias_decay_mult` nor `flat_decay_mult`.

use tch::nn::VarStore;
use tch::Tensor;

use detc::registry::engine::optim::ParamwiseConfig;

use super::optimizers::{OptimizerSpec, ParamGroup};
use crate::models::layers::{ModelError, ModelResult};

/// A trainable parameter with its state-dict name.
#[derive(Debug)]
pub struct NamedParam {
    pub name: String,
    pub tensor: Tensor,
    /// Whether it belongs to a normalisation layer (BN, GN, LN, IN).
    pub is_norm: bool,
}

/// Whether `name` (a full parameter name) is a normalisation layer's
/// parameter in the models detc builds.
///
/// The module is the name without its last segment. It is a norm layer when
/// its last segment starts with `bn`, `gn` or `ln` followed by nothing or a
/// digit (`bn1`, `gn`), or contains `norm` (`attention_norm`, `ffn_norm`,
/// `norm_in`, `instance_interactive_conv_norm`), or it is ResNet's
/// `downsample.1`, or DIIHead's `cls_fcs.i` / `reg_fcs.i` with `i % 3 == 1`
/// (Linear, LayerNorm, ReLU triplets). Imperfect by nature: a module named
/// e.g. `bn_proj` that is not a norm, or a norm inside an unnamed
/// `Sequential` of another model, is misjudged; pass `is_norm` explicitly
/// for such models.
pub fn is_norm_param_name(name: &str) -> bool {
    let segs: Vec<&str> = name.split('.').collect();
    if segs.len() < 2 {
        return false;
    }
    let module = &segs[..segs.len() - 1];
    let last = module[module.len() - 1];
    let prefixed = ["bn", "gn", "ln"].iter().any(|p| {
        last.strip_prefix(p)
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
    });
    if prefixed || last.contains("norm") {
        return true;
    }
    if module.len() >= 2 {
        let parent = module[module.len() - 2];
        if parent == "downsample" && last == "1" {
            return true;
        }
        if parent == "cls_fcs" || parent == "reg_fcs" {
            return last.parse::<usize>().is_ok_and(|i| i % 3 == 1);
        }
    }
    false
}

/// Whether `name` is a parameter of a deformable conv's `conv_offset` (the
/// only modules of that name detc builds).
pub fn is_dcn_offset_param_name(name: &str) -> bool {
    let segs: Vec<&str> = name.split('.').collect();
    segs.len() >= 3 && segs[segs.len() - 2] == "conv_offset"
}

/// The trainable variables of `vs` in creation order (tch's order of
/// `trainable_variables`), named, with `is_norm` from `is_norm`.
pub fn named_trainable(vs: &VarStore, is_norm: impl Fn(&str) -> bool) -> Vec<NamedParam> {
    let named = vs.variables();
    let mut out = Vec::new();
    for t in vs.trainable_variables() {
        // Match by storage: tch keeps names in a HashMap and order in a Vec.
        let ptr = t.data_ptr();
        // A tensor under several names (a shared conv) takes its first name in sort order.
        if let Some((name, _)) = named
            .iter()
            .filter(|(_, v)| v.data_ptr() == ptr && v.size() == t.size())
            .min_by(|a, b| a.0.cmp(b.0))
        {
            out.push(NamedParam {
                is_norm: is_norm(name),
                name: name.clone(),
                tensor: t,
            });
        }
    }
    out
}

/// `lr_mult` / `decay_mult` of one `custom_keys` entry.
#[derive(Debug, Clone)]
struct CustomKey {
    key: String,
    lr_mult: f64,
    decay_mult: f64,
}

fn custom_keys(cfg: &ParamwiseConfig) -> ModelResult<Vec<CustomKey>> {
    let Some(keys) = &cfg.custom_keys else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (key, v) in &keys.0 {
        let obj = v.as_object().ok_or_else(|| {
            ModelError::new("paramwise_cfg", format!("custom_keys.{key} must be a dict"))
        })?;
        // MMEngine copies any other key (momentum, betas, ...) into the
        // parameter's group; groups here carry only lr and weight decay.
        if let Some(other) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "lr_mult" | "decay_mult"))
        {
            return Err(ModelError::new(
                "paramwise_cfg",
                format!(
                    "custom_keys.{key}.{other} is not supported yet (only lr_mult and decay_mult)"
                ),
            ));
        }
        let mult = |m: &str| -> ModelResult<f64> {
            match obj.get(m) {
                None => Ok(1.0),
                Some(x) => x.as_f64().ok_or_else(|| {
                    ModelError::new(
                        "paramwise_cfg",
                        format!("custom_keys.{key}.{m} must be a number"),
                    )
                }),
            }
        };
        out.push(CustomKey {
            key: key.clone(),
            lr_mult: mult("lr_mult")?,
            decay_mult: mult("decay_mult")?,
        });
    }
    // sorted(sorted(keys), key=len, reverse=True): a stable sort by length
    // (descending) of the alphabetically sorted keys.
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out.sort_by_key(|k| std::cmp::Reverse(k.key.chars().count()));
    Ok(out)
}

/// The learning rate and weight decay of one parameter.
fn settings(
    p: &NamedParam,
    cfg: &ParamwiseConfig,
    keys: &[CustomKey],
    base_lr: f64,
    base_wd: Option<f64>,
) -> (f64, f64) {
    let default_wd = base_wd.unwrap_or(0.0);
    let matched = if p.name.contains('.') {
        p.name.clone()
    } else {
        format!(".{}", p.name)
    };
    if let Some(k) = keys.iter().find(|k| matched.contains(&k.key)) {
        return (
            base_lr * k.lr_mult,
            base_wd.map_or(default_wd, |wd| wd * k.decay_mult),
        );
    }
    let is_bias = p.name.rsplit('.').next() == Some("bias");
    let dcn_offset = is_dcn_offset_param_name(&p.name);
    let mut lr = base_lr;
    if let (true, false, false, Some(m)) = (is_bias, p.is_norm, dcn_offset, cfg.bias_lr_mult) {
        lr = base_lr * m;
    }
    if let (true, Some(m)) = (dcn_offset, cfg.dcn_offset_lr_mult) {
        lr = base_lr * m;
    }
    let Some(base_wd) = base_wd else {
        return (lr, default_wd);
    };
    let wd = if let (true, Some(m)) = (p.is_norm, cfg.norm_decay_mult) {
        base_wd * m
    } else if let (true, false, Some(m)) = (is_bias, dcn_offset, cfg.bias_decay_mult) {
        base_wd * m
    } else if let (1, false, Some(m)) = (p.tensor.dim(), dcn_offset, cfg.flat_decay_mult) {
        base_wd * m
    } else {
        base_wd
    };
    (lr, wd)
}

/// The optimizer's parameter groups for `params`.
///
/// `paramwise` is the raw `paramwise_cfg` dict (its emptiness decides
/// between one group and one group per parameter, as MMEngine's
/// `if not self.paramwise_cfg`).
pub fn build_param_groups(
    spec: &OptimizerSpec,
    paramwise: Option<&serde_json::Value>,
    params: Vec<NamedParam>,
) -> ModelResult<Vec<ParamGroup>> {
    let raw = paramwise.filter(|v| v.as_object().is_some_and(|o| !o.is_empty()));
    let Some(raw) = raw else {
        let (names, params): (Vec<_>, Vec<_>) =
            params.into_iter().map(|p| (p.name, p.tensor)).unzip();
        return Ok(vec![ParamGroup {
            params,
            names,
            lr: spec.lr,
            weight_decay: spec.weight_decay,
            initial_lr: None,
        }]);
    };
    let cfg: ParamwiseConfig = serde_json::from_value(raw.clone())
        .map_err(|e| ModelError::new("paramwise_cfg", format!("bad config: {e}")))?;
    if cfg.dwconv_decay_mult.is_some() {
        return Err(ModelError::new(
            "paramwise_cfg",
            "`dwconv_decay_mult` is not supported (detc's parameter names do not tell depthwise convs)",
        ));
    }
    let keys = custom_keys(&cfg)?;
    let base_wd = spec.weight_decay_given.then_some(spec.weight_decay);
    let decay_mults = cfg.bias_decay_mult.is_some() || cfg.norm_decay_mult.is_some();
    if base_wd.is_none() && decay_mults {
        // MMEngine `_validate_cfg`: "base_wd should not be None".
        return Err(ModelError::new(
            "paramwise_cfg",
            "decay multipliers need `optimizer.weight_decay` to be set",
        ));
    }
    Ok(params
        .into_iter()
        .map(|p| {
            let (lr, mut weight_decay) = settings(&p, &cfg, &keys, spec.lr, base_wd);
            if base_wd.is_none() {
                // MMEngine leaves the group's decay unset: the optimizer default.
                weight_decay = spec.weight_decay;
            }
            ParamGroup {
                params: vec![p.tensor],
                names: vec![p.name],
                lr,
                weight_decay,
                initial_lr: None,
            }
        })
        .collect())
}
