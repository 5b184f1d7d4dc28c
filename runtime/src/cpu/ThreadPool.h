//===- ThreadPool.h - the CPU runtime's persistent thread pool -*- C++ -*-===//
//
// Workers are std::threads created on first need and reused by every later
// call; the pool only grows (up to kMaxThreads). Each parallelFor() is its own
// job with its own atomic item counter, so concurrent callers run
// concurrently and a body may itself call parallelFor() (the calling thread
// always works on its own job, so progress never depends on a free worker).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_RUNTIME_CPU_THREADPOOL_H
#define ATTN_RUNTIME_CPU_THREADPOOL_H

#include <cstdint>

namespace attn::runtime {

/// Most threads one call may use (calling thread included).
constexpr int kMaxThreads = 256;

/// Processes items [begin, end) of a job.
using RangeFn = void (*)(void *ctx, int64_t begin, int64_t end);

/// Calls fn(ctx, b, e) over [0, total) in chunks of at most \p chunk items,
/// on the calling thread and up to numThreads - 1 pool workers, scheduled
/// dynamically (an atomic counter hands out the next chunk). Returns when
/// every chunk has finished. numThreads <= 1 runs everything inline.
void parallelFor(RangeFn fn, void *ctx, int64_t total, int64_t chunk,
                 int numThreads);

/// The number of worker threads the pool holds now (for tests).
int poolWorkerCount();

} // namespace attn::runtime

#endif // ATTN_RUNTIME_CPU_THREADPOOL_H
