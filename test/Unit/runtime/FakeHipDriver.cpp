//===- FakeHipDriver.cpp - a recording stand-in for libamdhip64 -----------===//
//
// See FakeHipDriver.h. Implements exactly the entry points the runtime
// resolves, with hip_runtime_api.h's signatures and error codes, and the
// limits a real launch would trip (a module used on another device, the
// 32-bit global size, 1024 threads, 64 KiB of LDS).
//
//===----------------------------------------------------------------------===//

#include "FakeHipDriver.h"

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace {

using hipError_t = int;
constexpr hipError_t hipSuccess = 0;
constexpr hipError_t hipErrorInvalidValue = 1;
constexpr hipError_t hipErrorNotInitialized = 3;
constexpr hipError_t hipErrorInvalidConfiguration = 9;
constexpr hipError_t hipErrorInvalidDevice = 101;
constexpr hipError_t hipErrorInvalidImage = 200;
constexpr hipError_t hipErrorNotFound = 500;
constexpr hipError_t hipErrorInvalidHandle = 400;
constexpr unsigned kMaxLdsBytes = 64 * 1024;

struct Module;
struct Function {
  std::string name;
  int numParams = 0;
  Module *module = nullptr;
};
struct Module {
  const void *image = nullptr;
  int device = 0;
  std::vector<Function *> functions;
};

std::mutex mu;
FakeHipState state = [] {
  FakeHipState s;
  std::memset(&s, 0, sizeof(s));
  s.device_count = 2;
  return s;
}();
bool initialized = false;
thread_local int current = 0;

/// The injected failure for \p fn, once, after fail_skip calls.
hipError_t injected(const char *fn) {
  if (state.fail_code && std::strcmp(state.fail_function, fn) == 0) {
    if (state.fail_skip > 0) {
      --state.fail_skip;
      return hipSuccess;
    }
    hipError_t r = state.fail_code;
    state.fail_code = 0;
    state.fail_function[0] = '\0';
    return r;
  }
  return hipSuccess;
}

void copyName(char *dst, const std::string &src) {
  std::snprintf(dst, FAKE_HIP_NAME_LEN, "%s", src.c_str());
}

/// Parses "name=num_params\n" lines into a module of \p device; NULL when
/// the text does not parse.
Module *parseImage(const void *image, int device) {
  auto *mod = new Module;
  mod->image = image;
  mod->device = device;
  const char *p = static_cast<const char *>(image);
  while (*p) {
    const char *eq = std::strchr(p, '=');
    const char *nl = std::strchr(p, '\n');
    int numParams = eq ? std::atoi(eq + 1) : -1;
    if (!eq || !nl || eq > nl || numParams < 0 ||
        numParams > FAKE_HIP_MAX_PARAMS) {
      for (Function *f : mod->functions)
        delete f;
      delete mod;
      return nullptr;
    }
    auto *fn = new Function;
    fn->name.assign(p, eq);
    fn->numParams = numParams;
    fn->module = mod;
    mod->functions.push_back(fn);
    p = nl + 1;
  }
  return mod;
}

} // namespace

#define FAKE_EXPORT extern "C" __attribute__((visibility("default")))

FAKE_EXPORT FakeHipState *fake_hip_state(void) { return &state; }
FAKE_EXPORT int fake_hip_current_device(void) { return current; }
FAKE_EXPORT void fake_hip_set_current_device(int device) { current = device; }

FAKE_EXPORT hipError_t hipInit(unsigned flags) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.init_calls;
  if (hipError_t r = injected("hipInit"))
    return r;
  if (flags != 0)
    return hipErrorInvalidValue;
  initialized = true;
  return hipSuccess;
}

/// ROCm 6's strings (5's return the enumerator's name instead).
FAKE_EXPORT const char *hipGetErrorString(hipError_t error) {
  switch (error) {
  case 0:
    return "no error";
  case 1:
    return "invalid argument";
  case 2:
    return "out of memory";
  case 3:
    return "initialization error";
  case 9:
    return "invalid configuration argument";
  case 100:
    return "no ROCm-capable device is detected";
  case 101:
    return "invalid device ordinal";
  case 200:
    return "device kernel image is invalid";
  case 400:
    return "invalid resource handle";
  case 500:
    return "named symbol not found";
  case 700:
    return "an illegal memory access was encountered";
  default:
    return "unknown error";
  }
}

FAKE_EXPORT hipError_t hipGetDeviceCount(int *count) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.device_count_calls;
  if (!initialized)
    return hipErrorNotInitialized;
  if (hipError_t r = injected("hipGetDeviceCount"))
    return r;
  if (!count)
    return hipErrorInvalidValue;
  *count = state.device_count;
  return hipSuccess;
}

FAKE_EXPORT hipError_t hipGetDevice(int *device) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.get_device_calls;
  if (hipError_t r = injected("hipGetDevice"))
    return r;
  if (!device)
    return hipErrorInvalidValue;
  *device = current;
  return hipSuccess;
}

FAKE_EXPORT hipError_t hipSetDevice(int device) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.set_device_calls;
  if (hipError_t r = injected("hipSetDevice"))
    return r;
  if (device < 0 || device >= state.device_count ||
      device >= FAKE_HIP_MAX_DEVICES)
    return hipErrorInvalidDevice;
  current = device;
  return hipSuccess;
}

FAKE_EXPORT hipError_t hipModuleLoadData(void **module, const void *image) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.module_load_calls;
  state.last_loaded_image = image;
  state.last_loaded_device = current;
  if (hipError_t r = injected("hipModuleLoadData"))
    return r;
  if (!module || !image)
    return hipErrorInvalidValue;
  Module *mod = parseImage(image, current);
  if (!mod)
    return hipErrorInvalidImage;
  *module = mod;
  return hipSuccess;
}

FAKE_EXPORT hipError_t hipModuleGetFunction(void **fn, void *module,
                                            const char *name) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.get_function_calls;
  copyName(state.last_requested_function, name ? name : "");
  if (hipError_t r = injected("hipModuleGetFunction"))
    return r;
  if (!fn || !module || !name)
    return hipErrorInvalidValue;
  for (Function *f : static_cast<Module *>(module)->functions)
    if (f->name == name) {
      *fn = f;
      return hipSuccess;
    }
  return hipErrorNotFound;
}

FAKE_EXPORT hipError_t hipModuleLaunchKernel(
    void *fn, unsigned gridX, unsigned gridY, unsigned gridZ, unsigned blockX,
    unsigned blockY, unsigned blockZ, unsigned sharedMemBytes, void *stream,
    void **kernelParams, void **extra) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.launch_calls;
  auto *f = static_cast<Function *>(fn);
  FakeHipLaunch &l = state.last_launch;
  std::memset(&l, 0, sizeof(l));
  if (f) {
    copyName(l.function, f->name);
    l.image = f->module->image;
    l.module_device = f->module->device;
  }
  l.device = current;
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
  if (hipError_t r = injected("hipModuleLaunchKernel"))
    return r;
  // The real runtime's checks that a wrong launch would trip: a function
  // of another device's module, and the global size in 32 bits.
  if (!f || f->module->device != current)
    return hipErrorInvalidHandle;
  if (!kernelParams)
    return hipErrorInvalidValue;
  uint64_t globalX = uint64_t(gridX) * blockX,
           globalY = uint64_t(gridY) * blockY;
  if (gridX == 0 || gridY == 0 || gridZ != 1 || blockX == 0 ||
      globalX > UINT32_MAX || globalY > UINT32_MAX ||
      uint64_t(blockX) * blockY * blockZ > 1024)
    return hipErrorInvalidConfiguration;
  if (sharedMemBytes > kMaxLdsBytes)
    return hipErrorInvalidValue;
  return hipSuccess;
}

FAKE_EXPORT hipError_t hipMallocAsync(void **ptr, size_t bytes, void *stream) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.alloc_calls;
  state.last_alloc_bytes = bytes;
  state.last_alloc_stream = stream;
  state.last_alloc_device = current;
  state.last_alloc_sequence = state.call_sequence++;
  if (hipError_t r = injected("hipMallocAsync"))
    return r;
  if (!ptr || bytes == 0)
    return hipErrorInvalidValue;
  // A fake, 256-byte aligned device address, never dereferenced.
  *ptr = reinterpret_cast<void *>(0x7f0000000000ull +
                                  0x100000000ull * unsigned(state.alloc_calls));
  state.last_alloc_ptr = *ptr;
  ++state.live_allocs;
  return hipSuccess;
}

FAKE_EXPORT hipError_t hipFreeAsync(void *ptr, void *stream) {
  std::lock_guard<std::mutex> lock(mu);
  ++state.free_calls;
  state.last_free_ptr = ptr;
  state.last_free_stream = stream;
  state.last_free_sequence = state.call_sequence++;
  if (hipError_t r = injected("hipFreeAsync"))
    return r;
  if (!ptr || state.live_allocs == 0)
    return hipErrorInvalidValue;
  --state.live_allocs;
  return hipSuccess;
}

FAKE_EXPORT hipError_t hipMemsetD32Async(void *dst, int value, size_t count,
                                         void *stream) {
  std::lock_guard<std::mutex> lock(mu);
  // Recorded even when it fails, as launches are: a test sees what was asked.
  if (state.memset_calls >= 0 && state.memset_calls < FAKE_HIP_MAX_MEMSETS) {
    FakeHipMemset &m = state.memsets[state.memset_calls];
    m.dst = dst;
    m.value = value;
    m.count = count;
    m.stream = stream;
    m.device = current;
    m.sequence = state.call_sequence;
  }
  ++state.call_sequence;
  ++state.memset_calls;
  if (hipError_t r = injected("hipMemsetD32Async"))
    return r;
  // The address is never written: the tests' device pointers are fake.
  if (!dst || reinterpret_cast<uintptr_t>(dst) % 4 != 0)
    return hipErrorInvalidValue;
  return hipSuccess;
}
