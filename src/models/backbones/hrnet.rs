//! `HRNet` (Sun et al., "High-Resolution Representations for Labeling Pixels
//! and Regions", <https://arxiv.org/abs/1904.04514>) as
//! `mmdet/models/backbones/hrnet.py`: a stem of two stride-2 3x3 convs, a
//! first stage of ResNet blocks (`layer1`), then stages 2 to 4 of HRModules
//! that run 2, 3 and 4 resolutions in parallel and fuse them at the end of
//! every module. Between stages a `transition{k}` adapts the branches'
//! channels and starts the new, half-resolution branch from the last one.
//!
//! Names as MMDetection's: `conv1`, `bn1`, `conv2`, `bn2`, `layer1.{j}.*`,
//! `transition{k}.{i}.{0,1}` (a channel change) or `transition{k}.{i}.{m}.{0,1}`
//! (a new branch), `stage{s}.{m}.branches.{b}.{j}.*` (ResNet blocks) and
//! `stage{s}.{m}.fuse_layers.{i}.{j}.*`.
//!
//! Shape shorthand: `N` images, `H, W` input height and width; branch `b` of
//! a stage has stride `4 * 2^b`.

use detc::registry::models::backbones::{HRNetBlock, HRNetConfig, HRNetStageConfig};
use detc::registry::models::weight_init::PretrainedInitConfig;
use tch::nn;
use tch::Tensor;

use super::resnet::{pretrained_init, Block, StageSpec};
use crate::models::layers::{kaiming_normal_fan_out, Conv2d, ConvGeom, ConvKind, ModelError, ModelResult, Norm, NormSpec};

const NAME: &str = "HRNet";

/// A conv and its norm, with or without a ReLU after (an `nn.Sequential`
/// of conv `0`, norm `1`).
#[derive(Debug)]
struct ConvNorm {
    conv: Conv2d,
    norm: Norm,
    relu: bool,
}

impl ConvNorm {
    #[allow(clippy::too_many_arguments)]
    fn new(p: &nn::Path, cin: i64, cout: i64, geom: ConvGeom, relu: bool, norm: &NormSpec, conv: ConvKind) -> ModelResult<Self> {
        let dims = [cout, cin, geom.kernel, geom.kernel];
        let c = Conv2d::new(&(p / 0), cin, cout, geom, false, kaiming_normal_fan_out(&dims), true)?.with_kind(conv);
        Ok(ConvNorm { conv: c, norm: Norm::new(&(p / 1), cout, norm, true)?, relu })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let y = self.norm.forward_t(&self.conv.forward(x)?, train)?;
        Ok(if self.relu { y.f_relu()? } else { y })
    }
}

/// A chain of [`ConvNorm`]s (a transition or a fuse path), run in order.
#[derive(Debug)]
struct Chain(Vec<ConvNorm>);

impl Chain {
    fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let mut y = x.shallow_clone();
        for link in &self.0 {
            y = link.forward_t(&y, train)?;
        }
        Ok(y)
    }
}

/// How branch `j` reaches output `i` in a fusion.
#[derive(Debug)]
enum Fuse {
    /// `i == j`: as it is.
    Identity,
    /// `j > i` (coarser): 1x1 conv + norm, then nearest upsampling by `2^(j-i)`.
    Up { conv: ConvNorm, factor: i64 },
    /// `j < i` (finer): `i - j` stride-2 3x3 convs.
    Down(Chain),
}

/// One HRModule: the branches' blocks, then the fusion into each output.
#[derive(Debug)]
struct HRModule {
    branches: Vec<Vec<Block>>,
    /// `fuse[i][j]`; empty for a single branch.
    fuse: Vec<Vec<Fuse>>,
}

/// What every HRModule is built from.
struct Ctx<'a> {
    norm: &'a NormSpec,
    conv: ConvKind,
}

impl Ctx<'_> {
    fn spec(&self) -> StageSpec<'_> {
        StageSpec::plain(self.norm, self.conv)
    }

    fn conv_norm(&self, p: &nn::Path, cin: i64, cout: i64, geom: ConvGeom, relu: bool) -> ModelResult<ConvNorm> {
        ConvNorm::new(p, cin, cout, geom, relu, self.norm, self.conv)
    }
}

fn expansion(block: HRNetBlock) -> i64 {
    match block {
        HRNetBlock::Basic => 1,
        HRNetBlock::Bottleneck => 4,
    }
}

/// `num_blocks` blocks of `planes` from `inplanes` channels (the first with
/// a downsample when the channels change), under `p / j`.
fn blocks(p: &nn::Path, block: HRNetBlock, inplanes: i64, planes: i64, num_blocks: u32, ctx: &Ctx) -> ModelResult<Vec<Block>> {
    let bottleneck = block == HRNetBlock::Bottleneck;
    let out = planes * expansion(block);
    (0..num_blocks as i64)
        .map(|j| Block::new(&(p / j), bottleneck, if j == 0 { inplanes } else { out }, planes, 1, 1, false, j == 0, &ctx.spec()))
        .collect()
}

impl HRModule {
    /// `in_channels` per branch (updated to the blocks' outputs);
    /// `multiscale`: fuse into every branch, or only into the first.
    fn new(p: &nn::Path, cfg: &HRNetStageConfig, in_channels: &mut [i64], multiscale: bool, ctx: &Ctx) -> ModelResult<Self> {
        let nb = in_channels.len();
        let mut branches = Vec::with_capacity(nb);
        for b in 0..nb {
            let planes = cfg.num_channels[b] as i64;
            branches.push(blocks(&(p / "branches" / b), cfg.block, in_channels[b], planes, cfg.num_blocks[b], ctx)?);
            in_channels[b] = planes * expansion(cfg.block);
        }
        let mut fuse = Vec::new();
        if nb > 1 {
            let outs = if multiscale { nb } else { 1 };
            for i in 0..outs {
                let fp = p / "fuse_layers" / i;
                let mut row = Vec::with_capacity(nb);
                for j in 0..nb {
                    let jp = &fp / j;
                    row.push(if j > i {
                        let conv = ctx.conv_norm(&jp, in_channels[j], in_channels[i], ConvGeom::k(1), false)?;
                        Fuse::Up { conv, factor: 1 << (j - i) }
                    } else if j == i {
                        Fuse::Identity
                    } else {
                        let steps = i - j;
                        let chain = (0..steps)
                            .map(|k| {
                                let last = k == steps - 1;
                                let cout = if last { in_channels[i] } else { in_channels[j] };
                                ctx.conv_norm(&(&jp / k), in_channels[j], cout, ConvGeom::k(3).stride(2).padding(1), !last)
                            })
                            .collect::<ModelResult<Vec<_>>>()?;
                        Fuse::Down(Chain(chain))
                    });
                }
                fuse.push(row);
            }
        }
        Ok(HRModule { branches, fuse })
    }

    fn forward_t(&self, xs: Vec<Tensor>, train: bool) -> ModelResult<Vec<Tensor>> {
        let mut ys = Vec::with_capacity(xs.len());
        for (x, blocks) in xs.iter().zip(&self.branches) {
            let mut y = x.shallow_clone();
            for block in blocks {
                y = block.forward_t(&y, train)?;
            }
            ys.push(y);
        }
        if self.fuse.is_empty() {
            return Ok(ys);
        }
        let mut out = Vec::with_capacity(self.fuse.len());
        for row in &self.fuse {
            let mut sum: Option<Tensor> = None;
            for (y, f) in ys.iter().zip(row) {
                let term = match f {
                    Fuse::Identity => y.shallow_clone(),
                    Fuse::Up { conv, factor } => {
                        let z = conv.forward_t(y, train)?;
                        let (h, w) = (z.size()[2], z.size()[3]);
                        let s = *factor as f64;
                        z.f_upsample_nearest2d([h * factor, w * factor], Some(s), Some(s))?
                    }
                    Fuse::Down(chain) => chain.forward_t(y, train)?,
                };
                sum = Some(match sum {
                    Some(acc) => acc.f_add(&term)?,
                    None => term,
                });
            }
            out.push(sum.expect("at least one branch").f_relu()?);
        }
        Ok(out)
    }
}

/// `transition{k}`: for each branch of the next stage, a 3x3 conv where the
/// channels change (none where they do not), or for a new branch stride-2
/// 3x3 convs from the last branch of the previous stage.
fn transition(p: &nn::Path, pre: &[i64], cur: &[i64], ctx: &Ctx) -> ModelResult<Vec<Option<Chain>>> {
    let mut layers = Vec::with_capacity(cur.len());
    for (i, &c) in cur.iter().enumerate() {
        let ip = p / i;
        layers.push(if i < pre.len() {
            (c != pre[i]).then(|| ctx.conv_norm(&ip, pre[i], c, ConvGeom::k(3).padding(1), true).map(|l| Chain(vec![l]))).transpose()?
        } else {
            let last = *pre.last().expect("a previous branch");
            let steps = i + 1 - pre.len();
            let chain = (0..steps)
                .map(|j| {
                    let cout = if j == steps - 1 { c } else { last };
                    ctx.conv_norm(&(&ip / j), last, cout, ConvGeom::k(3).stride(2).padding(1), true)
                })
                .collect::<ModelResult<Vec<_>>>()?;
            Some(Chain(chain))
        });
    }
    Ok(layers)
}

/// mmdet's `HRNet`.
#[derive(Debug)]
pub struct HRNet {
    stem: [(Conv2d, Norm); 2],
    layer1: Vec<Block>,
    /// `transition1..3`, each followed by `stage2..4`.
    stages: Vec<(Vec<Option<Chain>>, Vec<HRModule>)>,
    norm_eval: bool,
    scope: String,
    pretrained: Option<PretrainedInitConfig>,
    /// Channels of each returned branch.
    pub out_channels: Vec<i64>,
}

impl HRNet {
    /// Builds the layers under `p` (e.g. `root / "backbone"`), initialised as
    /// MMDetection's default `init_cfg` (Kaiming fan-out convs, norms 1); a
    /// `Pretrained` `init_cfg` is loaded by [`HRNet::init_weights`].
    pub fn new(cfg: &HRNetConfig, p: nn::Path) -> ModelResult<Self> {
        if cfg.with_cp {
            return Err(ModelError::new(NAME, "with_cp is not supported yet (set it to false)"));
        }
        if cfg.init_cfg.is_some() && cfg.pretrained.is_some() {
            return Err(ModelError::new(NAME, "init_cfg and pretrained cannot be specified at the same time"));
        }
        let e = &cfg.extra;
        let stage_cfgs = [&e.stage1, &e.stage2, &e.stage3, &e.stage4];
        for (i, s) in stage_cfgs.iter().enumerate() {
            let n = s.num_branches as usize;
            if s.num_blocks.len() != n || s.num_channels.len() != n {
                return Err(ModelError::new(NAME, format!("stage{}: num_blocks and num_channels need num_branches ({n}) entries", i + 1)));
            }
        }
        let norm = NormSpec::from_backbone_cfg(&cfg.norm_cfg, NAME)?;
        let conv = ConvKind::from_cfg(cfg.conv_cfg.as_ref(), NAME)?;
        let pretrained = pretrained_init(cfg.pretrained.as_ref(), cfg.init_cfg.as_ref(), NAME)?;
        let ctx = Ctx { norm: &norm, conv };
        let stem_conv = |name: &str, cin: i64| {
            let dims = [64, cin, 3, 3];
            Conv2d::new(&(&p / name), cin, 64, ConvGeom::k(3).stride(2).padding(1), false, kaiming_normal_fan_out(&dims), true)
                .map(|c| c.with_kind(conv))
        };
        let stem = [
            (stem_conv("conv1", cfg.in_channels as i64)?, Norm::new(&(&p / format!("{}1", norm.abbr())), 64, &norm, true)?),
            (stem_conv("conv2", 64)?, Norm::new(&(&p / format!("{}2", norm.abbr())), 64, &norm, true)?),
        ];
        let s1 = &e.stage1;
        let layer1 = blocks(&(&p / "layer1"), s1.block, 64, s1.num_channels[0] as i64, s1.num_blocks[0], &ctx)?;
        let mut pre = vec![s1.num_channels[0] as i64 * expansion(s1.block)];
        let mut stages = Vec::with_capacity(3);
        for (k, s) in stage_cfgs.iter().enumerate().skip(1) {
            let mut channels: Vec<i64> = s.num_channels.iter().map(|&c| c as i64 * expansion(s.block)).collect();
            let trans = transition(&(&p / format!("transition{k}")), &pre, &channels, &ctx)?;
            let modules = (0..s.num_modules)
                .map(|m| {
                    let multiscale = cfg.multiscale_output || k < 3 || m + 1 < s.num_modules;
                    HRModule::new(&(&p / format!("stage{}", k + 1) / m), s, &mut channels, multiscale, &ctx)
                })
                .collect::<ModelResult<Vec<_>>>()?;
            pre = channels;
            stages.push((trans, modules));
        }
        let out_channels = if cfg.multiscale_output { pre } else { vec![pre[0]] };
        Ok(HRNet {
            stem,
            layer1,
            stages,
            norm_eval: cfg.norm_eval,
            scope: p.components().collect::<Vec<_>>().join("."),
            pretrained,
            out_channels,
        })
    }

    /// Loads the `Pretrained` `init_cfg` (if any) under this backbone's scope.
    pub fn init_weights(&self, vs: &nn::VarStore) -> ModelResult<Option<detc::checkpoint::KeyReport>> {
        match &self.pretrained {
            Some(pt) => crate::models::weights::load_pretrained(vs, &self.scope, &pt.checkpoint, pt.prefix.as_deref()).map(Some),
            None => Ok(None),
        }
    }

    /// x: (N, 3, H, W) -> the last stage's branches, (N, out_channels[b],
    /// H / (4 * 2^b), W / (4 * 2^b)). With `norm_eval` the batch norms use
    /// their running statistics in training too.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Vec<Tensor>> {
        let bn_train = train && !self.norm_eval;
        let mut y = x.shallow_clone();
        for (conv, norm) in &self.stem {
            y = norm.forward_t(&conv.forward(&y)?, bn_train)?.f_relu()?;
        }
        for block in &self.layer1 {
            y = block.forward_t(&y, bn_train)?;
        }
        let mut ys = vec![y];
        for (trans, modules) in &self.stages {
            // MMDetection feeds every transition conv the previous stage's
            // last branch (the configs only have them on new branches).
            let last = ys.last().expect("a branch");
            let mut xs = Vec::with_capacity(trans.len());
            for (i, t) in trans.iter().enumerate() {
                xs.push(match t {
                    Some(chain) => chain.forward_t(last, bn_train)?,
                    None => ys[i].shallow_clone(),
                });
            }
            for module in modules {
                xs = module.forward_t(xs, bn_train)?;
            }
            ys = xs;
        }
        Ok(ys)
    }
}
