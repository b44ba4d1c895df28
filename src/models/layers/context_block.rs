//! GCNet's global context block (Cao et al., "GCNet: Non-local Networks
//! Meet Squeeze-Excitation Networks and Beyond", <https://arxiv.org/abs/1904.11492>)
//! as MMCV's `ContextBlock` (`mmcv/cnn/bricks/context_block.py`), with its
//! state-dict names: `conv_mask`, `channel_add_conv.{0,1,3}`,
//! `channel_mul_conv.{0,1,3}` (1x1 conv, LayerNorm over `(P, 1, 1)`, ReLU,
//! 1x1 conv).
//!
//! Shape shorthand: `N` images, `C` channels, `H, W` height and width, `P`
//! the bottleneck's `int(C * ratio)` channels.

use detc::registry::models::layers::{ContextBlockConfig, ContextFusion, ContextPooling};
use tch::nn::{self, Init};
use tch::Tensor;

use super::{make_conv_trainable, param, Conv2d, ConvGeom, ConvInit, ModelError, ModelResult};

const NAME: &str = "ContextBlock";

/// How the block's weights start, which depends on its owner's `init_cfg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextInit {
    /// The block's own `reset_parameters` (its owner loads a checkpoint that
    /// lacks it): `conv_mask` Kaiming fan-in, each transform's last conv
    /// zero so the block starts as the identity, the first conv torch's default.
    Own,
    /// Under a ResNet trained from scratch: MMEngine's `Kaiming` `init_cfg`
    /// on every `Conv2d` of the backbone reaches these convs too (fan-out,
    /// bias 0), replacing the block's own initialisation.
    OwnerKaiming,
}

/// `channel_{add,mul}_conv`: 1x1 conv, LayerNorm([P, 1, 1]), ReLU, 1x1 conv.
#[derive(Debug)]
struct Transform {
    reduce: Conv2d,
    ln_weight: Tensor,
    ln_bias: Tensor,
    expand: Conv2d,
}

impl Transform {
    fn new(p: &nn::Path, c: i64, planes: i64, init: ContextInit, trainable: bool) -> ModelResult<Self> {
        let (first, last) = match init {
            ContextInit::Own => (ConvInit::TorchDefault, ConvInit::Zeros),
            ContextInit::OwnerKaiming => (ConvInit::Kaiming, ConvInit::Kaiming),
        };
        let k1 = ConvGeom::k(1);
        Ok(Transform {
            reduce: make_conv_trainable(&(p / 0), c, planes, k1, first, trainable)?,
            ln_weight: param(&(p / 1), "weight", &[planes, 1, 1], Init::Const(1.0), trainable)?,
            ln_bias: param(&(p / 1), "bias", &[planes, 1, 1], Init::Const(0.0), trainable)?,
            expand: make_conv_trainable(&(p / 3), planes, c, k1, last, trainable)?,
        })
    }

    /// context: (N, C, 1, 1) -> (N, C, 1, 1).
    fn forward(&self, context: &Tensor) -> ModelResult<Tensor> {
        let y = self.reduce.forward(context)?;
        let shape = self.ln_weight.size();
        let y = y.f_layer_norm(&shape, Some(&self.ln_weight), Some(&self.ln_bias), 1e-5, true)?;
        self.expand.forward(&y.f_relu()?)
    }
}

/// MMCV's `ContextBlock`.
#[derive(Debug)]
pub struct ContextBlock {
    /// `conv_mask` (C -> 1) for attention pooling; none for average pooling.
    conv_mask: Option<Conv2d>,
    channel_mul: Option<Transform>,
    channel_add: Option<Transform>,
}

impl ContextBlock {
    /// Builds under `p` for `c` input channels.
    pub fn new(p: &nn::Path, c: i64, cfg: &ContextBlockConfig, init: ContextInit, trainable: bool) -> ModelResult<Self> {
        if cfg.fusion_types.is_empty() {
            return Err(ModelError::new(NAME, "fusion_types needs at least one of channel_add, channel_mul"));
        }
        // Python's int(in_channels * ratio).
        let planes = (c as f64 * cfg.ratio).floor() as i64;
        if planes < 1 {
            return Err(ModelError::new(
                NAME,
                format!("ratio {} leaves no channels of the {c} input channels (raise ratio)", cfg.ratio),
            ));
        }
        let conv_mask = match cfg.pooling_type {
            ContextPooling::Att => {
                let mask_init = match init {
                    ContextInit::Own => ConvInit::KaimingFanIn,
                    ContextInit::OwnerKaiming => ConvInit::Kaiming,
                };
                Some(make_conv_trainable(&(p / "conv_mask"), c, 1, ConvGeom::k(1), mask_init, trainable)?)
            }
            ContextPooling::Avg => None,
        };
        let transform = |fusion: ContextFusion, name: &str| -> ModelResult<Option<Transform>> {
            match cfg.fusion_types.contains(&fusion) {
                true => Transform::new(&(p / name), c, planes, init, trainable).map(Some),
                false => Ok(None),
            }
        };
        // MMCV builds `channel_add_conv` before `channel_mul_conv`.
        let channel_add = transform(ContextFusion::ChannelAdd, "channel_add_conv")?;
        let channel_mul = transform(ContextFusion::ChannelMul, "channel_mul_conv")?;
        Ok(ContextBlock { conv_mask, channel_mul, channel_add })
    }

    /// The context vector: x (N, C, H, W) -> (N, C, 1, 1).
    fn spatial_pool(&self, x: &Tensor) -> ModelResult<Tensor> {
        let (n, c, h, w) = x.size4()?;
        match &self.conv_mask {
            Some(conv_mask) => {
                // Softmax attention over the H*W positions: (N, 1, C, HW) @ (N, 1, HW, 1).
                let mask = conv_mask.forward(x)?.f_reshape([n, 1, h * w])?.f_softmax(2, None)?.f_unsqueeze(-1)?;
                let context = x.f_reshape([n, 1, c, h * w])?.f_matmul(&mask)?;
                Ok(context.f_reshape([n, c, 1, 1])?)
            }
            None => Ok(x.f_adaptive_avg_pool2d([1, 1])?),
        }
    }

    /// x: (N, C, H, W) -> (N, C, H, W).
    pub fn forward(&self, x: &Tensor) -> ModelResult<Tensor> {
        let context = self.spatial_pool(x)?;
        let mut out = x.shallow_clone();
        if let Some(mul) = &self.channel_mul {
            out = out.f_mul(&mul.forward(&context)?.f_sigmoid()?)?;
        }
        if let Some(add) = &self.channel_add {
            out = out.f_add(&add.forward(&context)?)?;
        }
        Ok(out)
    }
}
