//===- CpuRun.cpp - attn_cpu_run: validate, build descriptors, launch -----===//
//
// Validation happens in full before anything is launched, so a failing call
// writes nothing to o or lse. Shapes bind through attn::bindShapes, the same
// binding the reference evaluator and `attnc run` use. After the launch the
// only error is a kernel that could not allocate its scratch, reported in
// the status word every kernel call of the launch shares.
//
//===----------------------------------------------------------------------===//

#include "../Validate.h"
#include "CpuRunInternal.h"
#include "ThreadPool.h"

#include "attn/Signature.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <sched.h>
#include <string>
#include <thread>
#include <vector>

using namespace attn::runtime;

attn_status_t attn::runtime::checkKernel(const attn_kernel_desc_t *k,
                                         attn::Signature &sig) {
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
  if (k->decode_lanes < 0 || (k->decode_lanes > 0) != (k->decode_fn != nullptr))
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": decode_lanes is " + str(k->decode_lanes) +
                    " with decode_fn " + (k->decode_fn ? "set" : "NULL") +
                    ", expected both set or NULL and 0");
  // The paged kernels mirror the others: paged_decode_fn exactly when
  // paged_fn and decode_fn are both set.
  if (k->paged_decode_fn && !k->paged_fn)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": paged_decode_fn is set while paged_fn is NULL");
  if (k->paged_fn &&
      (k->decode_fn != nullptr) != (k->paged_decode_fn != nullptr))
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": paged_decode_fn is " +
                    (k->paged_decode_fn ? "set" : "NULL") +
                    " while decode_fn is " + (k->decode_fn ? "set" : "NULL"));
  // The wide decode kernels: decode_wide_lanes > 0 exactly with
  // decode_wide_fn, which needs decode_fn; paged_decode_wide_fn exactly
  // when paged_fn and decode_wide_fn are set.
  if (k->decode_wide_lanes < 0 ||
      (k->decode_wide_lanes > 0) != (k->decode_wide_fn != nullptr))
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": decode_wide_lanes is " + str(k->decode_wide_lanes) +
                    " with decode_wide_fn " +
                    (k->decode_wide_fn ? "set" : "NULL") +
                    ", expected both set or NULL and 0");
  if (k->decode_wide_fn && !k->decode_fn)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": decode_wide_fn is set while decode_fn is NULL");
  if ((k->paged_decode_wide_fn != nullptr) !=
      (k->paged_fn && k->decode_wide_fn))
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": paged_decode_wide_fn is " +
                    (k->paged_decode_wide_fn ? "set" : "NULL") +
                    ", expected it set exactly when paged_fn and "
                    "decode_wide_fn are");
  return checkInputDescs(kname, k->num_inputs, k->inputs, sig);
}

attn_status_t attn::runtime::checkHeadDims(const char *kernelName,
                                           const attn::DimBinding &dims) {
  for (const char *dim : {"Dqk", "Dv"}) {
    int64_t d = dims.at(dim);
    if (d > ATTN_MAX_HEAD_DIM)
      return fail(ATTN_ERROR_UNSUPPORTED,
                  std::string("kernel '") + (kernelName ? kernelName : "?") +
                      "': head dim " + dim + " = " + str(d) +
                      " exceeds the CPU kernels' limit of " +
                      str(ATTN_MAX_HEAD_DIM) + " (ATTN_MAX_HEAD_DIM)");
  }
  return ATTN_OK;
}

// Kernels store to the status word with a 32-bit atomic store.
static_assert(sizeof(std::atomic<int32_t>) == sizeof(int32_t) &&
                  std::atomic<int32_t>::is_always_lock_free,
              "the kernel status word must be a plain lock-free int32_t");

void attn::runtime::runRange(void *ctx, int64_t begin, int64_t end) {
  auto *launch = static_cast<Launch *>(ctx);
  // After a failure the launch's result is an error anyway: skip the rest.
  if (launch->status->load(std::memory_order_relaxed) != ATTN_KERNEL_OK)
    return;
  launch->fn(launch->args, begin, end);
}

attn_status_t attn::runtime::launchError(const char *name, int32_t status,
                                         const attn::DimBinding &dims,
                                         const char *outcome) {
  std::string kname = std::string("kernel '") + (name ? name : "?") + "'";
  if (status != ATTN_KERNEL_OUT_OF_MEMORY)
    return fail(ATTN_ERROR_INTERNAL,
                kname + " returned the unknown status " + str(status));
  return fail(ATTN_ERROR_OUT_OF_MEMORY,
              kname + ": out of memory allocating its scratch buffers (Dqk = " +
                  str(dims.at("Dqk")) + ", Dv = " + str(dims.at("Dv")) + "); " +
                  outcome);
}

namespace {

int computeDefaultThreads();

/// A positive integer from the environment variable `name`, else 0.
int64_t envCount(const char *name) {
  const char *env = std::getenv(name);
  if (!env)
    return 0;
  char *endp = nullptr;
  long long v = std::strtoll(env, &endp, 10);
  return endp != env && *endp == '\0' && v > 0 ? v : 0;
}

} // namespace

bool attn::runtime::useDecode(const attn_kernel_desc_t *k, int64_t N) {
  if (!k->decode_fn)
    return false;
  if (int forced = forcedSchedule("ATTN_CPU_SCHEDULE"); forced >= 0)
    return forced == 1;
  return N <= k->decode_lanes;
}

int attn::runtime::forcedWideDecode() {
  const char *env = std::getenv("ATTN_DECODE_WIDE");
  if (env && (!std::strcmp(env, "0") || !std::strcmp(env, "1")))
    return *env - '0';
  return -1;
}

int32_t attn::runtime::decodeLanes(const attn_kernel_desc_t *k, int64_t GN,
                                   int forcedWide) {
  if (!k->decode_wide_fn)
    return k->decode_lanes;
  if (forcedWide >= 0)
    return forcedWide ? k->decode_wide_lanes : k->decode_lanes;
  return GN > k->decode_lanes ? k->decode_wide_lanes : k->decode_lanes;
}

attn_cpu_kernel_fn attn::runtime::decodeKernel(const attn_kernel_desc_t *k,
                                               int32_t lanes, bool paged) {
  bool wide = k->decode_wide_fn && lanes == k->decode_wide_lanes &&
              lanes != k->decode_lanes;
  if (paged)
    return wide ? k->paged_decode_wide_fn : k->paged_decode_fn;
  return wide ? k->decode_wide_fn : k->decode_fn;
}

/// Splits of the kv length per (b, kv head, lane chunk): enough items to
/// keep every thread busy (4 per thread, for balance), but at least 512
/// keys each (a tile is at most 512 rows, so no split is past the last
/// tile); ATTN_DECODE_SPLITS overrides (tests), capped at 4096.
int64_t attn::runtime::decodeSplits(int64_t items, int64_t M, int numThreads) {
  if (int64_t forced = envCount("ATTN_DECODE_SPLITS"))
    return std::min<int64_t>(forced, 4096);
  if (numThreads <= 1 || items >= 4 * int64_t(numThreads))
    return 1;
  int64_t want = (4 * int64_t(numThreads) + items - 1) / items;
  return std::clamp<int64_t>(want, 1, std::max<int64_t>(1, (M + 511) / 512));
}

namespace {

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

extern "C" int64_t attn_cpu_decode_splits(const attn_kernel_desc_t *kernel,
                                          int64_t B, int64_t Hq, int64_t Hkv,
                                          int64_t N, int64_t M,
                                          int32_t num_threads) {
  if (!kernel || kernel->decode_lanes <= 0 || B <= 0 || Hkv <= 0 || N <= 0 ||
      M <= 0 || Hq <= 0 || Hq % Hkv != 0 || num_threads < 0 ||
      !useDecode(kernel, N))
    return 0;
  int64_t GN, base;
  if (__builtin_mul_overflow(Hq / Hkv, N, &GN))
    return 0;
  int64_t L = decodeLanes(kernel, GN, forcedWideDecode());
  if (__builtin_mul_overflow(B * Hkv, (GN + L - 1) / L, &base))
    return 0;
  return decodeSplits(base, M,
                      num_threads ? num_threads : attn_cpu_num_threads());
}

extern "C" int32_t attn_cpu_decode_lanes(const attn_kernel_desc_t *kernel,
                                         int64_t Hq, int64_t Hkv, int64_t N) {
  int64_t GN;
  if (!kernel || kernel->decode_lanes <= 0 || Hkv <= 0 || N <= 0 || Hq <= 0 ||
      Hq % Hkv != 0 || __builtin_mul_overflow(Hq / Hkv, N, &GN))
    return 0;
  return decodeLanes(kernel, GN, forcedWideDecode());
}

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
  if (attn_status_t st =
          checkCallPointers(kernel->name, kernel->has_lse, inputs, o, lse))
    return st;
  int numThreads;
  if (attn_status_t st = resolveThreads(options, numThreads))
    return st;

  // Inputs and outputs: devices, dtypes, layouts, shapes.
  attn::DimBinding dims;
  if (attn_status_t st = checkTensors(sig, kernel->inputs, inputs, o, lse,
                                      MemoryKind::Host, dims))
    return st;
  if (attn_status_t st = checkHeadDims(kernel->name, dims))
    return st;
  if (useDecode(kernel, dims.at("N")))
    return runDenseDecode(kernel, inputs, o, lse, dims, numThreads);

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
  std::atomic<int32_t> status{ATTN_KERNEL_OK};
  args.push_back(&status);

  // Launch: one call when single-threaded, else small dynamic chunks (items
  // are coarse: tile_q query rows against every key).
  Launch launch{kernel->cpu_fn, args.data(), &status};
  int64_t chunk = total;
  if (numThreads > 1)
    chunk = std::clamp<int64_t>(total / (int64_t(numThreads) * 8), 1, 4);
  parallelFor(runRange, &launch, total, chunk, numThreads);
  // parallelFor returns after every chunk finished (joined under the pool's
  // mutex), so every kernel's store is visible here.
  if (int32_t st = status.load(std::memory_order_relaxed))
    return launchError(kernel->name, st, dims,
                       "o and lse are partially written");
  return ATTN_OK;
}

//===----------------------------------------------------------------------===//
// The backward pass
//===----------------------------------------------------------------------===//

namespace {

attn_status_t checkBackwardKernel(const attn_backward_desc_t *k,
                                  attn::Signature &sig) {
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
  if (attn_status_t st = checkInputDescs(kname, k->num_inputs, k->inputs, sig))
    return st;
  return checkGradInputs(kname, k->num_inputs, k->inputs, k->num_grads,
                         k->grad_inputs);
}

} // namespace

extern "C" attn_status_t attn_cpu_run_backward(
    const attn_backward_desc_t *kernel, const DLTensor *const *inputs,
    const DLTensor *o, const DLTensor *lse, const DLTensor *dout,
    const DLTensor *dlse, DLTensor *dq, DLTensor *dk, DLTensor *dv,
    DLTensor *const *daux, const attn_run_options_t *options) {
  clearLastError();
  attn::Signature sig;
  if (attn_status_t st = checkBackwardKernel(kernel, sig))
    return st;
  BackwardKernel k{kernel->name,      kernel->num_inputs, kernel->inputs,
                   kernel->needs_lse, kernel->num_grads,  kernel->grad_inputs};
  BackwardTensors t{o, lse, dout, dlse, dq, dk, dv, daux};
  attn::DimBinding dims;
  if (attn_status_t st = checkBackwardCall(k, sig, inputs, t, MemoryKind::Host,
                                           DLDataType{kDLFloat, 32, 1}, dims))
    return st;
  if (attn_status_t st = checkHeadDims(kernel->name, dims))
    return st;
  int numThreads;
  if (attn_status_t st = resolveThreads(options, numThreads))
    return st;
  int64_t B = dims.at("B"), Hkv = dims.at("Hkv");

  int64_t total;
  if (__builtin_mul_overflow(B, Hkv, &total))
    return fail(ATTN_ERROR_SHAPE, "k: B * Hkv overflows");

  // The kernels add to the aux gradients: start them at 0.
  for (int32_t i = 0; i < kernel->num_grads; ++i) {
    DLTensor *g = daux[i];
    std::vector<int64_t> strides = stridesOf(g), idx(g->ndim, 0);
    char *base = static_cast<char *>(g->data) + g->byte_offset;
    int64_t numel = 1;
    for (int d = 0; d < g->ndim; ++d)
      numel *= g->shape[d];
    for (int64_t n = 0; n < numel; ++n) {
      int64_t off = 0;
      for (int d = 0; d < g->ndim; ++d)
        off += idx[d] * strides[d];
      reinterpret_cast<float *>(base)[off] = 0.0f;
      for (int d = g->ndim - 1; d >= 0 && ++idx[d] == g->shape[d]; --d)
        idx[d] = 0;
    }
  }

  // Descriptors: q, k, v, o, lse, aux, do, dlse, dq, dk, dv, daux.
  Descriptors desc;
  addBackwardDescriptors(desc, k, inputs, t, dims);
  std::vector<void *> args = desc.args();
  std::atomic<int32_t> status{ATTN_KERNEL_OK};
  args.push_back(&status);
  Launch launch{kernel->cpu_fn, args.data(), &status};
  parallelFor(runRange, &launch, total, 1, numThreads);
  if (int32_t st = status.load(std::memory_order_relaxed))
    return launchError(kernel->name, st, dims,
                       "the gradients are partially written");
  return ATTN_OK;
}
