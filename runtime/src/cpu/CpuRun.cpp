//===- CpuRun.cpp - attn_cpu_run: validate, build descriptors, launch -----===//
//
// Validation happens in full before anything is launched, so a failing call
// writes nothing to o or lse. Shapes bind through attn::bindShapes, the same
// binding the reference evaluator and `attnc run` use.
//
//===----------------------------------------------------------------------===//

#include "../Validate.h"
#include "ThreadPool.h"

#include "attn/Signature.h"

#include <algorithm>
#include <cstdlib>
#include <sched.h>
#include <string>
#include <thread>
#include <vector>

using namespace attn::runtime;

namespace {

/// Validates the kernel descriptor and converts its inputs to a Signature.
attn_status_t checkKernel(const attn_kernel_desc_t *k, attn::Signature &sig) {
  if (!k)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "kernel: descriptor is NULL");
  std::string kname = std::string("kernel '") + (k->name ? k->name : "?") + "'";
  if (k->abi_version != ATTN_ABI_VERSION)
    return fail(ATTN_ERROR_UNSUPPORTED,
                kname + ": ABI version " + str(k->abi_version) +
                    ", this runtime supports " + str(ATTN_ABI_VERSION));
  if (!k->cpu_fn)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": cpu_fn is NULL (not compiled for the CPU)");
  if (k->tile_q <= 0)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": tile_q is " + str(k->tile_q) + ", expected > 0");
  return checkInputDescs(kname, k->num_inputs, k->inputs, sig);
}

struct Launch {
  attn_cpu_kernel_fn fn;
  void **args;
};

void runRange(void *ctx, int64_t begin, int64_t end) {
  auto *launch = static_cast<Launch *>(ctx);
  launch->fn(launch->args, begin, end);
}

int computeDefaultThreads() {
  if (const char *env = std::getenv("ATTN_NUM_THREADS")) {
    char *endp = nullptr;
    long v = std::strtol(env, &endp, 10);
    if (endp != env && *endp == '\0' && v > 0)
      return static_cast<int>(std::min<long>(v, kMaxThreads));
  }
  int n = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    n = CPU_COUNT(&set);
  if (n <= 0)
    n = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(n, 1, kMaxThreads);
}

} // namespace

extern "C" int32_t attn_cpu_num_threads(void) {
  static const int n = computeDefaultThreads();
  return n;
}

extern "C" attn_status_t attn_cpu_run(const attn_kernel_desc_t *kernel,
                                      const DLTensor *const *inputs,
                                      DLTensor *o, DLTensor *lse,
                                      const attn_run_options_t *options) {
  clearLastError();

  // The kernel descriptor and the call's pointers.
  attn::Signature sig;
  if (attn_status_t st = checkKernel(kernel, sig))
    return st;
  if (attn_status_t st = checkCallPointers(kernel->name, kernel->has_lse,
                                           inputs, o, lse))
    return st;
  int numThreads = options ? options->num_threads : 0;
  if (numThreads < 0)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                "options: num_threads is " + str(numThreads) +
                    ", expected >= 0 (0 = all cores)");
  if (numThreads == 0)
    numThreads = attn_cpu_num_threads();

  // Inputs and outputs: devices, dtypes, layouts, shapes.
  attn::DimBinding dims;
  if (attn_status_t st = checkTensors(sig, kernel->inputs, inputs, o, lse,
                                      MemoryKind::Host, dims))
    return st;

  // Work items.
  int64_t B = dims.at("B"), Hq = dims.at("Hq"), N = dims.at("N");
  int64_t numQTiles = (N + kernel->tile_q - 1) / kernel->tile_q;
  int64_t total;
  if (__builtin_mul_overflow(B, Hq, &total) ||
      __builtin_mul_overflow(total, numQTiles, &total))
    return fail(ATTN_ERROR_SHAPE, "q: B * Hq * ceil(N / tile_q) overflows");

  // Descriptors: q, k, v, o, lse, aux.
  Descriptors desc;
  addCallDescriptors(desc, kernel->num_inputs, inputs, o, lse, dims);
  std::vector<void *> args = desc.args();

  // Launch: one call when single-threaded, else small dynamic chunks (items
  // are coarse: tile_q query rows against every key).
  Launch launch{kernel->cpu_fn, args.data()};
  int64_t chunk = total;
  if (numThreads > 1)
    chunk = std::clamp<int64_t>(total / (int64_t(numThreads) * 8), 1, 4);
  parallelFor(runRange, &launch, total, chunk, numThreads);
  return ATTN_OK;
}
