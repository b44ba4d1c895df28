// RoIAlign (average pooling) as an autograd function: the features get
// gradients, the boxes none (as in MMCV). On the CPU, forward and backward
// are computed as torchvision.ops.roi_align's CPU kernel computes them (same
// sample positions, clamping and summation order); on CUDA by the kernels of
// roi_align.cu, which do the same arithmetic per output value
// (roi_align_cuda.cpp launches them; roi_align_emulated.cpp runs them on the
// CPU for the tests). Half and bfloat16 features are pooled in float32 and
// the result cast back, as torchvision's autocast rule and MMCV do.
//
// Why kernels here: built from grid_sampler_2d, RoIAlign took about a fifth
// of a CPU training step (the sampler's backward scatters through OpenMP
// for every level and stage), and on CUDA it holds a value per sample and
// channel (hundreds of MB for a Faster R-CNN batch) and reads the boxes back
// to the host; these do the same arithmetic in two passes. The kernels'
// RoI check is read at once in inference only: in training a refused call
// pools NaN and its reason waits for the runner's next read of the losses
// (`detc_roi_align_settle_checks`), so that no step waits for the GPU here.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstdio>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "roi_align.h"
#include "roi_align_host.h"
#include "status.h"

using namespace detc;

namespace {

using Geometry = RoiGeometry;

using kernels::RoiFrame;

// Cap on adaptive samples per bin side (roi_align.cu's), and on all samples
// of a call (a diverged box would otherwise mean billions of samples).
constexpr int64_t MAX_GRID = DETC_MAX_GRID;
constexpr int64_t MAX_SAMPLES = int64_t{1} << 31;

// One RoI's samples, bin by bin: sample k of bin b is taps[b * per_bin + k];
// a sample outside [-1, H] x [-1, W] has zero weights.
template <typename T>
struct RoiTaps {
  int64_t image = 0;
  int64_t per_bin = 0;
  T count = 1;  // what torchvision divides by: max(gh * gw, 1)
  std::vector<kernels::Taps<T>> taps;
};

// Validates the RoIs and returns each one's frame (roi_align.cu's
// geometry, torchvision's), before any work.
template <typename T>
std::vector<RoiFrame<T>> plan(const T* rois, int64_t num_rois, int64_t num_images,
                              const Geometry& g) {
  std::vector<RoiFrame<T>> frames(num_rois);
  int64_t total = 0;
  for (int64_t r = 0; r < num_rois; ++r) {
    const T* roi = rois + r * 5;
    if (!(roi[0] >= 0 && roi[0] < static_cast<T>(num_images))) {
      std::ostringstream msg;
      msg << "roi " << r << " has batch index " << roi[0] << " outside the " << num_images
          << " images";
      throw std::invalid_argument(msg.str());
    }
    frames[r] = kernels::detc_roi_frame(roi, g.spatial_scale, g.aligned, g.pooled_h, g.pooled_w,
                                        g.sampling_ratio);
    total += g.pooled_h * g.pooled_w * frames[r].gh * frames[r].gw;
    if (total > MAX_SAMPLES) {
      throw std::invalid_argument(
          "more than 2^31 sampling points: the RoIs are far larger than the feature map "
          "(diverged boxes?)");
    }
  }
  return frames;
}

// torchvision's pre_calc_for_bilinear_interpolate for one RoI.
template <typename T>
void fill_taps(const RoiFrame<T>& f, int64_t height, int64_t width, const Geometry& g,
               RoiTaps<T>* out) {
  out->image = f.image;
  out->per_bin = f.gh * f.gw;
  out->count = f.count;
  out->taps.clear();
  out->taps.reserve(g.pooled_h * g.pooled_w * out->per_bin);
  for (int64_t ph = 0; ph < g.pooled_h; ++ph) {
    for (int64_t pw = 0; pw < g.pooled_w; ++pw) {
      for (int64_t iy = 0; iy < f.gh; ++iy) {
        const T y = kernels::detc_sample_pos(f.start_h, ph, f.bin_h, iy, f.gh);
        for (int64_t ix = 0; ix < f.gw; ++ix) {
          const T x = kernels::detc_sample_pos(f.start_w, pw, f.bin_w, ix, f.gw);
          kernels::Taps<T> t{0, 0, 0, 0, 0, 0, 0, 0};
          kernels::detc_bilinear(y, x, height, width, &t);  // zero weights outside
          out->taps.push_back(t);
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
  const auto frames = plan(r, num_rois, n, g);
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    RoiTaps<T> t;
    for (int64_t k = begin; k < end; ++k) {
      fill_taps(frames[k], h, w, g, &t);
      for (int64_t ch = 0; ch < c; ++ch) {
        const T* plane = x + (t.image * c + ch) * h * w;
        T* out = y + (k * c + ch) * bins;
        for (int64_t b = 0; b < bins; ++b) {
          T sum = 0;
          const kernels::Taps<T>* tap = t.taps.data() + b * t.per_bin;
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
  const auto frames = plan(r, num_rois, n, g);
  std::vector<RoiTaps<T>> taps(num_rois);
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) fill_taps(frames[k], h, w, g, &taps[k]);
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
          const kernels::Taps<T>* tap = t.taps.data() + b * t.per_bin;
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

// Where the kernels of roi_align.cu run: on the GPU, or, for the tests, on
// the CPU (the CPU's own kernel is the one above).
enum class Kernels { Device = 0, CudaEmulated = 1 };

// The check of a call of roi_align.cu's kernels, which cannot throw: what
// the CPU kernel's `plan` refuses (a batch index outside the images, more
// than MAX_SAMPLES sampling points), computed on the rois' device without
// reading anything back, as five doubles: [refused (0 or 1), the first RoI
// with a bad batch index (-1 if none), that index, the number of images,
// the sampling points]. `scale` (R,) double is each RoI's spatial_scale
// (its level's). The kernels sample nothing when it refuses.
at::Tensor roi_check(const at::Tensor& rois, int64_t num_images, const Geometry& g,
                     const at::Tensor& scale) {
  const auto wide = rois.options().dtype(at::kDouble);
  const int64_t num_rois = rois.size(0);
  const auto image = rois.select(1, 0);
  const auto bad = image.ge(0).logical_and(image.lt(num_images)).logical_not();
  const auto any_bad = bad.any();
  const auto first_bad = at::where(any_bad, bad.to(at::kInt).argmax(), -1);
  at::Tensor samples;
  if (g.sampling_ratio > 0) {
    samples = at::full({}, static_cast<double>(num_rois) * g.sampling_ratio * g.sampling_ratio,
                       wide);
  } else {
    // roi_align.cu's RoI geometry, in the RoIs' dtype: [x1, y1, x2, y2] -> (w, h).
    const double offset = g.aligned ? 0.5 : 0.0;
    const auto corners =
        (rois.narrow(1, 1, 4).to(at::kDouble) * scale.unsqueeze(1) - offset).to(rois.scalar_type());
    auto size = corners.narrow(1, 2, 2) - corners.narrow(1, 0, 2);
    if (!g.aligned) size = size.clamp_min(1);
    const auto side = [&](int64_t axis, int64_t pooled) {
      return (size.select(1, axis) / static_cast<double>(pooled))
          .ceil()
          .nan_to_num(0)
          .clamp(0, static_cast<double>(MAX_GRID))
          .to(at::kDouble);
    };
    samples = (side(0, g.pooled_w) * side(1, g.pooled_h)).sum();
  }
  samples = samples * static_cast<double>(g.pooled_h * g.pooled_w);
  const auto refused = any_bad.logical_or(samples.gt(static_cast<double>(MAX_SAMPLES)));
  return at::stack({refused.to(at::kDouble), first_bad.to(at::kDouble),
                    image.index_select(0, first_bad.clamp_min(0).view({1})).squeeze(0).to(at::kDouble),
                    at::full({}, static_cast<double>(num_images), wide), samples});
}

// Why a check refused its RoIs, from its five values on the host; empty if
// it did not.
std::string refusal(const at::Tensor& check) {
  const auto host = check.to(at::kCPU, at::kDouble).contiguous();
  const double* c = host.data_ptr<double>();
  if (c[0] == 0) return {};
  std::ostringstream msg;
  if (c[1] >= 0) {
    msg << "roi " << static_cast<int64_t>(c[1]) << " has batch index " << c[2] << " outside the "
        << static_cast<int64_t>(c[3]) << " images";
  } else {
    msg << "more than 2^31 sampling points: the RoIs are far larger than the feature map "
           "(diverged boxes?)";
  }
  return msg.str();
}

// In training the checks are not read at once (on CUDA each read waits for
// the GPU): the first refused check of this thread waits here until the
// runner settles it at its next read of the losses, which the refused call
// made NaN (roi_align.cu). Never freed: a CUDA tensor must not outlive the
// allocator at exit.
at::Tensor& pending_check() {
  thread_local auto* pending = new at::Tensor();
  return *pending;
}

// Throws the pending check's refusal, if any, and clears it.
void settle_pending_check() {
  auto& pending = pending_check();
  if (!pending.defined()) return;
  const auto why = refusal(pending);
  pending = at::Tensor();
  if (!why.empty()) throw std::invalid_argument(why);
}

// `roi_check`, read at once in inference, kept for the runner's next read
// in training (`deferred`; the first refusal of this thread wins).
at::Tensor check_rois(const at::Tensor& rois, int64_t num_images, const Geometry& g,
                      const at::Tensor& scale, bool deferred) {
  const auto check = roi_check(rois, num_images, g, scale);
  if (!deferred) {
    const auto why = refusal(check);
    if (!why.empty()) throw std::invalid_argument(why);
    return check;
  }
  auto& pending = pending_check();
  if (pending.defined() && pending.device() != check.device()) settle_pending_check();
  pending = pending.defined() ? at::where(pending[0].gt(0), pending, check) : check;
  return check;
}

void launch(Kernels kernels, const RoiLaunch& l, const Geometry& g) {
  if (l.total == 0) return;
  if (kernels == Kernels::Device) {
    launch_roi_align_cuda(l, g);
  } else {
    launch_roi_align_emulated(l, g);
  }
}

// `check` gets the RoI check of the launches (undefined on the CPU kernel's
// path, whose `plan` checks on the host), for the backward's launch.
at::Tensor roi_align_forward(const at::Tensor& input, const at::Tensor& rois, const Geometry& g,
                             Kernels kernels, bool deferred_check, at::Tensor* check) {
  auto output = at::empty({rois.size(0), input.size(1), g.pooled_h, g.pooled_w}, input.options());
  if (input.is_cpu() && kernels == Kernels::Device) {
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detc_roi_align_forward",
                               [&] { forward_kernel<scalar_t>(input, rois, g, output); });
    return output;
  }
  if (rois.size(0) == 0) return output;
  const auto scale = at::full({rois.size(0)}, g.spatial_scale, rois.options().dtype(at::kDouble));
  *check = check_rois(rois, input.size(0), g, scale, deferred_check);
  launch(kernels,
         RoiLaunch{RoiPass::Forward, input, rois, output, output.numel(), input.size(1),
                   input.size(2), input.size(3), nullptr, 0, check},
         g);
  return output;
}

at::Tensor roi_align_backward(const at::Tensor& grad_output, const at::Tensor& rois,
                              at::IntArrayRef input_shape, const Geometry& g, Kernels kernels,
                              const at::Tensor& check) {
  auto grad = grad_output.contiguous();
  auto grad_input = at::zeros(input_shape, grad.options());
  if (grad.is_cpu() && kernels == Kernels::Device) {
    AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "detc_roi_align_backward",
                               [&] { backward_kernel<scalar_t>(grad, rois, g, grad_input); });
    return grad_input;
  }
  launch(kernels,
         RoiLaunch{RoiPass::Backward, grad, rois, grad_input, grad.numel(), input_shape[1],
                   input_shape[2], input_shape[3], nullptr, 0, check.defined() ? &check : nullptr},
         g);
  return grad_input;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What both autograd functions keep for their backward: the geometry and
// where the kernels run.
void save_settings(AutogradContext* ctx, const Geometry& g, int64_t kernels) {
  ctx->saved_data["spatial_scale"] = g.spatial_scale;
  ctx->saved_data["pooled_h"] = g.pooled_h;
  ctx->saved_data["pooled_w"] = g.pooled_w;
  ctx->saved_data["sampling_ratio"] = g.sampling_ratio;
  ctx->saved_data["aligned"] = g.aligned;
  ctx->saved_data["kernels"] = kernels;
}

Geometry saved_geometry(AutogradContext* ctx) {
  return Geometry{ctx->saved_data["spatial_scale"].toDouble(), ctx->saved_data["pooled_h"].toInt(),
                  ctx->saved_data["pooled_w"].toInt(), ctx->saved_data["sampling_ratio"].toInt(),
                  ctx->saved_data["aligned"].toBool()};
}

Geometry with_scale(Geometry g, double spatial_scale) {
  g.spatial_scale = spatial_scale;
  return g;
}

Kernels saved_kernels(AutogradContext* ctx) {
  return static_cast<Kernels>(ctx->saved_data["kernels"].toInt());
}

struct RoIAlignFunction : public torch::autograd::Function<RoIAlignFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& rois,
                            double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                            int64_t sampling_ratio, bool aligned, int64_t kernels,
                            bool deferred_check) {
    const Geometry g{spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned};
    save_settings(ctx, g, kernels);
    ctx->saved_data["input_shape"] = input.sizes().vec();
    at::Tensor check;
    auto output = roi_align_forward(input, rois, g, static_cast<Kernels>(kernels),
                                    deferred_check, &check);
    ctx->save_for_backward({rois, check});
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto shape = ctx->saved_data["input_shape"].toIntVector();
    auto grad = roi_align_backward(grads[0], saved[0], shape, saved_geometry(ctx),
                                   saved_kernels(ctx), saved[1]);
    return {grad,         at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// SingleRoIExtractor's pooling as one function of all feature levels, for
// roi_align.cu's kernels: each RoI is pooled from the level `levels` gives
// it, one launch per level over all RoIs (those of other levels skip), so
// nothing is gathered or scattered by level, and nothing is read back in
// training (the RoI check waits for the runner's read). Every level gets a gradient, zero where no RoI maps to it
// (what MMDetection's `feats[i].sum() * 0.` is for).
struct MultiLevelRoIAlignFunction : public torch::autograd::Function<MultiLevelRoIAlignFunction> {
  static at::Tensor forward(AutogradContext* ctx, at::TensorList feats, const at::Tensor& rois,
                            const at::Tensor& levels, std::vector<double> scales,
                            int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio,
                            bool aligned, int64_t kernels, bool deferred_check) {
    // Each level's launch has its own scale; the geometry's is not used.
    const Geometry g{1.0, pooled_h, pooled_w, sampling_ratio, aligned};
    std::vector<int64_t> shapes;
    for (const auto& f : feats) shapes.insert(shapes.end(), f.sizes().begin(), f.sizes().end());
    save_settings(ctx, g, kernels);
    ctx->saved_data["scales"] = scales;
    ctx->saved_data["shapes"] = shapes;
    auto output =
        at::zeros({rois.size(0), feats[0].size(1), pooled_h, pooled_w}, feats[0].options());
    at::Tensor check;
    if (rois.size(0) > 0) {
      // Non-blocking from pageable memory: the copy has read `scales` when it
      // returns, without the stream synchronisation of a blocking upload.
      const auto per_roi_scale = at::tensor(scales, at::kDouble)
                                     .to(rois.device(), /*non_blocking=*/true)
                                     .index_select(0, levels);
      check = check_rois(rois, feats[0].size(0), g, per_roi_scale, deferred_check);
    }
    ctx->save_for_backward({rois, levels, check});
    for (size_t l = 0; l < feats.size(); ++l) {
      launch(static_cast<Kernels>(kernels),
             RoiLaunch{RoiPass::Forward, feats[l], rois, output, output.numel(), feats[l].size(1),
                       feats[l].size(2), feats[l].size(3), &levels, static_cast<int64_t>(l),
                       &check},
             with_scale(g, scales[l]));
    }
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &rois = saved[0], &levels = saved[1], &check = saved[2];
    const auto scales = ctx->saved_data["scales"].toDoubleVector();
    const auto shapes = ctx->saved_data["shapes"].toIntVector();
    const Geometry g = saved_geometry(ctx);
    const auto kernels = saved_kernels(ctx);
    const auto grad = grads[0].contiguous();
    variable_list out;
    for (size_t l = 0; l < scales.size(); ++l) {
      const at::IntArrayRef shape(shapes.data() + 4 * l, 4);
      auto grad_feat = at::zeros(shape, grad.options());
      launch(kernels,
             RoiLaunch{RoiPass::Backward, grad, rois, grad_feat, grad.numel(), shape[1], shape[2],
                       shape[3], &levels, static_cast<int64_t>(l), &check},
             with_scale(g, scales[l]));
      out.push_back(grad_feat);
    }
    // rois, levels, scales, pooled_h, pooled_w, sampling_ratio, aligned, kernels,
    // deferred_check
    out.resize(out.size() + 9);
    return out;
  }
};

// Runs `compile` (which returns an NVRTC target) for an entry point below.
template <typename F>
int naming_target(char* target, int64_t capacity, F compile) {
  if (!roi_align_cuda_built()) return DETC_UNAVAILABLE;
  return guarded([&] {
    std::snprintf(target, static_cast<size_t>(capacity), "%s", compile().c_str());
    return DETC_OK;
  });
}

}  // namespace

extern "C" {

// roi_align(input, rois) for floating features on the CPU or CUDA: input
// (N, C, H, W), rois (R, 5) [batch, x1, y1, x2, y2] (no gradient).
// `emulate_cuda` runs roi_align.cu's kernels on the CPU instead of the CPU
// kernel (tests). On DETC_OK, *out holds a new tensor (R, C, Ph, Pw) of the
// input's dtype that tch takes over. With grad mode on (training; the
// autograd function's forward runs without it), the kernels' RoI check is
// left for detc_roi_align_settle_checks.
int detc_roi_align(const at::Tensor* input, const at::Tensor* rois, double spatial_scale,
                   int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, int aligned,
                   int emulate_cuda, at::Tensor** out) {
  return guarded([&] {
    const auto& x = *input;
    if (x.dim() != 4 || !at::isFloatingType(x.scalar_type()) ||
        !(x.device().is_cpu() || x.device().is_cuda())) {
      throw std::invalid_argument("input must be a floating (N, C, H, W) CPU or CUDA tensor");
    }
    if (rois->dim() != 2 || rois->size(1) != 5 || rois->device() != x.device()) {
      throw std::invalid_argument("rois must be (R, 5) on the input's device");
    }
    if (pooled_h <= 0 || pooled_w <= 0) {
      throw std::invalid_argument("output_size must be positive");
    }
    if (emulate_cuda && !x.device().is_cpu()) {
      throw std::invalid_argument("the emulated CUDA kernels take CPU tensors");
    }
    const auto reduced = x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16;
    const auto compute = reduced ? at::kFloat : x.scalar_type();
    auto result = RoIAlignFunction::apply(
        x.to(compute).contiguous(), rois->detach().to(compute).contiguous(), spatial_scale,
        pooled_h, pooled_w, sampling_ratio, aligned != 0, emulate_cuda ? 1 : 0,
        at::GradMode::is_enabled());
    *out = new at::Tensor(result.to(x.scalar_type()));
    return DETC_OK;
  });
}

// SingleRoIExtractor's multi-level pooling with roi_align.cu's kernels:
// `num_levels` feature maps (N, C, Hl, Wl) of one floating dtype on CUDA (on
// the CPU with `emulate_cuda`), rois (R, 5), levels (R,) int64 in
// [0, num_levels) and each level's spatial scale. On DETC_OK, *out holds a
// new tensor (R, C, Ph, Pw) of the features' dtype that tch takes over; the
// RoI check as detc_roi_align's.
int detc_roi_align_levels(const at::Tensor* const* feats, int64_t num_levels,
                          const at::Tensor* rois, const at::Tensor* levels, const double* scales,
                          int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, int aligned,
                          int emulate_cuda, at::Tensor** out) {
  return guarded([&] {
    if (num_levels <= 0) throw std::invalid_argument("no feature levels");
    const auto& first = *feats[0];
    if (emulate_cuda ? !first.device().is_cpu() : !first.device().is_cuda()) {
      throw std::invalid_argument(emulate_cuda ? "the emulated CUDA kernels take CPU tensors"
                                               : "the multi-level kernels take CUDA tensors");
    }
    const auto reduced =
        first.scalar_type() == at::kHalf || first.scalar_type() == at::kBFloat16;
    const auto compute = reduced ? at::kFloat : first.scalar_type();
    std::vector<at::Tensor> wide;
    for (int64_t l = 0; l < num_levels; ++l) {
      const auto& f = *feats[l];
      if (f.dim() != 4 || f.scalar_type() != first.scalar_type() || f.device() != first.device() ||
          f.size(0) != first.size(0) || f.size(1) != first.size(1) ||
          !at::isFloatingType(f.scalar_type())) {
        throw std::invalid_argument(
            "feature levels must be floating (N, C, H, W) tensors of one dtype, device, N and C");
      }
      wide.push_back(f.to(compute).contiguous());
    }
    if (rois->dim() != 2 || rois->size(1) != 5 || levels->dim() != 1 ||
        levels->size(0) != rois->size(0) || levels->scalar_type() != at::kLong) {
      throw std::invalid_argument("rois must be (R, 5) and levels (R,) int64");
    }
    if (pooled_h <= 0 || pooled_w <= 0) {
      throw std::invalid_argument("output_size must be positive");
    }
    auto result = MultiLevelRoIAlignFunction::apply(
        at::TensorList(wide), rois->detach().to(compute).contiguous(),
        levels->contiguous().clamp(0, num_levels - 1),
        std::vector<double>(scales, scales + num_levels),
        pooled_h, pooled_w, sampling_ratio, aligned != 0, emulate_cuda ? 1 : 0,
        at::GradMode::is_enabled());
    *out = new at::Tensor(result.to(first.scalar_type()));
    return DETC_OK;
  });
}

// Settles this thread's RoI checks that training left unread: DETC_ERROR
// with the first refusal's message if one refused its RoIs (their pooled
// values were NaN), DETC_OK otherwise. One read from the device, if any is
// pending.
int detc_roi_align_settle_checks() {
  return guarded([&] {
    settle_pending_check();
    return DETC_OK;
  });
}

// Whether CUDA device `device` can run the kernels: DETC_OK once they are
// compiled and loaded, DETC_UNAVAILABLE in a build without CUDA, DETC_ERROR
// (with NVRTC's or the driver's message) when compiling or loading failed.
// The target NVRTC compiled for goes to *target (NUL-terminated, at most
// `capacity` bytes).
int detc_roi_align_cuda_prepare(int device, char* target, int64_t capacity) {
  return naming_target(target, capacity, [&] { return prepare_roi_align_cuda(device); });
}

// Compiles the kernels for compute capability `arch` without a GPU (tests),
// with the statuses and *target of detc_roi_align_cuda_prepare.
int detc_roi_align_cuda_compile(int arch, char* target, int64_t capacity) {
  return naming_target(target, capacity, [&] { return compile_roi_align_cuda(arch); });
}

}  // extern "C"
