// What NMS's translation units share: nms.cpp (the entry point, checks and
// the CPU emulation of nms.cu's kernels) and roi_align_cuda.cpp (those
// kernels on the GPU, compiled by NVRTC with RoIAlign's).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace detc {

// One NMS over `boxes` (n, 4), sorted by decreasing score, contiguous float
// or double: the kernels fill `mask` (n x col_blocks int64 words) and use
// `removed` (col_blocks words), then set `keep` (n bool, false) at the
// first `limit` kept positions, sweeping only the first `count` boxes
// (an int64 scalar) when given. All on the boxes' device.
struct NmsLaunch {
  const at::Tensor& boxes;
  at::Tensor& mask;
  at::Tensor& removed;
  at::Tensor& keep;
  int64_t n, col_blocks, limit;
  double thr, offset;
  const at::Tensor* count = nullptr;
};

// roi_align_cuda.cpp; throws when detc-engine was built without CUDA.
void launch_nms_cuda(const NmsLaunch& launch);

}  // namespace detc
