// roi_align.cu's kernels run on the CPU, for the tests (roi_align_host.h):
// one thread visits the output values in order, so the kernels must equal
// roi_align.cpp's CPU kernel bit for bit, and so torchvision's arithmetic;
// on the GPU only the order of the backward's additions changes.

#include <stdexcept>

#include "roi_align.h"
#include "roi_align_host.h"

namespace detc {

namespace {

template <typename T>
void run(const RoiLaunch& l, const RoiGeometry& g) {
  using kernels::i64;
  const T* in = l.in.data_ptr<T>();
  const T* rois = l.rois.data_ptr<T>();
  T* out = l.out.data_ptr<T>();
  auto kernel = l.pass == RoiPass::Forward ? kernels::detc_roi_align_forward<T>
                                           : kernels::detc_roi_align_backward<T>;
  kernel(in, rois, out,
         kernels::RoiAlignShape{
             l.total, l.channels, l.height, l.width, g.pooled_h, g.pooled_w, g.sampling_ratio,
             g.spatial_scale, g.aligned ? 1 : 0,
             l.levels ? reinterpret_cast<const i64*>(l.levels->data_ptr()) : nullptr, l.level,
             l.refused ? l.refused->data_ptr<double>() : nullptr});
}

}  // namespace

void launch_roi_align_emulated(const RoiLaunch& l, const RoiGeometry& g) {
  if (!l.in.device().is_cpu()) throw std::invalid_argument("the emulated kernels take CPU tensors");
  AT_DISPATCH_FLOATING_TYPES(l.in.scalar_type(), "detc_roi_align_emulated",
                             [&] { run<scalar_t>(l, g); });
}

}  // namespace detc
