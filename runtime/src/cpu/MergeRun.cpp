//===- MergeRun.cpp - attn_merge_states: the LSE merge on the CPU ---------===//
//
// Validates the stacked parts and the outputs in full (the checks of
// Validate.h, so messages read like attn_cpu_run's), then merges the rows on
// the thread pool with mergeRow (Merge.h), the per-row core the decode
// schedule's merge shares.
//
//===----------------------------------------------------------------------===//

#include "../Merge.h"
#include "../Validate.h"
#include "ThreadPool.h"

#include <algorithm>
#include <string>
#include <vector>

using namespace attn::runtime;

namespace {

/// The sizes of \p t from dim \p first to \p last (exclusive).
std::vector<int64_t> dims(const DLTensor *t, int first, int last) {
  return std::vector<int64_t>(t->shape + first, t->shape + last);
}

int64_t numel(const DLTensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim; ++d)
    n *= t->shape[d]; // checkExtraTensor: no overflow
  return n;
}

/// The first element (the tensor is checked: float32, aligned).
float *floatsOf(const DLTensor *t) {
  return reinterpret_cast<float *>(static_cast<char *>(t->data) +
                                   t->byte_offset);
}

/// o_parts first: every other shape is derived from it, so its own sizes
/// are checked before anything reads them.
attn_status_t checkParts(const DLTensor *oParts, const DLTensor *lseParts) {
  if (oParts->ndim < 2 || oParts->ndim > kMaxRank)
    return fail(ATTN_ERROR_SHAPE, "o_parts: ndim is " + str(oParts->ndim) +
                                      ", expected 2 to " + str(kMaxRank) +
                                      " [P, ..., Dv]");
  if (!oParts->shape)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "o_parts: shape is NULL");
  for (int d = 0; d < oParts->ndim; ++d)
    if (oParts->shape[d] < 0)
      return fail(ATTN_ERROR_SHAPE, "o_parts: dim " + str(d) + " is " +
                                        str(oParts->shape[d]) +
                                        ", expected >= 0");
  if (oParts->shape[0] == 0)
    return fail(ATTN_ERROR_SHAPE,
                "o_parts: dim 0 (P, the number of parts) is 0, expected >= 1");
  int r = oParts->ndim - 1;
  if (attn_status_t st = checkExtraTensor(
          "o_parts", oParts, dims(oParts, 0, r + 1), "[P, ..., Dv]",
          /*isOutput=*/false, MemoryKind::Host, nullptr))
    return st;
  std::string from = "from o_parts " + shapeString(oParts->shape, r + 1);
  return checkExtraTensor("lse_parts", lseParts, dims(oParts, 0, r), from,
                          /*isOutput=*/false, MemoryKind::Host, nullptr);
}

/// o and lse: their shapes, and no aliasing. An output that aliased an input
/// or the other output would make the result depend on the order rows are
/// merged in (and threads race on it).
attn_status_t checkOutputs(const DLTensor *oParts, const DLTensor *lseParts,
                           const DLTensor *o, const DLTensor *lse) {
  int r = oParts->ndim - 1;
  std::string from = "from o_parts " + shapeString(oParts->shape, r + 1);
  // An empty output is never written, so its strides need not separate
  // elements (NumPy gives a [3, 0] array the strides [0, 4]).
  auto isWritten = [](const std::vector<int64_t> &shape) {
    return std::find(shape.begin(), shape.end(), 0) == shape.end();
  };
  std::vector<int64_t> oShape = dims(oParts, 1, r + 1);
  if (attn_status_t st = checkExtraTensor(
          "o", o, oShape, from, isWritten(oShape), MemoryKind::Host, nullptr))
    return st;
  std::vector<int64_t> lseShape = dims(oParts, 1, r);
  if (lse)
    if (attn_status_t st =
            checkExtraTensor("lse", lse, lseShape, from, isWritten(lseShape),
                             MemoryKind::Host, nullptr))
      return st;
  // byteRange means nothing for an empty tensor, which is never touched.
  struct Named {
    const char *name;
    const DLTensor *t;
  };
  std::vector<Named> all = {{"o_parts", oParts}, {"lse_parts", lseParts}};
  std::vector<Named> outs = {{"o", o}};
  if (lse)
    outs.push_back({"lse", lse});
  all.insert(all.end(), outs.begin(), outs.end());
  for (const Named &out : outs) {
    if (numel(out.t) == 0)
      continue;
    ByteRange range = byteRange(out.t);
    for (const Named &other : all)
      if (other.t != out.t && numel(other.t) > 0 &&
          byteRange(other.t).overlaps(range))
        return fail(ATTN_ERROR_LAYOUT,
                    std::string(out.name) + ": overlaps " + other.name +
                        "; o and lse must not alias each other or the inputs");
  }
  return ATTN_OK;
}

/// One call's rows: row i is the C-order index i over d1..d(R-1).
struct MergeJob {
  int64_t numParts, dv;
  std::vector<int64_t> rowShape;
  const float *oParts, *lseParts;
  float *o, *lse; // lse: NULL when not wanted
  std::vector<int64_t> oPartsStrides, lsePartsStrides, oStrides, lseStrides;
};

void mergeRows(void *ctx, int64_t begin, int64_t end) {
  const MergeJob &job = *static_cast<const MergeJob *>(ctx);
  size_t rank = job.rowShape.size(); // R - 1
  // Unravel `begin` once, then step the index like an odometer.
  std::vector<int64_t> idx(rank);
  int64_t rest = begin;
  for (size_t d = rank; d-- > 0;) {
    idx[d] = rest % job.rowShape[d];
    rest /= job.rowShape[d];
  }
  for (int64_t row = begin; row < end; ++row) {
    int64_t oPartsOff = 0, lsePartsOff = 0, oOff = 0, lseOff = 0;
    for (size_t d = 0; d < rank; ++d) {
      oPartsOff += idx[d] * job.oPartsStrides[d + 1];
      lsePartsOff += idx[d] * job.lsePartsStrides[d + 1];
      oOff += idx[d] * job.oStrides[d];
      if (job.lse)
        lseOff += idx[d] * job.lseStrides[d];
    }
    float l = mergeRow(job.numParts, job.dv, job.oParts + oPartsOff,
                       job.oPartsStrides[0], job.oPartsStrides[rank + 1],
                       job.lseParts + lsePartsOff, job.lsePartsStrides[0],
                       job.o + oOff, job.oStrides[rank]);
    if (job.lse)
      job.lse[lseOff] = l;
    for (size_t d = rank; d-- > 0 && ++idx[d] == job.rowShape[d];)
      idx[d] = 0;
  }
}

} // namespace

extern "C" attn_status_t attn_merge_states(const DLTensor *o_parts,
                                           const DLTensor *lse_parts,
                                           DLTensor *o, DLTensor *lse,
                                           const attn_run_options_t *options) {
  clearLastError();
  struct Named {
    const char *name;
    const DLTensor *t;
  };
  for (Named n : {Named{"o_parts", o_parts}, Named{"lse_parts", lse_parts},
                  Named{"o", o}})
    if (!n.t)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  std::string(n.name) + ": tensor is NULL");
  int numThreads;
  if (attn_status_t st = resolveThreads(options, numThreads))
    return st;
  if (attn_status_t st = checkParts(o_parts, lse_parts))
    return st;
  if (attn_status_t st = checkOutputs(o_parts, lse_parts, o, lse))
    return st;

  int r = o_parts->ndim - 1;
  MergeJob job;
  job.numParts = o_parts->shape[0];
  job.dv = o_parts->shape[r];
  job.rowShape = dims(o_parts, 1, r);
  job.oParts = floatsOf(o_parts);
  job.lseParts = floatsOf(lse_parts);
  job.o = floatsOf(o);
  job.lse = lse ? floatsOf(lse) : nullptr;
  job.oPartsStrides = stridesOf(o_parts);
  job.lsePartsStrides = stridesOf(lse_parts);
  job.oStrides = stridesOf(o);
  if (lse)
    job.lseStrides = stridesOf(lse);
  int64_t rows = numel(lse_parts) / job.numParts;
  if (rows == 0)
    return ATTN_OK;
  // A row is P * Dv multiply-adds: waking workers costs more than small
  // merges (one decode step's) take, so those stay on the calling thread.
  int64_t work = rows * job.numParts * std::max<int64_t>(job.dv, 1);
  if (work < (int64_t(1) << 16))
    numThreads = 1;
  int64_t chunk = numThreads > 1
                      ? std::max<int64_t>(rows / (int64_t(numThreads) * 8), 1)
                      : rows;
  parallelFor(mergeRows, &job, rows, chunk, numThreads);
  return ATTN_OK;
}
