//! `SwinTransformer` (Liu et al., "Swin Transformer: Hierarchical Vision
//! Transformer using Shifted Windows", <https://arxiv.org/abs/2103.14030>) as
//! `mmdet/models/backbones/swin.py`, with MMDetection's state-dict names
//! (`patch_embed.projection`, `stages.{i}.blocks.{j}.attn.w_msa.qkv`,
//! `...ffn.layers.0.0`, `stages.{i}.downsample.reduction`, `norm{i}`), its
//! default initialisation, frozen stages, and its `Pretrained` loading
//! (`convert_weights` for checkpoints of the original repository, the
//! relative position bias tables resized bicubically to the window).
//!
//! Shape shorthand: `B` images, `L = H * W` tokens of an `H x W` map, `C`
//! channels, `w` the window side, `N = w * w` tokens of a window.

use detc::checkpoint::{KeyReport, TensorData};
use detc::registry::models::backbones::SwinTransformerConfig;
use detc::registry::models::weight_init::PretrainedInitConfig;
use indexmap::IndexMap;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::resnet::pretrained_init;
use crate::models::layers::transformer::{dropout, torch_linear_uniform, Ffn, LayerNorm, Linear, MatrixInit};
use crate::models::layers::{buffer, param, Activation, Conv2d, ConvGeom, ConvKind, ModelError, ModelResult};
use crate::models::weights::{load_state_dict, resolve_checkpoint, to_tensor, Shapes};

const NAME: &str = "SwinTransformer";

/// `nn.Linear` with MMDetection's Swin init: weight ~ N(0, 0.02) (its
/// `trunc_normal_init` cuts at ±2, a hundred standard deviations away), bias 0.
fn linear(p: &nn::Path, in_f: i64, out_f: i64, bias: bool, trainable: bool) -> ModelResult<Linear> {
    Ok(Linear {
        weight: param(p, "weight", &[out_f, in_f], Init::Randn { mean: 0.0, stdev: 0.02 }, trainable)?,
        bias: bias.then(|| param(p, "bias", &[out_f], Init::Const(0.0), trainable)).transpose()?,
    })
}

/// `drop_path`: in training, each image's residual branch is dropped with
/// probability `p` and the kept ones scaled by `1 / (1 - p)`.
fn drop_path(x: &Tensor, p: f64, train: bool) -> ModelResult<Tensor> {
    if !train || p == 0.0 {
        return Ok(x.shallow_clone());
    }
    let keep = 1.0 - p;
    let mut shape = vec![x.size()[0]];
    shape.extend(std::iter::repeat_n(1, x.dim() - 1));
    let mask = Tensor::f_rand(shape.as_slice(), (x.kind(), x.device()))?.f_add_scalar(keep)?.f_floor()?;
    Ok(x.f_div_scalar(keep)?.f_mul(&mask)?)
}

/// MMCV's `AdaptivePadding(padding='corner')` for a stride-`s` kernel of
/// side `s`: zeros right and below up to a multiple of `s`. x: (B, C, H, W).
fn pad_corner(x: &Tensor, s: i64) -> ModelResult<Tensor> {
    let (h, w) = (x.size()[2], x.size()[3]);
    let (ph, pw) = ((s - h % s) % s, (s - w % s) % s);
    if ph == 0 && pw == 0 {
        return Ok(x.shallow_clone());
    }
    Ok(x.f_constant_pad_nd([0, pw, 0, ph])?)
}

/// `PatchEmbed`: a stride-`patch` conv over the (corner-padded) image, then
/// the tokens (B, L, C) and their layer norm.
#[derive(Debug)]
struct PatchEmbed {
    projection: Conv2d,
    norm: Option<LayerNorm>,
    patch: i64,
}

impl PatchEmbed {
    fn forward(&self, x: &Tensor) -> ModelResult<(Tensor, (i64, i64))> {
        let y = self.projection.forward(&pad_corner(x, self.patch)?)?;
        let hw = (y.size()[2], y.size()[3]);
        let mut y = y.f_flatten(2, -1)?.f_transpose(1, 2)?;
        if let Some(norm) = &self.norm {
            y = norm.forward(&y)?;
        }
        Ok((y, hw))
    }
}

/// `PatchMerging`: each `s x s` neighbourhood's tokens concatenated in
/// `nn.Unfold`'s order (channel-major), a layer norm, a linear reduction.
#[derive(Debug)]
struct PatchMerging {
    norm: Option<LayerNorm>,
    reduction: Linear,
    stride: i64,
}

impl PatchMerging {
    /// x: (B, H*W, C) -> (B, H'*W', C_out) and `(H', W')`.
    fn forward(&self, x: &Tensor, (h, w): (i64, i64)) -> ModelResult<(Tensor, (i64, i64))> {
        let (b, _, c) = x.size3()?;
        let s = self.stride;
        let grid = pad_corner(&x.f_view([b, h, w, c])?.f_permute([0, 3, 1, 2])?, s)?;
        let cols = grid.f_im2col([s, s], [1, 1], [0, 0], [s, s])?;
        let out_hw = (grid.size()[2] / s, grid.size()[3] / s);
        let mut y = cols.f_transpose(1, 2)?;
        if let Some(norm) = &self.norm {
            y = norm.forward(&y)?;
        }
        Ok((self.reduction.forward(&y)?, out_hw))
    }
}

/// `ShiftWindowMSA` around `WindowMSA`: multi-head self-attention inside
/// `w x w` windows (cyclically shifted by `shift` on odd blocks, with the
/// mask that keeps wrapped-around regions apart), plus a learned bias per
/// relative position.
#[derive(Debug)]
struct WindowAttention {
    qkv: Linear,
    proj: Linear,
    relative_position_bias_table: Tensor,
    relative_position_index: Tensor,
    num_heads: i64,
    scale: f64,
    window: i64,
    shift: i64,
    attn_drop: f64,
    proj_drop: f64,
}

/// `WindowMSA`'s `relative_position_index` of a `w x w` window: (N, N).
fn relative_position_index(w: i64) -> Vec<i64> {
    // double_step_seq(2w - 1, w, 1, w), added to its transpose, flipped left-right.
    let coords: Vec<i64> = (0..w).flat_map(|i| (0..w).map(move |j| i * (2 * w - 1) + j)).collect();
    let n = coords.len();
    let mut index = vec![0; n * n];
    for r in 0..n {
        for c in 0..n {
            index[r * n + (n - 1 - c)] = coords[r] + coords[c];
        }
    }
    index
}

impl WindowAttention {
    /// (B, H, W, C) -> its windows (B * nW, w, w, C).
    fn partition(&self, x: &Tensor) -> ModelResult<Tensor> {
        let (b, h, w, c) = x.size4()?;
        let s = self.window;
        Ok(x.f_view([b, h / s, s, w / s, s, c])?.f_permute([0, 1, 3, 2, 4, 5])?.f_contiguous()?.f_view([-1, s, s, c])?)
    }

    /// The windows (B * nW, w, w, C) back to (B, H, W, C).
    fn reverse(&self, windows: &Tensor, h: i64, w: i64) -> ModelResult<Tensor> {
        let s = self.window;
        let c = windows.size()[3];
        let b = windows.size()[0] / ((h / s) * (w / s));
        Ok(windows.f_view([b, h / s, w / s, s, s, c])?.f_permute([0, 1, 3, 2, 4, 5])?.f_contiguous()?.f_view([b, h, w, c])?)
    }

    /// The shifted windows' attention mask (nW, N, N): 0 within a region,
    /// -100 between regions the cyclic shift brought together.
    fn shift_mask(&self, h: i64, w: i64, device: tch::Device) -> ModelResult<Tensor> {
        let (s, shift) = (self.window, self.shift);
        let region = |i: i64, n: i64| if i < n - s { 0 } else if i < n - shift { 1 } else { 2 };
        let ids: Vec<f32> = (0..h).flat_map(|y| (0..w).map(move |x| (region(y, h) * 3 + region(x, w)) as f32)).collect();
        let img = Tensor::from_slice(&ids).f_view([1, h, w, 1])?;
        let windows = self.partition(&img)?.f_view([-1, s * s])?;
        let diff = windows.f_unsqueeze(1)?.f_sub(&windows.f_unsqueeze(2)?)?;
        let mask = diff.f_ne(0.0)?.f_to_kind(Kind::Float)?.f_mul_scalar(-100.0)?;
        Ok(mask.f_to_device(device)?)
    }

    /// `WindowMSA.forward`: x (B * nW, N, C), mask (nW, N, N) or none.
    fn attend(&self, x: &Tensor, mask: Option<&Tensor>, train: bool) -> ModelResult<Tensor> {
        let (b, n, c) = x.size3()?;
        let heads = self.num_heads;
        let qkv = self.qkv.forward(x)?.f_reshape([b, n, 3, heads, c / heads])?.f_permute([2, 0, 3, 1, 4])?;
        let (q, k, v) = (qkv.f_select(0, 0)?.f_mul_scalar(self.scale)?, qkv.f_select(0, 1)?, qkv.f_select(0, 2)?);
        let mut attn = q.f_matmul(&k.f_transpose(-2, -1)?)?;
        let bias = self
            .relative_position_bias_table
            .f_index_select(0, &self.relative_position_index.f_view([-1])?)?
            .f_view([n, n, -1])?
            .f_permute([2, 0, 1])?;
        attn = attn.f_add(&bias.f_unsqueeze(0)?)?;
        if let Some(mask) = mask {
            let nw = mask.size()[0];
            attn = attn
                .f_view([b / nw, nw, heads, n, n])?
                .f_add(&mask.f_unsqueeze(1)?.f_unsqueeze(0)?.f_to_kind(attn.kind())?)?
                .f_view([-1, heads, n, n])?;
        }
        let attn = dropout(&attn.f_softmax(-1, attn.kind())?, self.attn_drop, train)?;
        let y = attn.f_matmul(&v)?.f_transpose(1, 2)?.f_reshape([b, n, c])?;
        dropout(&self.proj.forward(&y)?, self.proj_drop, train)
    }

    /// `ShiftWindowMSA.forward` (without its drop path): x (B, L, C) of an
    /// `(H, W)` map, padded right and below to whole windows.
    fn forward(&self, x: &Tensor, (h, w): (i64, i64), train: bool) -> ModelResult<Tensor> {
        let (b, l, c) = x.size3()?;
        if l != h * w {
            return Err(ModelError::new(NAME, format!("{l} tokens for a {h}x{w} map")));
        }
        let s = self.window;
        let (pr, pb) = ((s - w % s) % s, (s - h % s) % s);
        let mut q = x.f_view([b, h, w, c])?;
        if pr > 0 || pb > 0 {
            q = q.f_constant_pad_nd([0, 0, 0, pr, 0, pb])?;
        }
        let (hp, wp) = (h + pb, w + pr);
        let (shifted, mask) = if self.shift > 0 {
            (q.f_roll([-self.shift, -self.shift], [1, 2])?, Some(self.shift_mask(hp, wp, x.device())?))
        } else {
            (q, None)
        };
        let windows = self.partition(&shifted)?.f_view([-1, s * s, c])?;
        let attended = self.attend(&windows, mask.as_ref(), train)?.f_view([-1, s, s, c])?;
        let mut y = self.reverse(&attended, hp, wp)?;
        if self.shift > 0 {
            y = y.f_roll([self.shift, self.shift], [1, 2])?;
        }
        if pr > 0 || pb > 0 {
            y = y.f_narrow(1, 0, h)?.f_narrow(2, 0, w)?.f_contiguous()?;
        }
        Ok(y.f_view([b, h * w, c])?)
    }
}

/// `SwinBlock`: `x + drop_path(attn(norm1(x)))`, then `x + drop_path(ffn(norm2(x)))`.
#[derive(Debug)]
struct SwinBlock {
    norm1: LayerNorm,
    attn: WindowAttention,
    norm2: LayerNorm,
    ffn: Ffn,
    drop_path: f64,
}

impl SwinBlock {
    fn forward(&self, x: &Tensor, hw: (i64, i64), train: bool) -> ModelResult<Tensor> {
        let y = self.attn.forward(&self.norm1.forward(x)?, hw, train)?;
        let x = x.f_add(&drop_path(&y, self.drop_path, train)?)?;
        let y = self.ffn.forward_t(&self.norm2.forward(&x)?, train)?;
        Ok(x.f_add(&drop_path(&y, self.drop_path, train)?)?)
    }
}

/// `SwinBlockSequence`: a stage's blocks, then its patch merging.
#[derive(Debug)]
struct Stage {
    blocks: Vec<SwinBlock>,
    downsample: Option<PatchMerging>,
}

/// Everything a block is built from.
struct BlockSpec {
    dims: i64,
    heads: i64,
    window: i64,
    mlp_ratio: i64,
    qkv_bias: bool,
    qk_scale: Option<f64>,
    drop_rate: f64,
    attn_drop_rate: f64,
    eps: f64,
    act: Option<Activation>,
    trainable: bool,
}

impl SwinBlock {
    fn new(p: &nn::Path, spec: &BlockSpec, shift: bool, drop_path: f64) -> ModelResult<Self> {
        let (c, t) = (spec.dims, spec.trainable);
        let attn_p = p / "attn" / "w_msa";
        let s = spec.window;
        let table_len = (2 * s - 1) * (2 * s - 1);
        let index = Tensor::from_slice(&relative_position_index(s)).f_view([s * s, s * s])?;
        let attn = WindowAttention {
            qkv: linear(&(&attn_p / "qkv"), c, 3 * c, spec.qkv_bias, t)?,
            proj: linear(&(&attn_p / "proj"), c, c, true, t)?,
            // Zeros: MMDetection's SwinTransformer.init_weights does not call
            // WindowMSA's (a Pretrained checkpoint sets it).
            relative_position_bias_table: param(&attn_p, "relative_position_bias_table", &[table_len, spec.heads], Init::Const(0.0), t)?,
            relative_position_index: buffer(&attn_p, "relative_position_index", index),
            num_heads: spec.heads,
            scale: spec.qk_scale.unwrap_or(((c / spec.heads) as f64).powf(-0.5)),
            window: s,
            shift: if shift { s / 2 } else { 0 },
            attn_drop: spec.attn_drop_rate,
            proj_drop: spec.drop_rate,
        };
        let hidden = spec.mlp_ratio * c;
        let ffn_p = p / "ffn" / "layers";
        let ffn = Ffn {
            hidden: vec![linear(&(&ffn_p / 0 / 0), c, hidden, true, t)?],
            out: linear(&(&ffn_p / 1), hidden, c, true, t)?,
            act: spec.act,
            ffn_drop: spec.drop_rate,
            // The residual (and its drop path) is the block's.
            add_identity: false,
        };
        Ok(SwinBlock {
            norm1: LayerNorm::with_trainable(&(p / "norm1"), c, spec.eps, t)?,
            attn,
            norm2: LayerNorm::with_trainable(&(p / "norm2"), c, spec.eps, t)?,
            ffn,
            drop_path,
        })
    }
}

/// mmdet's `SwinTransformer`.
#[derive(Debug)]
pub struct SwinTransformer {
    patch_embed: PatchEmbed,
    stages: Vec<Stage>,
    /// `norm{i}` of each returned stage.
    out_norms: Vec<(usize, LayerNorm)>,
    drop_rate: f64,
    frozen_stages: i64,
    /// Channels of each returned feature map (`out_indices` order).
    pub out_channels: Vec<i64>,
    /// Stride of each returned feature map.
    pub out_strides: Vec<i64>,
    scope: String,
    pretrained: Option<PretrainedInitConfig>,
    convert_weights: bool,
}

impl SwinTransformer {
    /// Builds under `p` (`backbone`), initialised as MMDetection's
    /// `init_weights` without a checkpoint: linear weights N(0, 0.02) and
    /// biases 0, layer norms 1 and 0, the bias tables 0, the patch
    /// embedding's conv as torch leaves it.
    pub fn new(cfg: &SwinTransformerConfig, p: nn::Path) -> ModelResult<Self> {
        let n = cfg.depths.len();
        if n == 0 || cfg.num_heads.len() != n || cfg.strides.len() != n {
            return Err(ModelError::new(NAME, "depths, num_heads and strides need one entry per stage"));
        }
        if cfg.strides[0] != cfg.patch_size {
            return Err(ModelError::new(NAME, "strides[0] must equal patch_size (non-overlapping patch embedding)"));
        }
        if let Some(&bad) = cfg.out_indices.iter().find(|&&i| i as usize >= n) {
            return Err(ModelError::new(NAME, format!("out_indices entry {bad} is not below the {n} stages")));
        }
        if cfg.use_abs_pos_embed || cfg.with_cp {
            return Err(ModelError::new(NAME, "use_abs_pos_embed and with_cp are not supported yet (set them false)"));
        }
        if cfg.init_cfg.is_some() && cfg.pretrained.is_some() {
            return Err(ModelError::new(NAME, "init_cfg and pretrained cannot be specified at the same time"));
        }
        let eps = LayerNorm::eps_of(&cfg.norm_cfg, NAME)?;
        let act = Activation::from_cfg(Some(&cfg.act_cfg), NAME)?;
        let frozen = cfg.frozen_stages;
        let embed = cfg.embed_dims as i64;
        let patch = cfg.patch_size as i64;
        let in_c = cfg.in_channels as i64;
        let pe = &p / "patch_embed";
        let fan_in = in_c * patch * patch;
        let projection_p = &pe / "projection";
        let projection = Conv2d {
            // torch's Conv2d init: MMDetection's Swin init leaves the conv as built.
            weight: param(&projection_p, "weight", &[embed, in_c, patch, patch], torch_linear_uniform(fan_in), frozen < 0)?,
            bias: Some(param(&projection_p, "bias", &[embed], torch_linear_uniform(fan_in), frozen < 0)?),
            geom: ConvGeom::k(patch).stride(patch),
            kind: ConvKind::Plain,
        };
        let patch_embed = PatchEmbed {
            projection,
            norm: cfg.patch_norm.then(|| LayerNorm::with_trainable(&(&pe / "norm"), embed, eps, frozen < 0)).transpose()?,
            patch,
        };
        // Stochastic depth rising linearly over all blocks: torch.linspace(0, rate, total).
        let total: u32 = cfg.depths.iter().sum();
        let rates: Vec<f64> = if total <= 1 {
            vec![0.0; total as usize]
        } else {
            let rates = Tensor::f_linspace(0.0, cfg.drop_path_rate, total as i64, (Kind::Float, tch::Device::Cpu))?;
            Vec::<f32>::try_from(&rates).map_err(|e| ModelError::new(NAME, e.to_string()))?.into_iter().map(f64::from).collect()
        };
        let (mut stages, mut dims, mut stride, mut block) = (Vec::with_capacity(n), embed, patch, 0usize);
        let (mut out_channels, mut out_strides, mut out_norms) = (vec![], vec![], vec![]);
        for i in 0..n {
            let trainable = i as i64 + 1 > frozen;
            let spec = BlockSpec {
                dims,
                heads: cfg.num_heads[i] as i64,
                window: cfg.window_size as i64,
                mlp_ratio: cfg.mlp_ratio as i64,
                qkv_bias: cfg.qkv_bias,
                qk_scale: cfg.qk_scale,
                drop_rate: cfg.drop_rate,
                attn_drop_rate: cfg.attn_drop_rate,
                eps,
                act,
                trainable,
            };
            if dims % spec.heads != 0 {
                return Err(ModelError::new(NAME, format!("stage {i}: {dims} channels do not split into {} heads", spec.heads)));
            }
            let sp = &p / "stages" / i;
            let mut blocks = Vec::with_capacity(cfg.depths[i] as usize);
            for j in 0..cfg.depths[i] as usize {
                blocks.push(SwinBlock::new(&(&sp / "blocks" / j), &spec, j % 2 == 1, rates[block])?);
                block += 1;
            }
            if cfg.out_indices.contains(&(i as u32)) {
                // Frozen with stage i (MMDetection freezes norm{i-1} with stage i).
                out_norms.push((i, LayerNorm::with_trainable(&(&p / format!("norm{i}")), dims, eps, trainable)?));
                out_channels.push(dims);
                out_strides.push(stride);
            }
            let downsample = if i + 1 < n {
                let s = cfg.strides[i + 1] as i64;
                let dp = &sp / "downsample";
                let merged = PatchMerging {
                    norm: cfg.patch_norm.then(|| LayerNorm::with_trainable(&(&dp / "norm"), dims * s * s, eps, trainable)).transpose()?,
                    reduction: linear(&(&dp / "reduction"), dims * s * s, 2 * dims, false, trainable)?,
                    stride: s,
                };
                dims *= 2;
                stride *= s;
                Some(merged)
            } else {
                None
            };
            stages.push(Stage { blocks, downsample });
        }
        // Outputs come in stage order, as MMDetection returns them.
        Ok(SwinTransformer {
            patch_embed,
            stages,
            out_norms,
            drop_rate: cfg.drop_rate,
            frozen_stages: frozen,
            out_channels,
            out_strides,
            scope: p.components().collect::<Vec<_>>().join("."),
            pretrained: pretrained_init(cfg.pretrained.as_ref(), cfg.init_cfg.as_ref(), NAME)?,
            convert_weights: cfg.convert_weights,
        })
    }

    /// x: (B, 3, H, W) -> the `out_indices` stages' normalised outputs, each
    /// (B, C_i, H / stride_i, W / stride_i). Frozen parts run in eval mode
    /// (no dropout or drop path), as MMDetection's `_freeze_stages` leaves them.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Vec<Tensor>> {
        let (mut y, mut hw) = self.patch_embed.forward(x)?;
        y = dropout(&y, self.drop_rate, train && self.frozen_stages < 0)?;
        let mut outs = Vec::with_capacity(self.out_norms.len());
        for (i, stage) in self.stages.iter().enumerate() {
            let stage_train = train && i as i64 + 1 > self.frozen_stages;
            for block in &stage.blocks {
                y = block.forward(&y, hw, stage_train)?;
            }
            if let Some((_, norm)) = self.out_norms.iter().find(|(k, _)| *k == i) {
                let (b, _, c) = y.size3()?;
                outs.push(norm.forward(&y)?.f_view([b, hw.0, hw.1, c])?.f_permute([0, 3, 1, 2])?.f_contiguous()?);
            }
            if let Some(down) = &stage.downsample {
                (y, hw) = down.forward(&y, hw)?;
            }
        }
        Ok(outs)
    }

    /// Loads the `Pretrained` `init_cfg` as MMDetection's Swin does: the
    /// checkpoint's `backbone.*` entries (after `swin_converter` with
    /// `convert_weights`), the relative position bias tables resized to the
    /// window, without strictness.
    pub fn init_weights(&self, vs: &nn::VarStore) -> ModelResult<Option<KeyReport>> {
        let Some(pt) = &self.pretrained else { return Ok(None) };
        let path = resolve_checkpoint(&pt.checkpoint)?;
        let ckpt = detc::checkpoint::load(std::path::Path::new(&path)).map_err(|e| ModelError::new("init_cfg", e.to_string()))?;
        let mut entries = ckpt.state_dict;
        if self.convert_weights {
            entries = swin_converter(entries)?;
        }
        let mut state_dict: IndexMap<String, TensorData> =
            entries.into_iter().filter_map(|(k, v)| k.strip_prefix("backbone.").map(|k| (k.to_string(), v))).collect();
        if state_dict.keys().next().is_some_and(|k| k.starts_with("module.")) {
            state_dict = state_dict.into_iter().map(|(k, v)| (k.trim_start_matches("module.").to_string(), v)).collect();
        }
        let ours = crate::models::weights::named_shapes(vs, &self.scope);
        for (key, value) in state_dict.iter_mut().filter(|(k, _)| k.contains("relative_position_bias_table")) {
            let Some(shape) = ours.iter().find(|(k, _)| k == key).map(|(_, s)| s.clone()) else { continue };
            if value.shape.len() == 2 && shape.len() == 2 && value.shape[1] == shape[1] && value.shape[0] != shape[0] {
                *value = resize_bias_table(value, shape[0])?;
            }
        }
        // torch's load_state_dict(strict=False), which MMDetection calls, refuses other shapes.
        load_state_dict(vs, &self.scope, &state_dict, Shapes::Refuse).map(Some)
    }
}

/// A `(L1, heads)` bias table bicubically resized to `(L2, heads)` (each a
/// square of side `sqrt(L)`), as MMDetection resizes a pretrained one.
fn resize_bias_table(table: &TensorData, l2: i64) -> ModelResult<TensorData> {
    let t = to_tensor(table)?.f_to_kind(Kind::Float)?;
    let (l1, heads) = (t.size()[0], t.size()[1]);
    let (s1, s2) = ((l1 as f64).sqrt() as i64, (l2 as f64).sqrt() as i64);
    let grid = t.f_permute([1, 0])?.f_reshape([1, heads, s1, s1])?;
    let resized = grid.f_upsample_bicubic2d([s2, s2], false, None, None)?;
    crate::engine::optim::state::tensor_data(&resized.f_view([heads, l2])?.f_permute([1, 0])?.f_contiguous()?)
}

/// MMDetection's `swin_converter`: the original repository's names (`layers`,
/// `attn`, `mlp.fc1`, `patch_embed.proj`) as MMDetection's, the patch
/// merging's reduction and norm reordered from its `[x0, x1, x2, x3]`
/// concatenation to `nn.Unfold`'s order, the classifier `head` dropped, every
/// key under `backbone.`.
fn swin_converter(ckpt: IndexMap<String, TensorData>) -> ModelResult<IndexMap<String, TensorData>> {
    let mut out = IndexMap::new();
    for (k, v) in ckpt {
        if k.starts_with("head") {
            continue;
        }
        let (key, value) = if k.starts_with("layers") {
            let mut value = v;
            let key = if k.contains("attn.") {
                k.replace("attn.", "attn.w_msa.")
            } else if k.contains("mlp.fc1.") {
                k.replace("mlp.fc1.", "ffn.layers.0.0.")
            } else if k.contains("mlp.fc2.") {
                k.replace("mlp.fc2.", "ffn.layers.1.")
            } else if k.contains("mlp.") {
                k.replace("mlp.", "ffn.")
            } else {
                if k.contains("downsample") && (k.contains("reduction.") || k.contains("norm.")) {
                    value = unfold_order(&value)?;
                }
                k.clone()
            };
            (key.replacen("layers", "stages", 1), value)
        } else if k.starts_with("patch_embed") && k.contains("proj") {
            (k.replace("proj", "projection"), v)
        } else {
            (k, v)
        };
        out.insert(format!("backbone.{key}"), value);
    }
    Ok(out)
}

/// `correct_unfold_reduction_order` (a (out, 4C) weight) and
/// `correct_unfold_norm_order` (a (4C,) vector): groups 0, 2, 1, 3 of the
/// last dim, then channel-major.
fn unfold_order(v: &TensorData) -> ModelResult<TensorData> {
    let t = to_tensor(v)?;
    let order = Tensor::from_slice(&[0i64, 2, 1, 3]);
    let reordered = if t.dim() == 2 {
        let (o, i) = (t.size()[0], t.size()[1]);
        t.f_reshape([o, 4, i / 4])?.f_index_select(1, &order)?.f_transpose(1, 2)?.f_reshape([o, i])?
    } else {
        let i = t.size()[0];
        t.f_reshape([4, i / 4])?.f_index_select(0, &order)?.f_transpose(0, 1)?.f_reshape([i])?
    };
    crate::engine::optim::state::tensor_data(&reordered.f_contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MMDetection's index for a 2x2 window (`WindowMSA.double_step_seq`
    /// added to its transpose, flipped left-right).
    #[test]
    fn relative_position_index_is_mmdets() {
        assert_eq!(relative_position_index(2), [4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4]);
    }

    #[test]
    fn unsupported_options_are_refused() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let cfg = |v: serde_json::Value| serde_json::from_value::<SwinTransformerConfig>(v).unwrap();
        let err = SwinTransformer::new(&cfg(serde_json::json!({"use_abs_pos_embed": true})), vs.root()).unwrap_err();
        assert!(err.message.contains("use_abs_pos_embed"), "{err}");
        let err = SwinTransformer::new(&cfg(serde_json::json!({"strides": [2, 2, 2, 2]})), vs.root()).unwrap_err();
        assert!(err.message.contains("patch_size"), "{err}");
        let err = SwinTransformer::new(&cfg(serde_json::json!({"embed_dims": 32})), vs.root()).unwrap_err();
        assert!(err.message.contains("heads"), "{err}");
    }

    /// The stochastic depth keeps each image's branch or drops it whole.
    #[test]
    fn drop_path_drops_whole_images() {
        let _seeded = crate::models::layers::fixtures::seeded();
        tch::manual_seed(3);
        let x = Tensor::ones([64, 5, 3], (Kind::Float, tch::Device::Cpu));
        let y = drop_path(&x, 0.25, true).unwrap();
        let per_image = y.sum_dim_intlist([1, 2].as_slice(), false, Kind::Float);
        let values: Vec<f32> = Vec::try_from(&per_image).unwrap();
        assert!(values.iter().all(|&v| v == 0.0 || (v - 15.0 / 0.75).abs() < 1e-4), "{values:?}");
        assert!(values.iter().any(|&v| v == 0.0) && values.iter().any(|&v| v > 0.0));
        assert_eq!(drop_path(&x, 0.25, false).unwrap(), x);
    }
}
