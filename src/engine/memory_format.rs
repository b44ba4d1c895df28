//! `env_cfg.channels_last`: the model's convolutions in the channels-last
//! memory layout, PyTorch's `model.to(memory_format=torch.channels_last)`.
//!
//! The shapes stay (N, C, H, W); only the order in memory becomes (N, H, W,
//! C), the layout that cuDNN's tensor-core kernels and oneDNN's CPU kernels
//! compute in. In the default layout they transpose the activations around
//! every convolution. Each 4-D floating parameter (the convolutions' weights)
//! is converted once the model is on its device. A convolution's output
//! follows its weight's layout, so the activations stay channels-last through
//! the backbone and the neck. The values are the same; only the kernels'
//! order of summation, and so the last bits, can differ. Checkpoints are
//! written in the default layout either way (`tensor_data` makes them
//! contiguous), so a run can resume with the setting on or off.

use serde_json::Value;
use tch::nn::VarStore;

use super::native::{self, NativeResult};

/// Lays `vs` out channels-last when the config asks for it
/// (`env_cfg.channels_last`, off by default); returns how many variables
/// it converted, or `None` when it was not asked.
pub fn apply_config(config: &Value, vs: &VarStore) -> NativeResult<Option<usize>> {
    if config.pointer("/env_cfg/channels_last").and_then(Value::as_bool) != Some(true) {
        return Ok(None);
    }
    to_channels_last(vs).map(Some)
}

/// Lays every 4-D floating variable of `vs` out channels-last, in place
/// (the model's modules hold the same tensors); returns how many.
pub fn to_channels_last(vs: &VarStore) -> NativeResult<usize> {
    let mut converted = 0;
    for (_, mut var) in vs.variables() {
        if var.dim() == 4 && var.is_floating_point() && !native::is_channels_last(&var)? {
            let laid_out = tch::no_grad(|| native::channels_last(&var))?;
            var.set_data(&laid_out);
            converted += 1;
        }
    }
    Ok(converted)
}
