//! Builds the hooks of a resolved config as `Runner.register_hooks` does:
//! MMEngine's default hooks (runtime_info, timer, sampler_seed, logger,
//! param_scheduler, checkpoint), each replaced by the entry of the same name
//! in `default_hooks` or removed by a null one, then the other entries of
//! `default_hooks` in their order, then `custom_hooks`. Each dict's
//! `priority` is popped and overrides the hook's own.

use std::path::Path;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::checkpoint_hook::CheckpointHook;
use super::ema_hook::EMAHook;
use super::empty_cache_hook::EmptyCacheHook;
use super::iter_timer_hook::IterTimerHook;
use super::logger_hook::LoggerHook;
use super::param_scheduler_hook::ParamSchedulerHook;
use super::pipeline_switch_hook::PipelineSwitchHook;
use super::runtime_info_hook::RuntimeInfoHook;
use super::sampler_seed_hook::DistSamplerSeedHook;
use super::visualization_hook::DetVisualizationHook;
use super::{Hook, HookPriority, Hooks};
use crate::engine::checkpoint_hook as policy;
use crate::engine::logging::{LogProcessor, LoggerPolicy};
use detc::registry::engine::{
    CheckpointHookConfig, DetVisualizationHookConfig, DistSamplerSeedHookConfig,
    IterTimerHookConfig, LoggerHookConfig, ParamSchedulerHookConfig, RuntimeInfoHookConfig,
};

/// What hooks need beyond their own config.
pub struct HookContext<'a> {
    /// Where checkpoints go (unless `out_dir` says otherwise).
    pub work_dir: &'a Path,
    /// The config's `log_processor`, which LoggerHook formats with.
    pub processor: &'a LogProcessor,
    /// The whole config (DetVisualizationHook's colours come from its `visualizer`).
    pub config: &'a Value,
}

/// MMEngine's `default_hooks` before the config's (`register_default_hooks`).
fn mmengine_defaults() -> IndexMap<String, Value> {
    [
        ("runtime_info", json!({"type": "RuntimeInfoHook"})),
        ("timer", json!({"type": "IterTimerHook"})),
        ("sampler_seed", json!({"type": "DistSamplerSeedHook"})),
        ("logger", json!({"type": "LoggerHook"})),
        ("param_scheduler", json!({"type": "ParamSchedulerHook"})),
        (
            "checkpoint",
            json!({"type": "CheckpointHook", "interval": 1}),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The config's hooks, registered in MMEngine's order; errors name the
/// config path of the offending hook.
pub fn build_hooks(config: &Value, ctx: &HookContext<'_>) -> Result<Hooks, String> {
    let mut defaults = mmengine_defaults();
    match config.get("default_hooks") {
        None | Some(Value::Null) => {}
        Some(Value::Object(user)) => {
            for (name, hook) in user {
                if hook.is_null() {
                    defaults.shift_remove(name);
                } else {
                    // An existing name keeps its place, as a dict update does.
                    defaults.insert(name.clone(), hook.clone());
                }
            }
        }
        Some(other) => return Err(format!("default_hooks: expected a mapping, got {other}")),
    }
    let mut hooks = Hooks::default();
    for (name, cfg) in &defaults {
        let (hook, priority) = build_hook(cfg, &format!("default_hooks.{name}"), ctx)?;
        hooks.register(hook, priority);
    }
    match config.get("custom_hooks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(custom)) => {
            for (i, cfg) in custom.iter().enumerate() {
                let (hook, priority) = build_hook(cfg, &format!("custom_hooks.{i}"), ctx)?;
                hooks.register(hook, priority);
            }
        }
        Some(other) => return Err(format!("custom_hooks: expected a list, got {other}")),
    }
    Ok(hooks)
}

type Built = (Box<dyn Hook>, Option<HookPriority>);

/// One hook dict (`at` is its config path): its `priority` popped, the
/// rest read by the hook's registered config.
fn build_hook(cfg: &Value, at: &str, ctx: &HookContext<'_>) -> Result<Built, String> {
    let mut cfg = cfg
        .as_object()
        .cloned()
        .ok_or_else(|| format!("{at}: expected a hook dict with a `type`, got {cfg}"))?;
    let ty = match cfg.shift_remove("type") {
        Some(Value::String(t)) => t,
        _ => return Err(format!("{at}: the hook has no `type`")),
    };
    let priority = match cfg.shift_remove("priority") {
        None | Some(Value::Null) => None,
        Some(p) => Some(HookPriority::parse(&p, &format!("{at}.priority"))?),
    };
    let rest = Value::Object(cfg);
    // Hooks without arguments still read their config: unknown keys are errors.
    let hook: Box<dyn Hook> = match ty.as_str() {
        "RuntimeInfoHook" => {
            typed::<RuntimeInfoHookConfig>(rest, at)?;
            Box::new(RuntimeInfoHook)
        }
        "IterTimerHook" => {
            typed::<IterTimerHookConfig>(rest, at)?;
            Box::new(IterTimerHook::new())
        }
        "DistSamplerSeedHook" => {
            typed::<DistSamplerSeedHookConfig>(rest, at)?;
            Box::new(DistSamplerSeedHook)
        }
        "ParamSchedulerHook" => {
            typed::<ParamSchedulerHookConfig>(rest, at)?;
            Box::new(ParamSchedulerHook)
        }
        "LoggerHook" => {
            let c: LoggerHookConfig = typed(rest, at)?;
            let policy = LoggerPolicy::from_config(&c);
            Box::new(LoggerHook::new(policy, ctx.processor.clone()))
        }
        "CheckpointHook" => {
            let c: CheckpointHookConfig = typed(rest, at)?;
            let policy =
                policy::CheckpointHook::new(&c, ctx.work_dir).map_err(|e| format!("{at}: {e}"))?;
            Box::new(CheckpointHook::new(policy))
        }
        "DetVisualizationHook" => {
            let c: DetVisualizationHookConfig = typed(rest, at)?;
            Box::new(DetVisualizationHook::new(&c, ctx.config))
        }
        "EmptyCacheHook" => Box::new(EmptyCacheHook::new(typed(rest, at)?)),
        "EMAHook" => Box::new(EMAHook::new(typed(rest, at)?).map_err(|e| format!("{at}: {e}"))?),
        "PipelineSwitchHook" => Box::new(PipelineSwitchHook::new(typed(rest, at)?).map_err(|e| format!("{at}: {e}"))?),
        other => return Err(format!("{at}: detc has no hook `{other}`")),
    };
    Ok((hook, priority))
}

fn typed<T: DeserializeOwned>(rest: Value, at: &str) -> Result<T, String> {
    serde_json::from_value(rest).map_err(|e| format!("{at}: {e}"))
}
