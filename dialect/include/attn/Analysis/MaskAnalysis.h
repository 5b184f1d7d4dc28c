//===- MaskAnalysis.h - block classification of masks -----------*- C++ -*-===//
//
// Classifies a tile of the attention matrix -- queries [q0, q1) x keys
// [k0, k1) of one (b, h) -- as Empty (no key visible), Full (every key
// visible) or Partial, by evaluating the mask region once over the whole tile
// with interval arithmetic instead of once per element.
//
// The rules are the shared engine of MaskIntervals.h, the same the CPU and
// CUDA kernels emit to classify their tiles at run time: a tile is Empty here
// exactly when the compiled kernel skips it, Full when it runs it without the
// mask, Partial when it evaluates the mask per element. The classification
// is SOUND (Full only if every element is visible, Empty only if none is)
// but not always exact (anything not understood is unknown: Partial).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_ANALYSIS_MASKANALYSIS_H
#define ATTN_ANALYSIS_MASKANALYSIS_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "attn/Signature.h"
#include "attn/npy.h"
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mlir::attn {

enum class BlockClass { Empty, Full, Partial };

/// "empty", "full" or "partial".
const char *blockClassName(BlockClass c);

/// The mask region of one attention op bound to concrete dims, params and
/// (optionally) aux tensors, classifying tiles with the kernels' rules.
class MaskClassifier {
public:
  /// `aux` may be null (every lookup is then unknown); when given it is read
  /// at construction (only the i32 tensors the mask loads from, as the
  /// kernel scans only those) and not kept.
  MaskClassifier(AttentionOp att, const ::attn::DimBinding &dims,
                 const std::map<std::string, ScalarValue> &params,
                 const std::map<std::string, ::attn::HostArray> *aux);
  ~MaskClassifier();
  MaskClassifier(const MaskClassifier &) = delete;
  MaskClassifier &operator=(const MaskClassifier &) = delete;

  /// The class of tile [q0, q1) x [k0, k1) of (b, h). An empty tile
  /// (q0 >= q1 or k0 >= k1) is Empty. Not thread-safe (lookup caches).
  BlockClass classify(int64_t b, int64_t h, int64_t q0, int64_t q1, int64_t k0,
                      int64_t k1);

  /// True when the mask region is empty (every element visible).
  bool isDense() const;

  /// Ops of the region the analysis does not understand (each makes the
  /// values depending on it unknown), e.g. "arith.cmpf"; for diagnostics.
  const std::vector<std::string> &unknownOps() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

/// Evaluates the mask region of `att` over intervals: b and h fixed, q_idx in
/// [q0, q1), kv_idx in [k0, k1), dims and params bound to concrete values.
/// `attn.load` lookups of i32 tensors read `aux` when given (min/max over the
/// box spanned by the index intervals, clipped to the tensor; the whole i32
/// range when the box exceeds maskintervals::kMaxScan elements, as in the
/// kernel); without data a lookup is unknown. An
/// empty mask region means Full. Sound: Full only if every element is
/// visible, Empty only if none is. Builds a MaskClassifier per call: use that
/// class directly to classify many tiles.
BlockClass classifyBlock(AttentionOp att, const ::attn::DimBinding &dims,
                         const std::map<std::string, ScalarValue> &params,
                         const std::map<std::string, ::attn::HostArray> *aux,
                         int64_t b, int64_t h, int64_t q0, int64_t q1,
                         int64_t k0, int64_t k1);

/// Counts over all (q-tile, kv-tile) pairs of one (b, h).
struct BlockStats {
  int64_t numQTiles = 0, numKvTiles = 0;
  int64_t empty = 0, full = 0, partial = 0;
  int64_t total() const { return numQTiles * numKvTiles; }
  /// Tiles that must be computed (full + partial) over all tiles.
  double computedFraction() const {
    return total() ? double(full + partial) / double(total()) : 0.0;
  }
};

/// Classifies every tile of the N x M matrix of (b, h) with tiles of
/// tileQ x tileKv (the last row/column of tiles may be smaller). When
/// `classes` is given it receives numQTiles x numKvTiles classes, row-major.
BlockStats classifyTiles(MaskClassifier &classifier, int64_t N, int64_t M,
                         int64_t b, int64_t h, int64_t tileQ, int64_t tileKv,
                         std::vector<BlockClass> *classes = nullptr);

/// The same, building the classifier from `att` (N and M from `dims`).
BlockStats classifyTiles(AttentionOp att, const ::attn::DimBinding &dims,
                         const std::map<std::string, ScalarValue> &params,
                         const std::map<std::string, ::attn::HostArray> *aux,
                         int64_t b, int64_t h, int64_t tileQ, int64_t tileKv,
                         std::vector<BlockClass> *classes = nullptr);

} // namespace mlir::attn

#endif // ATTN_ANALYSIS_MASKANALYSIS_H
