// RoIAlign's, NMS's and the mask targets' CUDA kernels (roi_align.cu, nms.cu,
// mask_target.cu) on the GPU: compiled at first use
// with NVRTC for the device's compute capability, loaded with the driver
// API into the device's primary context (the one libtorch uses), and
// launched on libtorch's current stream, so they order with the rest of the
// step and never synchronise.
//
// Why NVRTC: the PyPI torch wheel that detc builds against has no nvcc, but
// it depends on NVRTC (libtorch's own jiterator compiles kernels the same
// way). NVRTC and the driver are opened with dlopen when first needed, so a
// CPU-only machine never loads them (`open_nvrtc`; libcuda.so.1).
//
// Compiled with the CUDA headers of those pip packages when build.rs finds
// them (DETC_WITH_CUDA); otherwise every entry point says so.

#include "mask_target.h"
#include "nms.h"
#include "roi_align.h"

#include <stdexcept>
#include <string>

#ifdef DETC_WITH_CUDA
#include <c10/core/DeviceGuard.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda.h>
#include <dlfcn.h>
#include <nvrtc.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <vector>
#endif

namespace detc {

#ifndef DETC_WITH_CUDA

namespace {
[[noreturn]] void no_cuda() {
  throw std::runtime_error(
      "this detc-engine was built without CUDA (its libtorch has no CUDA, or the CUDA headers "
      "were missing when it was built: run scripts/bootstrap and rebuild)");
}
}  // namespace

bool roi_align_cuda_built() { return false; }
std::string prepare_roi_align_cuda(int) { no_cuda(); }
std::string compile_roi_align_cuda(int) { no_cuda(); }
void launch_roi_align_cuda(const RoiLaunch&, const RoiGeometry&) { no_cuda(); }
void launch_nms_cuda(const NmsLaunch&) { no_cuda(); }
void launch_mask_target_cuda(const MaskTargetLaunch&) { no_cuda(); }

#else

namespace {

// roi_align.cu, nms.cu and mask_target.cu, as one string (build.rs writes it
// into OUT_DIR).
const char* const KERNELS =
#include "kernels_cu.inc"
    ;

// The `extern "C"` kernel names of roi_align.cu, by [pass][dtype].
const char* const KERNEL_NAMES[2][2] = {
    {"detc_roi_align_forward_float", "detc_roi_align_forward_double"},
    {"detc_roi_align_backward_float", "detc_roi_align_backward_double"},
};

// nms.cu's: the mask by dtype, then the sweep.
const char* const NMS_MASK_NAMES[2] = {"detc_nms_mask_float", "detc_nms_mask_double"};
const char* const NMS_KEEP_NAME = "detc_nms_keep";

// mask_target.cu's.
const char* const MASK_TARGET_NAME = "detc_mask_target";

// The library folder of the loaded libtorch (libc10_cuda sits beside libtorch_cuda).
std::string torch_lib_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&c10::cuda::device_count), &info) == 0 || !info.dli_fname) {
    return "";
  }
  std::string path = info.dli_fname;
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

void* open_or_throw(const std::string& name, const char* what) {
  if (void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
  const char* err = dlerror();
  throw std::runtime_error(std::string("cannot open ") + what + ": " + (err ? err : name));
}

// NVRTC of the CUDA version detc-engine was built with, beside the torch
// wheel, else through libtorch's own NVRTC stub (which finds it by its
// rpath), else on the library path.
void* open_nvrtc() {
  const std::string major = std::to_string(CUDA_VERSION / 1000);
  const std::string soname = "libnvrtc.so." + major;
  const std::string torch = torch_lib_dir();
  const std::string dirs[] = {"/../../nvidia/cu" + major + "/lib/",
                              "/../../nvidia/cuda_nvrtc/lib/"};
  for (const auto& dir : dirs) {
    if (void* handle = dlopen((torch + dir + soname).c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
  }
  dlopen((torch + "/libcaffe2_nvrtc.so").c_str(), RTLD_NOW | RTLD_LOCAL);
  return open_or_throw(soname, "NVRTC");
}

template <typename F>
F symbol(void* handle, const char* name) {
  void* fn = dlsym(handle, name);
  if (!fn) throw std::runtime_error(std::string("no symbol ") + name);
  return reinterpret_cast<F>(fn);
}

#define DETC_SYMBOL(handle, name) name = symbol<decltype(&::name)>(handle, #name)

struct Nvrtc {
  decltype(&::nvrtcGetErrorString) nvrtcGetErrorString;
  decltype(&::nvrtcGetNumSupportedArchs) nvrtcGetNumSupportedArchs;
  decltype(&::nvrtcGetSupportedArchs) nvrtcGetSupportedArchs;
  decltype(&::nvrtcCreateProgram) nvrtcCreateProgram;
  decltype(&::nvrtcCompileProgram) nvrtcCompileProgram;
  decltype(&::nvrtcGetProgramLogSize) nvrtcGetProgramLogSize;
  decltype(&::nvrtcGetProgramLog) nvrtcGetProgramLog;
  decltype(&::nvrtcGetCUBINSize) nvrtcGetCUBINSize;
  decltype(&::nvrtcGetCUBIN) nvrtcGetCUBIN;
  decltype(&::nvrtcGetPTXSize) nvrtcGetPTXSize;
  decltype(&::nvrtcGetPTX) nvrtcGetPTX;
  decltype(&::nvrtcDestroyProgram) nvrtcDestroyProgram;

  Nvrtc() {
    void* h = open_nvrtc();
    DETC_SYMBOL(h, nvrtcGetErrorString);
    DETC_SYMBOL(h, nvrtcGetNumSupportedArchs);
    DETC_SYMBOL(h, nvrtcGetSupportedArchs);
    DETC_SYMBOL(h, nvrtcCreateProgram);
    DETC_SYMBOL(h, nvrtcCompileProgram);
    DETC_SYMBOL(h, nvrtcGetProgramLogSize);
    DETC_SYMBOL(h, nvrtcGetProgramLog);
    DETC_SYMBOL(h, nvrtcGetCUBINSize);
    DETC_SYMBOL(h, nvrtcGetCUBIN);
    DETC_SYMBOL(h, nvrtcGetPTXSize);
    DETC_SYMBOL(h, nvrtcGetPTX);
    DETC_SYMBOL(h, nvrtcDestroyProgram);
    preload_builtins(h);
  }

  // NVRTC opens its builtins library by name when it compiles, which finds
  // nothing outside the library path: load it first from NVRTC's folder.
  static void preload_builtins(void* nvrtc) {
    int major = 0, minor = 0;
    Dl_info info{};
    const auto version = symbol<decltype(&::nvrtcVersion)>(nvrtc, "nvrtcVersion");
    if (version(&major, &minor) != NVRTC_SUCCESS ||
        dladdr(reinterpret_cast<void*>(version), &info) == 0 || !info.dli_fname) {
      return;
    }
    std::string dir = info.dli_fname;
    dir = dir.substr(0, dir.rfind('/') + 1);
    const auto name = "libnvrtc-builtins.so." + std::to_string(major) + "." + std::to_string(minor);
    dlopen((dir + name).c_str(), RTLD_NOW | RTLD_GLOBAL);
  }

  void check(nvrtcResult r, const char* call) const {
    if (r != NVRTC_SUCCESS) {
      throw std::runtime_error(std::string("NVRTC ") + call + ": " + nvrtcGetErrorString(r));
    }
  }
};

struct Driver {
  decltype(&::cuInit) cuInit;
  decltype(&::cuGetErrorString) cuGetErrorString;
  decltype(&::cuDeviceGet) cuDeviceGet;
  decltype(&::cuDeviceGetAttribute) cuDeviceGetAttribute;
  decltype(&::cuDevicePrimaryCtxRetain) cuDevicePrimaryCtxRetain;
  decltype(&::cuCtxGetCurrent) cuCtxGetCurrent;
  decltype(&::cuCtxSetCurrent) cuCtxSetCurrent;
  decltype(&::cuModuleLoadData) cuModuleLoadData;
  decltype(&::cuModuleGetFunction) cuModuleGetFunction;
  decltype(&::cuLaunchKernel) cuLaunchKernel;

  Driver() {
    void* h = open_or_throw("libcuda.so.1", "the CUDA driver");
    DETC_SYMBOL(h, cuInit);
    DETC_SYMBOL(h, cuGetErrorString);
    DETC_SYMBOL(h, cuDeviceGet);
    DETC_SYMBOL(h, cuDeviceGetAttribute);
    DETC_SYMBOL(h, cuDevicePrimaryCtxRetain);
    DETC_SYMBOL(h, cuCtxGetCurrent);
    DETC_SYMBOL(h, cuCtxSetCurrent);
    DETC_SYMBOL(h, cuModuleLoadData);
    DETC_SYMBOL(h, cuModuleGetFunction);
    DETC_SYMBOL(h, cuLaunchKernel);
    // libtorch's runtime has initialised the driver already; this is a no-op then.
    check(cuInit(0), "cuInit");
  }

  void check(CUresult r, const char* call) const {
    if (r != CUDA_SUCCESS) {
      const char* msg = nullptr;
      cuGetErrorString(r, &msg);
      throw std::runtime_error(std::string("CUDA driver ") + call + ": " +
                               (msg ? msg : std::to_string(static_cast<int>(r))));
    }
  }
};

#undef DETC_SYMBOL

const Nvrtc& nvrtc() {
  static const Nvrtc lib;
  return lib;
}

const Driver& driver() {
  static const Driver lib;
  return lib;
}

// A compiled image: a cubin for the device's own architecture when NVRTC
// knows it, else PTX for the newest one it knows below, which the driver
// compiles for the device.
struct Image {
  std::string target;
  std::vector<char> bytes;
};

Image compile(int arch) {
  const Nvrtc& lib = nvrtc();
  int count = 0;
  lib.check(lib.nvrtcGetNumSupportedArchs(&count), "nvrtcGetNumSupportedArchs");
  std::vector<int> archs(count);
  lib.check(lib.nvrtcGetSupportedArchs(archs.data()), "nvrtcGetSupportedArchs");
  const bool native = std::find(archs.begin(), archs.end(), arch) != archs.end();
  int below = 0;
  for (int a : archs) {
    if (a <= arch) below = std::max(below, a);
  }
  if (!native && below == 0) {
    throw std::runtime_error("NVRTC cannot compile for compute capability " +
                             std::to_string(arch / 10) + "." + std::to_string(arch % 10));
  }
  Image image;
  image.target = native ? "sm_" + std::to_string(arch) : "compute_" + std::to_string(below);
  const std::string arch_flag = "--gpu-architecture=" + image.target;
  const char* options[] = {arch_flag.c_str(), "--std=c++17"};
  nvrtcProgram program;
  lib.check(lib.nvrtcCreateProgram(&program, KERNELS, "roi_align.cu", 0, nullptr, nullptr),
            "nvrtcCreateProgram");
  const nvrtcResult compiled = lib.nvrtcCompileProgram(program, 2, options);
  size_t size = 0;
  if (compiled != NVRTC_SUCCESS) {
    std::string log;
    if (lib.nvrtcGetProgramLogSize(program, &size) == NVRTC_SUCCESS && size > 1) {
      log.resize(size);
      lib.nvrtcGetProgramLog(program, &log[0]);
    }
    lib.nvrtcDestroyProgram(&program);
    throw std::runtime_error(std::string("NVRTC could not compile roi_align.cu for ") +
                             image.target + ": " + lib.nvrtcGetErrorString(compiled) + "\n" + log);
  }
  if (native) {
    lib.check(lib.nvrtcGetCUBINSize(program, &size), "nvrtcGetCUBINSize");
    image.bytes.resize(size);
    lib.check(lib.nvrtcGetCUBIN(program, image.bytes.data()), "nvrtcGetCUBIN");
  } else {
    lib.check(lib.nvrtcGetPTXSize(program, &size), "nvrtcGetPTXSize");
    image.bytes.resize(size);
    lib.check(lib.nvrtcGetPTX(program, image.bytes.data()), "nvrtcGetPTX");
  }
  lib.nvrtcDestroyProgram(&program);
  return image;
}

// The kernels loaded on one device, in its primary context.
struct Loaded {
  std::string target;
  CUcontext context = nullptr;
  CUfunction functions[2][2] = {};
  CUfunction nms_mask[2] = {};
  CUfunction nms_keep = nullptr;
  CUfunction mask_target = nullptr;
};

std::mutex loaded_mutex;
std::map<int, Loaded> loaded;  // by device index; entries are never removed

const Loaded& load(int device) {
  std::lock_guard<std::mutex> lock(loaded_mutex);
  auto found = loaded.find(device);
  if (found != loaded.end()) return found->second;
  const Driver& cu = driver();
  CUdevice dev;
  cu.check(cu.cuDeviceGet(&dev, device), "cuDeviceGet");
  int major = 0, minor = 0;
  cu.check(cu.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev),
           "cuDeviceGetAttribute");
  cu.check(cu.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev),
           "cuDeviceGetAttribute");
  const Image image = compile(major * 10 + minor);
  Loaded l;
  l.target = image.target;
  cu.check(cu.cuDevicePrimaryCtxRetain(&l.context, dev), "cuDevicePrimaryCtxRetain");
  // The module loads into the current context: the device's primary one for
  // the load, then the thread's own again (it may be another device's).
  CUcontext previous = nullptr;
  cu.check(cu.cuCtxGetCurrent(&previous), "cuCtxGetCurrent");
  cu.check(cu.cuCtxSetCurrent(l.context), "cuCtxSetCurrent");
  CUmodule module;
  const CUresult loaded_module = cu.cuModuleLoadData(&module, image.bytes.data());
  cu.check(cu.cuCtxSetCurrent(previous), "cuCtxSetCurrent");
  cu.check(loaded_module, "cuModuleLoadData");
  for (int pass = 0; pass < 2; ++pass) {
    for (int dtype = 0; dtype < 2; ++dtype) {
      cu.check(cu.cuModuleGetFunction(&l.functions[pass][dtype], module,
                                      KERNEL_NAMES[pass][dtype]),
               "cuModuleGetFunction");
    }
  }
  for (int dtype = 0; dtype < 2; ++dtype) {
    cu.check(cu.cuModuleGetFunction(&l.nms_mask[dtype], module, NMS_MASK_NAMES[dtype]),
             "cuModuleGetFunction");
  }
  cu.check(cu.cuModuleGetFunction(&l.nms_keep, module, NMS_KEEP_NAME), "cuModuleGetFunction");
  cu.check(cu.cuModuleGetFunction(&l.mask_target, module, MASK_TARGET_NAME),
           "cuModuleGetFunction");
  return loaded.emplace(device, l).first->second;
}

}  // namespace

bool roi_align_cuda_built() { return true; }

std::string prepare_roi_align_cuda(int device) { return load(device).target; }

std::string compile_roi_align_cuda(int arch) { return compile(arch).target; }

// The kernels of `device`'s module, with its primary context current on
// this thread (autograd's thread for the device, say, may not have made it
// current yet).
const Loaded& current_kernels(const c10::Device& device) {
  const Loaded& k = load(device.index());
  const Driver& cu = driver();
  CUcontext current = nullptr;
  cu.check(cu.cuCtxGetCurrent(&current), "cuCtxGetCurrent");
  if (current != k.context) cu.check(cu.cuCtxSetCurrent(k.context), "cuCtxSetCurrent");
  return k;
}

// Launches a grid-stride kernel over `total` values on the device's current
// stream: 256 threads a block, at most 2^20 blocks.
void launch_grid_stride(const c10::Device& device, CUfunction kernel, long long total,
                        void** args) {
  constexpr long long THREADS = 256;
  const long long blocks = std::min<long long>((total + THREADS - 1) / THREADS, 1 << 20);
  const CUstream stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  driver().check(driver().cuLaunchKernel(kernel, static_cast<unsigned>(blocks), 1, 1, THREADS, 1,
                                         1, 0, stream, args, nullptr),
                 "cuLaunchKernel");
}

void launch_roi_align_cuda(const RoiLaunch& l, const RoiGeometry& g) {
  const auto device = l.in.device();
  if (!device.is_cuda()) throw std::invalid_argument("the CUDA kernels take CUDA tensors");
  // c10's generic guard: CUDAGuard's inline code would call the CUDA runtime,
  // which detc-engine does not link.
  const c10::DeviceGuard guard(device);
  const Loaded& k = current_kernels(device);
  const int dtype = l.in.scalar_type() == at::kDouble ? 1 : 0;
  if (l.in.scalar_type() != (dtype ? at::kDouble : at::kFloat)) {
    throw std::invalid_argument("the CUDA kernels take float or double tensors");
  }
  const void* in = l.in.data_ptr();
  const void* rois = l.rois.data_ptr();
  void* out = l.out.data_ptr();
  long long total = l.total, channels = l.channels, height = l.height, width = l.width;
  long long pooled_h = g.pooled_h, pooled_w = g.pooled_w, ratio = g.sampling_ratio;
  double scale = g.spatial_scale;
  int aligned = g.aligned ? 1 : 0;
  const void* levels = l.levels ? l.levels->data_ptr() : nullptr;
  long long level = l.level;
  const void* refused = l.refused ? l.refused->data_ptr() : nullptr;
  void* args[] = {&in,       &rois,     &out,   &total, &channels, &height, &width,  &pooled_h,
                  &pooled_w, &ratio,    &scale, &aligned, &levels, &level, &refused};
  launch_grid_stride(device, k.functions[static_cast<int>(l.pass)][dtype], total, args);
}

void launch_nms_cuda(const NmsLaunch& l) {
  const auto device = l.boxes.device();
  if (!device.is_cuda()) throw std::invalid_argument("the CUDA kernels take CUDA tensors");
  const c10::DeviceGuard guard(device);
  const Loaded& k = current_kernels(device);
  const Driver& cu = driver();
  const int dtype = l.boxes.scalar_type() == at::kDouble ? 1 : 0;
  const void* boxes = l.boxes.data_ptr();
  void* mask = l.mask.data_ptr();
  void* removed = l.removed.data_ptr();
  void* keep = l.keep.data_ptr();
  long long batch = l.batch, n = l.n, col_blocks = l.col_blocks, limit = l.limit;
  double thr = l.thr;
  float offset_f = static_cast<float>(l.offset);
  double offset_d = l.offset;
  void* offset = dtype ? static_cast<void*>(&offset_d) : static_cast<void*>(&offset_f);
  void* mask_args[] = {&boxes, &batch, &n, &col_blocks, &thr, offset, &mask};
  launch_grid_stride(device, k.nms_mask[dtype], batch * n * col_blocks, mask_args);
  // One block per image sweeps it: its threads share the OR of each kept row.
  const CUstream stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  const void* count = l.count ? l.count->data_ptr() : nullptr;
  void* keep_args[] = {&mask, &batch, &n, &col_blocks, &limit, &count, &removed, &keep};
  const unsigned blocks = static_cast<unsigned>(std::min<long long>(batch, 65535));
  cu.check(cu.cuLaunchKernel(k.nms_keep, blocks, 1, 1, 128, 1, 1, 0, stream, keep_args, nullptr),
           "cuLaunchKernel");
}

void launch_mask_target_cuda(const MaskTargetLaunch& l) {
  const auto device = l.masks.device();
  if (!device.is_cuda()) throw std::invalid_argument("the CUDA kernels take CUDA tensors");
  const c10::DeviceGuard guard(device);
  const Loaded& k = current_kernels(device);
  const void* masks = l.masks.data_ptr();
  const void* boxes = l.boxes.data_ptr();
  const void* inds = l.inds.data_ptr();
  void* out = l.out.data_ptr();
  long long num_masks = l.masks.size(0), hm = l.masks.size(1), wm = l.masks.size(2);
  long long count = l.out.size(0), pooled_h = l.out.size(1), pooled_w = l.out.size(2);
  void* args[] = {&masks, &num_masks, &hm, &wm, &boxes, &inds, &count, &pooled_h, &pooled_w, &out};
  launch_grid_stride(device, k.mask_target, count * pooled_h * pooled_w, args);
}

#endif  // DETC_WITH_CUDA

}  // namespace detc
