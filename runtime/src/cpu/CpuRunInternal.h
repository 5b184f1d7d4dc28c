//===- CpuRunInternal.h - what the CPU entry points share ------*- C++ -*-===//
//
// Private to runtime/src/cpu: the kernel-descriptor checks, the launch of a
// kernel over work items, and the decode schedule's choices, shared by
// attn_cpu_run (CpuRun.cpp) and attn_cpu_run_batch (BatchRun.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_RUNTIME_CPU_CPURUNINTERNAL_H
#define ATTN_RUNTIME_CPU_CPURUNINTERNAL_H

#include "attn/Signature.h"
#include "attn/runtime.h"

#include <atomic>
#include <cstdint>

namespace attn::runtime {

/// Validates the kernel descriptor and converts its inputs to a Signature.
attn_status_t checkKernel(const attn_kernel_desc_t *k, attn::Signature &sig);

/// Checks the head dims against ATTN_MAX_HEAD_DIM: the kernels' scratch
/// grows with tile x head dim.
attn_status_t checkHeadDims(const char *kernelName,
                            const attn::DimBinding &dims);

/// One kernel over a launch's items, sharing the launch's status word.
struct Launch {
  attn_cpu_kernel_fn fn;
  void **args;
  /// The status word the kernel's args point to (ABI version 2).
  std::atomic<int32_t> *status;
};

/// parallelFor body: launch->fn over [begin, end), skipped once the launch
/// failed.
void runRange(void *ctx, int64_t begin, int64_t end);

/// The error of a launch of kernel `name` whose status word is `status`
/// (nonzero); `outcome` says what it left written.
attn_status_t launchError(const char *name, int32_t status,
                          const attn::DimBinding &dims, const char *outcome);

/// Whether a call with N queries runs the decode schedule: when the kernel
/// has one and N fits its lanes, unless ATTN_CPU_SCHEDULE says otherwise
/// (`prefill`, `decode`; read per call, for tests and benchmarks).
bool useDecode(const attn_kernel_desc_t *k, int64_t N);

/// ATTN_DECODE_WIDE (read per call; tests and benchmarks): 0 or 1 forces the
/// one-vector or the wide decode kernel; -1 when unset or another value.
int forcedWideDecode();

/// The lanes per decode item for a group of GN queries (attn_cpu_decode_lanes):
/// the wide decode kernels' when the kernel has them and GN exceeds
/// decode_lanes, else decode_lanes; `forcedWide` (forcedWideDecode()) 0 / 1
/// forces one.
int32_t decodeLanes(const attn_kernel_desc_t *k, int64_t GN, int forcedWide);

/// The decode kernel whose items have `lanes` lanes (decodeLanes), over
/// page pools when `paged`.
attn_cpu_kernel_fn decodeKernel(const attn_kernel_desc_t *k, int32_t lanes,
                                bool paged);

/// Splits of the kv length (M keys) per decode item when `items` items
/// (b, kv head, lane chunk) share `numThreads` threads; ATTN_DECODE_SPLITS
/// overrides.
int64_t decodeSplits(int64_t items, int64_t M, int numThreads);

/// The decode schedule of attn_cpu_run (a dense batch, validated, dims
/// bound): every split's partial (o, lse) into scratch, then their LSE
/// merge into o and lse; the same stages as attn_cpu_run_batch.
attn_status_t runDenseDecode(const attn_kernel_desc_t *kernel,
                             const DLTensor *const *inputs, DLTensor *o,
                             DLTensor *lse, const attn::DimBinding &dims,
                             int numThreads);

} // namespace attn::runtime

#endif // ATTN_RUNTIME_CPU_CPURUNINTERNAL_H
