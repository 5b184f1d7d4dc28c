//===- Merge.h - the LSE merge of partial attention results -----*- C++ -*-===//
//
// Private to runtime/src. Softmax attention over a key set split into parts
// is recovered from each part's normalized output o_p and log-sum-exp
// lse_p:
//   lse = log sum_p exp(lse_p),   o = sum_p exp(lse_p - lse) o_p
// (split-KV decode, cascade / shared-prefix attention, context
// parallelism). A part with no visible key has lse_p = -inf and weight 0; a
// row whose parts are all empty gives o = 0 and lse = -inf, never NaN.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_RUNTIME_MERGE_H
#define ATTN_RUNTIME_MERGE_H

#include <cstdint>

namespace attn::runtime {

/// Merges one row: part p's output is the `dv` floats at
/// oParts + p * oPartStride + d * oElemStride and its lse is
/// lseParts[p * lsePartStride]. Writes o to out[d * outStride] (d < dv) and
/// returns the merged lse. Strides are in floats.
float mergeRow(int64_t numParts, int64_t dv, const float *oParts,
               int64_t oPartStride, int64_t oElemStride, const float *lseParts,
               int64_t lsePartStride, float *out, int64_t outStride);

} // namespace attn::runtime

#endif // ATTN_RUNTIME_MERGE_H
