//===- BatchShapes.h - the shapes of a ragged or paged batch ----*- C++ -*-===//
//
// Private to runtime/src. What attn_cpu_run_batch and attn_cuda_run_batch
// check alike about a batch (runtime.h, attn_batch_layout_t): which sides
// are ragged or paged, q's, k's and v's ranks and dims, the number of
// sequences B as every table and dense side gives it, and every tensor's
// shape, dtype and device once the dims are bound as for a padded batch.
// The CPU then reads the tables' values; a GPU leaves them on the device.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_RUNTIME_BATCHSHAPES_H
#define ATTN_RUNTIME_BATCHSHAPES_H

#include "Validate.h"

namespace attn::runtime {

/// `t`'s rank for its layout ("k: ndim is 3, expected 4 [pages, page_size,
/// Hkv, Dqk]") and a shape to read.
attn_status_t checkRank(const char *name, const DLTensor *t, int rank,
                        const char *decl);

/// A batch call's pointers: checkCallPointers's rules, and no NULL input.
attn_status_t checkPointers(const char *kernelName, int32_t hasLse,
                            int32_t numInputs, const attn_input_desc_t *descs,
                            const DLTensor *const *inputs, const DLTensor *o,
                            const DLTensor *lse);

/// How many int32 elements a table (rank 1 or 2, non-negative strides)
/// spans from its first element; 0 when it is empty.
int64_t tableSpan(const DLTensor *t);

/// A table's elements in row-major order, read from `base`, a host copy of
/// its tableSpan() elements (or the table itself in host memory).
void gatherTable(const DLTensor *t, const int32_t *base,
                 std::vector<int64_t> &values);

/// Cumulative offsets [B + 1] of `rows` packed rows: 0 first,
/// non-decreasing, `rows` last (`tensor` names the rows in messages).
attn_status_t checkOffsets(const char *name, const std::vector<int64_t> &cu,
                           int64_t rows, const char *tensor);

/// A block table's values (row-major [B, maxPages]) with kv_lens [B]: every
/// length within max_pages * page_size, every page a sequence uses in
/// [0, numPages).
attn_status_t checkPageTable(const std::vector<int64_t> &table,
                             const std::vector<int64_t> &kvLens,
                             int64_t maxPages, int64_t pageSize,
                             int64_t numPages);

struct BatchShapes {
  bool raggedQ = false, raggedK = false, paged = false;
  const DLTensor *q = nullptr, *k = nullptr, *v = nullptr;
  /// The layouts, for messages: "[total_q, Hq, Dqk]".
  const char *qDecl = "", *kDecl = "", *vDecl = "";
  int64_t B = -1, Hq = 0, Hkv = 0, Dqk = 0, Dv = 0;

  /// Which sides are ragged or paged: block_table and kv_lens together,
  /// and not with cu_seqlens_k.
  attn_status_t readFlags(const attn_batch_layout_t &layout);
  /// q's, k's and v's ranks for the flags, and Hq, Hkv, Dqk, Dv.
  attn_status_t readDims(const DLTensor *const *inputs);
  /// B as `name` gives it (a table's size, a dense side's dim 0): the same
  /// for every one.
  attn_status_t setB(const char *name, int64_t b);
  /// B from the dense sides (q's and k's dim 0), after the tables'; then
  /// at least one sequence.
  attn_status_t setDenseB();
  /// Binds the dims as for a padded batch into `dims`: q [B, Hq, maxN,
  /// Dqk], k and v [B, Hkv, maxM, D], the aux inputs as given.
  attn_status_t bindDims(const attn::Signature &sig, int32_t numInputs,
                         const attn_input_desc_t *descs,
                         const DLTensor *const *inputs, int64_t maxN,
                         int64_t maxM, attn::DimBinding &dims) const;
  /// Checks every input (its real layout), o and lse ([total_q, Hq, Dv] and
  /// [Hq, total_q] when q is ragged, else [B, Hq, maxN, Dv], [B, Hq, maxN])
  /// in `memory`, on q's device.
  attn_status_t checkEach(const attn::Signature &sig,
                          const attn::DimBinding &dims, int32_t numInputs,
                          const attn_input_desc_t *descs,
                          const DLTensor *const *inputs, const DLTensor *o,
                          const DLTensor *lse, int64_t maxN,
                          MemoryKind memory) const;
};

} // namespace attn::runtime

#endif
