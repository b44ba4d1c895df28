// What NMS's translation units share: nms.cpp (the entry point, checks and
// the CPU emulation of nms.cu's kernels) and roi_align_cuda.cpp (those
// kernels on the GPU, compiled by NVRTC with RoIAlign's).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace detc {

// The NMS of `batch` images over `boxes` (batch, n, 4), each image's sorted
// by decreasing score, contiguous float or double: the kernels fill `mask`
// (batch x n x col_blocks int64 words) and use `removed` (batch x
// col_blocks words), then set `keep` (batch x n bool, false) at each
// image's first `limit` kept positions, sweeping only an image's first
// count[b] boxes when `count` (batch int64) is given. All on the boxes'
// device.
struct NmsLaunch {
  const at::Tensor& boxes;
  at::Tensor& mask;
  at::Tensor& removed;
  at::Tensor& keep;
  int64_t batch, n, col_blocks, limit;
  double thr, offset;
  const at::Tensor* count = nullptr;
};

// roi_align_cuda.cpp; throws when detc-engine was built without CUDA.
void launch_nms_cuda(const NmsLaunch& launch);

}  // namespace detc
