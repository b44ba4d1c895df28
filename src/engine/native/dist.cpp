// PyTorch's c10d for the engine's workers: a TCPStore rendezvous, a Gloo
// process group and, for a job on GPUs, an NCCL one (dist_nccl.cpp), and the
// collectives data-parallel training needs (all-reduce, broadcast,
// all-gather, barrier) on tch tensors, each waited for before it returns:
// CUDA tensors go through NCCL when the job has it, host tensors through
// Gloo (torch.distributed's "cpu:gloo,cuda:nccl"). Wrapped by
// src/engine/native/process_group.rs.
//
// Gloo's headers are not in the torch wheel; Debian's libgloo-dev provides
// them (scripts/bootstrap installs it). Gloo itself is compiled into
// libtorch_cpu, so nothing more is linked.

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#include <torch/csrc/autograd/custom_function.h>

#include <chrono>
#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "status.h"

namespace detc {
// Defined in dist_nccl.cpp.
bool nccl_built();
c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>& store,
                                            int rank, int world,
                                            std::chrono::milliseconds timeout, int device);
}  // namespace detc

using namespace detc;

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
  c10::intrusive_ptr<c10d::Backend> nccl;  // null unless the job runs on GPUs
  int rank;
  int world;

  // The group a collective on `t` runs in.
  c10d::Backend& backend_for(const at::Tensor& t) {
    if (nccl && t.is_cuda()) return *nccl;
    return *gloo;
  }

  // The backends as one c10d::ProcessGroup, dispatching by device type, as
  // torch.distributed builds its default group (DDP's Reducer takes one).
  c10::intrusive_ptr<c10d::ProcessGroup> process_group() {
    using Type = c10d::ProcessGroup::BackendType;
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, world);
    pg->setBackend(c10::DeviceType::CPU, Type::GLOO, gloo);
    if (nccl) {
      pg->setBackend(c10::DeviceType::CUDA, Type::NCCL, nccl);
      pg->setDefaultBackend(Type::NCCL);
    } else {
      pg->setBackend(c10::DeviceType::CUDA, Type::GLOO, gloo);
      pg->setDefaultBackend(Type::GLOO);
    }
    return pg;
  }
};

// PyTorch DDP's gradient reducer: buckets of parameters whose gradients are
// all-reduced (and divided by the world size) as soon as backward has
// produced all of a bucket's, while backward goes on; at the end of
// backward each parameter's .grad holds the job's mean.
struct Ddp {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::unique_ptr<c10d::Reducer> reducer;
};

// Drops the Reducer's advice to turn find_unused_parameters off when a step
// used every parameter: detc always looks for unused ones (a detector's
// heads can go unused when a batch has no positives), the user did not ask
// for it, and a job would print it once per rank. Other warnings pass on.
// c10's handler is per thread, and autograd replays its workers' warnings
// on the thread that called backward, where this is installed.
class UnusedParametersAdviceFilter : public c10::WarningHandler {
 public:
  void install() {
    auto* current = c10::WarningUtils::get_warning_handler();
    if (current == this) return;
    next_ = current;
    c10::WarningUtils::set_warning_handler(this);
  }

  void process(const c10::Warning& warning) override {
    if (warning.msg().find("find_unused_parameters=True was specified") != std::string::npos) {
      return;
    }
    next_->process(warning);
  }

 private:
  c10::WarningHandler* next_ = nullptr;
};

thread_local UnusedParametersAdviceFilter unused_parameters_advice_filter;

Group& group(void* handle) {
  if (handle == nullptr) throw std::invalid_argument("no process group");
  return *static_cast<Group*>(handle);
}

// The interface Gloo binds, as torch.distributed picks it: GLOO_SOCKET_IFNAME
// when set, loopback for a job on this machine, else the address this
// machine's hostname resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  if (master == "localhost" || master.rfind("127.", 0) == 0) {
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

void allreduce_sum(Group& g, at::Tensor& t) {
  std::vector<at::Tensor> tensors{t};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  g.backend_for(t).allreduce(tensors, opts)->wait();
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// A sum over ranks that autograd can pass through: its backward is the sum
// over ranks of the gradients (every rank runs the same backward), which is
// what SyncBatchNorm's statistics need.
struct AllReduceSumFunction : public torch::autograd::Function<AllReduceSumFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t handle) {
    ctx->saved_data["group"] = handle;
    auto out = x.clone();
    allreduce_sum(group(reinterpret_cast<void*>(handle)), out);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto g = grads[0].contiguous().clone();
    allreduce_sum(group(reinterpret_cast<void*>(ctx->saved_data["group"].toInt())), g);
    return {g, at::Tensor()};
  }
};

}  // namespace

// c10d's flight recorder (a trace of the recent collectives, on by default
// for Gloo) is process-wide, and collectives issued from two threads of one
// process at once corrupt it (a SIGSEGV in its std::map insert, about one
// run in ten of the tests' two ranks in threads). detc never dumps its
// traces, so it is off unless the user sets its buffer size. It reads the
// variable when the first group is built, which is here.
static void disable_flight_recorder() {
  if (!std::getenv("TORCH_FR_BUFFER_SIZE") && !std::getenv("TORCH_NCCL_TRACE_BUFFER_SIZE")) {
    setenv("TORCH_FR_BUFFER_SIZE", "0", /*overwrite=*/0);
  }
}

extern "C" {

// out = the sum over ranks of `input`, differentiable (see AllReduceSumFunction).
int detc_dist_allreduce_sum_autograd(void* handle, at::Tensor* input, at::Tensor** out) {
  return guarded([&] {
    group(handle);
    auto result = AllReduceSumFunction::apply(*input, reinterpret_cast<int64_t>(handle));
    *out = new at::Tensor(std::move(result));
    return DETC_OK;
  });
}

// Joins the job: rank 0 serves the TCPStore at host:port when `serve` (on
// `listen_fd` when it is >= 0, a socket the launcher already bound, so no
// other job can take the port in between), the others connect to it; under
// torchrun, whose agent serves the store, every rank connects. Then the Gloo
// group is formed over the store. `timeout_ms` bounds the rendezvous and
// every collective. `cuda_device` >= 0 adds the NCCL group on that device.
int detc_dist_init(const char* host, int port, int rank, int world, int serve, int listen_fd,
                   int64_t timeout_ms, int cuda_device, void** out) {
  return guarded([&] {
    if (world < 1 || rank < 0 || rank >= world) {
      throw std::invalid_argument("rank " + std::to_string(rank) + " is not in a world of " +
                                  std::to_string(world));
    }
    if (port <= 0 || port > 65535) {
      throw std::invalid_argument("port " + std::to_string(port) + " is not a TCP port");
    }
    const auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = rank == 0 && serve != 0;
    opts.numWorkers = static_cast<std::size_t>(world);
    opts.waitWorkers = true;
    opts.timeout = timeout;
    if (rank == 0 && listen_fd >= 0) opts.masterListenFd = listen_fd;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    disable_flight_recorder();
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(gloo_device(host));
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
    c10::intrusive_ptr<c10d::Backend> nccl;
    if (cuda_device >= 0) nccl = make_nccl(store, rank, world, timeout, cuda_device);
    *out = new Group{store, gloo, nccl, rank, world};
    return DETC_OK;
  });
}

void detc_dist_free(void* handle) { delete static_cast<Group*>(handle); }

// Whether this build can form NCCL groups.
int detc_dist_nccl_built() { return nccl_built() ? 1 : 0; }

// In place: the sum over ranks.
int detc_dist_allreduce_sum(void* handle, at::Tensor* tensor) {
  return guarded([&] {
    allreduce_sum(group(handle), *tensor);
    return DETC_OK;
  });
}

// In place: root's values on every rank.
int detc_dist_broadcast(void* handle, at::Tensor* tensor, int root) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    group(handle).backend_for(*tensor).broadcast(tensors, opts)->wait();
    return DETC_OK;
  });
}

// output (world, *input.shape): row r receives rank r's input.
int detc_dist_allgather(void* handle, at::Tensor* input, at::Tensor* output) {
  return guarded([&] {
    Group& g = group(handle);
    if (output->dim() < 1 || output->size(0) != g.world) {
      throw std::invalid_argument("all_gather output must have one row per rank");
    }
    std::vector<at::Tensor> inputs{input->contiguous()};
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < g.world; ++r) outputs[0].push_back(at::empty_like(inputs[0]));
    g.backend_for(inputs[0]).allgather(outputs, inputs)->wait();
    for (int r = 0; r < g.world; ++r) output->select(0, r).copy_(outputs[0][r]);
    return DETC_OK;
  });
}

// DDP's Reducer over `params` (model.parameters() order) with buckets of
// `bucket_cap` bytes (the first of `first_bucket_cap`), as
// DistributedDataParallel builds it: buckets assigned by size, in reverse
// (the order backward produces gradients), rebuilt after the first step in
// the order they were really produced. Parameters that a step does not use
// are found from its loss (`find_unused_parameters`): detectors leave
// some heads unused when an image has no positives.
int detc_ddp_new(void* handle, at::Tensor* const* params, int64_t count, int64_t bucket_cap,
                 int64_t first_bucket_cap, void** out) {
  return guarded([&] {
    Group& g = group(handle);
    std::vector<at::Tensor> tensors;
    for (int64_t i = 0; i < count; ++i) tensors.push_back(*params[i]);
    std::vector<bool> sparse(tensors.size(), false);
    auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
        tensors, {static_cast<size_t>(first_bucket_cap), static_cast<size_t>(bucket_cap)}, sparse);
    std::reverse(buckets.begin(), buckets.end());
    std::reverse(limits.begin(), limits.end());
    std::vector<int64_t> caps(limits.begin(), limits.end());
    auto pg = g.process_group();
    auto reducer = std::make_unique<c10d::Reducer>(
        tensors, std::move(buckets), pg, sparse, bucket_cap, /*find_unused_parameters=*/true,
        /*gradient_as_bucket_view=*/false, std::unordered_map<size_t, std::string>{},
        first_bucket_cap, /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false,
        std::move(caps));
    *out = new Ddp{pg, std::move(reducer)};
    return DETC_OK;
  });
}

void detc_ddp_free(void* ddp) { delete static_cast<Ddp*>(ddp); }

// Before a forward whose backward is to be reduced (DDP's _pre_forward):
// every rank together, as the first call after a step rebuilds the buckets
// with rank 0's gradient order.
int detc_ddp_prepare_forward(void* ddp) {
  return guarded([&] {
    auto& r = *static_cast<Ddp*>(ddp)->reducer;
    unused_parameters_advice_filter.install();
    r.prepare_for_forward();
    r.rebuild_buckets();
    return DETC_OK;
  });
}

// After the forward, before backward of `loss`: arms the reducer's hooks and
// marks the parameters `loss` does not reach as ready.
int detc_ddp_prepare_backward(void* ddp, at::Tensor* loss) {
  return guarded([&] {
    static_cast<Ddp*>(ddp)->reducer->prepare_for_backward({*loss});
    return DETC_OK;
  });
}

int detc_dist_barrier(void* handle) {
  return guarded([&] {
    group(handle).gloo->barrier()->wait();
    return DETC_OK;
  });
}

}  // extern "C"
