//===- MfmaOps.cpp - the MFMA 32x32x8 building blocks ---------------------===//

#include "MfmaOps.h"
#include "mlir/Dialect/AMDGPU/IR/AMDGPUDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;

void mlir::attn::emitMfma(ImplicitLocOpBuilder &b, Value a, Value bOp,
                          MutableArrayRef<Value> acc) {
  auto accTy = VectorType::get({16}, b.getF32Type());
  Value c = vector::FromElementsOp::create(b, accTy, acc);
  Value d = amdgpu::MFMAOp::create(b, accTy, 32u, 32u, 8u, 1u, a, bOp, c);
  for (int64_t e = 0; e < 16; ++e)
    acc[e] = vector::ExtractOp::create(b, d, ArrayRef<int64_t>{e});
}

Value mlir::attn::toMfmaOperand(ImplicitLocOpBuilder &b, Type elt, Value p) {
  if (!elt.isBF16())
    return arith::TruncFOp::create(b, elt, p);
  Type i32 = b.getI32Type();
  Value u = arith::BitcastOp::create(b, i32, p);
  auto c32 = [&](int32_t v) {
    return arith::ConstantOp::create(b, b.getI32IntegerAttr(v));
  };
  Value lsb =
      arith::AndIOp::create(b, arith::ShRUIOp::create(b, u, c32(16)), c32(1));
  Value r =
      arith::AddIOp::create(b, arith::AddIOp::create(b, u, c32(0x7fff)), lsb);
  Value hi = arith::TruncIOp::create(b, b.getI16Type(),
                                     arith::ShRUIOp::create(b, r, c32(16)));
  return arith::BitcastOp::create(b, elt, hi);
}

Value mlir::attn::mfmaOperandOf(ImplicitLocOpBuilder &b, Type elt,
                                ArrayRef<Value> accs, int64_t first) {
  SmallVector<Value> xs;
  for (int64_t e = 0; e < 4; ++e)
    xs.push_back(toMfmaOperand(b, elt, accs[first + e]));
  return vector::FromElementsOp::create(b, VectorType::get({4}, elt), xs);
}
