// RoIAlign on the CPU (average pooling), forward and backward, computed as
// torchvision.ops.roi_align's CPU kernel computes it (same sample positions,
// clamping and summation order), and wrapped as an autograd function: the
// features get gradients, the boxes none (as in MMCV).
//
// Why a kernel here: built from grid_sampler_2d, RoIAlign took about a fifth
// of a CPU training step (the sampler's backward scatters through OpenMP
// for every level and stage); this does the same arithmetic in two loops.
// CUDA keeps the grid_sampler path (src/models/ops/roi_align.rs).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "status.h"

using namespace detc;

namespace {

struct Geometry {
  double spatial_scale;
  int64_t pooled_h, pooled_w, sampling_ratio;
  bool aligned;
};

// Cap on adaptive samples per bin side, and on all samples of a call (a
// diverged box would otherwise mean billions of samples).
constexpr int64_t MAX_GRID = 65536;
constexpr int64_t MAX_SAMPLES = int64_t{1} << 31;

// One bilinear sample: four offsets into an (H, W) plane and their weights;
// a sample outside [-1, H] x [-1, W] has zero weights.
template <typename T>
struct Tap {
  int64_t o1, o2, o3, o4;
  T w1, w2, w3, w4;
};

// One RoI's samples, bin by bin: sample k of bin b is taps[b * per_bin + k].
template <typename T>
struct RoiTaps {
  int64_t image = 0;
  int64_t per_bin = 0;
  T count = 1;  // what torchvision divides by: max(gh * gw, 1)
  std::vector<Tap<T>> taps;
};

template <typename T>
int64_t grid_side(T size, int64_t pooled, int64_t ratio) {
  if (ratio > 0) return ratio;
  T g = std::ceil(size / static_cast<T>(pooled));
  if (!(g > 0)) return 0;  // NaN, zero or negative size: no samples
  return g > static_cast<T>(MAX_GRID) ? MAX_GRID : static_cast<int64_t>(g);
}

// A RoI in feature coordinates: its image, start, bin size and samples per bin side.
template <typename T>
struct RoiShape {
  int64_t image, gh, gw;
  T start_h, start_w, bin_h, bin_w;
};

// Validates the RoIs and returns each one's shape (torchvision's geometry),
// before any work.
template <typename T>
std::vector<RoiShape<T>> plan(const T* rois, int64_t num_rois, int64_t num_images,
                              const Geometry& g) {
  std::vector<RoiShape<T>> shapes(num_rois);
  const T offset = g.aligned ? T(0.5) : T(0);
  int64_t total = 0;
  for (int64_t r = 0; r < num_rois; ++r) {
    const T* roi = rois + r * 5;
    if (!(roi[0] >= 0 && roi[0] < static_cast<T>(num_images))) {
      std::ostringstream msg;
      msg << "roi " << r << " has batch index " << roi[0] << " outside the " << num_images
          << " images";
      throw std::invalid_argument(msg.str());
    }
    T start_w = roi[1] * g.spatial_scale - offset;
    T start_h = roi[2] * g.spatial_scale - offset;
    T width = static_cast<T>(roi[3] * g.spatial_scale - offset) - start_w;
    T height = static_cast<T>(roi[4] * g.spatial_scale - offset) - start_h;
    if (!g.aligned) {
      width = std::max(width, T(1));
      height = std::max(height, T(1));
    }
    RoiShape<T> s{static_cast<int64_t>(roi[0]),
                  grid_side(height, g.pooled_h, g.sampling_ratio),
                  grid_side(width, g.pooled_w, g.sampling_ratio),
                  start_h,
                  start_w,
                  height / static_cast<T>(g.pooled_h),
                  width / static_cast<T>(g.pooled_w)};
    total += g.pooled_h * g.pooled_w * s.gh * s.gw;
    if (total > MAX_SAMPLES) {
      throw std::invalid_argument(
          "more than 2^31 sampling points: the RoIs are far larger than the feature map "
          "(diverged boxes?)");
    }
    shapes[r] = s;
  }
  return shapes;
}

// torchvision's pre_calc_for_bilinear_interpolate for one RoI.
template <typename T>
void fill_taps(const RoiShape<T>& s, int64_t height, int64_t width, const Geometry& g,
               RoiTaps<T>* out) {
  const T start_h = s.start_h, start_w = s.start_w, bin_h = s.bin_h, bin_w = s.bin_w;
  out->image = s.image;
  out->per_bin = s.gh * s.gw;
  out->count = static_cast<T>(std::max<int64_t>(s.gh * s.gw, 1));
  out->taps.clear();
  out->taps.reserve(g.pooled_h * g.pooled_w * out->per_bin);
  for (int64_t ph = 0; ph < g.pooled_h; ++ph) {
    for (int64_t pw = 0; pw < g.pooled_w; ++pw) {
      for (int64_t iy = 0; iy < s.gh; ++iy) {
        const T yy = start_h + static_cast<T>(ph) * bin_h +
                     static_cast<T>(iy + .5f) * bin_h / static_cast<T>(s.gh);
        for (int64_t ix = 0; ix < s.gw; ++ix) {
          T x = start_w + static_cast<T>(pw) * bin_w +
                static_cast<T>(ix + .5f) * bin_w / static_cast<T>(s.gw);
          T y = yy;
          // The negated test also drops NaN coordinates.
          if (!(y >= T(-1) && y <= static_cast<T>(height) && x >= T(-1) &&
                x <= static_cast<T>(width))) {
            out->taps.push_back(Tap<T>{0, 0, 0, 0, 0, 0, 0, 0});
            continue;
          }
          if (y <= 0) y = 0;
          if (x <= 0) x = 0;
          int64_t y_low = static_cast<int64_t>(y), x_low = static_cast<int64_t>(x);
          int64_t y_high, x_high;
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
          out->taps.push_back(Tap<T>{y_low * width + x_low, y_low * width + x_high,
                                     y_high * width + x_low, y_high * width + x_high,
                                     hy * hx, hy * lx, ly * hx, ly * lx});
        }
      }
    }
  }
}

// input (N, C, H, W), rois (R, 5) -> (R, C, Ph, Pw).
template <typename T>
void forward_kernel(const at::Tensor& input, const at::Tensor& rois, const Geometry& g,
                    at::Tensor& output) {
  const int64_t n = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
  const int64_t num_rois = rois.size(0), bins = g.pooled_h * g.pooled_w;
  const T* x = input.data_ptr<T>();
  const T* r = rois.data_ptr<T>();
  T* y = output.data_ptr<T>();
  const auto shapes = plan(r, num_rois, n, g);
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    RoiTaps<T> t;
    for (int64_t k = begin; k < end; ++k) {
      fill_taps(shapes[k], h, w, g, &t);
      for (int64_t ch = 0; ch < c; ++ch) {
        const T* plane = x + (t.image * c + ch) * h * w;
        T* out = y + (k * c + ch) * bins;
        for (int64_t b = 0; b < bins; ++b) {
          T sum = 0;
          const Tap<T>* tap = t.taps.data() + b * t.per_bin;
          for (int64_t s = 0; s < t.per_bin; ++s, ++tap) {
            sum += tap->w1 * plane[tap->o1] + tap->w2 * plane[tap->o2] +
                   tap->w3 * plane[tap->o3] + tap->w4 * plane[tap->o4];
          }
          out[b] = sum / t.count;
        }
      }
    }
  });
}

// grad_output (R, C, Ph, Pw) -> grad_input (N, C, H, W). Threads split the
// channels, so no two write the same plane.
template <typename T>
void backward_kernel(const at::Tensor& grad_output, const at::Tensor& rois, const Geometry& g,
                     at::Tensor& grad_input) {
  const int64_t n = grad_input.size(0), c = grad_input.size(1), h = grad_input.size(2),
                w = grad_input.size(3);
  const int64_t num_rois = rois.size(0), bins = g.pooled_h * g.pooled_w;
  const T* gy = grad_output.data_ptr<T>();
  const T* r = rois.data_ptr<T>();
  T* gx = grad_input.data_ptr<T>();
  const auto shapes = plan(r, num_rois, n, g);
  std::vector<RoiTaps<T>> taps(num_rois);
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) fill_taps(shapes[k], h, w, g, &taps[k]);
  });
  at::parallel_for(0, c, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = 0; k < num_rois; ++k) {
      const RoiTaps<T>& t = taps[k];
      for (int64_t ch = begin; ch < end; ++ch) {
        T* plane = gx + (t.image * c + ch) * h * w;
        const T* grad = gy + (k * c + ch) * bins;
        for (int64_t b = 0; b < bins; ++b) {
          // torchvision computes grad * w / count; dividing once per bin
          // changes only the last bit, and saves four divisions per sample.
          const T gb = grad[b] / t.count;
          const Tap<T>* tap = t.taps.data() + b * t.per_bin;
          for (int64_t s = 0; s < t.per_bin; ++s, ++tap) {
            plane[tap->o1] += gb * tap->w1;
            plane[tap->o2] += gb * tap->w2;
            plane[tap->o3] += gb * tap->w3;
            plane[tap->o4] += gb * tap->w4;
          }
        }
      }
    }
  });
}

at::Tensor roi_align_forward(const at::Tensor& input, const at::Tensor& rois, const Geometry& g) {
  auto output = at::empty({rois.size(0), input.size(1), g.pooled_h, g.pooled_w}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detc_roi_align_forward",
                             [&] { forward_kernel<scalar_t>(input, rois, g, output); });
  return output;
}

at::Tensor roi_align_backward(const at::Tensor& grad_output, const at::Tensor& rois,
                              at::IntArrayRef input_shape, const Geometry& g) {
  auto grad = grad_output.contiguous();
  auto grad_input = at::zeros(input_shape, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "detc_roi_align_backward",
                             [&] { backward_kernel<scalar_t>(grad, rois, g, grad_input); });
  return grad_input;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct RoIAlignFunction : public torch::autograd::Function<RoIAlignFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& rois,
                            double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                            int64_t sampling_ratio, bool aligned) {
    ctx->saved_data["spatial_scale"] = spatial_scale;
    ctx->saved_data["pooled_h"] = pooled_h;
    ctx->saved_data["pooled_w"] = pooled_w;
    ctx->saved_data["sampling_ratio"] = sampling_ratio;
    ctx->saved_data["aligned"] = aligned;
    ctx->saved_data["input_shape"] = input.sizes().vec();
    ctx->save_for_backward({rois});
    return roi_align_forward(input, rois,
                             Geometry{spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned});
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto rois = ctx->get_saved_variables()[0];
    const Geometry g{ctx->saved_data["spatial_scale"].toDouble(),
                     ctx->saved_data["pooled_h"].toInt(), ctx->saved_data["pooled_w"].toInt(),
                     ctx->saved_data["sampling_ratio"].toInt(), ctx->saved_data["aligned"].toBool()};
    const auto shape = ctx->saved_data["input_shape"].toIntVector();
    return {roi_align_backward(grads[0], rois, shape, g), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(),                   at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// roi_align(input, rois) for float or double CPU tensors: input (N, C, H, W),
// rois (R, 5) [batch, x1, y1, x2, y2] of the same dtype (no gradient). On
// DETC_OK, *out holds a new tensor (R, C, Ph, Pw) that tch takes over.
int detc_roi_align_cpu(const at::Tensor* input, const at::Tensor* rois, double spatial_scale,
                       int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, int aligned,
                       at::Tensor** out) {
  return guarded([&] {
    const auto& x = *input;
    if (x.dim() != 4 || !x.device().is_cpu() ||
        (x.scalar_type() != at::kFloat && x.scalar_type() != at::kDouble)) {
      throw std::invalid_argument("input must be a float or double (N, C, H, W) CPU tensor");
    }
    if (rois->dim() != 2 || rois->size(1) != 5 || rois->scalar_type() != x.scalar_type()) {
      throw std::invalid_argument("rois must be (R, 5) of the input's dtype");
    }
    if (pooled_h <= 0 || pooled_w <= 0) {
      throw std::invalid_argument("output_size must be positive");
    }
    auto result = RoIAlignFunction::apply(x.contiguous(), rois->detach().contiguous(),
                                          spatial_scale, pooled_h, pooled_w, sampling_ratio,
                                          aligned != 0);
    *out = new at::Tensor(std::move(result));
    return DETC_OK;
  });
}

}  // extern "C"
