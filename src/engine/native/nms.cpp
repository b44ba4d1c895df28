// NMS on sorted boxes with nms.cu's kernels: on CUDA through NVRTC
// (roi_align_cuda.cpp), on the CPU the same kernels run on one thread
// (roi_align_host.h) so that the tests check their arithmetic and sweep.

#include <stdexcept>

#include "nms.h"
#include "roi_align_host.h"
#include "status.h"

namespace detc {

namespace {

template <typename T>
void emulate(const NmsLaunch& l) {
  auto* mask = reinterpret_cast<kernels::u64*>(l.mask.data_ptr<int64_t>());
  auto* removed = reinterpret_cast<kernels::u64*>(l.removed.data_ptr<int64_t>());
  kernels::detc_nms_mask<T>(l.boxes.data_ptr<T>(), l.batch, l.n, l.col_blocks, l.thr,
                            static_cast<T>(l.offset), mask);
  kernels::detc_nms_keep(mask, l.batch, l.n, l.col_blocks, l.limit,
                         l.count ? reinterpret_cast<const kernels::i64*>(l.count->data_ptr<int64_t>())
                                 : nullptr,
                         removed, static_cast<unsigned char*>(l.keep.data_ptr()));
}

}  // namespace

}  // namespace detc

extern "C" {

// NMS of `boxes` (N, 4) x1y1x2y2, float or double, already sorted by
// decreasing score, on CUDA (on the CPU: nms.cu's kernels emulated, for the
// tests): a box is dropped when its IoU with a kept earlier box is
// > iou_threshold (mmcv's `offset` added to sides); at most `limit` kept.
// `count` (nullable): an int64 scalar on the boxes' device, the number of
// leading boxes to sweep (the rest are neither kept nor suppress).
// Boxes (B, N, 4) are B images, each its own NMS (their boxes sorted each
// on its own; `count` then (B,)).
// On DETC_OK, *out holds a new (N,) (or (B, N)) bool tensor on the boxes'
// device, true at the kept positions, that tch takes over.
int detc_nms_sorted(const at::Tensor* boxes, double iou_threshold, double offset, int64_t limit,
                    const at::Tensor* count, at::Tensor** out) {
  return detc::guarded([&] {
    const auto& b = *boxes;
    if (!(b.dim() == 2 || b.dim() == 3) || b.size(-1) != 4 ||
        !(b.scalar_type() == at::kFloat || b.scalar_type() == at::kDouble) ||
        !(b.device().is_cpu() || b.device().is_cuda())) {
      throw std::invalid_argument(
          "boxes must be (N, 4) or (B, N, 4) float or double on the CPU or CUDA");
    }
    const int64_t batch = b.dim() == 3 ? b.size(0) : 1;
    if (count && (count->numel() != batch || count->dim() != b.dim() - 2 ||
                  count->scalar_type() != at::kLong || count->device() != b.device())) {
      throw std::invalid_argument(
          "count must be one int64 per image (a scalar for (N, 4) boxes, (B,) for (B, N, 4)) "
          "on the boxes' device");
    }
    const auto sorted = b.contiguous();
    const int64_t n = sorted.size(-2);
    const int64_t col_blocks = (n + DETC_NMS_BLOCK - 1) / DETC_NMS_BLOCK;
    const auto words = sorted.options().dtype(at::kLong);
    auto mask = at::empty({batch * n * col_blocks}, words);
    auto removed = at::empty({batch * col_blocks}, words);
    auto keep = at::zeros(sorted.sizes().slice(0, sorted.dim() - 1), sorted.options().dtype(at::kBool));
    if (batch > 0 && n > 0 && limit > 0) {
      const auto leading = count ? count->contiguous() : at::Tensor();
      const detc::NmsLaunch launch{sorted,     mask,  removed,       keep,   batch,
                                   n,          col_blocks, limit,    iou_threshold,
                                   offset,     count ? &leading : nullptr};
      if (sorted.device().is_cuda()) {
        detc::launch_nms_cuda(launch);
      } else if (sorted.scalar_type() == at::kDouble) {
        detc::emulate<double>(launch);
      } else {
        detc::emulate<float>(launch);
      }
    }
    *out = new at::Tensor(keep);
    return detc::DETC_OK;
  });
}

}  // extern "C"
