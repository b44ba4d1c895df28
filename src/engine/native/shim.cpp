// The engine's C++ shim: what the training loop needs from libtorch that
// tch 0.24 does not bind. Compiled by build.rs, called through the
// `extern "C"` functions below and wrapped by src/engine/native/*.rs.
//
// Every function returns a status and never lets a C++ exception unwind
// into Rust (status.h). RoIAlign's CPU kernel is in roi_align.cpp.

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/CachingDeviceAllocator.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "status.h"

namespace detc {
thread_local std::string last_error;
}  // namespace detc

using namespace detc;

namespace {

// The device codes of native/autocast.rs.
bool device_type(int code, c10::DeviceType* out) {
  switch (code) {
    case 0:
      *out = c10::DeviceType::CPU;
      return true;
    case 1:
      *out = c10::DeviceType::CUDA;
      return true;
    default:
      last_error = "unknown autocast device code " + std::to_string(code);
      return false;
  }
}

}  // namespace

extern "C" {

const char* detc_native_last_error() { return last_error.c_str(); }

// torch.autocast.__enter__: saves the previous state into *prev_*, then
// enables autocast for the device with `dtype` (a c10::ScalarType code)
// and increments the nesting.
int detc_autocast_enter(int device, int dtype, int enabled, int* prev_enabled,
                        int* prev_dtype) {
  return guarded([&] {
    c10::DeviceType type;
    if (!device_type(device, &type)) return DETC_ERROR;
    *prev_enabled = at::autocast::is_autocast_enabled(type) ? 1 : 0;
    *prev_dtype = static_cast<int>(at::autocast::get_autocast_dtype(type));
    at::autocast::set_autocast_enabled(type, enabled != 0);
    at::autocast::set_autocast_dtype(type, static_cast<c10::ScalarType>(dtype));
    at::autocast::increment_nesting();
    return DETC_OK;
  });
}

// torch.autocast.__exit__: drops the cast cache when leaving the outermost
// autocast region (cached casts of the weights would be stale after the
// optimizer step) and restores the previous state.
int detc_autocast_exit(int device, int prev_enabled, int prev_dtype) {
  return guarded([&] {
    c10::DeviceType type;
    if (!device_type(device, &type)) return DETC_ERROR;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(type, prev_enabled != 0);
    at::autocast::set_autocast_dtype(type, static_cast<c10::ScalarType>(prev_dtype));
    return DETC_OK;
  });
}

// Whether autocast is on for the device (torch.is_autocast_enabled).
int detc_autocast_is_enabled(int device, int* out) {
  return guarded([&] {
    c10::DeviceType type;
    if (!device_type(device, &type)) return DETC_ERROR;
    *out = at::autocast::is_autocast_enabled(type) ? 1 : 0;
    return DETC_OK;
  });
}

// The autocast dtype of the device (torch.get_autocast_dtype).
int detc_autocast_dtype(int device, int* out) {
  return guarded([&] {
    c10::DeviceType type;
    if (!device_type(device, &type)) return DETC_ERROR;
    *out = static_cast<int>(at::autocast::get_autocast_dtype(type));
    return DETC_OK;
  });
}

// CUDA memory statistics go through c10's device-generic allocator
// interface (what torch.accelerator.max_memory_allocated uses) and the CUDA
// hooks, so the shim needs no CUDA headers (the nvidia-* wheels lack
// crt/host_config.h) and does not link libc10_cuda: without a CUDA libtorch
// loaded the hooks report no device.

// The CUDA caching allocator of a visible device, or nullptr with
// DETC_UNAVAILABLE. It is not set up before the first CUDA allocation
// (*ready false), when torch.cuda.memory_stats is empty (peak 0).
static int cuda_allocator(int device, c10::DeviceAllocator** out, bool* ready) {
  if (device < 0 || device >= static_cast<int>(at::detail::getCUDAHooks().deviceCount())) {
    return DETC_UNAVAILABLE;
  }
  *out = c10::getDeviceAllocator(c10::DeviceType::CUDA);
  *ready = (*out)->initialized();
  return DETC_OK;
}

// torch.cuda.max_memory_allocated(device): the peak of
// `allocated_bytes.all` since the last reset.
int detc_cuda_max_memory_allocated(int device, uint64_t* out) {
  return guarded([&] {
    c10::DeviceAllocator* allocator = nullptr;
    bool ready = false;
    int status = cuda_allocator(device, &allocator, &ready);
    if (status != DETC_OK) return status;
    *out = 0;
    if (!ready) return DETC_OK;
    auto stats = allocator->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    auto peak = stats.allocated_bytes[aggregate].peak;
    *out = peak < 0 ? 0 : static_cast<uint64_t>(peak);
    return DETC_OK;
  });
}

// torch.cuda.reset_peak_memory_stats(device); nothing to reset before the
// allocator is set up.
int detc_cuda_reset_peak_memory_stats(int device) {
  return guarded([&] {
    c10::DeviceAllocator* allocator = nullptr;
    bool ready = false;
    int status = cuda_allocator(device, &allocator, &ready);
    if (status != DETC_OK || !ready) return status;
    allocator->resetPeakStats(static_cast<c10::DeviceIndex>(device));
    return DETC_OK;
  });
}

// torch.cuda.empty_cache(): returns the cached, unused blocks of the CUDA
// caching allocator to the driver; nothing to do before it is set up.
int detc_cuda_empty_cache(int device) {
  return guarded([&] {
    c10::DeviceAllocator* allocator = nullptr;
    bool ready = false;
    int status = cuda_allocator(device, &allocator, &ready);
    if (status != DETC_OK || !ready) return status;
    allocator->emptyCache();
    return DETC_OK;
  });
}

// randomness.deterministic: torch.backends.cudnn.deterministic = True and
// torch.backends.cudnn.benchmark = False (MMEngine's set_random_seed), for
// the process.
int detc_set_cudnn_deterministic(int on) {
  return guarded([&] {
    at::globalContext().setDeterministicCuDNN(on != 0);
    if (on != 0) at::globalContext().setBenchmarkCuDNN(false);
    return DETC_OK;
  });
}

// Tensor.contiguous(memory_format=torch.channels_last): tch binds only the
// default format. A tensor already in it is returned as it is (shared).
int detc_channels_last(const at::Tensor* t, at::Tensor** out) {
  return guarded([&] {
    if (t->dim() != 4) throw std::invalid_argument("channels_last needs a 4-D tensor");
    *out = new at::Tensor(t->contiguous(at::MemoryFormat::ChannelsLast));
    return DETC_OK;
  });
}

// Tensor.is_contiguous(memory_format=torch.channels_last).
int detc_is_channels_last(const at::Tensor* t, int* out) {
  return guarded([&] {
    *out = t->is_contiguous(at::MemoryFormat::ChannelsLast) ? 1 : 0;
    return DETC_OK;
  });
}

}  // extern "C"
