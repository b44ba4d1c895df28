//! `ResNet` (He et al., "Deep Residual Learning for Image Recognition",
//! <https://arxiv.org/abs/1512.03385>) as `mmdet/models/backbones/resnet.py`:
//! same state-dict names (`conv1`, `bn1`, `layer{i}.{j}.conv1`, `...downsample.0/1`,
//! which are also torchvision's; `gn1`... with a `GN` `norm_cfg`), frozen
//! stages, `norm_eval`, `conv_cfg: ConvWS`, and the default initialisation
//! (Kaiming fan-out convs, norms 1, zero-init of each block's last norm).
//!
//! Shape shorthand: `N` images, `C` channels, `H, W` input height and width.
//! Outputs of stage `i` have stride `4 * 2^i` (default strides).

use detc::registry::models::backbones::{
    PluginPosition, RegNetArch, RegNetArchCfg, RegNetConfig, Res2NetConfig, ResNeStConfig, ResNeXtConfig, ResNetConfig, ResNetStyle,
};
use detc::registry::models::common::OneOrMany;
use detc::registry::models::weight_init::PretrainedInitConfig;
use detc::registry::refs::{ConvCfg, InitCfg};
use tch::nn;
use tch::Tensor;

use super::plugins::{stage_plugins, BlockPlugin, PluginSpec};
use super::res2net::{Res2Scales, Res2Spec};
use super::resnest::{SplitAttentionConv2d, SplitSpec};
use crate::models::layers::deform_conv::{DeformConv2d, DeformInit, DeformSpec};
use crate::models::layers::{
    kaiming_normal_fan_out, Conv2d, ConvGeom, ConvKind, ModelError, ModelResult, Norm, NormSpec,
};

const NAME: &str = "ResNet";

/// Block type and blocks per stage of each depth (mmdet `arch_settings`).
fn arch(depth: u32) -> Option<(bool, [usize; 4])> {
    match depth {
        18 => Some((false, [2, 2, 2, 2])),
        34 => Some((false, [3, 4, 6, 3])),
        50 => Some((true, [3, 4, 6, 3])),
        101 => Some((true, [3, 4, 23, 3])),
        152 => Some((true, [3, 8, 36, 3])),
        _ => None,
    }
}

/// How a stage is built: shared by all blocks of the stage.
pub(super) struct StageSpec<'a> {
    pub norm: &'a NormSpec,
    pub conv: ConvKind,
    /// Output channels of a bottleneck over its `planes`: 4 (ResNet), 1 (RegNet).
    pub expansion: i64,
    pub trainable: bool,
    pub zero_init_last: bool,
    pub style: ResNetStyle,
    pub cardinality: Cardinality,
    /// `dcn` in this stage: the bottlenecks' 3x3 conv is deformable.
    pub dcn: Option<(DeformSpec, DeformInit)>,
    /// ResNeSt: the bottlenecks' 3x3 conv is a split-attention conv.
    pub split: Option<SplitSpec>,
    /// Res2Net: the bottlenecks' 3x3 conv is a multi-scale group of convs.
    pub res2: Option<Res2Spec>,
    /// `plugins` inserted into this stage's bottlenecks.
    pub plugins: &'a [PluginSpec],
    /// No checkpoint: the backbone's own Kaiming `init_cfg` initialises
    /// every conv, the plugins' too.
    pub scratch: bool,
}

impl<'a> StageSpec<'a> {
    /// ResNet's plain blocks (4x bottlenecks, no groups, no dcn), trainable,
    /// without zero-init: what HRNet builds its branches from.
    pub fn plain(norm: &'a NormSpec, conv: ConvKind) -> Self {
        StageSpec {
            norm,
            conv,
            expansion: 4,
            trainable: true,
            zero_init_last: false,
            style: ResNetStyle::Pytorch,
            cardinality: Cardinality { groups: 1, base_width: 64, base_channels: 64 },
            dcn: None,
            split: None,
            res2: None,
            plugins: &[],
            scratch: true,
        }
    }
}

/// ResNeXt's grouped bottlenecks (`groups: 1` is ResNet's).
#[derive(Debug, Clone, Copy)]
pub(super) struct Cardinality {
    groups: i64,
    base_width: i64,
    base_channels: i64,
}

impl Cardinality {
    /// Channels of a bottleneck's 3x3 conv for `planes`: mmdet's ResNeXt
    /// `math.floor(planes * (base_width / base_channels)) * groups`.
    fn width(&self, planes: i64) -> i64 {
        if self.groups == 1 {
            return planes;
        }
        (planes as f64 * (self.base_width as f64 / self.base_channels as f64)).floor() as i64 * self.groups
    }
}

/// `downsample`: (AvgPool when `avg_down`,) 1x1 conv, BN.
#[derive(Debug)]
struct Downsample {
    avg_pool: Option<i64>,
    conv: Conv2d,
    norm: Norm,
}

impl Downsample {
    fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let x = match self.avg_pool {
            // nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
            Some(s) => x.f_avg_pool2d([s, s], [s, s], [0, 0], true, false, None::<i64>)?,
            None => x.shallow_clone(),
        };
        self.norm.forward_t(&self.conv.forward(&x)?, train)
    }
}

/// A block's conv: plain, or a bottleneck's deformable 3x3 (`dcn`) or
/// split-attention 3x3 (ResNeSt, with its own norms).
#[derive(Debug)]
enum BlockConv {
    Plain(Conv2d),
    Deform(DeformConv2d),
    Split(SplitAttentionConv2d),
    Res2(Res2Scales),
}

impl BlockConv {
    fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        match self {
            BlockConv::Plain(conv) => conv.forward(x),
            BlockConv::Deform(conv) => conv.forward(x),
            BlockConv::Split(conv) => conv.forward_t(x, train),
            BlockConv::Res2(conv) => conv.forward_t(x, train),
        }
    }
}

/// A residual block: `BasicBlock` (conv1 3x3, conv2 3x3) or `Bottleneck`
/// (conv1 1x1, conv2 3x3, conv3 1x1 with 4x channels).
#[derive(Debug)]
pub(super) struct Block {
    /// Each conv with its norm (and a ReLU but after the last); ResNeSt's
    /// split-attention conv and Res2Net's scales have neither after them.
    convs: Vec<(BlockConv, Option<Norm>)>,
    /// ResNeSt's `avd_layer`: a 3x3 average pool of this stride after conv2.
    avd: Option<i64>,
    /// `plugins` run after each conv (with its norm and ReLU), one list per conv.
    plugins: Vec<Vec<BlockPlugin>>,
    downsample: Option<Downsample>,
}

impl Block {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        p: &nn::Path,
        bottleneck: bool,
        inplanes: i64,
        planes: i64,
        stride: i64,
        dilation: i64,
        avg_down: bool,
        first: bool,
        s: &StageSpec,
    ) -> ModelResult<Self> {
        let exp = if bottleneck { s.expansion } else { 1 };
        let geoms: Vec<(i64, i64, ConvGeom)> = if bottleneck {
            let (s1, s2) = if s.style == ResNetStyle::Pytorch {
                (1, stride)
            } else {
                (stride, 1)
            };
            // Res2Net: `scales` groups of floor(planes * base_width / base_channels).
            let width = match s.res2 {
                Some(r) => (planes as f64 * (r.base_width as f64 / s.cardinality.base_channels as f64)).floor() as i64 * r.scales,
                None => s.cardinality.width(planes),
            };
            vec![
                (inplanes, width, ConvGeom::k(1).stride(s1)),
                (
                    width,
                    width,
                    ConvGeom::k(3)
                        .stride(s2)
                        .padding(dilation)
                        .dilation(dilation)
                        .groups(s.cardinality.groups),
                ),
                (width, planes * exp, ConvGeom::k(1)),
            ]
        } else {
            vec![
                (
                    inplanes,
                    planes,
                    ConvGeom::k(3)
                        .stride(stride)
                        .padding(dilation)
                        .dilation(dilation),
                ),
                (planes, planes, ConvGeom::k(3).padding(1)),
            ]
        };
        let last = geoms.len() - 1;
        let convs_out: Vec<i64> = geoms.iter().map(|&(_, cout, _)| cout).collect();
        let mut convs = Vec::with_capacity(geoms.len());
        let mut avd = None;
        for (i, (cin, cout, g)) in geoms.into_iter().enumerate() {
            let dims = [cout, cin, g.kernel, g.kernel];
            let cp = p / format!("conv{}", i + 1);
            if let (Some(r), true, 1) = (s.res2, bottleneck, i) {
                let scales = Res2Scales::new(p, cin / r.scales, r, g.stride, dilation, first, s.norm, s.conv, s.trainable)?;
                convs.push((BlockConv::Res2(scales), None));
                continue;
            }
            let conv = match (s.dcn, s.split) {
                (Some((spec, init)), _) if bottleneck && i == 1 => {
                    BlockConv::Deform(DeformConv2d::new(&cp, cin, cout, g, false, spec, init, s.trainable)?)
                }
                (_, Some(split)) if bottleneck && i == 1 => {
                    // With `avg_down_stride` the stride moves to the pool after the conv.
                    let pooled = split.avg_down_stride && g.stride > 1;
                    avd = pooled.then_some(g.stride);
                    let g = if pooled { g.stride(1) } else { g };
                    convs.push((BlockConv::Split(SplitAttentionConv2d::new(&cp, cin, cout, g, split, s.norm, s.trainable)?), None));
                    continue;
                }
                _ => BlockConv::Plain(
                    Conv2d::new(&cp, cin, cout, g, false, kaiming_normal_fan_out(&dims), s.trainable)?.with_kind(s.conv),
                ),
            };
            let w = if i == last && s.zero_init_last {
                0.0
            } else {
                1.0
            };
            let norm = Norm::with_weight(
                &(p / format!("{}{}", s.norm.abbr(), i + 1)),
                cout,
                s.norm,
                s.trainable,
                w,
            )?;
            convs.push((conv, Some(norm)));
        }
        let plugins = Self::plugins(p, bottleneck, &convs_out, s)?;
        let downsample = if stride != 1 || inplanes != planes * exp {
            let d = p / "downsample";
            let (avg_pool, conv_stride, at) = if avg_down {
                (Some(stride), 1, 1)
            } else {
                (None, stride, 0)
            };
            let dims = [planes * exp, inplanes, 1, 1];
            let conv = Conv2d::new(
                &(&d / at),
                inplanes,
                planes * exp,
                ConvGeom::k(1).stride(conv_stride),
                false,
                kaiming_normal_fan_out(&dims),
                s.trainable,
            )?
            .with_kind(s.conv);
            let norm = Norm::new(&(&d / (at + 1)), planes * exp, s.norm, s.trainable)?;
            Some(Downsample {
                avg_pool: if avg_down && stride != 1 {
                    avg_pool
                } else {
                    None
                },
                conv,
                norm,
            })
        } else {
            None
        };
        Ok(Block { convs, avd, plugins, downsample })
    }

    /// The stage's plugins of each conv position, built for the channels
    /// `convs_out` of the conv they follow.
    fn plugins(p: &nn::Path, bottleneck: bool, convs_out: &[i64], s: &StageSpec) -> ModelResult<Vec<Vec<BlockPlugin>>> {
        if !bottleneck && !s.plugins.is_empty() {
            return Err(ModelError::new(NAME, "plugins need bottleneck blocks (depth 50, 101 or 152)"));
        }
        let position = |spec: &PluginSpec| match spec.position {
            PluginPosition::AfterConv1 => 0,
            PluginPosition::AfterConv2 => 1,
            PluginPosition::AfterConv3 => 2,
        };
        let mut plugins: Vec<Vec<BlockPlugin>> = convs_out.iter().map(|_| Vec::new()).collect();
        // MMDetection builds all after_conv1 plugins, then after_conv2, then after_conv3.
        for at in 0..convs_out.len() {
            for spec in s.plugins.iter().filter(|spec| position(spec) == at) {
                plugins[at].push(BlockPlugin::new(p, spec, convs_out[at], s.scratch, s.trainable)?);
            }
        }
        Ok(plugins)
    }

    /// x: (N, Cin, H, W) -> (N, Cout, H/stride, W/stride).
    pub(super) fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let mut y = x.shallow_clone();
        let last = self.convs.len() - 1;
        for (i, ((conv, norm), plugins)) in self.convs.iter().zip(&self.plugins).enumerate() {
            y = conv.forward_t(&y, train)?;
            match norm {
                Some(norm) => {
                    y = norm.forward_t(&y, train)?;
                    if i != last {
                        y = y.f_relu()?;
                    }
                }
                None => {
                    if let Some(s) = self.avd {
                        // nn.AvgPool2d(3, s, padding=1)
                        y = y.f_avg_pool2d([3, 3], [s, s], [1, 1], false, true, None::<i64>)?;
                    }
                }
            }
            for plugin in plugins {
                y = plugin.forward(&y)?;
            }
        }
        let identity = match &self.downsample {
            Some(d) => d.forward_t(x, train)?,
            None => x.shallow_clone(),
        };
        Ok(y.f_add(&identity)?.f_relu()?)
    }
}

/// A stage of residual blocks (`layer{i}.{j}`), the first with the stage's
/// stride and the downsample.
#[derive(Debug)]
pub struct ResStage {
    blocks: Vec<Block>,
}

impl ResStage {
    #[allow(clippy::too_many_arguments)]
    fn new(
        p: &nn::Path,
        bottleneck: bool,
        num_blocks: usize,
        inplanes: i64,
        planes: i64,
        stride: i64,
        dilation: i64,
        avg_down: bool,
        spec: &StageSpec,
    ) -> ModelResult<Self> {
        let exp = if bottleneck { spec.expansion } else { 1 };
        let mut blocks = Vec::with_capacity(num_blocks);
        for j in 0..num_blocks {
            let (cin, s) = if j == 0 { (inplanes, stride) } else { (planes * exp, 1) };
            blocks.push(Block::new(&(p / j), bottleneck, cin, planes, s, dilation, avg_down, j == 0, spec)?);
        }
        Ok(ResStage { blocks })
    }

    /// MMDetection's `ResLayer` shared head: stage `stage` (0-based) of a
    /// ResNet-`depth` under `p` (`layer{stage + 1}`), from `64 * 2^(stage - 1)
    /// * 4` channels to `64 * 2^stage * 4`, with `stride` and `dilation`;
    ///   initialised as ResNet's blocks without zero-init. Returns the stage
    ///   and its output channels.
    pub fn res_layer(
        p: &nn::Path,
        depth: u32,
        stage: usize,
        stride: i64,
        dilation: i64,
        style: ResNetStyle,
        norm: &NormSpec,
    ) -> ModelResult<(Self, i64)> {
        let (bottleneck, blocks) = arch(depth)
            .filter(|(bottleneck, _)| *bottleneck)
            .ok_or_else(|| ModelError::new("ResLayer", format!("invalid depth {depth} (50, 101 or 152)")))?;
        if !(1..=3).contains(&stage) {
            return Err(ModelError::new("ResLayer", format!("stage {stage} must be 1, 2 or 3")));
        }
        let planes = 64 << stage;
        let spec = StageSpec { style, ..StageSpec::plain(norm, ConvKind::Plain) };
        let p = p / format!("layer{}", stage + 1);
        let layer = ResStage::new(&p, bottleneck, blocks[stage], (planes / 2) * 4, planes, stride, dilation, false, &spec)?;
        Ok((layer, planes * 4))
    }

    /// x: (N, Cin, H, W) -> (N, Cout, H/stride, W/stride); `train` switches the batch norms.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let mut y = x.shallow_clone();
        for block in &self.blocks {
            y = block.forward_t(&y, train)?;
        }
        Ok(y)
    }
}

/// Which stem a backbone has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StemLayout {
    /// One 7x7 stride-2 conv, then the max pool (ResNet).
    Conv7,
    /// Three 3x3 convs, then the max pool (`deep_stem`).
    Deep,
    /// One 3x3 stride-2 conv, no pool (RegNet).
    Conv3,
}

/// The stem: one 7x7 conv (`conv1`, `bn1`/`gn1`) or, with `deep_stem`, three 3x3
/// convs (`stem.0/1`, `stem.3/4`, `stem.6/7`); then a 3x3 stride-2 max pool.
/// RegNet's is one 3x3 stride-2 conv without the pool.
#[derive(Debug)]
struct Stem {
    convs: Vec<(Conv2d, Norm)>,
    max_pool: bool,
}

impl Stem {
    fn new(
        p: &nn::Path,
        in_c: i64,
        stem_c: i64,
        layout: StemLayout,
        norm: &NormSpec,
        conv_kind: ConvKind,
        trainable: bool,
    ) -> ModelResult<Self> {
        let mut convs = Vec::new();
        let mut add = |conv_p: nn::Path,
                       bn_p: nn::Path,
                       cin: i64,
                       cout: i64,
                       g: ConvGeom|
         -> ModelResult<()> {
            let dims = [cout, cin, g.kernel, g.kernel];
            let conv = Conv2d::new(
                &conv_p,
                cin,
                cout,
                g,
                false,
                kaiming_normal_fan_out(&dims),
                trainable,
            )?
            .with_kind(conv_kind);
            convs.push((conv, Norm::new(&bn_p, cout, norm, trainable)?));
            Ok(())
        };
        if layout == StemLayout::Deep {
            let s = p / "stem";
            let half = stem_c / 2;
            add(
                &s / 0,
                &s / 1,
                in_c,
                half,
                ConvGeom::k(3).stride(2).padding(1),
            )?;
            add(&s / 3, &s / 4, half, half, ConvGeom::k(3).padding(1))?;
            add(&s / 6, &s / 7, half, stem_c, ConvGeom::k(3).padding(1))?;
        } else {
            add(
                p / "conv1",
                p / format!("{}1", norm.abbr()),
                in_c,
                stem_c,
                if layout == StemLayout::Conv3 { ConvGeom::k(3).stride(2).padding(1) } else { ConvGeom::k(7).stride(2).padding(3) },
            )?;
        }
        Ok(Stem { convs, max_pool: layout != StemLayout::Conv3 })
    }

    /// x: (N, Cin, H, W) -> (N, stem_c, H/4, W/4).
    fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let mut y = x.shallow_clone();
        for (conv, norm) in &self.convs {
            y = norm.forward_t(&conv.forward(&y)?, train)?.f_relu()?;
        }
        if !self.max_pool {
            return Ok(y);
        }
        Ok(y.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?)
    }
}

/// mmdet's `ResNet`: a stem and `num_stages` stages (`layer1`..`layer4`).
#[derive(Debug)]
pub struct ResNet {
    stem: Stem,
    stages: Vec<ResStage>,
    out_indices: Vec<usize>,
    frozen_stages: i64,
    norm_eval: bool,
    /// Channels of each returned feature map (`out_indices` order).
    pub out_channels: Vec<i64>,
    /// Stride of each returned feature map.
    pub out_strides: Vec<i64>,
    /// The `nn::Path` this backbone was built under (`backbone`).
    pub scope: String,
    pretrained: Option<PretrainedInitConfig>,
}

impl ResNet {
    /// Builds the layers under `p` (e.g. `root / "backbone"`). The default
    /// initialisation is applied here; a `Pretrained` `init_cfg` is loaded by
    /// [`ResNet::init_weights`].
    pub fn new(cfg: &ResNetConfig, p: nn::Path) -> ModelResult<Self> {
        let plain = Cardinality { groups: 1, base_width: 64, base_channels: cfg.base_channels as i64 };
        Self::build(cfg, plain, None, None, p)
    }

    /// `ResNeXt`: the same network with grouped bottlenecks and the same
    /// parameter names (`mmdet.models.backbones.ResNeXt`).
    pub fn resnext(cfg: &ResNeXtConfig, p: nn::Path) -> ModelResult<Self> {
        if !arch(cfg.resnet.depth).is_some_and(|(bottleneck, _)| bottleneck) {
            return Err(ModelError::new("ResNeXt", format!("invalid depth {} (50, 101 or 152)", cfg.resnet.depth)));
        }
        let grouped = Cardinality {
            groups: cfg.groups as i64,
            base_width: cfg.base_width as i64,
            base_channels: cfg.resnet.base_channels as i64,
        };
        // MMDetection's ResNet zero-inits `norm3` only for its own
        // `Bottleneck` class (`block is Bottleneck`), not ResNeXt's subclass.
        let resnet = ResNetConfig { zero_init_residual: false, ..cfg.resnet.clone() };
        Self::build(&resnet, grouped, None, None, p)
    }

    /// `ResNeSt`: ResNetV1d (the deep stem, average-pool shortcuts) with a
    /// split-attention 3x3 conv in every bottleneck
    /// (`mmdet.models.backbones.ResNeSt`).
    pub fn resnest(cfg: &ResNeStConfig, p: nn::Path) -> ModelResult<Self> {
        if !arch(cfg.resnet.depth).is_some_and(|(bottleneck, _)| bottleneck) {
            return Err(ModelError::new("ResNeSt", format!("invalid depth {} (50, 101 or 152)", cfg.resnet.depth)));
        }
        if cfg.resnet.dcn.is_some() {
            return Err(ModelError::new("ResNeSt", "dcn is not supported with split attention yet"));
        }
        if cfg.resnet.plugins.is_some() {
            return Err(ModelError::new("ResNeSt", "plugins are not supported with split attention yet"));
        }
        let cardinality = Cardinality {
            groups: cfg.groups as i64,
            base_width: cfg.base_width as i64,
            base_channels: cfg.resnet.base_channels as i64,
        };
        let split = SplitSpec {
            radix: cfg.radix as i64,
            reduction_factor: cfg.reduction_factor as i64,
            avg_down_stride: cfg.avg_down_stride,
        };
        // MMDetection's ResNet zero-inits `norm3` only for its own `Bottleneck`
        // class (`block is Bottleneck`), not ResNeSt's subclass.
        let v1d = ResNetConfig { deep_stem: true, avg_down: true, zero_init_residual: false, ..cfg.resnet.clone() };
        Self::build(&v1d, cardinality, Some(split), None, p)
    }

    /// `Res2Net`: ResNetV1d (the deep stem, average-pool shortcuts) whose
    /// bottlenecks split their 3x3 stage into `scales` hierarchical groups
    /// (`mmdet.models.backbones.Res2Net`).
    pub fn res2net(cfg: &Res2NetConfig, p: nn::Path) -> ModelResult<Self> {
        if !arch(cfg.resnet.depth).is_some_and(|(bottleneck, _)| bottleneck) {
            return Err(ModelError::new("Res2Net", format!("invalid depth {} (50, 101 or 152)", cfg.resnet.depth)));
        }
        if cfg.scales < 2 {
            return Err(ModelError::new("Res2Net", "scales must be at least 2 (Res2Net degenerates to ResNet at 1)"));
        }
        if cfg.resnet.dcn.is_some() {
            return Err(ModelError::new("Res2Net", "dcn is not supported in Res2Net's scales yet"));
        }
        if cfg.resnet.plugins.is_some() {
            return Err(ModelError::new("Res2Net", "plugins are not supported in Res2Net's blocks yet"));
        }
        let plain = Cardinality { groups: 1, base_width: 64, base_channels: cfg.resnet.base_channels as i64 };
        let res2 = Res2Spec { scales: cfg.scales as i64, base_width: cfg.base_width as i64 };
        // MMDetection's Res2Net fixes these, and its ResNet zero-inits
        // `norm3` only for its own `Bottleneck` class, not `Bottle2neck`.
        let v1d = ResNetConfig {
            deep_stem: true,
            avg_down: true,
            style: ResNetStyle::Pytorch,
            zero_init_residual: false,
            ..cfg.resnet.clone()
        };
        Self::build(&v1d, plain, None, Some(res2), p)
    }

    fn build(
        cfg: &ResNetConfig,
        cardinality: Cardinality,
        split: Option<SplitSpec>,
        res2: Option<Res2Spec>,
        p: nn::Path,
    ) -> ModelResult<Self> {
        let (bottleneck, blocks) = arch(cfg.depth).ok_or_else(|| {
            ModelError::new(
                NAME,
                format!("invalid depth {} (18, 34, 50, 101 or 152)", cfg.depth),
            )
        })?;
        check_supported(cfg)?;
        let n = cfg.num_stages as usize;
        let norm = NormSpec::from_backbone_cfg(&cfg.norm_cfg, NAME)?;
        let conv = ConvKind::from_cfg(cfg.conv_cfg.as_ref(), NAME)?;
        let pretrained = pretrained_init(cfg.pretrained.as_ref(), cfg.init_cfg.as_ref(), NAME)?;
        let dcn = stage_dcn(cfg.dcn.as_ref(), &cfg.stage_with_dcn, n, conv, pretrained.is_some(), NAME)?;
        let plugins = stage_plugins(cfg.plugins.as_ref(), n, NAME)?;
        if dcn.iter().any(Option::is_some) && !bottleneck {
            return Err(ModelError::new(NAME, "dcn needs bottleneck blocks (depth 50, 101 or 152)"));
        }
        let stem_c = cfg.stem_channels.unwrap_or(cfg.base_channels) as i64;
        let stem = Stem::new(
            &p,
            cfg.in_channels as i64,
            stem_c,
            if cfg.deep_stem { StemLayout::Deep } else { StemLayout::Conv7 },
            &norm,
            conv,
            cfg.frozen_stages < 0,
        )?;
        let exp = if bottleneck { 4 } else { 1 };
        let (mut inplanes, mut stride_acc) = (stem_c, 4);
        let mut stages = Vec::with_capacity(n);
        for (i, &num_blocks) in blocks.iter().take(n).enumerate() {
            let planes = cfg.base_channels as i64 * (1 << i);
            let (stride, dilation) = (cfg.strides[i] as i64, cfg.dilations[i] as i64);
            let spec = StageSpec {
                norm: &norm,
                conv,
                expansion: 4,
                trainable: (i as i64 + 1) > cfg.frozen_stages,
                zero_init_last: cfg.zero_init_residual && pretrained.is_none(),
                style: cfg.style,
                cardinality,
                dcn: dcn[i],
                split,
                res2,
                plugins: &plugins[i],
                scratch: pretrained.is_none(),
            };
            let lp = &p / format!("layer{}", i + 1);
            let stage = ResStage::new(&lp, bottleneck, num_blocks, inplanes, planes, stride, dilation, cfg.avg_down, &spec)?;
            inplanes = planes * exp;
            stride_acc *= stride;
            stages.push((stage, inplanes, stride_acc));
        }
        Ok(Self::assemble(stem, stages, &cfg.out_indices, cfg.frozen_stages, cfg.norm_eval, &p, pretrained))
    }

    /// `RegNet`: a 3x3 stride-2 stem without pool, then the stages of the
    /// `arch` design: grouped bottlenecks without expansion (`groups =
    /// width / group_w`), under ResNet's names (`mmdet.models.backbones.RegNet`).
    pub fn regnet(cfg: &RegNetConfig, p: nn::Path) -> ModelResult<Self> {
        const NAME: &str = "RegNet";
        let design = regnet_design(&cfg.arch)?;
        let n = design.len();
        if cfg.strides.len() != n || cfg.dilations.len() != n {
            return Err(ModelError::new(NAME, format!("the design has {n} stages: strides and dilations need as many")));
        }
        if let Some(&bad) = cfg.out_indices.iter().find(|&&i| i as usize >= n) {
            return Err(ModelError::new(NAME, format!("out_indices entry {bad} is not below the {n} stages")));
        }
        if cfg.with_cp {
            return Err(ModelError::new(NAME, "with_cp is not supported yet (set it to false)"));
        }
        if cfg.init_cfg.is_some() && cfg.pretrained.is_some() {
            return Err(ModelError::new(NAME, "init_cfg and pretrained cannot be specified at the same time"));
        }
        let norm = NormSpec::from_backbone_cfg(&cfg.norm_cfg, NAME)?;
        let conv = ConvKind::from_cfg(cfg.conv_cfg.as_ref(), NAME)?;
        let pretrained = pretrained_init(cfg.pretrained.as_ref(), cfg.init_cfg.as_ref(), NAME)?;
        let dcn = stage_dcn(cfg.dcn.as_ref(), &cfg.stage_with_dcn, n, conv, pretrained.is_some(), NAME)?;
        let plugins = stage_plugins(cfg.plugins.as_ref(), n, NAME)?;
        let stem_c = cfg.stem_channels as i64;
        let stem = Stem::new(&p, cfg.in_channels as i64, stem_c, StemLayout::Conv3, &norm, conv, cfg.frozen_stages < 0)?;
        let (mut inplanes, mut stride_acc) = (stem_c, 2);
        let mut stages = Vec::with_capacity(n);
        for (i, stage) in design.iter().enumerate() {
            let (stride, dilation) = (cfg.strides[i] as i64, cfg.dilations[i] as i64);
            let spec = StageSpec {
                norm: &norm,
                conv,
                expansion: 1,
                trainable: (i as i64 + 1) > cfg.frozen_stages,
                zero_init_last: cfg.zero_init_residual && pretrained.is_none(),
                style: cfg.style,
                cardinality: Cardinality { groups: stage.groups, base_width: stage.group_width, base_channels: stage.width },
                dcn: dcn[i],
                split: None,
                res2: None,
                plugins: &plugins[i],
                scratch: pretrained.is_none(),
            };
            let lp = &p / format!("layer{}", i + 1);
            let layer = ResStage::new(&lp, true, stage.blocks, inplanes, stage.width, stride, dilation, cfg.avg_down, &spec)?;
            inplanes = stage.width;
            stride_acc *= stride;
            stages.push((layer, inplanes, stride_acc));
        }
        Ok(Self::assemble(stem, stages, &cfg.out_indices, cfg.frozen_stages, cfg.norm_eval, &p, pretrained))
    }

    /// The backbone under `p` from its stem and its stages, each with its
    /// output channels and total stride.
    fn assemble(
        stem: Stem,
        stages: Vec<(ResStage, i64, i64)>,
        out_indices: &[u32],
        frozen_stages: i64,
        norm_eval: bool,
        p: &nn::Path,
        pretrained: Option<PretrainedInitConfig>,
    ) -> Self {
        let out_indices: Vec<usize> = out_indices.iter().map(|&i| i as usize).collect();
        ResNet {
            out_channels: out_indices.iter().map(|&i| stages[i].1).collect(),
            out_strides: out_indices.iter().map(|&i| stages[i].2).collect(),
            stages: stages.into_iter().map(|(stage, _, _)| stage).collect(),
            stem,
            out_indices,
            frozen_stages,
            norm_eval,
            scope: p.components().collect::<Vec<_>>().join("."),
            pretrained,
        }
    }

    /// Loads the `Pretrained` `init_cfg` (if any) into `vs` under this
    /// backbone's scope; returns MMEngine's missing/unexpected-key report
    /// (torchvision's `fc.weight`/`fc.bias` are unexpected, as in MMEngine).
    pub fn init_weights(
        &self,
        vs: &nn::VarStore,
    ) -> ModelResult<Option<detc::checkpoint::KeyReport>> {
        match &self.pretrained {
            Some(pt) => crate::models::weights::load_pretrained(
                vs,
                &self.scope,
                &pt.checkpoint,
                pt.prefix.as_deref(),
            )
            .map(Some),
            None => Ok(None),
        }
    }

    /// x: (N, 3, H, W) -> the `out_indices` stage outputs (C2..C5 by default),
    /// each (N, out_channels[k], H/stride, W/stride). `train` is the model's
    /// mode; BN layers of frozen stages, and all of them with `norm_eval`,
    /// still use running statistics (mmdet `ResNet.train`).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Vec<Tensor>> {
        let (_n, _c, _h, _w) = x
            .size4()
            .map_err(|e| ModelError::new(NAME, format!("input must be (N, C, H, W): {e}")))?;
        let bn_train = |stage: i64| train && !self.norm_eval && stage > self.frozen_stages;
        let mut y = self.stem.forward_t(x, bn_train(0))?;
        let mut outs = Vec::with_capacity(self.out_indices.len());
        for (i, stage) in self.stages.iter().enumerate() {
            y = stage.forward_t(&y, bn_train(i as i64 + 1))?;
            if self.out_indices.contains(&i) {
                outs.push(y.shallow_clone());
            }
        }
        Ok(outs)
    }
}

/// The deformable conv of each of the `n` stages: `dcn` where
/// `stage_with_dcn` says so (one flag per stage), none elsewhere.
fn stage_dcn(
    dcn: Option<&ConvCfg>,
    stage_with_dcn: &[bool],
    n: usize,
    conv: ConvKind,
    pretrained: bool,
    owner: &str,
) -> ModelResult<Vec<Option<(DeformSpec, DeformInit)>>> {
    let Some(cfg) = dcn else { return Ok(vec![None; n]) };
    if stage_with_dcn.len() != n {
        return Err(ModelError::new(owner, format!("stage_with_dcn needs one flag per stage ({n})")));
    }
    if conv != ConvKind::Plain && stage_with_dcn.contains(&true) {
        return Err(ModelError::new(owner, "conv_cfg must be null where dcn builds the convs"));
    }
    let spec = DeformSpec::from_cfg(cfg, owner)?;
    let init = if pretrained { DeformInit::ForCheckpoint } else { DeformInit::Scratch };
    Ok(stage_with_dcn.iter().map(|&on| on.then_some((spec, init))).collect())
}

fn check_supported(cfg: &ResNetConfig) -> ModelResult<()> {
    let n = cfg.num_stages as usize;
    if !(1..=4).contains(&n) || cfg.strides.len() != n || cfg.dilations.len() != n {
        return Err(ModelError::new(
            NAME,
            format!("num_stages {n} needs 1..4 and as many strides and dilations"),
        ));
    }
    if let Some(&bad) = cfg.out_indices.iter().find(|&&i| i as usize >= n) {
        return Err(ModelError::new(
            NAME,
            format!("out_indices entry {bad} is not below num_stages {n}"),
        ));
    }
    if cfg.init_cfg.is_some() && cfg.pretrained.is_some() {
        return Err(ModelError::new(
            NAME,
            "init_cfg and pretrained cannot be specified at the same time",
        ));
    }
    Ok(())
}

/// One stage of a RegNet design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RegNetStage {
    pub width: i64,
    pub blocks: usize,
    pub group_width: i64,
    pub groups: i64,
}

/// MMDetection's named RegNetX designs (`RegNet.arch_settings`).
fn regnet_arch(name: &str) -> Option<RegNetArch> {
    let (w0, wa, wm, group_w, depth) = match name {
        "regnetx_400mf" => (24, 24.48, 2.54, 16, 22),
        "regnetx_800mf" => (56, 35.73, 2.28, 16, 16),
        "regnetx_1.6gf" => (80, 34.01, 2.25, 24, 18),
        "regnetx_3.2gf" => (88, 26.31, 2.25, 48, 25),
        "regnetx_4.0gf" => (96, 38.65, 2.43, 40, 23),
        "regnetx_6.4gf" => (184, 60.83, 2.07, 56, 17),
        "regnetx_8.0gf" => (80, 49.56, 2.88, 120, 23),
        "regnetx_12gf" => (168, 73.36, 2.37, 112, 19),
        _ => return None,
    };
    Some(RegNetArch { w0, wa, wm, group_w, depth, bot_mul: 1.0 })
}

/// The stages of a RegNet design, as MMDetection's `generate_regnet`,
/// `get_stages_from_blocks` and `adjust_width_group` compute them (NumPy's
/// and Python's round-half-to-even included).
pub(crate) fn regnet_design(arch: &RegNetArchCfg) -> ModelResult<Vec<RegNetStage>> {
    let a = match arch {
        RegNetArchCfg::Named(name) => regnet_arch(name)
            .ok_or_else(|| ModelError::new("RegNet", format!("arch {name:?} is not one of MMDetection's arch_settings")))?,
        RegNetArchCfg::Custom(a) => a.clone(),
    };
    if !(a.wa >= 0.0 && a.w0 > 0 && a.wm > 1.0 && a.w0 % 8 == 0) {
        return Err(ModelError::new("RegNet", "arch needs wa >= 0, wm > 1 and w0 a positive multiple of 8"));
    }
    let w0 = a.w0 as f64;
    let widths: Vec<i64> = (0..a.depth)
        .map(|j| {
            let cont = j as f64 * a.wa + w0;
            let k = ((cont / w0).ln() / a.wm.ln()).round_ties_even();
            ((w0 * a.wm.powf(k)) / 8.0).round_ties_even() as i64 * 8
        })
        .collect();
    // Runs of equal widths are the stages.
    let mut stages: Vec<(i64, usize)> = vec![];
    for w in widths {
        match stages.last_mut() {
            Some((last, n)) if *last == w => *n += 1,
            _ => stages.push((w, 1)),
        }
    }
    if stages.len() > 4 {
        return Err(ModelError::new("RegNet", format!("the design has {} stages (at most 4)", stages.len())));
    }
    Ok(stages
        .into_iter()
        .map(|(width, blocks)| {
            // adjust_width_group: the bottleneck width a multiple of the group width.
            let bottleneck = (width as f64 * a.bot_mul) as i64;
            let group_width = (a.group_w as i64).min(bottleneck);
            let bottleneck = (bottleneck as f64 / group_width as f64).round_ties_even() as i64 * group_width;
            let width = (bottleneck as f64 / a.bot_mul) as i64;
            let groups = (width as f64 * a.bot_mul).round_ties_even() as i64 / group_width;
            RegNetStage { width, blocks, group_width, groups }
        })
        .collect())
}

/// The `Pretrained` entry of `init_cfg` (or the deprecated `pretrained`) of
/// a ResNet or of a `ResLayer` (`owner`, named in errors).
pub(crate) fn pretrained_init(
    pretrained: Option<&String>,
    init_cfg: Option<&OneOrMany<InitCfg>>,
    owner: &str,
) -> ModelResult<Option<PretrainedInitConfig>> {
    if let Some(path) = pretrained {
        return Ok(Some(PretrainedInitConfig {
            checkpoint: path.clone(),
            prefix: None,
            map_location: None,
            name: None,
        }));
    }
    let Some(init) = init_cfg else {
        return Ok(None);
    };
    let items = init.as_vec();
    let [item] = items.as_slice() else {
        return Err(ModelError::new(
            owner,
            "init_cfg must be one `Pretrained` dict (or null for the default init)",
        ));
    };
    let mut map = item.0.as_object().cloned().unwrap_or_default();
    match map.remove("type").as_ref().and_then(|t| t.as_str()) {
        Some("Pretrained") => serde_json::from_value(serde_json::Value::Object(map))
            .map(Some)
            .map_err(|e| ModelError::new(owner, format!("invalid Pretrained init_cfg: {e}"))),
        other => Err(ModelError::new(
            owner,
            format!("init_cfg type {other:?} is not supported for {owner} yet (use Pretrained or null)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::{self, max_abs_diff, tensor};
    use crate::models::weights::named_shapes;
    use tch::{Device, Kind};

    fn config(json: serde_json::Value) -> ResNetConfig {
        serde_json::from_value(json).unwrap()
    }

    /// Every state-dict name and shape of `vs` is mmdet's, and so is each
    /// parameter's `requires_grad` (`shape.*` and `trainable.*` of `fx`).
    fn assert_mmdet_names_shapes_and_flags(vs: &nn::VarStore, fx: &fixtures::StateDict) {
        let ours: Vec<(String, Vec<i64>)> = named_shapes(vs, "");
        let mut want: Vec<(String, Vec<i64>)> = fx
            .keys()
            .filter_map(|k| {
                k.strip_prefix("shape.")
                    .map(|n| (n.to_string(), Vec::<i64>::try_from(tensor(fx, k)).unwrap()))
            })
            .collect();
        want.sort();
        assert_eq!(ours, want);
        let vars = vs.variables();
        for (k, _) in fx.iter().filter(|(k, _)| k.starts_with("trainable.")) {
            let name = &k["trainable.".len()..];
            let flag = tensor(fx, k).int64_value(&[]) != 0;
            assert_eq!(vars[name].requires_grad(), flag, "requires_grad of {name}");
        }
    }

    #[test]
    fn resnet50_names_shapes_and_frozen_flags_equal_mmdet() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = ResNet::new(&config(serde_json::json!({"depth": 50, "frozen_stages": 1})), vs.root()).unwrap();
        assert_mmdet_names_shapes_and_flags(&vs, &fixtures::get().resnet50_mmdet);
    }

    /// ResNeXt-50 32x4d: mmdet's names, shapes and frozen flags; with
    /// torchvision's resnext50_32x4d weights, torchvision's features.
    #[test]
    fn resnext50_names_equal_mmdet_and_features_equal_torchvision() {
        let fx = fixtures::get();
        let resnext = |extra: serde_json::Value| {
            let mut cfg = serde_json::json!({"depth": 50, "groups": 32, "base_width": 4});
            cfg.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::from_value::<ResNeXtConfig>(cfg).unwrap()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = ResNet::resnext(&resnext(serde_json::json!({"frozen_stages": 1})), vs.root()).unwrap();
        assert_mmdet_names_shapes_and_flags(&vs, &fx.resnext50_mmdet);
        assert_eq!(vs.variables()["layer1.0.conv2.weight"].size(), [128, 4, 3, 3]);

        let io = &fx.resnext50_io;
        let ckpt = fx.resnext50_path.to_str().unwrap();
        let pretrained = serde_json::json!({"type": "Pretrained", "checkpoint": ckpt});
        for norm_eval in [true, false] {
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = resnext(serde_json::json!({"norm_eval": norm_eval, "init_cfg": pretrained}));
            let net = ResNet::resnext(&cfg, vs.root() / "backbone").unwrap();
            let report = net.init_weights(&vs).unwrap().unwrap();
            assert!(report.missing.is_empty(), "{:?}", report.missing);
            assert_eq!(report.unexpected, ["fc.weight", "fc.bias"]);
            if norm_eval {
                // Training mode with norm_eval: the running statistics, torchvision's eval features.
                let feats = tch::no_grad(|| net.forward_t(&tensor(io, "x"), true)).unwrap();
                for (k, f) in ["c2", "c3", "c4", "c5"].iter().zip(&feats) {
                    let e = rel_err(f, &tensor(io, k));
                    assert!(e < 1e-4, "{k}: relative error {e}");
                }
            } else {
                let c5 = tch::no_grad(|| net.forward_t(&tensor(io, "x_train"), true)).unwrap().pop().unwrap();
                let e = rel_err(&c5, &tensor(io, "c5_train"));
                assert!(e < 1e-4, "train-mode c5: relative error {e}");
            }
        }
        let err = ResNet::resnext(&resnext(serde_json::json!({"depth": 34})), vs.root() / "x").unwrap_err();
        assert!(err.to_string().contains("invalid depth 34 (50, 101 or 152)"), "{err}");
    }

    fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
        max_abs_diff(a, b) / b.abs().max().double_value(&[])
    }

    #[test]
    fn resnet50_with_torchvision_weights_gives_torchvision_features() {
        let fx = fixtures::get();
        let io = &fx.resnet50_io;
        let ckpt = fx.resnet50_path.to_str().unwrap();
        let cfg = config(serde_json::json!({
            "depth": 50, "frozen_stages": 1,
            "init_cfg": {"type": "Pretrained", "checkpoint": ckpt}
        }));
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet::new(&cfg, vs.root() / "backbone").unwrap();
        assert_eq!(net.out_channels, [256, 512, 1024, 2048]);
        assert_eq!(net.out_strides, [4, 8, 16, 32]);
        let report = net.init_weights(&vs).unwrap().unwrap();
        assert!(report.missing.is_empty(), "{:?}", report.missing);
        assert_eq!(report.unexpected, ["fc.weight", "fc.bias"]);
        let tracked =
            || vs.variables()["backbone.layer2.0.bn1.num_batches_tracked"].int64_value(&[]);
        let before = tracked();
        // Training mode with norm_eval: BN keeps running statistics, so eval features.
        let feats = tch::no_grad(|| net.forward_t(&tensor(io, "x"), true)).unwrap();
        for (k, f) in ["c2", "c3", "c4", "c5"].iter().zip(&feats) {
            let e = rel_err(f, &tensor(io, k));
            assert!(e < 1e-4, "{k}: relative error {e}");
        }
        // num_batches_tracked of frozen/norm_eval BNs is not advanced.
        assert_eq!(tracked(), before);

        // norm_eval false, nothing frozen: batch statistics as torch's train mode.
        let cfg = config(serde_json::json!({
            "depth": 50, "norm_eval": false, "init_cfg": {"type": "Pretrained", "checkpoint": ckpt}
        }));
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet::new(&cfg, vs.root()).unwrap();
        net.init_weights(&vs).unwrap();
        let c5 = tch::no_grad(|| net.forward_t(&tensor(io, "x_train"), true))
            .unwrap()
            .pop()
            .unwrap();
        let e = rel_err(&c5, &tensor(io, "c5_train"));
        assert!(e < 1e-4, "train-mode c5: relative error {e}");
    }

    #[test]
    fn resnet18_default_init_and_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg =
            config(serde_json::json!({"depth": 18, "base_channels": 16, "out_indices": [1, 3]}));
        let net = ResNet::new(&cfg, vs.root()).unwrap();
        let vars = vs.variables();
        // zero_init_residual: the last BN of each block starts at 0, others at 1.
        assert_eq!(
            vars["layer1.0.bn2.weight"]
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        assert_eq!(
            vars["layer1.0.bn1.weight"]
                .mean(Kind::Float)
                .double_value(&[]),
            1.0
        );
        assert!(
            vars.contains_key("layer2.0.downsample.0.weight")
                && !vars.contains_key("layer1.0.downsample.0.weight")
        );
        let x = Tensor::randn([2, 3, 64, 96], (Kind::Float, Device::Cpu));
        let outs = net.forward_t(&x, true).unwrap();
        assert_eq!(
            outs.iter().map(|t| t.size()).collect::<Vec<_>>(),
            [vec![2, 32, 8, 12], vec![2, 128, 2, 3]]
        );
        assert_eq!(net.out_channels, [32, 128]);
        // training with norm_eval=false advances num_batches_tracked
        let cfg = config(serde_json::json!({"depth": 18, "base_channels": 8, "norm_eval": false}));
        let vs2 = nn::VarStore::new(Device::Cpu);
        let net2 = ResNet::new(&cfg, vs2.root()).unwrap();
        net2.forward_t(&x, true).unwrap();
        assert_eq!(
            vs2.variables()["bn1.num_batches_tracked"].int64_value(&[]),
            1
        );
    }

    #[test]
    fn torchvision_urls_need_a_local_file() {
        let err = crate::models::weights::resolve_checkpoint("torchvision://resnet50");
        // Either the hub cache has it, or the error says how to provide it.
        if let Err(e) = err {
            assert!(e.message.contains("resnet50-0676ba61.pth"), "{e}");
        }
        let bad = ResNet::new(
            &config(serde_json::json!({"depth": 42})),
            nn::VarStore::new(Device::Cpu).root(),
        );
        assert!(bad.unwrap_err().message.contains("invalid depth 42"));
    }
}
