// c10d's NCCL process group, for the CUDA tensors of a job on GPUs
// (dist.cpp keeps Gloo for host tensors, as torch.distributed's default
// "cpu:gloo,cuda:nccl" does).
//
// A translation unit of its own because it needs what the others do not:
// USE_C10D_NCCL and the CUDA and NCCL headers, which come from the pip
// packages beside the torch wheel (nvidia/cu13, nvidia/nccl, and the small
// nvidia-cuda-crt and nvidia-cuda-cccl that scripts/bootstrap adds). build.rs
// defines DETC_WITH_NCCL only when libtorch has CUDA and those headers are
// there; otherwise asking for NCCL is an error that says so.

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <stdexcept>

#ifdef DETC_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace detc {

bool nccl_built() {
#ifdef DETC_WITH_NCCL
  return true;
#else
  return false;
#endif
}

// The NCCL group of this rank, on CUDA device `device` (made current, as
// `torch.cuda.set_device(local_rank)`). Its keys live under "nccl/" in the
// job's store, apart from the Gloo group's.
c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>& store,
                                            int rank, int world,
                                            std::chrono::milliseconds timeout, int device) {
#ifdef DETC_WITH_NCCL
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("nccl/", store);
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, world, options);
#else
  (void)store, (void)rank, (void)world, (void)timeout, (void)device;
  throw std::runtime_error(
      "this detc-engine was built without NCCL (its libtorch has no CUDA, or the CUDA and "
      "NCCL headers were missing when it was built: run scripts/bootstrap and rebuild)");
#endif
}

}  // namespace detc
