//! The generalized attention block of "An Empirical Study of Spatial
//! Attention Mechanisms in Deep Networks" (Zhu et al., 2019,
//! <https://arxiv.org/abs/1904.05873>) as MMCV's `GeneralizedAttention`
//! (`mmcv/cnn/bricks/generalized_attention.py`), a ResNet plugin named
//! `gen_attention_block`. Its `attention_type` switches on four terms of the
//! attention logits between a query position and a key position: query and
//! key content (1st), query content and relative position (2nd), key content
//! alone (3rd, `appr_bias`), relative position alone (4th, `geom_bias`).
//! The attended values go through `proj_conv`, scaled by a learned `gamma`
//! (0 at start) and added to the input.
//!
//! Shape shorthand: `N` images, `C` channels, `H, W` the (query-strided)
//! map, `Hk, Wk` the key map (`kv_stride`), `M` heads, `D` channels per head.

use detc::registry::models::layers::GeneralizedAttentionConfig;
use tch::nn::{self, Init};
use tch::Tensor;

use super::transformer::Linear;
use super::{caffe2_xavier, make_conv_trainable, param, Conv2d, ConvGeom, ConvInit, ModelError, ModelResult};

const NAME: &str = "GeneralizedAttention";

#[derive(Debug)]
pub struct GeneralizedAttention {
    num_heads: i64,
    qk_dim: i64,
    v_dim: i64,
    position_dim: i64,
    position_magnitude: f64,
    q_stride: i64,
    kv_stride: i64,
    /// The four terms of `attention_type`.
    terms: [bool; 4],
    query_conv: Option<Conv2d>,
    key_conv: Option<Conv2d>,
    value_conv: Conv2d,
    appr_geom_fc: Option<(Linear, Linear)>,
    appr_bias: Option<Tensor>,
    geom_bias: Option<Tensor>,
    proj_conv: Conv2d,
    gamma: Tensor,
}

impl GeneralizedAttention {
    /// Builds under `p` for `c` channels, with the block's own init: a
    /// backbone's Kaiming `init_cfg` reaches its convs, but MMEngine then
    /// runs the block's own `init_weights` (a child's), which redraws them.
    pub fn new(p: &nn::Path, c: i64, cfg: &GeneralizedAttentionConfig, trainable: bool) -> ModelResult<Self> {
        let bits: Vec<bool> = cfg.attention_type.chars().map(|ch| ch == '1').collect();
        if bits.len() != 4 || !cfg.attention_type.chars().all(|ch| ch == '0' || ch == '1') || !bits.contains(&true) {
            return Err(ModelError::new(NAME, format!("attention_type must be four 0/1 digits with a 1, got {:?}", cfg.attention_type)));
        }
        if cfg.spatial_range >= 0 {
            return Err(ModelError::new(NAME, "spatial_range >= 0 (a local constraint map) is not supported yet (use -1)"));
        }
        let heads = cfg.num_heads as i64;
        let qk_dim = c / heads;
        if qk_dim < 1 {
            return Err(ModelError::new(NAME, format!("num_heads {heads} exceeds the {c} channels")));
        }
        let position_dim = if cfg.position_embedding_dim > 0 { cfg.position_embedding_dim } else { c };
        if position_dim % 4 != 0 {
            return Err(ModelError::new(NAME, format!("position_embedding_dim must be a multiple of 4, got {position_dim}")));
        }
        let terms = [bits[0], bits[1], bits[2], bits[3]];
        let out_c = qk_dim * heads;
        // The block's own init: Kaiming uniform, a = 1, fan-in (as Caffe2Xavier), biases 0.
        let conv = |name: &str, cin: i64, cout: i64, bias: bool| -> ModelResult<Conv2d> {
            let geom = ConvGeom::k(1);
            match bias {
                true => make_conv_trainable(&(p / name), cin, cout, geom, ConvInit::Caffe2Xavier, trainable),
                false => Conv2d::new(&(p / name), cin, cout, geom, false, caffe2_xavier(cin), trainable),
            }
        };
        let query_conv = (terms[0] || terms[1]).then(|| conv("query_conv", c, out_c, false)).transpose()?;
        let key_conv = (terms[0] || terms[2]).then(|| conv("key_conv", c, out_c, false)).transpose()?;
        let value_conv = conv("value_conv", c, qk_dim * heads, false)?;
        let half = position_dim / 2;
        let fc = |name: &str| -> ModelResult<Linear> {
            Ok(Linear { weight: param(&(p / name), "weight", &[out_c, half], caffe2_xavier(half), trainable)?, bias: None })
        };
        let appr_geom_fc = (terms[1] || terms[3]).then(|| Ok::<_, ModelError>((fc("appr_geom_fc_x")?, fc("appr_geom_fc_y")?))).transpose()?;
        let stdv = 1.0 / ((qk_dim * 2) as f64).sqrt();
        let bias_param = |name: &str| param(p, name, &[out_c], Init::Uniform { lo: -stdv, up: stdv }, trainable);
        let appr_bias = terms[2].then(|| bias_param("appr_bias")).transpose()?;
        let geom_bias = terms[3].then(|| bias_param("geom_bias")).transpose()?;
        let proj_conv = conv("proj_conv", qk_dim * heads, c, true)?;
        let gamma = param(p, "gamma", &[1], Init::Const(0.0), trainable)?;
        Ok(GeneralizedAttention {
            num_heads: heads,
            qk_dim,
            v_dim: qk_dim,
            position_dim,
            position_magnitude: cfg.position_magnitude as f64,
            q_stride: cfg.q_stride as i64,
            kv_stride: cfg.kv_stride as i64,
            terms,
            query_conv,
            key_conv,
            value_conv,
            appr_geom_fc,
            appr_bias,
            geom_bias,
            proj_conv,
            gamma,
        })
    }

    /// `get_position_embedding`: sinusoids of the query-key offsets along
    /// x (W, Wk, P/2) and along y (H, Hk, P/2).
    fn position_embedding(&self, (h, w): (i64, i64), (hk, wk): (i64, i64), like: &Tensor) -> ModelResult<(Tensor, Tensor)> {
        let opts = (like.kind(), like.device());
        let diff = |n: i64, nk: i64| -> ModelResult<Tensor> {
            let q = Tensor::f_linspace(0.0, (n - 1) as f64, n, opts)?.f_mul_scalar(self.q_stride)?;
            let k = Tensor::f_linspace(0.0, (nk - 1) as f64, nk, opts)?.f_mul_scalar(self.kv_stride)?;
            Ok(q.f_reshape([n, 1, 1])?.f_sub(&k.f_reshape([1, nk, 1])?)?.f_mul_scalar(self.position_magnitude)?)
        };
        let feat_range = Tensor::f_arange(self.position_dim / 4, opts)?;
        let dim_mat = feat_range.f_mul_scalar(4.0 / self.position_dim as f64)?.f_mul_scalar(1000f64.ln())?.f_exp()?.f_reshape([1, 1, -1])?;
        let embed = |d: Tensor| -> ModelResult<Tensor> {
            let a = d.f_div(&dim_mat)?;
            Ok(Tensor::f_cat(&[a.f_sin()?, a.f_cos()?], 2)?)
        };
        Ok((embed(diff(w, wk)?)?, embed(diff(h, hk)?)?))
    }

    /// x: (N, C, H, W) -> (N, C, H, W).
    pub fn forward(&self, x_input: &Tensor) -> ModelResult<Tensor> {
        let sub = |x: &Tensor, s: i64| -> ModelResult<Tensor> {
            Ok(if s > 1 { x.f_avg_pool2d([1, 1], [s, s], [0, 0], false, true, None::<i64>)? } else { x.shallow_clone() })
        };
        let x_q = sub(x_input, self.q_stride)?;
        let x_kv = sub(x_input, self.kv_stride)?;
        let (n, _, mut h, mut w) = x_q.size4()?;
        let (_, _, hk, wk) = x_kv.size4()?;
        let (m, d) = (self.num_heads, self.qk_dim);
        let [t0, t1, t2, t3] = self.terms;
        // (N, M, HW, D) and (N, M, D, HkWk).
        let query = match &self.query_conv {
            Some(conv) => Some(conv.forward(&x_q)?.f_reshape([n, m, d, h * w])?.f_permute([0, 1, 3, 2])?),
            None => None,
        };
        let key = match &self.key_conv {
            Some(conv) => Some(conv.forward(&x_kv)?.f_reshape([n, m, d, hk * wk])?),
            None => None,
        };
        // (N, M, W, Wk, D) and (N, M, H, Hk, D).
        let position = match &self.appr_geom_fc {
            Some((fc_x, fc_y)) => {
                let (ex, ey) = self.position_embedding((h, w), (hk, wk), x_input)?;
                let feat = |fc: &Linear, e: &Tensor, a: i64, b: i64| -> ModelResult<Tensor> {
                    Ok(fc.forward(e)?.f_reshape([1, a, b, m, d])?.f_permute([0, 3, 1, 2, 4])?.f_expand([n, m, a, b, d], false)?.f_div_scalar(2f64.sqrt())?)
                };
                Some((feat(fc_x, &ex, w, wk)?, feat(fc_y, &ey, h, hk)?))
            }
            None => None,
        };
        fn bias(b: &Option<Tensor>) -> ModelResult<&Tensor> {
            b.as_ref().ok_or_else(|| ModelError::new(NAME, "a bias of its attention_type is missing"))
        }
        let energy = if [t0, t1, t2, t3] == [false, false, true, false] {
            // Key content alone: one logit row shared by every query.
            let appr = bias(&self.appr_bias)?.f_reshape([1, m, 1, d])?;
            let e = appr.f_matmul(key.as_ref().expect("key_conv with the 3rd term"))?.f_reshape([n, m, 1, hk * wk])?;
            h = 1;
            w = 1;
            e
        } else {
            let mut energy = Tensor::f_zeros([n, m, h, w, hk, wk], (x_input.kind(), x_input.device()))?;
            if t0 {
                let q = query.as_ref().expect("query_conv with the 1st term");
                let q = if t2 { q.f_add(&bias(&self.appr_bias)?.f_reshape([1, m, 1, d])?)? } else { q.shallow_clone() };
                energy = q.f_matmul(key.as_ref().expect("key_conv with the 1st term"))?.f_reshape([n, m, h, w, hk, wk])?;
            } else if t2 {
                let appr = bias(&self.appr_bias)?.f_reshape([1, m, 1, d])?;
                let e = appr.f_matmul(key.as_ref().expect("key_conv with the 3rd term"))?.f_reshape([n, m, 1, 1, hk, wk])?;
                energy = energy.f_add(&e)?;
            }
            if let Some((px, py)) = &position {
                if t1 {
                    let q = query.as_ref().expect("query_conv with the 2nd term");
                    let q = if t3 { q.f_add(&bias(&self.geom_bias)?.f_reshape([1, m, 1, d])?)? } else { q.shallow_clone() };
                    let q = q.f_reshape([n, m, h, w, d])?;
                    // (N, M, W, H, D) @ (N, M, W, D, Wk) -> (N, M, H, W, 1, Wk).
                    let ex = q.f_permute([0, 1, 3, 2, 4])?.f_matmul(&px.f_permute([0, 1, 2, 4, 3])?)?.f_permute([0, 1, 3, 2, 4])?.f_unsqueeze(4)?;
                    // (N, M, H, W, D) @ (N, M, H, D, Hk) -> (N, M, H, W, Hk, 1).
                    let ey = if t3 {
                        q.f_matmul(&py.f_permute([0, 1, 2, 4, 3])?)?
                    } else {
                        // MMCV's `x1x0` branch multiplies the y offsets of row
                        // i with the query of column i (its query transposed),
                        // which runs on square maps only: kept, as trained
                        // GRoIE weights expect it.
                        if h != w {
                            return Err(ModelError::new(
                                NAME,
                                format!("an attention_type with the 2nd term but not the 4th runs on square maps only (as MMCV's), got {h}x{w}"),
                            ));
                        }
                        q.f_permute([0, 1, 3, 2, 4])?.f_matmul(&py.f_permute([0, 1, 2, 4, 3])?)?
                    }
                    .f_unsqueeze(5)?;
                    energy = energy.f_add(&ex.f_add(&ey)?)?;
                } else {
                    let geom = bias(&self.geom_bias)?.f_reshape([1, m, d, 1])?;
                    let ex = px.f_reshape([n, m, w * wk, d])?.f_matmul(&geom)?.f_reshape([n, m, 1, w, 1, wk])?;
                    let ey = py.f_reshape([n, m, h * hk, d])?.f_matmul(&geom)?.f_reshape([n, m, h, 1, hk, 1])?;
                    energy = energy.f_add(&ex.f_add(&ey)?)?;
                }
            }
            energy.f_reshape([n, m, h * w, hk * wk])?
        };
        let attention = energy.f_softmax(3, energy.kind())?;
        let value = self.value_conv.forward(&x_kv)?.f_reshape([n, m, self.v_dim, hk * wk])?.f_permute([0, 1, 3, 2])?;
        let out = attention.f_matmul(&value)?.f_permute([0, 1, 3, 2])?.f_contiguous()?.f_reshape([n, self.v_dim * m, h, w])?;
        let mut out = self.proj_conv.forward(&out)?;
        if self.q_stride > 1 {
            let (_, _, ih, iw) = x_input.size4()?;
            out = out.f_upsample_bilinear2d([ih, iw], false, None, None)?;
        }
        Ok(self.gamma.f_mul(&out)?.f_add(x_input)?)
    }
}
