//===- ThreadPool.cpp - the CPU runtime's persistent thread pool ----------===//
//
// One mutex guards the job queue and the per-job bookkeeping; the items
// themselves are handed out lock-free by each job's atomic counter.
//
// A caller pushes its job (on its own stack), wakes up to numThreads - 1
// workers, works on the job itself, then takes the job off the queue (so no
// new worker joins) and waits until the workers that joined have left. A
// worker takes the job at the front of the queue, pops it once it has all the
// helpers it asked for or has no chunk left, and runs chunks until none are
// left. Because the caller always drains its own job, progress never waits for
// a free worker: concurrent callers and nested calls cannot deadlock.
//
//===----------------------------------------------------------------------===//

#include "ThreadPool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <pthread.h>
#include <thread>
#include <vector>

using namespace attn::runtime;

namespace {

struct Job {
  RangeFn fn;
  void *ctx;
  int64_t total;
  int64_t chunk;
  std::atomic<int64_t> next{0};
  // Guarded by the pool mutex.
  int helpersWanted = 0;
  int helpersJoined = 0;
  int active = 0;
  bool queued = false;

  bool exhausted() const {
    return next.load(std::memory_order_relaxed) >= total;
  }
  void runChunks() {
    for (;;) {
      int64_t begin = next.fetch_add(chunk, std::memory_order_relaxed);
      if (begin >= total)
        return;
      fn(ctx, begin, std::min(begin + chunk, total));
    }
  }
};

class ThreadPool {
public:
  static ThreadPool &get() {
    static ThreadPool pool;
    return pool;
  }

  void run(Job &job, int helpers) {
    std::unique_lock<std::mutex> lock(mu);
    size_t want = static_cast<size_t>(helpers);
    while (workers.size() < want)
      workers.emplace_back([this] { workerLoop(); });
    job.helpersWanted = helpers;
    job.queued = true;
    queue.push_back(&job);
    bool wakeAll = want >= workers.size();
    lock.unlock();
    if (wakeAll)
      workCv.notify_all();
    else
      for (int i = 0; i < helpers; ++i)
        workCv.notify_one();

    job.runChunks();

    lock.lock();
    if (job.queued) {
      queue.erase(std::find(queue.begin(), queue.end(), &job));
      job.queued = false;
    }
    doneCv.wait(lock, [&] { return job.active == 0; });
  }

  int workerCount() {
    std::lock_guard<std::mutex> lock(mu);
    return static_cast<int>(workers.size());
  }

private:
  ThreadPool() {
    // Keep the mutex consistent across fork(): the child gets it unlocked,
    // an empty queue, and no workers (it creates fresh ones on demand).
    pthread_atfork([] { get().mu.lock(); }, [] { get().mu.unlock(); },
                   [] { get().afterForkInChild(); });
  }

  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stopping = true;
    }
    workCv.notify_all();
    for (std::thread &t : workers)
      t.join();
  }

  void afterForkInChild() {
    // The workers do not exist in the child; their std::thread objects must
    // not be joined or destroyed, so they move to storage that is never
    // freed. Jobs in the queue belong to threads of the parent.
    new std::vector<std::thread>(std::move(workers));
    workers.clear();
    queue.clear();
    mu.unlock();
  }

  void workerLoop() {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      workCv.wait(lock, [&] { return stopping || !queue.empty(); });
      if (stopping)
        return;
      Job *job = queue.front();
      bool exhausted = job->exhausted();
      if (exhausted || ++job->helpersJoined >= job->helpersWanted) {
        queue.pop_front();
        job->queued = false;
      }
      if (exhausted)
        continue;
      ++job->active;
      lock.unlock();
      job->runChunks();
      lock.lock();
      // The caller may free the job as soon as it sees active == 0, which it
      // can only do after this thread releases the mutex.
      if (--job->active == 0)
        doneCv.notify_all();
    }
  }

  std::mutex mu;
  std::condition_variable workCv; // queue non-empty or stopping
  std::condition_variable doneCv; // some job's active count reached 0
  std::deque<Job *> queue;
  std::vector<std::thread> workers;
  bool stopping = false;
};

} // namespace

void attn::runtime::parallelFor(RangeFn fn, void *ctx, int64_t total,
                                int64_t chunk, int numThreads) {
  if (total <= 0)
    return;
  chunk = std::max<int64_t>(chunk, 1);
  int64_t numChunks = (total + chunk - 1) / chunk;
  int64_t threads = std::min<int64_t>(
      {static_cast<int64_t>(numThreads), numChunks, int64_t(kMaxThreads)});
  if (threads <= 1) {
    for (int64_t begin = 0; begin < total; begin += chunk)
      fn(ctx, begin, std::min(begin + chunk, total));
    return;
  }
  Job job;
  job.fn = fn;
  job.ctx = ctx;
  job.total = total;
  job.chunk = chunk;
  ThreadPool::get().run(job, static_cast<int>(threads - 1));
}

int attn::runtime::poolWorkerCount() {
  return ThreadPool::get().workerCount();
}
