// Counts the libtorch operators a thread of work dispatches, for
// `DETC_PROFILE`: on CUDA each operator is at least one launch from the
// host, and some wait for the device (host synchronisations), so these two
// counts are what bounds a step that is short of GPU work. Counted through
// a global RecordFunction callback (what torch.profiler observes), so the
// CPU counts are the CUDA ones: the same operators run on either device.

#include <ATen/record_function.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>

#include "status.h"

using namespace detc;

namespace {

std::atomic<int64_t> top_level_ops{0};
std::atomic<int64_t> all_ops{0};
std::atomic<int64_t> host_syncs{0};
// Operators nested inside another (conv2d -> convolution -> ...) are one
// call from the model; only the outermost counts as an operator call.
thread_local int depth = 0;

std::mutex handle_mutex;
std::optional<at::CallbackHandle> handle;

// The operators that wait for the device on CUDA: reading a value to the
// host (`item`, `bool(t)`, every scalar read) and sizing a result by its
// data (`nonzero`, also behind boolean-mask indexing and masked_select).
bool waits_for_device(const char* name) {
  return std::strcmp(name, "aten::_local_scalar_dense") == 0 ||
         std::strcmp(name, "aten::nonzero") == 0;
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (depth++ == 0) top_level_ops.fetch_add(1, std::memory_order_relaxed);
  all_ops.fetch_add(1, std::memory_order_relaxed);
  if (waits_for_device(fn.name())) host_syncs.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

void on_end(const at::RecordFunction&, at::ObserverContext*) { --depth; }

}  // namespace

extern "C" {

// Starts counting (idempotent); the counts keep growing until stopped.
int detc_op_count_start() {
  return guarded([&] {
    std::lock_guard<std::mutex> lock(handle_mutex);
    if (!handle) {
      handle = at::addGlobalCallback(
          at::RecordFunctionCallback(on_start, on_end)
              .needsInputs(false)
              .needsOutputs(false)
              .scopes({at::RecordScope::FUNCTION}));
    }
    return DETC_OK;
  });
}

// The counts so far: operator calls (outermost), every dispatched operator,
// and host synchronisations.
int detc_op_count_read(int64_t* ops, int64_t* dispatched, int64_t* syncs) {
  *ops = top_level_ops.load(std::memory_order_relaxed);
  *dispatched = all_ops.load(std::memory_order_relaxed);
  *syncs = host_syncs.load(std::memory_order_relaxed);
  return DETC_OK;
}

int detc_op_count_stop() {
  return guarded([&] {
    std::lock_guard<std::mutex> lock(handle_mutex);
    if (handle) {
      at::removeCallback(*handle);
      handle.reset();
    }
    return DETC_OK;
  });
}

}  // extern "C"
