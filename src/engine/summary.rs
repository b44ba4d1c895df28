//! `detc-engine summary`: builds the detector of a resolved config (JSON on
//! stdin, as `detc summary` sends it) on the CPU and prints its module tree,
//! parameter counts and state dict. The layout is the library's
//! (`detc::cli::summary::render`); this module only gathers the variables.
//!
//! Never touches a GPU: the `VarStore` lives on the CPU, and no weights are
//! loaded (`init_cfg` checkpoints are read by training, not here).

use serde_json::Value;
use tch::{nn, Device};

use crate::models::detectors;
use detc::cli::summary::render::{self, Options, Var, VarKind};

/// Prints the summary of `config`'s `model:`; returns the process exit code
/// (0, or 1 when the model cannot be built from this config).
pub fn summary(config: &Value, opts: &Options) -> i32 {
    let Some(model) = config.get("model") else {
        eprintln!("error: the config has no `model:` section");
        return 1;
    };
    if crate::engine::run::report_unbuildable(model, "model") {
        return 1;
    }
    let vs = nn::VarStore::new(Device::Cpu);
    if let Err(e) = detectors::build(model, vs.root()) {
        eprintln!("error: cannot build the model: {e}");
        return 1;
    }
    print(&render::render(model, &variables(&vs), opts))
}

/// Every variable of `vs` with its shape and kind (buffers by name, frozen
/// parameters by `requires_grad`).
pub fn variables(vs: &nn::VarStore) -> Vec<Var> {
    let aliases = crate::models::layers::shared_aliases(vs);
    vs.variables()
        .into_iter()
        .map(|(name, t)| {
            let kind = if aliases.contains(&name) { VarKind::Shared } else { VarKind::classify(&name, t.requires_grad()) };
            Var::new(name, t.size(), kind)
        })
        .collect()
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) -> i32 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("error: cannot write the summary: {e}");
            3
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::backbones::ResNet;
    use detc::registry::models::backbones::ResNetConfig;

    /// The variables of a real module: parameters, frozen ones and buffers
    /// told apart as MMDetection's ResNet(frozen_stages=1) has them.
    #[test]
    fn variables_of_a_resnet_have_kinds() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg: ResNetConfig = serde_json::from_value(
            serde_json::json!({"depth": 18, "base_channels": 8, "frozen_stages": 1}),
        )
        .unwrap();
        let _net = ResNet::new(&cfg, vs.root() / "backbone").unwrap();
        let vars = variables(&vs);
        let kind = |n: &str| vars.iter().find(|v| v.name == n).map(|v| v.kind);
        assert_eq!(kind("backbone.conv1.weight"), Some(VarKind::Frozen));
        assert_eq!(
            kind("backbone.layer1.0.bn1.running_mean"),
            Some(VarKind::Buffer)
        );
        assert_eq!(
            kind("backbone.layer2.0.conv1.weight"),
            Some(VarKind::Trainable)
        );
        let text = render::to_text(
            &serde_json::json!({"type": "X", "backbone": {"type": "ResNet"}}),
            &vars,
            2,
            false,
        );
        assert!(
            text.contains("├─ backbone  ResNet") || text.contains("└─ backbone  ResNet"),
            "{text}"
        );
        assert!(text.contains("layer1  ×2"), "{text}");
    }
}
