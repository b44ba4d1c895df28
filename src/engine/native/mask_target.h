// What the mask targets' translation units share: mask_target.cpp (the entry
// point, checks and the CPU emulation of mask_target.cu's kernel) and
// roi_align_cuda.cpp (that kernel on the GPU, compiled by NVRTC with
// RoIAlign's).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace detc {

// One image's targets: `masks` (G, Hm, Wm) uint8, `boxes` (K, 4) float,
// `inds` (K,) int64 and `out` (K, Ph, Pw) float, contiguous, on one device.
struct MaskTargetLaunch {
  const at::Tensor& masks;
  const at::Tensor& boxes;
  const at::Tensor& inds;
  at::Tensor& out;
};

// roi_align_cuda.cpp; throws when detc-engine was built without CUDA.
void launch_mask_target_cuda(const MaskTargetLaunch& launch);

}  // namespace detc
