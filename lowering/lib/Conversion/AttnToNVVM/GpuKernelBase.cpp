//===- GpuKernelBase.cpp - tensor-core helpers of the CUDA builders -------===//

#include "GpuKernelBase.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::attn;

void GpuKernelBase::emitThreadIds() {
  tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  warp = divu(tid, cidx(32));
  lane = remu(tid, cidx(32));
  g = divu(lane, cidx(4));
  t = remu(lane, cidx(4));
}

Value GpuKernelBase::swizzle(Value r, Value c, int64_t cols) {
  // Tiles narrower than 8 chunks XOR within their own chunks.
  int64_t period = std::min<int64_t>(8, cols / 8);
  Value chunk = divu(c, cidx(8));
  Value sw = arith::XOrIOp::create(b, chunk, remu(r, cidx(period)));
  return add(mul(r, cidx(cols)), mul(sw, cidx(8)));
}

SmallVector<Value> GpuKernelBase::emitTileCopy(Value src, Value bIdx,
                                               Value head, Value row0,
                                               int64_t rows, Value rowLimit,
                                               Value colLimit, Value dst,
                                               Value base, Value enable) {
  auto at = [&](Value row) -> SmallVector<Value> { return {bIdx, head, row}; };
  return emitTileCopy(src, at, row0, rows, rowLimit, colLimit, dst, base,
                      enable);
}

SmallVector<Value> GpuKernelBase::emitTileCopy(Value src, RowIndices at,
                                               Value row0, int64_t rows,
                                               Value rowLimit, Value colLimit,
                                               Value dst, Value base,
                                               Value enable) {
  int64_t chunksPerRow = D / 8;
  int64_t perThread = rows * chunksPerRow / numThreads;
  SmallVector<Value> tokens;
  // rowLimit may be 0 (a decode batch's empty sequence): source row 0.
  Value lastRow = sub(maxu(rowLimit, cidx(1)), cidx(1));
  for (int64_t i = 0; i < perThread; ++i) {
    Value id = add(tid, cidx(i * numThreads));
    Value r = divu(id, cidx(chunksPerRow));
    Value c = mul(remu(id, cidx(chunksPerRow)), cidx(8));
    Value row = add(row0, r);
    Value inRow = land(enable, ult(row, rowLimit));
    // Elements of this chunk inside the head dim: clamp(colLimit - c, 0, 8).
    Value inCol = ult(c, colLimit);
    Value left = minu(sub(select(inCol, colLimit, c), c), cidx(8));
    Value n = select(inRow, left, cidx(0));
    // The source address stays inside the tensor even when nothing is read.
    Value srcRow = minu(row, lastRow);
    Value srcCol = select(inCol, c, cidx(0));
    Value off = add(base, swizzle(r, c, D));
    SmallVector<Value> srcIdx = at(srcRow);
    srcIdx.push_back(srcCol);
    tokens.push_back(nvgpu::DeviceAsyncCopyOp::create(
        b, nvgpu::DeviceAsyncTokenType::get(b.getContext()), dst,
        ValueRange{off}, src, srcIdx, b.getIndexAttr(8), n, b.getUnitAttr()));
  }
  return tokens;
}

Value GpuKernelBase::asyncGroup(SmallVector<Value> tokens) {
  return nvgpu::DeviceAsyncCreateGroupOp::create(
      b, nvgpu::DeviceAsyncTokenType::get(b.getContext()), tokens);
}

Acc GpuKernelBase::mma(ArrayRef<Value> a, Value b0, Value b1, const Acc &c) {
  auto ptxType = elt.isBF16() ? NVVM::MMATypes::bf16 : NVVM::MMATypes::f16;
  // bf16 operands travel as packed i32 registers; f16 as vector<2xf16>.
  auto reg = [&](Value x) -> Value {
    if (elt.isBF16())
      return LLVM::BitcastOp::create(b, b.getI32Type(), x);
    return x;
  };
  SmallVector<Value> aRegs, bRegs;
  for (Value x : a)
    aRegs.push_back(reg(x));
  bRegs.push_back(reg(b0));
  bRegs.push_back(reg(b1));
  Type f32 = b.getF32Type();
  auto resTy =
      LLVM::LLVMStructType::getLiteral(b.getContext(), {f32, f32, f32, f32});
  auto op = NVVM::MmaOp::create(
      b, resTy, aRegs, bRegs, ValueRange{c[0], c[1], c[2], c[3]},
      /*shape=*/std::array<int64_t, 3>{16, 8, 16},
      /*b1Op=*/std::nullopt, /*intOverflow=*/std::nullopt,
      /*multiplicandPtxTypes=*/
      std::array<NVVM::MMATypes, 2>{ptxType, ptxType},
      /*multiplicandLayouts=*/
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                     NVVM::MMALayout::col});
  Acc r;
  for (int i = 0; i < 4; ++i)
    r[i] = LLVM::ExtractValueOp::create(b, op.getResult(), i);
  return r;
}

SmallVector<Value> GpuKernelBase::ldmatrix(Value mem, Value base, Value row0,
                                           Value col0, bool transpose,
                                           bool aOrder, int64_t cols) {
  // Lanes 8i..8i+7 give the row addresses of matrix i.
  Value mi = divu(lane, cidx(8));
  Value ri = remu(lane, cidx(8));
  Value lo = remu(mi, cidx(2));
  Value hi = divu(mi, cidx(2));
  // A order: matrix 1 is rows +8, matrix 2 columns +8. B order (and a
  // transposed tile, whose rows are the k dim): matrix 1 is k +8, i.e.
  // for a tile with rows = n columns +8 and for rows = k rows +8.
  Value rowOff, colOff;
  if (aOrder || transpose) {
    rowOff = mul(lo, cidx(8));
    colOff = mul(hi, cidx(8));
  } else {
    rowOff = mul(hi, cidx(8));
    colOff = mul(lo, cidx(8));
  }
  Value row = add(add(row0, ri), rowOff);
  Value col = add(col0, colOff);
  Value off = add(base, swizzle(row, col, cols));
  auto fragTy = VectorType::get({4, 2}, elt);
  Value frag = nvgpu::LdMatrixOp::create(b, fragTy, mem, ValueRange{off},
                                         transpose, /*numTiles=*/4);
  SmallVector<Value> regs;
  for (int64_t i = 0; i < 4; ++i)
    regs.push_back(vector::ExtractOp::create(b, frag, ArrayRef<int64_t>{i}));
  return regs;
}

Value GpuKernelBase::pack(Value x0, Value x1) {
  auto v2 = VectorType::get({2}, b.getF32Type());
  Value vec = vector::FromElementsOp::create(b, v2, ValueRange{x0, x1});
  return arith::TruncFOp::create(b, VectorType::get({2}, elt), vec);
}

SmallVector<Value> GpuKernelBase::accsToA(const Acc &x, const Acc &y) {
  return {pack(x[0], x[1]), pack(x[2], x[3]), pack(y[0], y[1]),
          pack(y[2], y[3])};
}

Value GpuKernelBase::quadSum(Value x) {
  for (int32_t off : {1, 2}) {
    auto sh = gpu::ShuffleOp::create(b, x, ci32(off), ci32(32),
                                     gpu::ShuffleMode::XOR);
    x = fadd(x, sh.getShuffleResult());
  }
  return x;
}

Value GpuKernelBase::dynamicSharedMemory() {
  auto wg =
      gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  return gpu::DynamicSharedMemoryOp::create(
      b, MemRefType::get({ShapedType::kDynamic}, b.getI8Type(), nullptr, wg));
}

Value GpuKernelBase::sharedView(Value smem, int64_t byteOffset, int64_t elems,
                                Type type) {
  auto wg =
      gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
  return memref::ViewOp::create(b, MemRefType::get({elems}, type, nullptr, wg),
                                smem, cidx(byteOffset), ValueRange{});
}
