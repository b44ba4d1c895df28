// What RoIAlign's translation units share: roi_align.cpp (the autograd
// function, the CPU kernel, and the launches of roi_align.cu's kernels),
// roi_align_cuda.cpp (those kernels on the GPU, compiled by NVRTC) and
// roi_align_emulated.cpp (the same kernels on the CPU, for the tests).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace detc {

struct RoiGeometry {
  double spatial_scale;
  int64_t pooled_h, pooled_w, sampling_ratio;
  bool aligned;
};

enum class RoiPass { Forward = 0, Backward = 1 };

// One launch of roi_align.cu's kernel for `pass`, one thread per output
// value (`total` = R x C x Ph x Pw): forward reads the features `in`
// (N, C, H, W) into `out` (R, C, Ph, Pw); backward scatters the output
// gradient `in` into the zeroed features' gradient `out`. Tensors are
// contiguous float or double, `rois` (R, 5) of the same dtype.
// With `levels` (R,) int64, the launch serves the RoIs of one feature level
// (`level`) and leaves the others' output values alone. `refused` is the
// RoI check's result on the rois' device (roi_align.cpp's `RoiCheck`), its
// first value nonzero when the kernels must not sample (roi_align.cu).
struct RoiLaunch {
  RoiPass pass;
  const at::Tensor& in;
  const at::Tensor& rois;
  at::Tensor& out;
  int64_t total, channels, height, width;
  const at::Tensor* levels = nullptr;
  int64_t level = 0;
  const at::Tensor* refused = nullptr;
};

// roi_align_cuda.cpp; these throw when detc-engine was built without CUDA.
void launch_roi_align_cuda(const RoiLaunch& launch, const RoiGeometry& g);
// Compiles and loads the kernels for CUDA device `device` (once per device);
// returns the target NVRTC compiled for (`sm_90`).
std::string prepare_roi_align_cuda(int device);
// Compiles the kernels with NVRTC for compute capability `arch` (e.g. 90),
// without a GPU; returns the target it compiled for (`sm_90`).
std::string compile_roi_align_cuda(int arch);
bool roi_align_cuda_built();

// roi_align_emulated.cpp.
void launch_roi_align_emulated(const RoiLaunch& launch, const RoiGeometry& g);

}  // namespace detc
