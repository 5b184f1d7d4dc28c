//===- SoftmaxGpuTiles.h - what every GPU softmax kernel decides per tile -*-
// C++ -*-===//
//
// The softmax family's GPU forward kernels (CUDA's mma.sync one, ROCm's
// MFMA one) differ in where a score lives (which lane, which register) but
// not in what is decided about it: whether a kv tile is visible at all or
// only partly (the mask's interval analysis over the tile), which tile is
// the next visible one, and what an element becomes after the score region,
// the mask and the normalizer. Those decisions are written once here, over
// the builder the kernel uses.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_CONVERSION_SOFTMAXGPUTILES_H
#define ATTN_CONVERSION_SOFTMAXGPUTILES_H

#include "attn/Conversion/RegionEmitter.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include <optional>

namespace mlir::attn {

/// One work-group's view of the kv tiles: `BM` query rows from `q0`,
/// kv tiles of `BN` rows, `numTiles` of them over M keys.
struct GpuTileWalk {
  ImplicitLocOpBuilder &b;
  /// The spec's mask region (null: every tile is visible).
  Region *mask;
  const KernelEnv &env;
  Value bI64, hI64; ///< batch and query head (i64) for the regions
  Value q0, N, M;   ///< index values
  Value numTiles;
  int64_t BM, BN;
  /// A decode work group's rows are (query head, query) pairs of a GQA
  /// group: when `box` is set, tiles are classified over the heads
  /// [hI64, box->hHi] and the queries [box->qLo, box->qHi] (i64, inclusive)
  /// instead of BM queries from q0 of head hI64.
  struct Box {
    Value hHi, qLo, qHi;
  };
  std::optional<Box> box = std::nullopt;

  /// Kv tile `kt` (index): (nonEmpty, partial). A tile past M's end is
  /// partial (its padding rows must be hidden); without a mask every tile
  /// is non-empty.
  std::pair<Value, Value> classify(Value kt);
  /// The first kv tile at or after `start` and before `numTiles` that is not
  /// empty (numTiles if none): an scf.while over classify().
  Value firstVisible(Value start);
};

/// What a score element becomes: `s` (f32, Q·K of query `qIdx` and key `kv`)
/// scaled, through the spec's score region (when `score` is set), hidden
/// where `withMask` and the key is past M or the mask says so (-inf for
/// softmax, 0 for the other normalizers), and, for sigmoid and relu, the
/// weight itself (softmax's exponent needs the row max: the caller's).
struct ScoreElement {
  /// The normalizer and relu power are `tiled`'s.
  ScoreElement(ImplicitLocOpBuilder &b, TiledAttentionOp tiled, Region *score,
               Region *mask, const KernelEnv &env, Value scale, Value bias,
               Value bI64, Value hI64, Value M)
      : b(b), score(score), mask(mask), env(env), kind(tiled.getNormalizer()),
        reluPower(int64_t(tiled.getReluPower())), scale(scale), bias(bias),
        bI64(bI64), hI64(hI64), M(M) {}

  ImplicitLocOpBuilder &b;
  Region *score; ///< tile.score's region, or null
  Region *mask;  ///< the spec's mask region, or null
  const KernelEnv &env;
  NormalizerKind kind;
  int64_t reluPower;
  Value scale, bias; ///< f32
  Value bI64, hI64;  ///< i64
  Value M;           ///< index

  Value emit(Value s, Value qIdx, Value kv, bool withMask) const {
    return emit(s, hI64, qIdx, kv, withMask);
  }
  /// emit() for an element of query head `hIdx` (i64): a decode tile holds
  /// the heads of a GQA group.
  Value emit(Value s, Value hIdx, Value qIdx, Value kv, bool withMask) const;
};

//===----------------------------------------------------------------------===//
// The gradients' kernels (attn.tiled_attention_backward)
//===----------------------------------------------------------------------===//

/// A (q tile, kv tile) pair of a gradients' kernel: (nonEmpty, partial) by
/// the mask's interval analysis over BM queries from q0 and BN keys from k0;
/// a pair reaching past N or M is partial (its padding must be hidden).
std::pair<Value, Value> classifyPair(ImplicitLocOpBuilder &b, Region *mask,
                                     const KernelEnv &env, Value bI64,
                                     Value hI64, Value q0, Value k0, Value N,
                                     Value M, int64_t BM, int64_t BN);

/// The loop of attn.tile.q_loop: over the query heads h of kv head hk's
/// group (G of them) and the q tiles (BM rows, N of them), the pairs the
/// mask leaves non-empty run `step(h, hI64, q0, partial, acc)`, which
/// returns the next accumulators (f32). Returns the last ones, or failure
/// if a step failed.
FailureOr<SmallVector<Value>> emitBackwardPairLoop(
    ImplicitLocOpBuilder &b, Region *mask, const KernelEnv &env, Value bI64,
    Value hk, Value G, Value k0, Value N, Value M, int64_t BM, int64_t BN,
    ValueRange init,
    function_ref<FailureOr<SmallVector<Value>>(Value h, Value hI64, Value q0,
                                               Value partial, ValueRange acc)>
        step);

/// What a gradients' kernel computes per score element, wherever it lives.
struct BackwardElement {
  ImplicitLocOpBuilder &b;
  NormalizerKind kind;
  int64_t reluPower;
  Value bias; ///< f32 (sigmoid)

  /// The weight p of score s (f32; -inf where hidden): softmax exp(s - lse)
  /// with `lseRow` its query's lse, sigmoid, relu^power or s itself; 0 where
  /// hidden (rows without a visible key have lse = -inf: the select keeps
  /// exp(-inf + inf) out).
  Value weight(Value s, Value lseRow) const;
  /// dS from p, s and dP: softmax p (dp - D) with `dRow` its query's D,
  /// sigmoid dp p (1 - p), relu dp power relu(s)^(power - 1) where s > 0,
  /// none dp where visible.
  Value ds(Value p, Value s, Value dp, Value dRow) const;
};

} // namespace mlir::attn

#endif
