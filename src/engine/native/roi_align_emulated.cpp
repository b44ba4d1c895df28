// roi_align.cu's kernels compiled as C++ and run on the CPU, for the tests:
// one thread (blockDim = gridDim = 1, so each kernel's grid-stride loop
// visits every output value in order) and a plain atomicAdd. In that order
// the kernels must equal roi_align.cpp's CPU kernel bit for bit, and so
// torchvision's arithmetic; on the GPU only the order of the backward's
// additions changes.

#include <cmath>
#include <stdexcept>

#include "roi_align.h"

namespace detc {
namespace emulated {

#define __global__
#define __device__
#define __forceinline__ inline

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

#include "roi_align.cu"

#undef __global__
#undef __device__
#undef __forceinline__

template <typename T>
void run(const RoiLaunch& l, const RoiGeometry& g) {
  const T* in = l.in.data_ptr<T>();
  const T* rois = l.rois.data_ptr<T>();
  T* out = l.out.data_ptr<T>();
  auto kernel = l.pass == RoiPass::Forward ? detc_roi_align_forward<T> : detc_roi_align_backward<T>;
  kernel(in, rois, out,
         RoiAlignShape{l.total, l.channels, l.height, l.width, g.pooled_h, g.pooled_w,
                       g.sampling_ratio, g.spatial_scale, g.aligned ? 1 : 0,
                       l.levels ? reinterpret_cast<const i64*>(l.levels->data_ptr()) : nullptr,
                       l.level});
}

}  // namespace emulated

void launch_roi_align_emulated(const RoiLaunch& l, const RoiGeometry& g) {
  if (!l.in.device().is_cpu()) throw std::invalid_argument("the emulated kernels take CPU tensors");
  AT_DISPATCH_FLOATING_TYPES(l.in.scalar_type(), "detc_roi_align_emulated",
                             [&] { emulated::run<scalar_t>(l, g); });
}

}  // namespace detc
