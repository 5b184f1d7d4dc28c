//===- Merge.cpp - the LSE merge of partial attention results -------------===//

#include "Merge.h"

#include <cmath>
#include <limits>

float attn::runtime::mergeRow(int64_t numParts, int64_t dv, const float *oParts,
                              int64_t oPartStride, int64_t oElemStride,
                              const float *lseParts, int64_t lsePartStride,
                              float *out, int64_t outStride) {
  // Scale by the largest lse so that every exp is at most 1 (no overflow);
  // the sums run in double: a row may merge many parts.
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t p = 0; p < numParts; ++p)
    m = std::fmax(m, lseParts[p * lsePartStride]);
  if (m == -std::numeric_limits<float>::infinity()) {
    for (int64_t d = 0; d < dv; ++d)
      out[d * outStride] = 0.0f;
    return m;
  }
  double sum = 0;
  for (int64_t p = 0; p < numParts; ++p)
    sum += std::exp(double(lseParts[p * lsePartStride]) - m);
  for (int64_t d = 0; d < dv; ++d) {
    double acc = 0;
    for (int64_t p = 0; p < numParts; ++p) {
      float lp = lseParts[p * lsePartStride];
      // An empty part's o is 0 by contract; skip it all the same, so that a
      // part that left garbage where it saw no key cannot leak NaN.
      if (lp == -std::numeric_limits<float>::infinity())
        continue;
      acc += std::exp(double(lp) - m) *
             double(oParts[p * oPartStride + d * oElemStride]);
    }
    out[d * outStride] = float(acc / sum);
  }
  return float(double(m) + std::log(sum));
}
