// roi_align.cu, nms.cu and mask_target.cu compiled as C++ for the host, in namespace
// detc::kernels: the CPU kernel (roi_align.cpp) takes its geometry and
// bilinear taps from it, and roi_align_emulated.cpp and nms.cpp run the
// kernels on one CPU thread. The CUDA words they use mean, here: one thread
// (blockDim = gridDim = 1, so a kernel's grid-stride loop visits every
// output value in order), a plain atomicAdd, and __syncthreads doing
// nothing.
#pragma once

#include <cmath>

namespace detc {
namespace kernels {

#define __global__
#define __device__
#define __forceinline__ inline
#define DETC_KERNEL_LINKAGE inline

struct Index {
  unsigned x;
};
constexpr Index blockIdx{0}, threadIdx{0}, blockDim{1}, gridDim{1};

template <typename T>
T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}

inline void __syncthreads() {}

// Float operations each rounded on their own, as NVRTC keeps them (the
// shim is built as ISO C++17, which does not contract either).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }

#include "roi_align.cu"
#include "nms.cu"
#include "mask_target.cu"

#undef __global__
#undef __device__
#undef __forceinline__
#undef DETC_KERNEL_LINKAGE

}  // namespace kernels
}  // namespace detc
