//===- BatchRun.cpp - attn_cpu_run_batch: ragged batches, paged KV --------===//
//
// A ragged or paged batch runs the same compiled kernels as attn_cpu_run,
// one segment of work items per sequence, all in one launch:
//
//  - A ragged side (packed rows plus cumulative offsets) needs no kernel of
//    its own: sequence b's segment gets memref descriptors that view its
//    rows as batch b of a [b + 1, H, n_b, D] tensor whose batch stride is 0
//    and whose base is the sequence's first row. The kernel, which only
//    decodes b from its item index, then computes exactly the items of
//    sequence b with N and M its own lengths, and the masks and scores see
//    the true b and positions within the sequence.
//  - Paged keys need the paged kernels (attn_kernel_desc_t::paged_fn),
//    which read M from kv_lens[b] and each key row through the block table.
//
// Every sequence takes the schedule attn_cpu_run would give it alone
// (decode for few queries, with its own split count), and the decode
// segments' partial results are merged afterwards. Everything, the tables'
// values included, is validated before the launch.
//
//===----------------------------------------------------------------------===//

#include "../BatchShapes.h"
#include "../Merge.h"
#include "../Validate.h"
#include "CpuRunInternal.h"
#include "ThreadPool.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace attn::runtime;

namespace {

const DLDataType kI32 = {kDLInt, 32, 1};

/// An int32 table of the layout: checked (host memory, int32, `rank`,
/// strides, alignment) and read into `values` in row-major order.
attn_status_t readTable(const char *name, const DLTensor *t, int rank,
                        const char *decl, std::vector<int64_t> &values) {
  if (attn_status_t st = checkRank(name, t, rank, decl))
    return st;
  std::vector<int64_t> shape(t->shape, t->shape + rank);
  for (int d = 0; d < rank; ++d)
    if (shape[d] < 0)
      return fail(ATTN_ERROR_SHAPE, std::string(name) + ": dim " + str(d) +
                                        " is " + str(shape[d]));
  if (attn_status_t st = checkExtraTensor(name, t, shape, decl, false,
                                          MemoryKind::Host, nullptr, kI32))
    return st;
  gatherTable(t,
              reinterpret_cast<const int32_t *>(
                  static_cast<const char *>(t->data) + t->byte_offset),
              values);
  return ATTN_OK;
}

/// The work items of one sequence: one kernel, its descriptors, and the
/// kernel's item range [base, base + count).
struct Segment {
  attn_cpu_kernel_fn fn = nullptr;
  std::vector<void *> args;
  int64_t base = 0, count = 0;
  int64_t start = 0; // first item in the launch's flat range
};

struct SegmentLaunch {
  const std::vector<Segment> *segments;
  std::atomic<int32_t> *status;
};

/// parallelFor body over the concatenated segments.
void runSegments(void *ctx, int64_t begin, int64_t end) {
  auto *l = static_cast<SegmentLaunch *>(ctx);
  const std::vector<Segment> &segs = *l->segments;
  auto it = std::upper_bound(
      segs.begin(), segs.end(), begin,
      [](int64_t item, const Segment &s) { return item < s.start; });
  for (size_t i = size_t(it - segs.begin()) - 1;
       i < segs.size() && segs[i].start < end; ++i) {
    if (l->status->load(std::memory_order_relaxed) != ATTN_KERNEL_OK)
      return;
    const Segment &s = segs[i];
    int64_t lo = std::max(begin, s.start) - s.start;
    int64_t hi = std::min(end, s.start + s.count) - s.start;
    if (lo < hi)
      s.fn(const_cast<void **>(s.args.data()), s.base + lo, s.base + hi);
  }
}

/// A decode sequence's partial results and where its rows go.
struct MergeSegment {
  const float *oPart, *lsePart; // [Hkv, S, R, Dv], [Hkv, S, R]
  int64_t S, R, N;
  float *o;           // row (h = 0, i = 0)
  int64_t oH, oI, oD; // strides in floats
  float *lse;         // NULL when not wanted
  int64_t lseH, lseI;
  int64_t start; // first row in the merge's flat range
};

struct MergeLaunch {
  const std::vector<MergeSegment> *segments;
  int64_t G, Dv;
};

/// Merges rows [begin, end) of the concatenated (h, i) rows of the decode
/// sequences.
void mergeSegments(void *ctx, int64_t begin, int64_t end) {
  auto *m = static_cast<MergeLaunch *>(ctx);
  const std::vector<MergeSegment> &segs = *m->segments;
  auto it = std::upper_bound(
      segs.begin(), segs.end(), begin,
      [](int64_t r, const MergeSegment &s) { return r < s.start; });
  size_t seg = size_t(it - segs.begin()) - 1;
  for (int64_t row = begin; row < end; ++row) {
    while (seg + 1 < segs.size() && row >= segs[seg + 1].start)
      ++seg;
    const MergeSegment &s = segs[seg];
    int64_t local = row - s.start, h = local / s.N, i = local % s.N;
    int64_t part = (h / m->G) * s.S * s.R + (h % m->G) * s.N + i;
    float lse =
        mergeRow(s.S, m->Dv, s.oPart + part * m->Dv, s.R * m->Dv, 1,
                 s.lsePart + part, s.R, s.o + h * s.oH + i * s.oI, s.oD);
    if (s.lse)
      s.lse[h * s.lseH + i * s.lseI] = lse;
  }
}

char *dataOf(const DLTensor *t) {
  return static_cast<char *>(t->data) + t->byte_offset;
}

/// Cumulative offsets `name` ([B + 1] int32) of the `rows` rows of
/// `tensor`, read and checked into `cu`.
attn_status_t readOffsets(const char *name, const DLTensor *t, int64_t rows,
                          const char *tensor, std::vector<int64_t> &cu) {
  if (attn_status_t st = readTable(name, t, 1, "[B + 1]", cu))
    return st;
  if (cu.empty())
    return fail(ATTN_ERROR_SHAPE,
                std::string(name) + ": dim 0 is 0, expected B + 1");
  return checkOffsets(name, cu, rows, tensor);
}

/// One attn_cpu_run_batch call, checked and run in stages.
class BatchCall : BatchShapes {
public:
  BatchCall(const attn_kernel_desc_t *kernel, const DLTensor *const *inputs,
            const attn_batch_layout_t *layout, DLTensor *o, DLTensor *lse,
            const attn_run_options_t *options)
      : kernel(kernel), inputs(inputs), layout(layout), o(o), lse(lse),
        options(options) {}

  attn_status_t run() {
    for (attn_status_t (BatchCall::*stage)() :
         {&BatchCall::checkCall, &BatchCall::readLayout,
          &BatchCall::checkTensors, &BatchCall::planSchedules,
          &BatchCall::buildSegments, &BatchCall::launch})
      if (attn_status_t st = (this->*stage)())
        return st;
    return ATTN_OK;
  }

  /// attn_cpu_run's decode schedule: a dense batch whose tensors
  /// attn_cpu_run validated (and bound to `bound`) runs the last stages.
  attn_status_t runValidatedDense(const attn::DimBinding &bound, int threads) {
    dims = bound;
    numThreads = threads;
    q = inputs[0];
    k = inputs[1];
    v = inputs[2];
    B = dims.at("B");
    Hq = dims.at("Hq");
    Hkv = dims.at("Hkv");
    Dqk = dims.at("Dqk");
    Dv = dims.at("Dv");
    maxN = dims.at("N");
    maxM = dims.at("M");
    seqN.assign(B, maxN);
    seqM.assign(B, maxM);
    for (attn_status_t (BatchCall::*stage)() :
         {&BatchCall::planSchedules, &BatchCall::buildSegments,
          &BatchCall::launch})
      if (attn_status_t st = (this->*stage)())
        return st;
    return ATTN_OK;
  }

private:
  /// The descriptor, the pointers, the thread count and which layout each
  /// side has.
  attn_status_t checkCall();
  /// q, k, v's ranks and dims, the tables (their values checked), B and
  /// each sequence's lengths.
  attn_status_t readLayout();
  /// Binds the dims as for a padded batch, then checks every tensor.
  attn_status_t checkTensors();
  /// Each sequence's schedule; the decode splits and their scratch.
  attn_status_t planSchedules();
  /// One segment (kernel, descriptors, items) per sequence with queries.
  attn_status_t buildSegments();
  /// One launch over the segments, then the decode merges.
  attn_status_t launch();

  const char *kname() const { return kernel->name ? kernel->name : "?"; }

  const attn_kernel_desc_t *kernel;
  const DLTensor *const *inputs;
  const attn_batch_layout_t *layout;
  DLTensor *o, *lse;
  const attn_run_options_t *options;

  attn::Signature sig;
  attn::DimBinding dims;
  int numThreads = 1;
  int64_t pageSize = 0, numPages = 0, maxPages = 0;
  std::vector<int64_t> cuQ, cuK, table, kvLens;
  std::vector<int64_t> seqN, seqM; // per sequence
  int64_t maxN = 1, maxM = 1;

  // The schedule: per sequence, decode or prefill, its lanes per item (the
  // one-vector or the wide decode kernel), lane chunks, splits and where its
  // partials start in the scratch.
  std::vector<char> decode;
  std::vector<int64_t> lanes, chunks, splits, partOffset;
  std::unique_ptr<float[], void (*)(void *)> scratch{nullptr, std::free};

  std::atomic<int32_t> status{ATTN_KERNEL_OK};
  std::vector<Segment> segments;
  std::vector<MergeSegment> merges;
  std::vector<std::unique_ptr<Descriptors>> words; // what args point into
  int64_t totalItems = 0, mergeRows = 0;
  bool anyPrefill = false; // a segment writes o and lse directly

  attn_status_t readPages();
};

attn_status_t BatchCall::checkCall() {
  if (attn_status_t st = checkKernel(kernel, sig))
    return st;
  if (!layout)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "layout: pointer is NULL");
  if (attn_status_t st =
          checkPointers(kernel->name, kernel->has_lse, kernel->num_inputs,
                        kernel->inputs, inputs, o, lse))
    return st;
  if (attn_status_t st = resolveThreads(options, numThreads))
    return st;
  if (attn_status_t st = readFlags(*layout))
    return st;
  if (paged && !kernel->paged_fn)
    return fail(ATTN_ERROR_UNSUPPORTED,
                std::string("kernel '") + kname() +
                    "' has no paged-KV kernel; compile it with --paged-kv "
                    "(CompileOptions::pagedKV)");
  return ATTN_OK;
}

attn_status_t BatchCall::readLayout() {
  if (attn_status_t st = readDims(inputs))
    return st;

  // The tables, B from the first one given; dense sides give it too.
  if (raggedQ) {
    if (attn_status_t st = readOffsets("cu_seqlens_q", layout->cu_seqlens_q,
                                       q->shape[0], "q (total_q)", cuQ))
      return st;
    if (attn_status_t st = setB("cu_seqlens_q", int64_t(cuQ.size()) - 1))
      return st;
  }
  if (raggedK) {
    if (attn_status_t st = readOffsets("cu_seqlens_k", layout->cu_seqlens_k,
                                       k->shape[0], "k (total_k)", cuK))
      return st;
    if (attn_status_t st = setB("cu_seqlens_k", int64_t(cuK.size()) - 1))
      return st;
  }
  if (paged)
    if (attn_status_t st = readPages())
      return st;
  if (attn_status_t st = setDenseB())
    return st;

  // Per-sequence lengths; aux inputs bind N and M to the longest.
  seqN.resize(B);
  seqM.resize(B);
  for (int64_t b = 0; b < B; ++b) {
    seqN[b] = raggedQ ? cuQ[b + 1] - cuQ[b] : q->shape[2];
    seqM[b] = raggedK ? cuK[b + 1] - cuK[b] : paged ? kvLens[b] : k->shape[2];
    maxN = std::max(maxN, seqN[b]);
    maxM = std::max(maxM, seqM[b]);
  }
  return ATTN_OK;
}

/// The block table and kv_lens: every length within the table's capacity,
/// every page a sequence uses inside the pool.
attn_status_t BatchCall::readPages() {
  pageSize = k->shape[1];
  numPages = k->shape[0];
  if (attn_status_t st = readTable("block_table", layout->block_table, 2,
                                   "[B, max_pages]", table))
    return st;
  if (attn_status_t st =
          readTable("kv_lens", layout->kv_lens, 1, "[B]", kvLens))
    return st;
  maxPages = layout->block_table->shape[1];
  if (attn_status_t st = setB("block_table", layout->block_table->shape[0]))
    return st;
  if (attn_status_t st = setB("kv_lens", int64_t(kvLens.size())))
    return st;
  if (pageSize <= 0 || numPages <= 0)
    return fail(ATTN_ERROR_SHAPE,
                "k: a page pool needs pages and page_size > 0 (shape " +
                    shapeString(k->shape, 4) + ")");
  if (attn_status_t st =
          checkPageTable(table, kvLens, maxPages, pageSize, numPages))
    return st;
  return ATTN_OK;
}

attn_status_t BatchCall::checkTensors() {
  if (attn_status_t st = bindDims(sig, kernel->num_inputs, kernel->inputs,
                                  inputs, maxN, maxM, dims))
    return st;
  if (attn_status_t st = checkHeadDims(kernel->name, dims))
    return st;
  return checkEach(sig, dims, kernel->num_inputs, kernel->inputs, inputs, o,
                   lse, maxN, MemoryKind::Host);
}

attn_status_t BatchCall::planSchedules() {
  int64_t G = Hq / Hkv, decodeItems = 0;
  int forcedWide = forcedWideDecode();
  decode.assign(B, 0);
  lanes.assign(B, 1);
  chunks.assign(B, 0);
  splits.assign(B, 1);
  partOffset.assign(B, 0);
  for (int64_t b = 0; b < B; ++b) {
    decode[b] = seqN[b] > 0 && useDecode(kernel, seqN[b]);
    if (!decode[b])
      continue;
    int64_t gn, items;
    if (__builtin_mul_overflow(G, seqN[b], &gn))
      return fail(ATTN_ERROR_SHAPE, "q: G * N overflows");
    lanes[b] = std::max<int32_t>(decodeLanes(kernel, gn, forcedWide), 1);
    chunks[b] = (gn + lanes[b] - 1) / lanes[b];
    if (__builtin_mul_overflow(Hkv, chunks[b], &items) ||
        __builtin_add_overflow(decodeItems, items, &decodeItems))
      return fail(ATTN_ERROR_SHAPE, "q: the decode work items (Hkv * ceil(G "
                                    "* N / lanes) per sequence) overflow");
  }
  // Split counts share the threads across the whole batch.
  int64_t partFloats = 0;
  for (int64_t b = 0; b < B; ++b) {
    if (!decode[b])
      continue;
    splits[b] = decodeSplits(decodeItems, seqM[b], numThreads);
    int64_t rows, floats;
    if (__builtin_mul_overflow(Hkv * splits[b], chunks[b] * lanes[b], &rows) ||
        __builtin_mul_overflow(rows, Dv + 1, &floats) ||
        __builtin_add_overflow(partFloats, floats, &partFloats))
      return fail(ATTN_ERROR_SHAPE,
                  "the decode schedule's partial results overflow");
    partOffset[b] = partFloats - floats;
  }
  if (partFloats > int64_t(SIZE_MAX / sizeof(float)))
    return fail(ATTN_ERROR_SHAPE,
                "the decode schedule's partial results overflow");
  if (partFloats == 0)
    return ATTN_OK;
  scratch.reset(
      static_cast<float *>(std::malloc(size_t(partFloats) * sizeof(float))));
  if (!scratch)
    return fail(ATTN_ERROR_OUT_OF_MEMORY,
                std::string("kernel '") + kname() +
                    "': out of memory allocating the decode schedule's "
                    "partial results; o and lse are not written");
  return ATTN_OK;
}

attn_status_t BatchCall::buildSegments() {
  int64_t qBytes = q->dtype.bits / 8, kBytes = k->dtype.bits / 8,
          vBytes = v->dtype.bits / 8;
  std::vector<int64_t> qs = stridesOf(q), ks = stridesOf(k), vs = stridesOf(v),
                       os = stridesOf(o),
                       ls = lse ? stridesOf(lse) : std::vector<int64_t>{};
  for (int64_t b = 0; b < B; ++b) {
    int64_t n = seqN[b], m = seqM[b];
    if (n == 0)
      continue;
    words.push_back(std::make_unique<Descriptors>());
    Descriptors &desc = *words.back();
    // q, k, v: a ragged side as batch b of a zero-batch-stride view.
    if (raggedQ)
      desc.add(q->data, dataOf(q) + cuQ[b] * qs[0] * qBytes,
               {b + 1, Hq, n, Dqk}, {0, qs[1], qs[0], qs[2]});
    else
      desc.addTensor(q);
    if (raggedK) {
      desc.add(k->data, dataOf(k) + cuK[b] * ks[0] * kBytes,
               {b + 1, Hkv, m, Dqk}, {0, ks[1], ks[0], ks[2]});
      desc.add(v->data, dataOf(v) + cuK[b] * vs[0] * vBytes,
               {b + 1, Hkv, m, Dv}, {0, vs[1], vs[0], vs[2]});
    } else {
      desc.addTensor(k);
      desc.addTensor(v);
    }
    // Where row (h, i) of o and lse goes.
    float *oRow = reinterpret_cast<float *>(dataOf(o)) +
                  (raggedQ ? cuQ[b] * os[0] : b * os[0]);
    int64_t oH = os[1], oI = raggedQ ? os[0] : os[2], oD = os.back();
    float *lseRow = nullptr;
    int64_t lseH = 0, lseI = 0;
    if (lse) {
      lseRow = reinterpret_cast<float *>(dataOf(lse)) +
               (raggedQ ? cuQ[b] * ls[1] : b * ls[0]);
      lseH = raggedQ ? ls[0] : ls[1];
      lseI = raggedQ ? ls[1] : ls[2];
    }
    Segment seg;
    if (decode[b]) {
      // The partials [b + 1, Hkv, S, R, Dv] and [b + 1, Hkv, S, R].
      int64_t S = splits[b], R = chunks[b] * lanes[b];
      float *oPart = scratch.get() + partOffset[b];
      float *lsePart = oPart + Hkv * S * R * Dv;
      desc.add(oPart, oPart, {b + 1, Hkv, S, R, Dv},
               {0, S * R * Dv, R * Dv, Dv, 1});
      desc.add(lsePart, lsePart, {b + 1, Hkv, S, R}, {0, S * R, R, 1});
      seg.fn = decodeKernel(kernel, int32_t(lanes[b]), paged);
      seg.count = Hkv * chunks[b] * S;
      merges.push_back({oPart, lsePart, S, R, n, oRow, oH, oI, oD, lseRow, lseH,
                        lseI, mergeRows});
      mergeRows += Hq * n;
    } else {
      // The kernel's o[b, h, i, d] is oRow + h * oH + i * oI + d * oD.
      desc.add(o->data, oRow, {b + 1, Hq, n, Dv}, {0, oH, oI, oD});
      if (lse)
        desc.add(lse->data, lseRow, {b + 1, Hq, n}, {0, lseH, lseI});
      else
        desc.add(nullptr, nullptr, {b + 1, Hq, n}, {Hq * n, n, 1});
      seg.fn = paged ? kernel->paged_fn : kernel->cpu_fn;
      anyPrefill = true;
      int64_t qt = (n + kernel->tile_q - 1) / kernel->tile_q;
      if (__builtin_mul_overflow(Hq, qt, &seg.count))
        return fail(ATTN_ERROR_SHAPE, "q: Hq * ceil(N / tile_q) overflows");
    }
    for (int32_t i = 3; i < kernel->num_inputs; ++i)
      desc.addTensor(inputs[i]);
    if (paged) {
      desc.addTensor(layout->block_table);
      desc.addTensor(layout->kv_lens);
    }
    seg.start = totalItems;
    if (__builtin_mul_overflow(b, seg.count, &seg.base) ||
        __builtin_add_overflow(totalItems, seg.count, &totalItems))
      return fail(ATTN_ERROR_SHAPE, "the work items overflow");
    seg.args = desc.args();
    seg.args.push_back(&status);
    segments.push_back(std::move(seg));
  }
  return ATTN_OK;
}

attn_status_t BatchCall::launch() {
  SegmentLaunch job{&segments, &status};
  parallelFor(runSegments, &job, totalItems, 1, numThreads);
  // parallelFor joins every chunk before it returns: the stores are visible.
  if (int32_t st = status.load(std::memory_order_relaxed))
    return launchError(kernel->name, st, dims,
                       anyPrefill ? "o and lse are partially written"
                                  : "o and lse are not written");
  if (mergeRows > 0) {
    MergeLaunch merge{&merges, Hq / Hkv, Dv};
    parallelFor(mergeSegments, &merge, mergeRows,
                std::max<int64_t>(1, mergeRows / (int64_t(numThreads) * 4)),
                numThreads);
  }
  return ATTN_OK;
}

} // namespace

attn_status_t attn::runtime::runDenseDecode(const attn_kernel_desc_t *kernel,
                                            const DLTensor *const *inputs,
                                            DLTensor *o, DLTensor *lse,
                                            const attn::DimBinding &dims,
                                            int numThreads) {
  static const attn_batch_layout_t kDense = {};
  return BatchCall(kernel, inputs, &kDense, o, lse, nullptr)
      .runValidatedDense(dims, numThreads);
}

extern "C" attn_status_t attn_cpu_run_batch(const attn_kernel_desc_t *kernel,
                                            const DLTensor *const *inputs,
                                            const attn_batch_layout_t *layout,
                                            DLTensor *o, DLTensor *lse,
                                            const attn_run_options_t *options) {
  clearLastError();
  return BatchCall(kernel, inputs, layout, o, lse, options).run();
}
