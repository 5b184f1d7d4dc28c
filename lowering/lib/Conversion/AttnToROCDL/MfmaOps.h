//===- MfmaOps.h - the MFMA 32x32x8 building blocks -------------*- C++ -*-===//
//
// What both ROCm softmax kernels (the forward, MfmaAttention.cpp, and the
// gradients, MfmaBackward.cpp) build their products from: one
// v_mfma_f32_32x32x8 on 16 f32 accumulators, and an f32 value rounded to
// the MFMA operand type.
//
// Lane layouts (AMD's matrix instruction calculator for CDNA2/CDNA3), lane
// l in [0, 64), element e:
//   A[i][k] (32x8):  lane i + 32 (k / 4), element k % 4
//   B[k][j] (8x32):  lane j + 32 (k / 4), element k % 4
//   D[i][j] (32x32): lane j + 32 ((i / 4) % 2), element 4 (i / 8) + i % 4
// so the accumulator elements 4c .. 4c + 3 of a lane are, rounded, the B
// operand of rows 8c .. 8c + 7 of a product whose k dim is D's i.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_LOWERING_ATTNTOROCDL_MFMAOPS_H
#define ATTN_LOWERING_ATTNTOROCDL_MFMAOPS_H

#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace mlir::attn {

/// Lanes per wave, and the MFMA shape: 32 x 32 outputs, 8 of k per step.
constexpr int64_t kMfmaWave = 64, kMfmaTile = 32, kMfmaK = 8;

/// acc (16 f32 scalars) += A B, A and B vector<4 x bf16 or f16>.
void emitMfma(ImplicitLocOpBuilder &b, Value a, Value bOp,
              MutableArrayRef<Value> acc);

/// `p` (f32) rounded to `elt`, the MFMA operand type. f16: v_cvt_f16_f32.
/// bf16: gfx90a and gfx942 have no f32 -> bf16 conversion, and LLVM's
/// expansion of arith.truncf adds a NaN test and select to the
/// round-to-nearest-even bit arithmetic; the values rounded here (weights,
/// their gradients) are never NaN unless the inputs are, so this is the bit
/// arithmetic alone (u + 0x7fff + bit 16 of u, the upper half).
Value toMfmaOperand(ImplicitLocOpBuilder &b, Type elt, Value p);

/// Four elements of `accs` from `first`, rounded: a B operand.
Value mfmaOperandOf(ImplicitLocOpBuilder &b, Type elt, ArrayRef<Value> accs,
                    int64_t first);

} // namespace mlir::attn

#endif
