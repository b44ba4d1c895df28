// A Chrome trace of a stretch of work, for `detc bench` with `DETC_TRACE`:
// libtorch's Kineto profiler (what torch.profiler drives from Python), with
// the operators on the host and, on CUDA, the kernels, copies and device
// synchronisations on the GPU, so a trace shows where the GPU waits for
// the host and where the host waits for the GPU.

#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <memory>
#include <set>
#include <string>

#include "status.h"

using namespace detc;

namespace profiler = torch::autograd::profiler;
namespace impl = torch::profiler::impl;

namespace {

impl::ProfilerConfig config(bool cuda) {
  // CUDA's synchronisation events (cudaStreamSynchronize, event waits) are
  // what show a host stalled on the device.
  impl::ExperimentalConfig experimental({}, false, false, {}, /*enable_cuda_sync_events=*/cuda);
  // With each operator's input shapes and dtypes (torch.profiler's
  // record_shapes), which tell a conversion from a no-op.
  return impl::ProfilerConfig(impl::ProfilerState::KINETO, /*report_input_shapes=*/true, false, false, false, false,
                              experimental);
}

std::set<impl::ActivityType> activities(bool cuda) {
  std::set<impl::ActivityType> out{impl::ActivityType::CPU};
  if (cuda) out.insert(impl::ActivityType::CUDA);
  return out;
}

}  // namespace

extern "C" {

// Starts tracing this thread's operators (and the autograd threads it
// starts), with CUDA's activity when `cuda` is nonzero.
int detc_trace_start(int cuda) {
  return guarded([&] {
    auto cfg = config(cuda != 0);
    profiler::prepareProfiler(cfg, activities(cuda != 0));
    profiler::enableProfiler(cfg, activities(cuda != 0));
    return DETC_OK;
  });
}

// A mark named `name` in the trace (an empty user scope, as
// torch.profiler.record_function makes): the end of a profile section.
int detc_trace_mark(const char* name) {
  return guarded([&] {
    RECORD_USER_SCOPE(name);
    return DETC_OK;
  });
}

// Stops tracing and writes the Chrome trace (JSON) to `path`.
int detc_trace_stop(const char* path) {
  return guarded([&] {
    std::unique_ptr<profiler::ProfilerResult> result = profiler::disableProfiler();
    if (!result) {
      last_error = "the profiler was not running";
      return DETC_ERROR;
    }
    result->save(path);
    return DETC_OK;
  });
}

}  // extern "C"
