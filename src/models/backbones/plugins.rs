//! A ResNet's `plugins` (`ResNet.make_stage_plugins` and
//! `Bottleneck.make_block_plugins` in `mmdet/models/backbones/resnet.py`):
//! modules inserted into every bottleneck of chosen stages, after its first,
//! second or third conv, each under MMCV's name for its type plus the
//! entry's `postfix` (`layer2.0.context_block.conv_mask.weight`).

use detc::registry::models::backbones::{BlockPluginConfig, PluginPosition};
use detc::registry::models::layers::{ContextBlockConfig, GeneralizedAttentionConfig};
use tch::nn;
use tch::Tensor;

use crate::models::layers::context_block::{ContextBlock, ContextInit};
use crate::models::layers::generalized_attention::GeneralizedAttention;
use crate::models::layers::{ModelError, ModelResult};

/// One plugin of a stage: where it goes, under which name, built how.
#[derive(Debug, Clone)]
pub(super) struct PluginSpec {
    pub position: PluginPosition,
    /// MMCV's abbreviation of the type plus the `postfix`.
    pub name: String,
    kind: PluginKind,
}

#[derive(Debug, Clone)]
enum PluginKind {
    Context(ContextBlockConfig),
    Attention(GeneralizedAttentionConfig),
}

/// The plugins of each of the `n` stages, in the order of `plugins`.
pub(super) fn stage_plugins(
    plugins: Option<&Vec<BlockPluginConfig>>,
    n: usize,
    owner: &str,
) -> ModelResult<Vec<Vec<PluginSpec>>> {
    let mut stages = vec![Vec::new(); n];
    for (k, entry) in plugins.into_iter().flatten().enumerate() {
        if let Some(flags) = &entry.stages {
            if flags.len() != n {
                return Err(ModelError::new(owner, format!("plugins[{k}].stages needs one flag per stage ({n})")));
            }
        }
        let spec = parse(entry, owner, k)?;
        for (i, stage) in stages.iter_mut().enumerate() {
            if entry.stages.as_ref().is_none_or(|flags| flags[i]) {
                if stage.iter().any(|s: &PluginSpec| s.name == spec.name) {
                    return Err(ModelError::new(
                        owner,
                        format!("plugins[{k}]: a second plugin named `{}` in stage {}; give it a `postfix`", spec.name, i + 1),
                    ));
                }
                stage.push(spec.clone());
            }
        }
    }
    Ok(stages)
}

fn parse(entry: &BlockPluginConfig, owner: &str, k: usize) -> ModelResult<PluginSpec> {
    let mut map = entry
        .cfg
        .0
        .as_object()
        .cloned()
        .ok_or_else(|| ModelError::new(owner, format!("plugins[{k}].cfg must be a dict")))?;
    let kind = map.remove("type").and_then(|t| t.as_str().map(str::to_string));
    let invalid = |e: serde_json::Error| ModelError::new(owner, format!("invalid plugins[{k}].cfg: {e}"));
    let (abbr, kind) = match kind.as_deref() {
        Some("ContextBlock") => {
            let c: ContextBlockConfig = serde_json::from_value(serde_json::Value::Object(map)).map_err(invalid)?;
            ("context_block", PluginKind::Context(c))
        }
        Some("GeneralizedAttention") => {
            let c: GeneralizedAttentionConfig = serde_json::from_value(serde_json::Value::Object(map)).map_err(invalid)?;
            if c.in_channels.is_some() {
                // MMDetection passes the stage's channels too: a TypeError there.
                return Err(ModelError::new(owner, format!("plugins[{k}].cfg: a ResNet plugin takes its stage's channels; remove in_channels")));
            }
            ("gen_attention_block", PluginKind::Attention(c))
        }
        other => {
            return Err(ModelError::new(
                owner,
                format!("plugins[{k}]: plugin type {other:?} is not supported (ContextBlock, GeneralizedAttention)"),
            ))
        }
    };
    let postfix = match &kind {
        PluginKind::Context(c) => c.postfix.as_ref(),
        PluginKind::Attention(c) => c.postfix.as_ref(),
    };
    let postfix = postfix.map(ToString::to_string).unwrap_or_default();
    Ok(PluginSpec { position: entry.position, name: format!("{abbr}{postfix}"), kind })
}

/// A built plugin.
#[derive(Debug)]
pub(super) enum BlockPlugin {
    Context(ContextBlock),
    Attention(GeneralizedAttention),
}

impl BlockPlugin {
    /// Builds `spec` under the block's path `p` for `c` channels. `scratch`:
    /// the backbone is initialised by its own Kaiming `init_cfg` (no
    /// checkpoint), which reaches the plugins' convs too.
    pub(super) fn new(p: &nn::Path, spec: &PluginSpec, c: i64, scratch: bool, trainable: bool) -> ModelResult<Self> {
        let p = p / spec.name.as_str();
        match &spec.kind {
            PluginKind::Context(cfg) => {
                let init = if scratch { ContextInit::OwnerKaiming } else { ContextInit::Own };
                Ok(BlockPlugin::Context(ContextBlock::new(&p, c, cfg, init, trainable)?))
            }
            PluginKind::Attention(cfg) => Ok(BlockPlugin::Attention(GeneralizedAttention::new(&p, c, cfg, trainable)?)),
        }
    }

    /// x: (N, C, H, W) -> (N, C, H, W).
    pub(super) fn forward(&self, x: &Tensor) -> ModelResult<Tensor> {
        match self {
            BlockPlugin::Context(block) => block.forward(x),
            BlockPlugin::Attention(block) => block.forward(x),
        }
    }
}
