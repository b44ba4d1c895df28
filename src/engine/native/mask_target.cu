// Mask targets of bitmap masks on CUDA (models::ops::masks::mask_target):
// each positive's ground-truth mask cropped by its box and resized to the
// mask size by RoIAlign (aligned, adaptive sampling, average), then
// binarised at >= 0.5. One thread per target pixel (K x h x w), grid-stride.
//
// The arithmetic is the host's (mask_target.rs, which follows torchvision's
// CPU RoIAlign op for op in float32): binarising turns float rounding into
// flipped pixels where a bin averages to 0.5 in real numbers, so each
// operation is rounded on its own (__fadd_rn and friends, which NVRTC never
// fuses into multiply-adds) and the targets equal the host's bit for bit.
//
// roi_align_cuda.cpp compiles this file with NVRTC beside roi_align.cu;
// roi_align_host.h compiles it as C++ and mask_target.cpp runs the kernel
// on one CPU thread for the tests. So it uses nothing beyond C++, ceilf and
// fmaxf, and includes no header.

typedef long long i64;

#ifndef DETC_KERNEL_LINKAGE
#define DETC_KERNEL_LINKAGE extern "C"
#endif

// np.clip(v, 0, hi) as the host writes it: NaN stays NaN.
__device__ __forceinline__ float detc_mt_clip(float v, float hi) {
  return v < 0.0f ? 0.0f : (v > hi ? hi : v);
}

// Samples along one axis of a RoI.
struct MtAxis {
  float start, bin;
  i64 grid, size;
};

// Sample `i` of bin `p`: false outside [-1, size]; else the taps `low`,
// `high` and weights `l`, `1 - l` after clamping into the mask.
__device__ __forceinline__ bool detc_mt_sample(const MtAxis& a, i64 p, i64 i, i64* low, i64* high,
                                               float* l, float* h) {
  // start + p * bin + (i + .5) * bin / grid
  float y = __fadd_rn(__fadd_rn(a.start, __fmul_rn(static_cast<float>(p), a.bin)),
                      __fdiv_rn(__fmul_rn(__fadd_rn(static_cast<float>(i), 0.5f), a.bin),
                                static_cast<float>(a.grid)));
  if (!(y >= -1.0f && y <= static_cast<float>(a.size))) return false;
  if (y <= 0.0f) y = 0.0f;
  *low = static_cast<i64>(y);
  if (*low >= a.size - 1) {
    *low = a.size - 1;
    *high = *low;
    y = static_cast<float>(*low);
  } else {
    *high = *low + 1;
  }
  *l = __fsub_rn(y, static_cast<float>(*low));
  *h = __fsub_rn(1.0f, *l);
  return true;
}

// ceil(roi / pooled) samples per bin side; none for a NaN or non-positive side.
__device__ __forceinline__ i64 detc_mt_grid(float roi, i64 pooled) {
  return static_cast<i64>(fmaxf(ceilf(__fdiv_rn(roi, static_cast<float>(pooled))), 0.0f));
}

// masks: (G, Hm, Wm) uint8 of 0/1; boxes: (K, 4) x1y1x2y2 float; inds: (K,)
// into the G masks (an index outside gives an empty target); out: (K, Ph, Pw).
DETC_KERNEL_LINKAGE __global__ void detc_mask_target(const unsigned char* masks, i64 num_masks,
                                                     i64 hm, i64 wm, const float* boxes,
                                                     const i64* inds, i64 k, i64 ph, i64 pw,
                                                     float* out) {
  const i64 total = k * ph * pw;
  for (i64 idx = blockIdx.x * (i64)blockDim.x + threadIdx.x; idx < total;
       idx += (i64)blockDim.x * gridDim.x) {
    const i64 r = idx / (ph * pw);
    const i64 py = (idx / pw) % ph;
    const i64 px = idx % pw;
    const i64 g = inds[r];
    float acc = 0.0f, count = 1.0f;
    if (g >= 0 && g < num_masks && hm > 0 && wm > 0) {
      const float* b = boxes + 4 * r;
      const float x1 = detc_mt_clip(b[0], static_cast<float>(wm));
      const float y1 = detc_mt_clip(b[1], static_cast<float>(hm));
      const float x2 = detc_mt_clip(b[2], static_cast<float>(wm));
      const float y2 = detc_mt_clip(b[3], static_cast<float>(hm));
      MtAxis ax, ay;
      ax.start = __fsub_rn(x1, 0.5f);
      ay.start = __fsub_rn(y1, 0.5f);
      const float roi_w = __fsub_rn(__fsub_rn(x2, 0.5f), ax.start);
      const float roi_h = __fsub_rn(__fsub_rn(y2, 0.5f), ay.start);
      ax.bin = __fdiv_rn(roi_w, static_cast<float>(pw));
      ay.bin = __fdiv_rn(roi_h, static_cast<float>(ph));
      ax.grid = detc_mt_grid(roi_w, pw);
      ay.grid = detc_mt_grid(roi_h, ph);
      ax.size = wm;
      ay.size = hm;
      const i64 samples = ay.grid * ax.grid;
      count = static_cast<float>(samples > 1 ? samples : 1);
      const unsigned char* m = masks + g * hm * wm;
      for (i64 iy = 0; iy < ay.grid; ++iy) {
        i64 y0, y1i;
        float ly, hy;
        if (!detc_mt_sample(ay, py, iy, &y0, &y1i, &ly, &hy)) continue;
        for (i64 ix = 0; ix < ax.grid; ++ix) {
          i64 x0, x1i;
          float lx, hx;
          if (!detc_mt_sample(ax, px, ix, &x0, &x1i, &lx, &hx)) continue;
          const float v1 = static_cast<float>(m[y0 * wm + x0]);
          const float v2 = static_cast<float>(m[y0 * wm + x1i]);
          const float v3 = static_cast<float>(m[y1i * wm + x0]);
          const float v4 = static_cast<float>(m[y1i * wm + x1i]);
          // w1 v1 + w2 v2 + w3 v3 + w4 v4, left to right
          float s = __fmul_rn(__fmul_rn(hy, hx), v1);
          s = __fadd_rn(s, __fmul_rn(__fmul_rn(hy, lx), v2));
          s = __fadd_rn(s, __fmul_rn(__fmul_rn(ly, hx), v3));
          s = __fadd_rn(s, __fmul_rn(__fmul_rn(ly, lx), v4));
          acc = __fadd_rn(acc, s);
        }
      }
    }
    out[idx] = __fdiv_rn(acc, count) >= 0.5f ? 1.0f : 0.0f;
  }
}
