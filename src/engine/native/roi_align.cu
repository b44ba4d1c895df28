// RoIAlign's CUDA kernels (average pooling), forward and backward, with the
// arithmetic of roi_align.cpp's CPU kernel, which is torchvision's: the same
// sample positions, clamping, and summation order per output value. One
// thread per output value (R x C x Ph x Pw), grid-stride; the backward
// scatters with atomicAdd, as torchvision's and MMCV's CUDA kernels do.
//
// roi_align_cuda.cpp compiles this file at run time with NVRTC for the GPU
// at hand. roi_align_host.h compiles it as C++: the CPU kernel
// (roi_align.cpp) takes its RoI geometry, sample positions and bilinear
// taps from here, and roi_align_emulated.cpp runs the kernels on one CPU
// thread for the tests, where they must equal the CPU kernel bit for bit.
// So it uses nothing beyond C++, ceil and atomicAdd, and includes no header.

typedef long long i64;

// `extern "C"` for NVRTC (unmangled names); `inline` on the host, where
// two translation units include it.
#ifndef DETC_KERNEL_LINKAGE
#define DETC_KERNEL_LINKAGE extern "C"
#endif

// Cap on adaptive samples per bin side (as roi_align.cpp's MAX_GRID).
#define DETC_MAX_GRID 65536

// One RoI in feature coordinates.
template <typename T>
struct RoiFrame {
  i64 image, gh, gw;
  T start_h, start_w, bin_h, bin_w, count;
};

template <typename T>
__device__ __forceinline__ i64 detc_grid_side(T size, i64 pooled, i64 ratio) {
  if (ratio > 0) return ratio;
  // ceil is exact, so taking it in double gives T's ceil.
  double g = ceil(static_cast<double>(size / static_cast<T>(pooled)));
  if (!(g > 0)) return 0;  // NaN, zero or negative size: no samples
  return g > DETC_MAX_GRID ? DETC_MAX_GRID : static_cast<i64>(g);
}

// roi: [batch, x1, y1, x2, y2] in image coordinates; the launcher's check
// (`refused`, below) covers the batch indices and the sample count.
template <typename T>
__device__ __forceinline__ RoiFrame<T> detc_roi_frame(const T* roi, double scale, bool aligned,
                                                     i64 pooled_h, i64 pooled_w, i64 ratio) {
  const T offset = aligned ? T(0.5) : T(0);
  RoiFrame<T> f;
  f.image = static_cast<i64>(roi[0]);
  f.start_w = roi[1] * scale - offset;
  f.start_h = roi[2] * scale - offset;
  T width = static_cast<T>(roi[3] * scale - offset) - f.start_w;
  T height = static_cast<T>(roi[4] * scale - offset) - f.start_h;
  if (!aligned) {
    // std::max's answer, also for NaN
    width = width < T(1) ? T(1) : width;
    height = height < T(1) ? T(1) : height;
  }
  f.gh = detc_grid_side(height, pooled_h, ratio);
  f.gw = detc_grid_side(width, pooled_w, ratio);
  f.bin_h = height / static_cast<T>(pooled_h);
  f.bin_w = width / static_cast<T>(pooled_w);
  f.count = static_cast<T>(f.gh * f.gw > 1 ? f.gh * f.gw : 1);
  return f;
}

// One bilinear sample at (y, x) of an (H, W) plane: four offsets and their
// weights; false outside [-1, H] x [-1, W] (and for NaN).
template <typename T>
struct Taps {
  i64 o1, o2, o3, o4;
  T w1, w2, w3, w4;
};

template <typename T>
__device__ __forceinline__ bool detc_bilinear(T y, T x, i64 height, i64 width, Taps<T>* t) {
  if (!(y >= T(-1) && y <= static_cast<T>(height) && x >= T(-1) &&
        x <= static_cast<T>(width))) {
    return false;
  }
  if (y <= 0) y = 0;
  if (x <= 0) x = 0;
  i64 y_low = static_cast<i64>(y), x_low = static_cast<i64>(x);
  i64 y_high, x_high;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = static_cast<T>(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = static_cast<T>(x_low);
  } else {
    x_high = x_low + 1;
  }
  const T ly = y - static_cast<T>(y_low), lx = x - static_cast<T>(x_low);
  const T hy = T(1) - ly, hx = T(1) - lx;
  t->o1 = y_low * width + x_low;
  t->o2 = y_low * width + x_high;
  t->o3 = y_high * width + x_low;
  t->o4 = y_high * width + x_high;
  t->w1 = hy * hx;
  t->w2 = hy * lx;
  t->w3 = ly * hx;
  t->w4 = ly * lx;
  return true;
}

// The shape of a launch: (R, C, Ph, Pw) outputs over (N, C, H, W) features.
// With `levels` (R,), a launch serves one feature level of several: only the
// RoIs with levels[r] == level (SingleRoIExtractor's mapping). `refused`
// (nullable) is the launcher's RoI check on the device, nonzero when the
// RoIs were refused: a batch index outside the images or too many samples
// (roi_align.cpp reports why, later in training); the launch then samples
// nothing, which keeps it from reading outside the features or looping for
// billions of samples.
struct RoiAlignShape {
  i64 total, channels, height, width, pooled_h, pooled_w, ratio;
  double scale;
  int aligned;
  const i64* levels;
  i64 level;
  const double* refused;
};

__device__ __forceinline__ bool detc_refused(const RoiAlignShape& s) {
  return s.refused != 0 && *s.refused != 0;
}

// Whether output value `index` belongs to this launch's level.
__device__ __forceinline__ bool detc_on_level(i64 index, const RoiAlignShape& s) {
  return s.levels == 0 || s.levels[index / (s.pooled_w * s.pooled_h * s.channels)] == s.level;
}

// Output value `index` -> its RoI, its feature plane and its bin (ph, pw).
template <typename T>
struct OutputSite {
  RoiFrame<T> roi;
  i64 plane, ph, pw;
};

template <typename T>
__device__ __forceinline__ OutputSite<T> detc_site(i64 index, const T* rois,
                                                  const RoiAlignShape& s) {
  OutputSite<T> site;
  site.pw = index % s.pooled_w;
  site.ph = (index / s.pooled_w) % s.pooled_h;
  const i64 c = (index / (s.pooled_w * s.pooled_h)) % s.channels;
  const i64 r = index / (s.pooled_w * s.pooled_h * s.channels);
  site.roi = detc_roi_frame(rois + r * 5, s.scale, s.aligned != 0, s.pooled_h, s.pooled_w,
                            s.ratio);
  site.plane = (site.roi.image * s.channels + c) * s.height * s.width;
  return site;
}

// Sample i of g along one axis of bin p: torchvision's position.
template <typename T>
__device__ __forceinline__ T detc_sample_pos(T start, i64 p, T bin, i64 i, i64 g) {
  return start + static_cast<T>(p) * bin + static_cast<T>(i + .5f) * bin / static_cast<T>(g);
}

// Calls visit(taps) for each sample of the output value's bin inside the
// map, row by row (the order the sums take).
template <typename T, typename F>
__device__ __forceinline__ void detc_each_sample(const OutputSite<T>& q, const RoiAlignShape& s,
                                                 F visit) {
  for (i64 iy = 0; iy < q.roi.gh; ++iy) {
    const T y = detc_sample_pos(q.roi.start_h, q.ph, q.roi.bin_h, iy, q.roi.gh);
    for (i64 ix = 0; ix < q.roi.gw; ++ix) {
      Taps<T> t;
      if (detc_bilinear(y, detc_sample_pos(q.roi.start_w, q.pw, q.roi.bin_w, ix, q.roi.gw),
                        s.height, s.width, &t)) {
        visit(t);
      }
    }
  }
}

// Calls visit(index, site) for each output value of this launch's level,
// grid-stride (each value once, whatever the launch's size).
template <typename T, typename F>
__device__ __forceinline__ void detc_each_output(const T* rois, const RoiAlignShape& s, F visit) {
  const i64 stride = static_cast<i64>(blockDim.x) * gridDim.x;
  for (i64 index = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; index < s.total;
       index += stride) {
    if (detc_on_level(index, s)) visit(index, detc_site(index, rois, s));
  }
}

// Refused RoIs pool NaN, so that the losses they reach say so at once.
template <typename T>
__device__ void detc_roi_align_forward(const T* input, const T* rois, T* output,
                                       RoiAlignShape s) {
  const bool refused = detc_refused(s);
  const T zero = 0;
  detc_each_output(rois, s, [&](i64 index, const OutputSite<T>& q) {
    if (refused) {
      output[index] = zero / zero;
      return;
    }
    const T* plane = input + q.plane;
    T sum = 0;
    detc_each_sample(q, s, [&](const Taps<T>& t) {
      sum += t.w1 * plane[t.o1] + t.w2 * plane[t.o2] + t.w3 * plane[t.o3] + t.w4 * plane[t.o4];
    });
    output[index] = sum / q.roi.count;
  });
}

// grad_input must be zeroed; grad_output is (R, C, Ph, Pw) contiguous.
// Output values of other levels are left as they are (forward) or scatter
// nothing (backward), as do refused RoIs.
template <typename T>
__device__ void detc_roi_align_backward(const T* grad_output, const T* rois, T* grad_input,
                                        RoiAlignShape s) {
  if (detc_refused(s)) return;
  detc_each_output(rois, s, [&](i64 index, const OutputSite<T>& q) {
    T* plane = grad_input + q.plane;
    // As the CPU kernel: divide once per bin, not once per sample.
    const T g = grad_output[index] / q.roi.count;
    detc_each_sample(q, s, [&](const Taps<T>& t) {
      atomicAdd(plane + t.o1, g * t.w1);
      atomicAdd(plane + t.o2, g * t.w2);
      atomicAdd(plane + t.o3, g * t.w3);
      atomicAdd(plane + t.o4, g * t.w4);
    });
  });
}

// The entry points, by dtype, with unmangled names for cuModuleGetFunction
// and pointers and scalars only (no struct whose layout two compilers must
// agree on).
#define DETC_ROI_ALIGN_KERNEL(T, PASS, IN, OUT)                                               \
  DETC_KERNEL_LINKAGE __global__ void detc_roi_align_##PASS##_##T(                            \
      const T* IN, const T* rois, T* OUT, i64 total, i64 channels, i64 height, i64 width,     \
      i64 pooled_h, i64 pooled_w, i64 ratio, double scale, int aligned, const i64* levels,     \
      i64 level, const double* refused) {                                                     \
    const RoiAlignShape s = {total, channels, height, width,  pooled_h, pooled_w,             \
                             ratio, scale,    aligned, levels, level,   refused};             \
    detc_roi_align_##PASS<T>(IN, rois, OUT, s);                                               \
  }

DETC_ROI_ALIGN_KERNEL(float, forward, input, output)
DETC_ROI_ALIGN_KERNEL(float, backward, grad_output, grad_input)
DETC_ROI_ALIGN_KERNEL(double, forward, input, output)
DETC_ROI_ALIGN_KERNEL(double, backward, grad_output, grad_input)
