// Timing events on a CUDA stream (torch.cuda.Event(enable_timing=True)),
// for `detc bench`'s phase times: recorded without waiting for the device,
// read once the timed steps are over. Through c10's device-generic Event,
// like the memory statistics in shim.cpp, so no CUDA headers are needed;
// without a CUDA libtorch loaded the calls fail with c10's message.

#include <c10/core/Device.h>
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <memory>

#include "status.h"

using namespace detc;

extern "C" {

// A new timing event, recorded on the current stream of CUDA device
// `device` (event.record()); *out owns it until detc_cuda_event_free.
int detc_cuda_event_record(int device, void** out) {
  return guarded([&] {
    c10::Device where(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device));
    c10::impl::VirtualGuardImpl cuda(c10::DeviceType::CUDA);
    auto event = std::make_unique<c10::Event>(c10::DeviceType::CUDA, c10::EventFlag::BACKEND_DEFAULT);
    event->record(cuda.getStream(where));
    *out = event.release();
    return DETC_OK;
  });
}

// Milliseconds from `start` to `end` on the device (start.elapsed_time(end)),
// after waiting for `end` to complete.
int detc_cuda_event_elapsed_ms(const void* start, const void* end, double* out) {
  return guarded([&] {
    auto* from = static_cast<const c10::Event*>(start);
    auto* to = static_cast<const c10::Event*>(end);
    to->synchronize();
    *out = from->elapsedTime(*to);
    return DETC_OK;
  });
}

void detc_cuda_event_free(void* event) { delete static_cast<c10::Event*>(event); }

}  // extern "C"
