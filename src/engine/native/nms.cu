// Non-maximum suppression's CUDA kernels, for boxes already sorted by
// decreasing score (models::ops::nms sorts them on the device), for
// `batch` images at once, n boxes each (one image's boxes never suppress
// another's):
//
// 1. detc_nms_mask_*: one thread per (box i, block of 64 later boxes) sets
//    bit k of its word when box i overlaps box 64*block+k (> i) by an IoU
//    above the threshold, with torchvision's CPU arithmetic in the boxes'
//    precision: inter / (area_i + area_j - inter), widths and heights plus
//    mmcv's offset, the float IoU compared with the double threshold.
// 2. detc_nms_keep: one block per image sweeps its boxes in order, keeping
//    each box that no kept box suppressed and OR-ing its row of the mask
//    into the running suppression words, until `limit` boxes are kept.
//    With `count` (an int64 per image, on the device), only an image's
//    first count[b] boxes are swept: the caller sorted the boxes it filters
//    out last, so they neither are kept nor suppress (as if removed before
//    NMS), and nothing is read back for it.
//
// roi_align_cuda.cpp compiles this file with NVRTC beside roi_align.cu;
// nms.cpp compiles it as C++ (roi_align_host.h) and runs the kernels on
// one CPU thread for the tests. So it uses nothing beyond C++ and
// __syncthreads, and includes no header.

typedef long long i64;
typedef unsigned long long u64;

#ifndef DETC_KERNEL_LINKAGE
#define DETC_KERNEL_LINKAGE extern "C"
#endif

#define DETC_NMS_BLOCK 64

// mask: (batch, n, col_blocks) words; boxes: (batch, n, 4).
template <typename T>
__device__ __forceinline__ void detc_nms_mask(const T* boxes, i64 batch, i64 n, i64 col_blocks,
                                              double thr, T offset, u64* mask) {
  const i64 total = batch * n * col_blocks;
  for (i64 idx = blockIdx.x * (i64)blockDim.x + threadIdx.x; idx < total;
       idx += (i64)blockDim.x * gridDim.x) {
    const i64 row = idx / col_blocks;  // image * n + i
    const i64 i = row % n;
    const i64 first = (idx % col_blocks) * DETC_NMS_BLOCK;
    const T* image = boxes + 4 * (row - i);
    const T* a = image + 4 * i;
    const T area_a = (a[2] - a[0] + offset) * (a[3] - a[1] + offset);
    u64 word = 0;
    for (int k = 0; k < DETC_NMS_BLOCK; ++k) {
      const i64 j = first + k;
      if (j >= n) break;
      if (j <= i) continue;
      const T* b = image + 4 * j;
      const T area_b = (b[2] - b[0] + offset) * (b[3] - b[1] + offset);
      // max/min as torchvision's CPU kernel writes them (std::max, std::min).
      const T x1 = a[0] < b[0] ? b[0] : a[0];
      const T y1 = a[1] < b[1] ? b[1] : a[1];
      const T x2 = b[2] < a[2] ? b[2] : a[2];
      const T y2 = b[3] < a[3] ? b[3] : a[3];
      T w = x2 - x1 + offset;
      T h = y2 - y1 + offset;
      w = w < T(0) ? T(0) : w;
      h = h < T(0) ? T(0) : h;
      const T inter = w * h;
      const T ovr = inter / (area_a + area_b - inter);
      if (static_cast<double>(ovr) > thr) word |= 1ULL << k;
    }
    mask[idx] = word;
  }
}

DETC_KERNEL_LINKAGE __global__ void detc_nms_mask_float(const float* boxes, i64 batch, i64 n,
                                                        i64 col_blocks, double thr, float offset,
                                                        u64* mask) {
  detc_nms_mask<float>(boxes, batch, n, col_blocks, thr, offset, mask);
}

DETC_KERNEL_LINKAGE __global__ void detc_nms_mask_double(const double* boxes, i64 batch, i64 n,
                                                         i64 col_blocks, double thr,
                                                         double offset, u64* mask) {
  detc_nms_mask<double>(boxes, batch, n, col_blocks, thr, offset, mask);
}

// One block per image (a grid-stride loop over the images, so that the
// CPU emulation's one block sweeps them all in turn). `removed` (batch x
// col_blocks words, global memory) holds which boxes a kept box
// suppressed; each block of 64 boxes reads its word once, and every thread
// then follows the kept rows' own word for that block, so all threads take
// the same decisions and the block synchronises twice per 64 boxes. keep
// (batch x n bytes, zeroed) gets 1 at each kept position; `count`
// (nullable, one per image) limits an image's sweep to its first count[b]
// boxes.
DETC_KERNEL_LINKAGE __global__ void detc_nms_keep(const u64* mask, i64 batch, i64 n, i64 col_blocks,
                                                  i64 limit, const i64* count, u64* removed,
                                                  unsigned char* keep) {
  for (i64 b = blockIdx.x; b < batch; b += gridDim.x) {
    const u64* image_mask = mask + b * n * col_blocks;
    u64* image_removed = removed + b * col_blocks;
    unsigned char* image_keep = keep + b * n;
    i64 swept = n;
    if (count != 0 && count[b] < n) swept = count[b] < 0 ? 0 : count[b];
    for (i64 j = threadIdx.x; j < col_blocks; j += blockDim.x) image_removed[j] = 0;
    i64 kept = 0;
    for (i64 block = 0; block < col_blocks && kept < limit; ++block) {
      __syncthreads();  // the previous block's writes are seen
      u64 suppressed = image_removed[block];
      __syncthreads();  // every thread has read before any writes again
      for (int k = 0; k < DETC_NMS_BLOCK && kept < limit; ++k) {
        const i64 i = block * DETC_NMS_BLOCK + k;
        if (i >= swept) break;
        if (suppressed & (1ULL << k)) continue;
        if (threadIdx.x == 0) image_keep[i] = 1;
        ++kept;
        const u64* row = image_mask + i * col_blocks;
        suppressed |= row[block];
        for (i64 j = block + 1 + threadIdx.x; j < col_blocks; j += blockDim.x) image_removed[j] |= row[j];
      }
    }
  }
}
