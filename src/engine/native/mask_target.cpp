// Mask targets of bitmap masks with mask_target.cu's kernel: on CUDA through
// NVRTC (roi_align_cuda.cpp), on the CPU the same kernel on one thread
// (roi_align_host.h), so that the tests check its arithmetic against the
// host's.

#include <stdexcept>

#include "mask_target.h"
#include "roi_align_host.h"
#include "status.h"

extern "C" {

// The (K, Ph, Pw) float targets of one image: `masks` (G, Hm, Wm) uint8 of
// 0/1, `boxes` (K, 4) x1y1x2y2 float, `inds` (K,) int64 into the G masks,
// all on one device (CUDA, or the CPU for the tests). A box is clipped to
// the canvas; an index outside the masks gives an empty target (the caller
// checks them where it can read them without waiting). On DETC_OK, *out
// holds a new tensor on that device, which tch takes over.
int detc_mask_target(const at::Tensor* masks, const at::Tensor* boxes, const at::Tensor* inds,
                     int64_t pooled_h, int64_t pooled_w, at::Tensor** out) {
  return detc::guarded([&] {
    const auto device = masks->device();
    if (masks->dim() != 3 || masks->scalar_type() != at::kByte) {
      throw std::invalid_argument("masks must be (G, Hm, Wm) uint8");
    }
    if (boxes->dim() != 2 || boxes->size(1) != 4 || boxes->scalar_type() != at::kFloat ||
        inds->dim() != 1 || inds->size(0) != boxes->size(0) || inds->scalar_type() != at::kLong) {
      throw std::invalid_argument("boxes must be (K, 4) float and inds (K,) int64");
    }
    if (boxes->device() != device || inds->device() != device ||
        !(device.is_cpu() || device.is_cuda())) {
      throw std::invalid_argument("masks, boxes and inds must be on one device, the CPU or CUDA");
    }
    if (pooled_h <= 0 || pooled_w <= 0) throw std::invalid_argument("the mask size must be positive");
    const auto m = masks->contiguous();
    const auto b = boxes->contiguous();
    const auto i = inds->contiguous();
    auto targets = at::empty({b.size(0), pooled_h, pooled_w}, b.options());
    if (b.size(0) > 0) {
      const detc::MaskTargetLaunch launch{m, b, i, targets};
      if (device.is_cuda()) {
        detc::launch_mask_target_cuda(launch);
      } else {
        detc::kernels::detc_mask_target(m.data_ptr<uint8_t>(), m.size(0), m.size(1), m.size(2),
                                        b.data_ptr<float>(), reinterpret_cast<const long long*>(i.data_ptr<int64_t>()),
                                        b.size(0), pooled_h, pooled_w, targets.data_ptr<float>());
      }
    }
    *out = new at::Tensor(targets);
    return detc::DETC_OK;
  });
}

}  // extern "C"
