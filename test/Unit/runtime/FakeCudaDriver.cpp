//===- FakeCudaDriver.cpp - a recording stand-in for libcuda.so.1 ---------===//
//
// See FakeCudaDriver.h. Implements exactly the entry points the runtime
// resolves, with the driver's signatures (cuda.h), error codes and strings.
//
//===----------------------------------------------------------------------===//

#include "FakeCudaDriver.h"

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace {

using CUresult = int;
constexpr CUresult CUDA_SUCCESS = 0;
constexpr CUresult CUDA_ERROR_INVALID_VALUE = 1;
constexpr CUresult CUDA_ERROR_NOT_INITIALIZED = 3;
constexpr CUresult CUDA_ERROR_INVALID_DEVICE = 101;
constexpr CUresult CUDA_ERROR_INVALID_IMAGE = 200;
constexpr CUresult CUDA_ERROR_INVALID_CONTEXT = 201;
constexpr CUresult CUDA_ERROR_NOT_FOUND = 500;
constexpr int kDefaultSharedBytes = 48 * 1024;

struct Context {
  int device;
};
struct Module;
struct Function {
  std::string name;
  int numParams = 0;
  Module *module = nullptr;
  int maxDynamicShared = kDefaultSharedBytes;
};
struct Module {
  const void *image = nullptr;
  Context *context = nullptr;
  std::vector<Function *> functions;
};

std::mutex mu;
FakeCudaState state = [] {
  FakeCudaState s;
  std::memset(&s, 0, sizeof(s));
  s.device_count = 2;
  s.sm_count = 132;
  s.blocks_per_sm = 3;
  return s;
}();
bool initialized = false;
Context primaries[FAKE_CUDA_MAX_DEVICES] = {{0}, {1}, {2}, {3},
                                            {4}, {5}, {6}, {7}};
thread_local Context *current = nullptr;

/// The injected failure for \p fn, once.
CUresult injected(const char *fn) {
  if (state.fail_code && std::strcmp(state.fail_function, fn) == 0) {
    CUresult r = state.fail_code;
    state.fail_code = 0;
    state.fail_function[0] = '\0';
    return r;
  }
  return CUDA_SUCCESS;
}

void copyName(char *dst, const std::string &src) {
  std::snprintf(dst, FAKE_CUDA_NAME_LEN, "%s", src.c_str());
}

} // namespace

#define FAKE_EXPORT extern "C" __attribute__((visibility("default")))

FAKE_EXPORT FakeCudaState *fake_cuda_state(void) { return &state; }
FAKE_EXPORT const FakeCudaLaunch *fake_cuda_last_launch(void) {
  return &state.last_launch;
}
FAKE_EXPORT void *fake_cuda_primary_context(int device) {
  return &primaries[device];
}
FAKE_EXPORT void fake_cuda_set_current(void *context) {
  current = static_cast<Context *>(context);
}

FAKE_EXPORT CUresult cuInit(unsigned flags) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.init_calls;
  if (CUresult r = injected("cuInit"))
    return r;
  if (flags != 0)
    return CUDA_ERROR_INVALID_VALUE;
  initialized = true;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuGetErrorString(CUresult error, const char **str) {
  const char *s = nullptr;
  switch (error) {
  case 0:
    s = "no error";
    break;
  case 1:
    s = "invalid argument";
    break;
  case 3:
    s = "initialization error";
    break;
  case 100:
    s = "no CUDA-capable device is detected";
    break;
  case 101:
    s = "invalid device ordinal";
    break;
  case 200:
    s = "device kernel image is invalid";
    break;
  case 201:
    s = "invalid device context";
    break;
  case 500:
    s = "named symbol not found";
    break;
  case 700:
    s = "an illegal memory access was encountered";
    break;
  case 701:
    s = "too many resources requested for launch";
    break;
  default:
    *str = nullptr;
    return CUDA_ERROR_INVALID_VALUE;
  }
  *str = s;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGetCount(int *count) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.device_get_count_calls;
  if (!initialized)
    return CUDA_ERROR_NOT_INITIALIZED;
  if (CUresult r = injected("cuDeviceGetCount"))
    return r;
  *count = state.device_count;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGet(int *device, int ordinal) {
  std::lock_guard<std::mutex> lock(mu);
  if (!initialized)
    return CUDA_ERROR_NOT_INITIALIZED;
  if (CUresult r = injected("cuDeviceGet"))
    return r;
  if (ordinal < 0 || ordinal >= state.device_count ||
      ordinal >= FAKE_CUDA_MAX_DEVICES)
    return CUDA_ERROR_INVALID_DEVICE;
  *device = ordinal;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDevicePrimaryCtxRetain(void **ctx, int device) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.primary_retain_calls;
  if (CUresult r = injected("cuDevicePrimaryCtxRetain"))
    return r;
  if (device < 0 || device >= state.device_count ||
      device >= FAKE_CUDA_MAX_DEVICES)
    return CUDA_ERROR_INVALID_DEVICE;
  *ctx = &primaries[device];
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuCtxGetCurrent(void **ctx) {
  std::lock_guard<std::mutex> lock(mu);
  if (CUresult r = injected("cuCtxGetCurrent"))
    return r;
  *ctx = current;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuCtxSetCurrent(void *ctx) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.ctx_set_current_calls;
  if (CUresult r = injected("cuCtxSetCurrent"))
    return r;
  current = static_cast<Context *>(ctx);
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuCtxGetDevice(int *device) {
  std::lock_guard<std::mutex> lock(mu);
  if (CUresult r = injected("cuCtxGetDevice"))
    return r;
  if (!current)
    return CUDA_ERROR_INVALID_CONTEXT;
  *device = current->device;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuModuleLoadData(void **module, const void *image) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.module_load_calls;
  state.last_loaded_image = image;
  if (CUresult r = injected("cuModuleLoadData"))
    return r;
  if (!current)
    return CUDA_ERROR_INVALID_CONTEXT;
  if (!image)
    return CUDA_ERROR_INVALID_VALUE;
  // "name=num_params\n" lines.
  auto *mod = new Module;
  mod->image = image;
  mod->context = current;
  const char *p = static_cast<const char *>(image);
  while (*p) {
    const char *eq = std::strchr(p, '=');
    const char *nl = std::strchr(p, '\n');
    if (!eq || !nl || eq > nl) {
      delete mod;
      return CUDA_ERROR_INVALID_IMAGE;
    }
    auto *fn = new Function;
    fn->name.assign(p, eq);
    fn->numParams = std::atoi(eq + 1);
    fn->module = mod;
    if (fn->numParams < 0 || fn->numParams > FAKE_CUDA_MAX_PARAMS) {
      delete fn;
      delete mod;
      return CUDA_ERROR_INVALID_IMAGE;
    }
    mod->functions.push_back(fn);
    p = nl + 1;
  }
  *module = mod;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuModuleGetFunction(void **fn, void *module,
                                         const char *name) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.get_function_calls;
  copyName(state.last_requested_function, name ? name : "");
  if (CUresult r = injected("cuModuleGetFunction"))
    return r;
  if (!module || !name)
    return CUDA_ERROR_INVALID_VALUE;
  for (Function *f : static_cast<Module *>(module)->functions)
    if (f->name == name) {
      *fn = f;
      return CUDA_SUCCESS;
    }
  return CUDA_ERROR_NOT_FOUND;
}

FAKE_EXPORT CUresult cuFuncSetAttribute(void *fn, int attribute, int value) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.set_attribute_calls;
  auto *f = static_cast<Function *>(fn);
  copyName(state.last_attribute_function, f ? f->name : "");
  state.last_attribute = attribute;
  state.last_attribute_value = value;
  if (CUresult r = injected("cuFuncSetAttribute"))
    return r;
  if (!f)
    return CUDA_ERROR_INVALID_VALUE;
  if (attribute == 8) // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    f->maxDynamicShared = value;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuLaunchKernel(void *fn, unsigned gridX, unsigned gridY,
                                    unsigned gridZ, unsigned blockX,
                                    unsigned blockY, unsigned blockZ,
                                    unsigned sharedMemBytes, void *stream,
                                    void **kernelParams, void **extra) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.launch_calls;
  auto *f = static_cast<Function *>(fn);
  state.prev_launch = state.last_launch;
  FakeCudaLaunch &l = state.last_launch;
  std::memset(&l, 0, sizeof(l));
  if (f) {
    copyName(l.function, f->name);
    l.image = f->module->image;
  }
  l.context = current;
  l.grid[0] = gridX;
  l.grid[1] = gridY;
  l.grid[2] = gridZ;
  l.block[0] = blockX;
  l.block[1] = blockY;
  l.block[2] = blockZ;
  l.shared_mem_bytes = sharedMemBytes;
  l.stream = stream;
  l.extra_is_null = extra == nullptr;
  l.sequence = state.call_sequence++;
  if (f && kernelParams) {
    l.num_params = f->numParams;
    for (int i = 0; i < f->numParams; ++i)
      std::memcpy(&l.params[i], kernelParams[i], 8);
  }
  if (CUresult r = injected("cuLaunchKernel"))
    return r;
  // The real driver's checks that a wrong launch would trip.
  if (!f || !kernelParams || !current || f->module->context != current)
    return CUDA_ERROR_INVALID_CONTEXT;
  if (gridX == 0 || gridY == 0 || gridY > 65535 || gridZ != 1 || blockX == 0 ||
      blockX * blockY * blockZ > 1024 ||
      int(sharedMemBytes) > f->maxDynamicShared)
    return CUDA_ERROR_INVALID_VALUE;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemAllocAsync(unsigned long long *dptr, size_t bytes,
                                     void *stream) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.alloc_calls;
  state.last_alloc_bytes = bytes;
  state.last_alloc_stream = stream;
  state.last_alloc_sequence = state.call_sequence++;
  if (CUresult r = injected("cuMemAllocAsync"))
    return r;
  if (!current)
    return CUDA_ERROR_INVALID_CONTEXT;
  if (!dptr || bytes == 0)
    return CUDA_ERROR_INVALID_VALUE;
  // A fake, 256-byte aligned device address, never dereferenced.
  *dptr = 0x7f0000000000ull + 0x100000000ull * unsigned(state.alloc_calls);
  state.last_alloc_ptr = *dptr;
  ++state.live_allocs;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGetAttribute(int *value, int attribute,
                                          int device) {
  std::lock_guard<std::mutex> lock(mu);
  if (CUresult r = injected("cuDeviceGetAttribute"))
    return r;
  if (!value || device < 0 || device >= state.device_count)
    return CUDA_ERROR_INVALID_VALUE;
  if (attribute != 16) // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
    return CUDA_ERROR_INVALID_VALUE;
  *value = state.sm_count;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(
    int *numBlocks, void *fn, int blockSize, size_t dynamicSmemBytes) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.occupancy_calls;
  auto *f = static_cast<Function *>(fn);
  copyName(state.last_occupancy_function, f ? f->name : "");
  state.last_occupancy_block_size = blockSize;
  state.last_occupancy_shared_bytes = dynamicSmemBytes;
  if (CUresult r = injected("cuOccupancyMaxActiveBlocksPerMultiprocessor"))
    return r;
  if (!numBlocks || !f || blockSize <= 0 || blockSize > 1024)
    return CUDA_ERROR_INVALID_VALUE;
  *numBlocks = state.blocks_per_sm;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemFreeAsync(unsigned long long dptr, void *stream) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.free_calls;
  state.last_free_ptr = dptr;
  state.last_free_stream = stream;
  state.last_free_sequence = state.call_sequence++;
  if (CUresult r = injected("cuMemFreeAsync"))
    return r;
  if (!current)
    return CUDA_ERROR_INVALID_CONTEXT;
  if (dptr == 0 || state.live_allocs == 0)
    return CUDA_ERROR_INVALID_VALUE;
  --state.live_allocs;
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemcpyDtoHAsync_v2(void *dst, unsigned long long src,
                                          size_t bytes, void *stream) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.copy_calls;
  state.last_copy_stream = stream;
  if (CUresult r = injected("cuMemcpyDtoHAsync_v2"))
    return r;
  if (!current)
    return CUDA_ERROR_INVALID_CONTEXT;
  if (!dst || src == 0)
    return CUDA_ERROR_INVALID_VALUE;
  std::memcpy(dst, reinterpret_cast<const void *>(uintptr_t(src)), bytes);
  return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuStreamSynchronize(void *stream) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.sync_calls;
  state.last_sync_stream = stream;
  if (CUresult r = injected("cuStreamSynchronize"))
    return r;
  return current ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

FAKE_EXPORT CUresult cuMemsetD32Async(unsigned long long dstDevice,
                                      unsigned int value, size_t count,
                                      void *stream) {
  std::lock_guard<std::mutex> lock(mu);
  // Recorded even when it fails, as launches are: a test sees what was asked.
  if (state.memset_calls >= 0 && state.memset_calls < FAKE_CUDA_MAX_MEMSETS) {
    FakeCudaMemset &m = state.memsets[state.memset_calls];
    m.dst = dstDevice;
    m.value = value;
    m.count = count;
    m.stream = stream;
    m.context = current;
    m.sequence = state.call_sequence;
  }
  ++state.call_sequence;
  ++state.memset_calls;
  if (CUresult r = injected("cuMemsetD32Async"))
    return r;
  // The real driver's checks that a wrong memset would trip. The address is
  // never written: the tests' device pointers are fake.
  if (!current)
    return CUDA_ERROR_INVALID_CONTEXT;
  if (dstDevice == 0 || dstDevice % 4 != 0)
    return CUDA_ERROR_INVALID_VALUE;
  return CUDA_SUCCESS;
}
