//===- GpuSim.cpp - CTA-level SIMT interpreter of gpu.func kernels --------===//
//
// See GpuSim.h. The kernel is compiled once into a tree of instructions over
// value slots; a CTA then executes it with every slot holding one entry per
// thread (layout [thread][element]).
//
// The warp-level ops follow the PTX ISA, written down here independently of
// the code generator:
//  - ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].b16: lanes 8i..8i+7 give the
//    addresses of the 8 rows (8 contiguous 16-bit elements each) of matrix
//    i; lane l receives in register i the elements (row l/4, cols 2(l%4),
//    2(l%4)+1) of matrix i, or with .trans (rows 2(l%4), 2(l%4)+1, col l/4).
//  - mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.f32: g = l/4,
//    t = l%4; A registers j = 0..3 hold (a_2j, a_2j+1) with a0,a1 = A[g][2t..],
//    a2,a3 = A[g+8][2t..], a4,a5 = A[g][2t+8..], a6,a7 = A[g+8][2t+8..];
//    B registers hold b0,b1 = B[2t..2t+1][g], b2,b3 = B[2t+8..2t+9][g];
//    C/D c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]. A 32-bit register
//    holding two 16-bit values has the lower-indexed one in its low half.
//
// AMD's (wave64: LaunchConfig::waveSize = 64), from AMD's matrix instruction
// calculator for CDNA2/CDNA3, lane l in [0, 64), vector element e:
//  - amdgpu.mfma 32x32x8 (v_mfma_f32_32x32x8{bf16_1k,f16}): A (32x8) element
//    e of lane l is A[l % 32][4 (l / 32) + e], B (8x32) B[4 (l / 32) + e]
//    [l % 32], C/D (32x32, vector<16xf32>) C[8 (e / 4) + 4 (l / 32) + e % 4]
//    [l % 32]. Products of bf16/f16 values are exact in f32; they are summed
//    in f32.
//  - gpu.shuffle works on the lanes of a wave (width <= the wave size).
//  - Raw buffers (amdgpu.fat_raw_buffer_cast, then memref/vector loads and
//    stores; CDNA3 ISA, "Buffer Instructions", range checking with stride
//    0): the descriptor's base and num_records (32 bits) bound the byte
//    offsets; a load wholly outside [0, num_records) returns 0 and a store
//    there is dropped, without touching memory. A multi-element access
//    partly outside is chip-dependent (whole access or per dword zeroed):
//    the simulator rejects it, so a kernel must not rely on either.
//  - LDS: vector accesses (ds_read/ds_write_b64/b128) must be aligned as
//    their `alignment` attribute claims.
//
//===----------------------------------------------------------------------===//

#include "GpuSim.h"

#include "mlir/Dialect/AMDGPU/IR/AMDGPUDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMTypes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallBitVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>

using namespace mlir;

namespace attn::gpusim {

[[noreturn]] void fatal(const std::string &msg) {
  llvm::outs().flush();
  llvm::errs() << "attn-gpu-sim: error: " << msg << "\n";
  llvm::errs().flush();
  std::exit(1);
}

//===----------------------------------------------------------------------===//
// Numbers
//===----------------------------------------------------------------------===//

static inline float asF32(uint64_t r) {
  uint32_t u = uint32_t(r);
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
static inline uint64_t fromF32(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static inline double asF64(uint64_t r) {
  double d;
  std::memcpy(&d, &r, 8);
  return d;
}
static inline uint64_t fromF64(double d) {
  uint64_t u;
  std::memcpy(&u, &d, 8);
  return u;
}

uint16_t f32ToBf16(float f) {
  uint32_t u = uint32_t(fromF32(f));
  if ((u & 0x7fffffffu) > 0x7f800000u) // NaN: keep it quiet
    return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}

float bf16ToF32(uint16_t h) { return asF32(uint64_t(h) << 16); }

uint16_t f32ToF16(float f) {
  uint32_t x = uint32_t(fromF32(f));
  uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u)
    return uint16_t(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  if (ax >= 0x477ff000u) // >= 65520: rounds to infinity
    return uint16_t(sign | 0x7c00u);
  if (ax < 0x38800000u) { // below 2^-14: subnormal (exact scaling, RNE)
    float v = asF32(ax) * 16777216.0f;
    return uint16_t(sign | uint32_t(std::nearbyint(v)));
  }
  uint32_t mant = ax & 0x7fffffu;
  uint32_t e = (ax >> 23) - 127 + 15;
  uint32_t h = (e << 10) | (mant >> 13), rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
    ++h;
  return uint16_t(sign | h);
}

float f16ToF32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu,
           m = h & 0x3ffu;
  if (e == 0) {
    float v = std::ldexp(float(m), -24);
    return sign ? -v : v;
  }
  if (e == 31)
    return asF32(sign | 0x7f800000u | (m << 13));
  return asF32(sign | ((e - 15 + 127) << 23) | (m << 13));
}

static bool isFloat(EK e) {
  return e == EK::F16 || e == EK::BF16 || e == EK::F32 || e == EK::F64;
}

static unsigned widthOf(EK e) {
  switch (e) {
  case EK::I1:
    return 1;
  case EK::I8:
    return 8;
  case EK::I16:
  case EK::F16:
  case EK::BF16:
    return 16;
  case EK::I32:
  case EK::F32:
    return 32;
  case EK::I64:
  case EK::Idx:
  case EK::F64:
    return 64;
  }
  return 64;
}

static inline uint64_t wmask(unsigned w) {
  return w >= 64 ? ~uint64_t(0) : ((uint64_t(1) << w) - 1);
}
static inline int64_t sext(uint64_t v, unsigned w) {
  return w >= 64 ? int64_t(v) : int64_t(v << (64 - w)) >> (64 - w);
}

uint64_t roundDouble(double d, EK ek) {
  switch (ek) {
  case EK::F64:
    return fromF64(d);
  case EK::F32:
    return fromF32(float(d));
  case EK::BF16:
  case EK::F16: {
    llvm::APFloat a(d);
    bool lost;
    a.convert(ek == EK::BF16 ? llvm::APFloat::BFloat()
                             : llvm::APFloat::IEEEhalf(),
              llvm::APFloat::rmNearestTiesToEven, &lost);
    return a.bitcastToAPInt().getZExtValue();
  }
  default:
    fatal("internal: roundDouble to a non-float kind");
  }
}

double rawToDouble(uint64_t raw, EK ek) {
  switch (ek) {
  case EK::F64:
    return asF64(raw);
  case EK::F32:
    return asF32(raw);
  case EK::BF16:
    return bf16ToF32(uint16_t(raw));
  case EK::F16:
    return f16ToF32(uint16_t(raw));
  default:
    fatal("internal: rawToDouble of a non-float kind");
  }
}

/// float-width arithmetic: f16/bf16/f32 compute in float (then round), f64
/// in double.
static inline float toF(uint64_t raw, EK ek) {
  switch (ek) {
  case EK::BF16:
    return bf16ToF32(uint16_t(raw));
  case EK::F16:
    return f16ToF32(uint16_t(raw));
  default:
    return asF32(raw);
  }
}
static inline uint64_t fromF(float f, EK ek) {
  switch (ek) {
  case EK::BF16:
    return f32ToBf16(f);
  case EK::F16:
    return f32ToF16(f);
  default:
    return fromF32(f);
  }
}

//===----------------------------------------------------------------------===//
// Program
//===----------------------------------------------------------------------===//

enum class K : uint16_t {
  Const,
  // integer (AddI..CmpI: isIntOp)
  AddI,
  SubI,
  MulI,
  DivUI,
  DivSI,
  RemUI,
  RemSI,
  CeilDivUI,
  CeilDivSI,
  FloorDivSI,
  MinUI,
  MaxUI,
  MinSI,
  MaxSI,
  AndI,
  OrI,
  XOrI,
  ShLI,
  ShRUI,
  ShRSI,
  CmpI,
  // float (AddF..CmpF: isFloatOp)
  AddF,
  SubF,
  MulF,
  DivF,
  RemF,
  MaximumF,
  MinimumF,
  MaxNumF,
  MinNumF,
  PowF,
  Atan2,
  CopySign,
  NegF,
  AbsF,
  Exp,
  Exp2,
  Log,
  Log2,
  Log1p,
  Expm1,
  Sqrt,
  Rsqrt,
  Tanh,
  Sin,
  Cos,
  Tan,
  Atan,
  Erf,
  Floor,
  Ceil,
  Round,
  RoundEven,
  TruncFl,
  Fma,
  CmpF,
  Select,
  // casts (ExtF..Bitcast: isCastOp)
  ExtF,
  TruncF,
  SIToFP,
  UIToFP,
  FPToSI,
  FPToUI,
  IntResize,
  Bitcast,
  // memory
  MemDim,
  Load,
  Store,
  VLoad,
  VStore,
  AtomicRMW,
  View,
  SubView,
  FatBuffer,
  ExtractPtr,
  // control flow
  For,
  If,
  While,
  Yield,
  Condition,
  Return,
  // gpu
  ThreadId,
  BlockId,
  BlockDim,
  GridDim,
  Barrier,
  Shuffle,
  DynSmem,
  // vector / llvm
  VExtract,
  VFromElements,
  VBroadcast,
  ExtractValue,
  // nvgpu / nvvm
  AsyncCopy,
  AsyncCreateGroup,
  AsyncWait,
  LdMatrix,
  Mma,
  // amdgpu
  Mfma,
};

/// Op families that are compiled and executed as a whole: contiguous ranges
/// of K.
static bool isIntOp(K k) { return k >= K::AddI && k <= K::CmpI; }
static bool isFloatOp(K k) { return k >= K::AddF && k <= K::CmpF; }
static bool isCastOp(K k) { return k >= K::ExtF && k <= K::Bitcast; }

struct CBlock;

struct Instr {
  K k;
  Operation *op;
  llvm::SmallVector<int, 4> in, out;
  EK ekIn = EK::I1, ekOut = EK::I1;
  int64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  std::vector<uint64_t> cst;
  std::vector<std::shared_ptr<CBlock>> regions;
};

struct CBlock {
  std::vector<int> args;
  std::vector<Instr> ops;
};

enum class Cat : uint8_t { Data, Mem, Token };

struct VInfo {
  Cat cat = Cat::Data;
  EK ek = EK::I1;
  uint32_t n = 1; // elements per thread
  size_t off = 0; // per-thread offset (in elements) into the arena
  int mem = -1;   // memref slot
};

struct Program {
  gpu::GPUFuncOp fn;
  std::vector<VInfo> vals;
  llvm::DenseMap<Value, int> ids;
  size_t perThread = 0;
  int numMems = 0;
  CBlock body;
  std::vector<int> argIds;
};

static std::string opDesc(Operation *op) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << "'" << op->getName().getStringRef() << "' at " << op->getLoc();
  return s;
}

[[noreturn]] static void opFatal(Operation *op, const std::string &msg) {
  fatal(opDesc(op) + ": " + msg);
}

EK Simulator::elementKind(Type t, unsigned *bytes) {
  EK e;
  if (t.isIndex())
    e = EK::Idx;
  else if (t.isInteger(1))
    e = EK::I1;
  else if (t.isInteger(8))
    e = EK::I8;
  else if (t.isInteger(16))
    e = EK::I16;
  else if (t.isInteger(32))
    e = EK::I32;
  else if (t.isInteger(64))
    e = EK::I64;
  else if (t.isF16())
    e = EK::F16;
  else if (t.isBF16())
    e = EK::BF16;
  else if (t.isF32())
    e = EK::F32;
  else if (t.isF64())
    e = EK::F64;
  else {
    std::string s;
    llvm::raw_string_ostream os(s);
    os << t;
    fatal("unsupported element type " + s);
  }
  if (bytes)
    *bytes = e == EK::I1 ? 1 : (e == EK::Idx ? 8 : widthOf(e) / 8);
  return e;
}

namespace {

class Compiler {
public:
  explicit Compiler(Program &p) : P(p) {}

  int def(Value v) {
    VInfo vi;
    Type t = v.getType();
    if (isa<MemRefType>(t)) {
      vi.cat = Cat::Mem;
      vi.mem = P.numMems++;
      vi.n = 0;
    } else if (isa<nvgpu::DeviceAsyncTokenType>(t)) {
      vi.cat = Cat::Token;
      vi.n = 0;
    } else if (auto vt = dyn_cast<VectorType>(t)) {
      if (vt.isScalable())
        fatal("scalable vectors are not supported");
      vi.ek = Simulator::elementKind(vt.getElementType());
      vi.n = uint32_t(vt.getNumElements());
    } else if (auto st = dyn_cast<LLVM::LLVMStructType>(t)) {
      auto body = st.getBody();
      if (body.empty())
        fatal("empty llvm.struct values are not supported");
      for (Type e : body)
        if (e != body[0] || isa<VectorType, LLVM::LLVMStructType>(e))
          fatal("only llvm.struct values of one scalar type are supported");
      vi.ek = Simulator::elementKind(body[0]);
      vi.n = uint32_t(body.size());
    } else {
      vi.ek = Simulator::elementKind(t);
      vi.n = 1;
    }
    vi.off = P.perThread;
    P.perThread += vi.n;
    int id = int(P.vals.size());
    P.vals.push_back(vi);
    P.ids[v] = id;
    return id;
  }

  int use(Value v) {
    auto it = P.ids.find(v);
    if (it == P.ids.end())
      fatal("a value used in the kernel is defined outside it");
    return it->second;
  }

  void block(Block &b, CBlock &cb) {
    for (BlockArgument a : b.getArguments())
      cb.args.push_back(def(a));
    for (Operation &op : b)
      cb.ops.push_back(compile(&op));
  }

  std::shared_ptr<CBlock> region(Region &r) {
    if (r.empty())
      return nullptr;
    if (!r.hasOneBlock())
      opFatal(r.getParentOp(), "regions with several blocks are not supported");
    auto cb = std::make_shared<CBlock>();
    block(r.front(), *cb);
    return cb;
  }

  Instr compile(Operation *op);

private:
  Program &P;

  /// Sets `I.k`, uses every operand and defines every result (data values
  /// only, except for nvgpu.device_async_create_group's token).
  void plain(Instr &I, K k);
  /// Operand and result checks of the ops in simpleOps().
  void checkSimple(const Instr &I);
  // Each returns false if `I.op` is not one of its dialect's ops.
  bool compileArith(Instr &I);
  void compileConstant(Instr &I, arith::ConstantOp c);
  bool compileMemRef(Instr &I);
  void compileAtomicRMW(Instr &I, memref::AtomicRMWOp a);
  bool compileSCF(Instr &I);
  bool compileGPU(Instr &I);
  bool compileVector(Instr &I);
  bool compileNVGPU(Instr &I);
  void compileAsyncCopy(Instr &I, nvgpu::DeviceAsyncCopyOp c);
  void compileLdMatrix(Instr &I, nvgpu::LdMatrixOp l);
  bool compileNVVM(Instr &I);
  bool compileAMDGPU(Instr &I);
};

static const llvm::StringMap<K> &simpleOps() {
  static const llvm::StringMap<K> m = {
      {"arith.addi", K::AddI},
      {"arith.subi", K::SubI},
      {"arith.muli", K::MulI},
      {"arith.divui", K::DivUI},
      {"arith.divsi", K::DivSI},
      {"arith.remui", K::RemUI},
      {"arith.remsi", K::RemSI},
      {"arith.ceildivui", K::CeilDivUI},
      {"arith.ceildivsi", K::CeilDivSI},
      {"arith.floordivsi", K::FloorDivSI},
      {"arith.minui", K::MinUI},
      {"arith.maxui", K::MaxUI},
      {"arith.minsi", K::MinSI},
      {"arith.maxsi", K::MaxSI},
      {"arith.andi", K::AndI},
      {"arith.ori", K::OrI},
      {"arith.xori", K::XOrI},
      {"arith.shli", K::ShLI},
      {"arith.shrui", K::ShRUI},
      {"arith.shrsi", K::ShRSI},
      {"arith.addf", K::AddF},
      {"arith.subf", K::SubF},
      {"arith.mulf", K::MulF},
      {"arith.divf", K::DivF},
      {"arith.remf", K::RemF},
      {"arith.maximumf", K::MaximumF},
      {"arith.minimumf", K::MinimumF},
      {"arith.maxnumf", K::MaxNumF},
      {"arith.minnumf", K::MinNumF},
      {"math.powf", K::PowF},
      {"math.atan2", K::Atan2},
      {"math.copysign", K::CopySign},
      {"arith.negf", K::NegF},
      {"math.absf", K::AbsF},
      {"math.exp", K::Exp},
      {"math.exp2", K::Exp2},
      // AMD's v_exp_f32 (llvm.amdgcn.exp2), as the ROCm kernels' softmax
      // uses it: 2^x in f32.
      {"rocdl.exp2", K::Exp2},
      {"math.log", K::Log},
      {"math.log2", K::Log2},
      {"math.log1p", K::Log1p},
      {"math.expm1", K::Expm1},
      {"math.sqrt", K::Sqrt},
      {"math.rsqrt", K::Rsqrt},
      {"math.tanh", K::Tanh},
      {"math.sin", K::Sin},
      {"math.cos", K::Cos},
      {"math.tan", K::Tan},
      {"math.atan", K::Atan},
      {"math.erf", K::Erf},
      {"math.floor", K::Floor},
      {"math.ceil", K::Ceil},
      {"math.round", K::Round},
      {"math.roundeven", K::RoundEven},
      {"math.trunc", K::TruncFl},
      {"math.fma", K::Fma},
      {"arith.select", K::Select},
      {"arith.extf", K::ExtF},
      {"arith.truncf", K::TruncF},
      {"arith.sitofp", K::SIToFP},
      {"arith.uitofp", K::UIToFP},
      {"arith.fptosi", K::FPToSI},
      {"arith.fptoui", K::FPToUI},
      {"arith.bitcast", K::Bitcast},
      {"llvm.bitcast", K::Bitcast},
      {"vector.from_elements", K::VFromElements},
      {"vector.broadcast", K::VBroadcast},
      {"vector.splat", K::VBroadcast},
      {"gpu.barrier", K::Barrier},
      {"nvgpu.device_async_create_group", K::AsyncCreateGroup},
  };
  return m;
}

static EK dataKind(Program &P, int id) { return P.vals[id].ek; }

static void requireFloat(Operation *op, EK e) {
  if (!isFloat(e))
    opFatal(op, "expected a float operand");
}

static void requireInt(Operation *op, EK e) {
  if (isFloat(e))
    opFatal(op, "expected an integer operand");
}

void Compiler::plain(Instr &I, K k) {
  Operation *op = I.op;
  I.k = k;
  for (Value v : op->getOperands())
    I.in.push_back(use(v));
  for (Value r : op->getResults())
    I.out.push_back(def(r));
  if (!I.in.empty() && P.vals[I.in[0]].cat == Cat::Data)
    I.ekIn = dataKind(P, I.in[0]);
  if (!I.out.empty() && P.vals[I.out[0]].cat == Cat::Data)
    I.ekOut = dataKind(P, I.out[0]);
  for (int o : I.out)
    if (P.vals[o].cat != Cat::Data && k != K::AsyncCreateGroup)
      opFatal(op, "unsupported result type");
}

void Compiler::checkSimple(const Instr &I) {
  Operation *op = I.op;
  if (isIntOp(I.k)) {
    requireInt(op, I.ekIn);
    return;
  }
  switch (I.k) {
  case K::Select:
    if (P.vals[I.in[0]].n != 1 && P.vals[I.in[0]].n != P.vals[I.out[0]].n)
      opFatal(op, "select condition shape mismatch");
    break;
  case K::Bitcast: {
    unsigned bi = P.vals[I.in[0]].n * widthOf(I.ekIn),
             bo = P.vals[I.out[0]].n * widthOf(I.ekOut);
    if (bi != bo || bi > 64 || I.ekIn == EK::I1 || I.ekOut == EK::I1)
      opFatal(op, "unsupported bitcast (at most 64 bits)");
    break;
  }
  case K::ExtF:
  case K::TruncF:
    requireFloat(op, I.ekIn);
    requireFloat(op, I.ekOut);
    if (auto rm = op->getAttrOfType<arith::RoundingModeAttr>("roundingmode"))
      if (rm.getValue() != arith::RoundingMode::to_nearest_even)
        opFatal(op, "only round-to-nearest-even truncf is supported");
    break;
  case K::SIToFP:
  case K::UIToFP:
    requireInt(op, I.ekIn);
    requireFloat(op, I.ekOut);
    break;
  case K::FPToSI:
  case K::FPToUI:
    requireFloat(op, I.ekIn);
    requireInt(op, I.ekOut);
    break;
  case K::VFromElements:
  case K::VBroadcast:
  case K::Barrier:
  case K::AsyncCreateGroup:
    break;
  default:
    requireFloat(op, I.ekIn);
    break;
  }
}

Instr Compiler::compile(Operation *op) {
  Instr I;
  I.op = op;
  auto it = simpleOps().find(op->getName().getStringRef());
  if (it != simpleOps().end()) {
    plain(I, it->second);
    checkSimple(I);
    return I;
  }
  if (compileArith(I) || compileMemRef(I) || compileSCF(I) || compileGPU(I) ||
      compileVector(I) || compileNVGPU(I) || compileNVVM(I) || compileAMDGPU(I))
    return I;
  opFatal(op, "operation not supported by the simulator");
}

bool Compiler::compileArith(Instr &I) {
  Operation *op = I.op;
  if (auto c = dyn_cast<arith::ConstantOp>(op)) {
    compileConstant(I, c);
    return true;
  }
  if (auto c = dyn_cast<arith::CmpIOp>(op)) {
    plain(I, K::CmpI);
    I.a0 = int64_t(c.getPredicate());
    return true;
  }
  if (auto c = dyn_cast<arith::CmpFOp>(op)) {
    plain(I, K::CmpF);
    I.a0 = int64_t(c.getPredicate());
    return true;
  }
  if (isa<arith::ExtSIOp, arith::IndexCastOp>(op)) {
    plain(I, K::IntResize);
    I.a0 = 1; // sign-extend when widening
    return true;
  }
  if (isa<arith::ExtUIOp, arith::TruncIOp, arith::IndexCastUIOp>(op)) {
    plain(I, K::IntResize);
    I.a0 = 0;
    return true;
  }
  return false;
}

void Compiler::compileConstant(Instr &I, arith::ConstantOp c) {
  Operation *op = I.op;
  plain(I, K::Const);
  Attribute a = c.getValue();
  EK ek = I.ekOut;
  auto fromAttr = [&](Attribute e) -> uint64_t {
    if (auto ia = dyn_cast<IntegerAttr>(e))
      return ia.getValue().getZExtValue() & wmask(widthOf(ek));
    if (auto fa = dyn_cast<FloatAttr>(e))
      return fa.getValue().bitcastToAPInt().getZExtValue();
    if (auto ba = dyn_cast<BoolAttr>(e))
      return ba.getValue() ? 1 : 0;
    opFatal(op, "unsupported constant");
  };
  if (auto d = dyn_cast<DenseElementsAttr>(a)) {
    if (isFloat(ek))
      for (const APFloat &f : d.getValues<APFloat>())
        I.cst.push_back(f.bitcastToAPInt().getZExtValue());
    else
      for (const APInt &v : d.getValues<APInt>())
        I.cst.push_back(v.getZExtValue() & wmask(widthOf(ek)));
  } else {
    I.cst.push_back(fromAttr(a));
  }
  if (I.cst.size() != P.vals[I.out[0]].n)
    opFatal(op, "constant size mismatch");
}

bool Compiler::compileMemRef(Instr &I) {
  Operation *op = I.op;
  if (isa<memref::DimOp>(op)) {
    plain(I, K::MemDim);
    return true;
  }
  if (isa<memref::LoadOp>(op)) {
    plain(I, K::Load);
    return true;
  }
  if (isa<memref::StoreOp>(op)) {
    plain(I, K::Store);
    I.ekIn = dataKind(P, I.in[0]);
    return true;
  }
  if (auto a = dyn_cast<memref::AtomicRMWOp>(op)) {
    compileAtomicRMW(I, a);
    return true;
  }
  if (isa<memref::SubViewOp>(op)) {
    I.k = K::SubView;
    for (Value x : op->getOperands())
      I.in.push_back(use(x));
    I.out.push_back(def(op->getResult(0)));
    return true;
  }
  if (auto v = dyn_cast<memref::ViewOp>(op)) {
    I.k = K::View;
    for (Value x : op->getOperands())
      I.in.push_back(use(x));
    I.out.push_back(def(v.getResult()));
    auto src = cast<MemRefType>(v.getSource().getType());
    if (!src.getElementType().isInteger(8) || src.getRank() != 1)
      opFatal(op, "memref.view of a non-1-D i8 memref");
    return true;
  }
  if (isa<memref::ExtractAlignedPointerAsIndexOp>(op)) {
    plain(I, K::ExtractPtr);
    return true;
  }
  return false;
}

/// memref.atomic_rmw addf (any float type) or addi (any integer type):
/// a0 = 1 for addi. Operands: the value, the memref, the indices.
void Compiler::compileAtomicRMW(Instr &I, memref::AtomicRMWOp a) {
  plain(I, K::AtomicRMW);
  switch (a.getKind()) {
  case arith::AtomicRMWKind::addf:
    requireFloat(I.op, I.ekIn);
    I.a0 = 0;
    return;
  case arith::AtomicRMWKind::addi:
    requireInt(I.op, I.ekIn);
    I.a0 = 1;
    return;
  default:
    opFatal(I.op, "only memref.atomic_rmw addf and addi are supported, got " +
                      arith::stringifyAtomicRMWKind(a.getKind()).str());
  }
}

bool Compiler::compileSCF(Instr &I) {
  Operation *op = I.op;
  if (auto f = dyn_cast<scf::ForOp>(op)) {
    I.k = K::For;
    for (Value x : op->getOperands())
      I.in.push_back(use(x));
    for (Value r : op->getResults())
      I.out.push_back(def(r));
    I.a0 = f.getUnsignedCmp() ? 1 : 0;
    I.ekIn = dataKind(P, I.in[0]);
    I.regions.push_back(region(f.getRegion()));
    for (int o : I.out)
      if (P.vals[o].cat != Cat::Data)
        opFatal(op, "loop-carried memrefs/tokens are not supported");
    return true;
  }
  if (auto f = dyn_cast<scf::IfOp>(op)) {
    I.k = K::If;
    I.in.push_back(use(f.getCondition()));
    for (Value r : op->getResults())
      I.out.push_back(def(r));
    I.regions.push_back(region(f.getThenRegion()));
    I.regions.push_back(region(f.getElseRegion()));
    for (int o : I.out)
      if (P.vals[o].cat != Cat::Data)
        opFatal(op, "scf.if yielding memrefs/tokens is not supported");
    return true;
  }
  if (auto w = dyn_cast<scf::WhileOp>(op)) {
    I.k = K::While;
    for (Value x : op->getOperands())
      I.in.push_back(use(x));
    for (Value r : op->getResults())
      I.out.push_back(def(r));
    I.regions.push_back(region(w.getBefore()));
    I.regions.push_back(region(w.getAfter()));
    for (int o : I.out)
      if (P.vals[o].cat != Cat::Data)
        opFatal(op, "scf.while carrying memrefs/tokens is not supported");
    return true;
  }
  if (isa<scf::YieldOp>(op)) {
    plain(I, K::Yield);
    return true;
  }
  if (isa<scf::ConditionOp>(op)) {
    plain(I, K::Condition);
    return true;
  }
  return false;
}

bool Compiler::compileGPU(Instr &I) {
  Operation *op = I.op;
  if (isa<gpu::ReturnOp>(op)) {
    if (op->getNumOperands())
      opFatal(op, "gpu.return with values");
    plain(I, K::Return);
    return true;
  }
  // thread_id, block_id, block_dim, grid_dim: a0 = the dimension.
  auto dimOp = [&](K k, gpu::Dimension d) {
    plain(I, k);
    I.a0 = int64_t(d);
    return true;
  };
  if (auto t = dyn_cast<gpu::ThreadIdOp>(op))
    return dimOp(K::ThreadId, t.getDimension());
  if (auto t = dyn_cast<gpu::BlockIdOp>(op))
    return dimOp(K::BlockId, t.getDimension());
  if (auto t = dyn_cast<gpu::BlockDimOp>(op))
    return dimOp(K::BlockDim, t.getDimension());
  if (auto t = dyn_cast<gpu::GridDimOp>(op))
    return dimOp(K::GridDim, t.getDimension());
  if (auto s = dyn_cast<gpu::ShuffleOp>(op)) {
    plain(I, K::Shuffle);
    I.a0 = int64_t(s.getMode());
    if (P.vals[I.in[0]].n != 1)
      opFatal(op, "gpu.shuffle of a vector");
    return true;
  }
  if (isa<gpu::DynamicSharedMemoryOp>(op)) {
    I.k = K::DynSmem;
    I.out.push_back(def(op->getResult(0)));
    return true;
  }
  return false;
}

/// vector.extract, vector.load/store (1-D) and llvm.extractvalue (the other
/// vector ops are simple).
bool Compiler::compileVector(Instr &I) {
  Operation *op = I.op;
  if (isa<vector::LoadOp, vector::StoreOp>(op)) {
    bool store = isa<vector::StoreOp>(op);
    plain(I, store ? K::VStore : K::VLoad);
    Value vec = store ? op->getOperand(0) : op->getResult(0);
    if (cast<VectorType>(vec.getType()).getRank() != 1)
      opFatal(op, "only 1-D vector.load/store is supported");
    if (store)
      I.ekIn = dataKind(P, I.in[0]);
    auto align = op->getAttrOfType<IntegerAttr>("alignment");
    I.a0 = align ? align.getInt() : 0;
    return true;
  }
  if (auto e = dyn_cast<vector::ExtractOp>(op)) {
    if (!e.getDynamicPosition().empty())
      opFatal(op, "vector.extract with a dynamic position");
    plain(I, K::VExtract);
    auto vt = cast<VectorType>(e.getSource().getType());
    int64_t offset = 0, stride = vt.getNumElements();
    auto pos = e.getStaticPosition();
    for (auto [i, p] : llvm::enumerate(pos)) {
      stride /= vt.getDimSize(i);
      if (p < 0 || p >= vt.getDimSize(i))
        opFatal(op, "vector.extract position out of range");
      offset += p * stride;
    }
    I.a0 = offset;
    return true;
  }
  if (auto e = dyn_cast<LLVM::ExtractValueOp>(op)) {
    plain(I, K::ExtractValue);
    auto pos = e.getPosition();
    if (pos.size() != 1 || pos[0] < 0 || pos[0] >= P.vals[I.in[0]].n ||
        P.vals[I.out[0]].n != 1)
      opFatal(op, "llvm.extractvalue: only one level of a flat struct");
    I.a0 = pos[0];
    return true;
  }
  return false;
}

bool Compiler::compileNVGPU(Instr &I) {
  Operation *op = I.op;
  if (auto c = dyn_cast<nvgpu::DeviceAsyncCopyOp>(op)) {
    compileAsyncCopy(I, c);
    return true;
  }
  if (auto w = dyn_cast<nvgpu::DeviceAsyncWaitOp>(op)) {
    plain(I, K::AsyncWait);
    I.a0 = w.getNumGroups() ? int64_t(*w.getNumGroups()) : 0;
    return true;
  }
  if (auto l = dyn_cast<nvgpu::LdMatrixOp>(op)) {
    compileLdMatrix(I, l);
    return true;
  }
  return false;
}

void Compiler::compileAsyncCopy(Instr &I, nvgpu::DeviceAsyncCopyOp c) {
  I.k = K::AsyncCopy;
  I.in.push_back(use(c.getDst()));
  for (Value x : c.getDstIndices())
    I.in.push_back(use(x));
  I.in.push_back(use(c.getSrc()));
  for (Value x : c.getSrcIndices())
    I.in.push_back(use(x));
  I.a0 = int64_t(c.getDstIndices().size());
  I.a1 = int64_t(c.getSrcIndices().size());
  I.a2 = c.getDstElements().getSExtValue();
  I.a3 = c.getSrcElements() ? 1 : 0;
  if (c.getSrcElements())
    I.in.push_back(use(c.getSrcElements()));
  I.out.push_back(def(c.getAsyncToken()));
  auto dt = cast<MemRefType>(c.getDst().getType());
  auto st = cast<MemRefType>(c.getSrc().getType());
  if (dt.getElementType() != st.getElementType())
    opFatal(I.op, "cp.async between different element types");
}

void Compiler::compileLdMatrix(Instr &I, nvgpu::LdMatrixOp l) {
  plain(I, K::LdMatrix);
  I.a0 = l.getNumTiles();
  I.a1 = l.getTranspose() ? 1 : 0;
  auto vt = cast<VectorType>(l.getRes().getType());
  unsigned eb;
  Simulator::elementKind(l.getSrcMemref().getType().getElementType(), &eb);
  if (eb != 2 || vt.getRank() != 2 || vt.getDimSize(0) != I.a0 ||
      vt.getDimSize(1) != 2 || !llvm::is_contained({1, 2, 4}, I.a0))
    opFatal(I.op, "only ldmatrix .m8n8 .x1/.x2/.x4 of 16-bit elements "
                  "(vector<Nx2xT>) is supported");
}

/// The multiplicand type of an mma.sync (0: bf16, 1: f16): `t` if given,
/// else inferred from `aek`, the element kind of the first A register.
static int64_t mmaMultiplicand(Operation *op, std::optional<NVVM::MMATypes> t,
                               EK aek) {
  if (t) {
    if (*t == NVVM::MMATypes::bf16)
      return 0;
    if (*t == NVVM::MMATypes::f16)
      return 1;
    opFatal(op, "only bf16 and f16 multiplicands are supported");
  }
  if (aek == EK::BF16)
    return 0;
  if (aek == EK::F16)
    return 1;
  opFatal(op, "cannot infer the multiplicand type");
}

/// nvvm.mma.sync (m16n8k16 .row.col, bf16/f16 multiplicands, f32
/// accumulators).
bool Compiler::compileNVVM(Instr &I) {
  Operation *op = I.op;
  auto m = dyn_cast<NVVM::MmaOp>(op);
  if (!m)
    return false;
  plain(I, K::Mma);
  auto shape = m.getShape();
  if (shape.getM() != 16 || shape.getN() != 8 || shape.getK() != 16)
    opFatal(op, "only mma.sync m16n8k16 is supported");
  if (m.getLayoutA() != NVVM::MMALayout::row ||
      m.getLayoutB() != NVVM::MMALayout::col)
    opFatal(op, "only mma.sync .row.col is supported");
  EK aek = P.vals[I.in[0]].ek;
  I.a0 = mmaMultiplicand(op, m.getMultiplicandAPtxType(), aek);
  if (mmaMultiplicand(op, m.getMultiplicandBPtxType(), aek) != I.a0)
    opFatal(op, "mixed multiplicand types");
  if (m.getOperandA().size() != 4 || m.getOperandB().size() != 2 ||
      m.getOperandC().size() != 4)
    opFatal(op, "expected 4 A, 2 B and 4 C registers");
  for (int i = 0; i < 6; ++i) {
    const VInfo &v = P.vals[I.in[i]];
    bool packed = v.n == 1 && v.ek == EK::I32;
    bool vec = v.n == 2 && (v.ek == (I.a0 ? EK::F16 : EK::BF16));
    if (!packed && !vec)
      opFatal(op, "A/B registers must be i32 or vector<2x" +
                      std::string(I.a0 ? "f16" : "bf16") + ">");
  }
  for (int i = 6; i < 10; ++i)
    if (P.vals[I.in[i]].ek != EK::F32 || P.vals[I.in[i]].n != 1)
      opFatal(op, "only f32 accumulators are supported");
  if (P.vals[I.out[0]].ek != EK::F32 || P.vals[I.out[0]].n != 4)
    opFatal(op, "expected a !llvm.struct<(f32, f32, f32, f32)> result");
  return true;
}

/// amdgpu.mfma 32x32x8 (bf16 or f16 A and B as vector<4>, f32 C and D as
/// vector<16>, no broadcast or permutation).
bool Compiler::compileAMDGPU(Instr &I) {
  Operation *op = I.op;
  if (auto c = dyn_cast<amdgpu::FatRawBufferCastOp>(op)) {
    I.k = K::FatBuffer;
    for (Value x : op->getOperands())
      I.in.push_back(use(x));
    I.out.push_back(def(c.getResult()));
    if (!c.getResetOffset())
      opFatal(op, "only amdgpu.fat_raw_buffer_cast with resetOffset is "
                  "supported");
    if (c.getCacheSwizzleStride())
      opFatal(op, "cache swizzling is not supported");
    I.a0 = c.getValidBytes() ? 1 : 0;
    return true;
  }
  auto m = dyn_cast<amdgpu::MFMAOp>(op);
  if (!m)
    return false;
  plain(I, K::Mfma);
  if (m.getM() != 32 || m.getN() != 32 || m.getK() != 8 || m.getBlocks() != 1)
    opFatal(op, "only amdgpu.mfma 32x32x8 with one block is supported");
  if (m.getCbsz() || m.getAbid() || m.getBlgp() != amdgpu::MFMAPermB::none ||
      m.getNegateA() || m.getNegateB() || m.getNegateC())
    opFatal(op, "amdgpu.mfma broadcast, permutation and negation are not "
                "supported");
  const VInfo &a = P.vals[I.in[0]], &bv = P.vals[I.in[1]];
  if (a.n != 4 || bv.n != 4 || a.ek != bv.ek ||
      (a.ek != EK::BF16 && a.ek != EK::F16))
    opFatal(op, "A and B must both be vector<4xbf16> or vector<4xf16>");
  I.a0 = a.ek == EK::F16 ? 1 : 0;
  if (P.vals[I.in[2]].ek != EK::F32 || P.vals[I.in[2]].n != 16 ||
      P.vals[I.out[0]].ek != EK::F32 || P.vals[I.out[0]].n != 16)
    opFatal(op, "C and D must be vector<16xf32>");
  return true;
}

} // namespace

//===----------------------------------------------------------------------===//
// Execution of one CTA
//===----------------------------------------------------------------------===//

namespace {

struct Mask {
  std::vector<uint8_t> on;
  unsigned count = 0;
  bool all() const { return count == on.size(); }
};

struct PendingCopy {
  const Instr *I;
  unsigned lane;
  int dstBuf, srcBuf;
  int64_t dstByte, srcByte;
  int64_t copyBytes, totalBytes;
  int64_t issueEpoch;
};

class Machine {
public:
  Machine(const Program &P, const LaunchConfig &cfg, std::vector<Buffer> &bufs,
          int smem, uint64_t &ops)
      : P(P), cfg(cfg), bufs(bufs), smem(smem), ops(ops) {
    T = unsigned(cfg.block[0] * cfg.block[1] * cfg.block[2]);
    W = unsigned(cfg.waveSize);
    arena.assign(P.perThread * T, 0);
    mems.resize(P.numMems);
    uncommitted.resize(T);
    groups.resize(T);
    if (cfg.raceCheck) {
      size_t n = bufs[smem].bytes.size();
      wEpoch.resize(n);
      wThread.resize(n);
      rEpoch.resize(n);
      rThread.resize(n);
      aEpoch.resize(n);
      aThread.resize(n);
      globalWriter.resize(bufs.size());
      globalEpoch.resize(bufs.size());
    }
  }

  void runCTA(const int64_t b[3], llvm::ArrayRef<MemDesc> args) {
    for (int i = 0; i < 3; ++i)
      bid[i] = b[i];
    ctaLinear = (b[2] * cfg.grid[1] + b[1]) * cfg.grid[0] + b[0];
    for (auto [i, id] : llvm::enumerate(P.argIds))
      mems[P.vals[id].mem] = args[i];
    // Fresh shared memory holds NaN (0xffff in bf16 and f16) everywhere, so
    // reading what was never written shows up in the results.
    std::fill(bufs[smem].bytes.begin(), bufs[smem].bytes.end(), 0xff);
    epoch = 0;
    if (cfg.raceCheck) {
      std::fill(wEpoch.begin(), wEpoch.end(), -1);
      std::fill(rEpoch.begin(), rEpoch.end(), -1);
      std::fill(aEpoch.begin(), aEpoch.end(), -1);
    }
    for (auto &u : uncommitted)
      u.clear();
    for (auto &g : groups)
      g.clear();
    Mask m;
    m.on.assign(T, 1);
    m.count = T;
    const Instr *term = run(P.body, m);
    if (!term || term->k != K::Return)
      fatal("the kernel body does not end with gpu.return");
  }

private:
  const Program &P;
  const LaunchConfig &cfg;
  std::vector<Buffer> &bufs;
  int smem;
  uint64_t &ops;
  unsigned T;
  /// Threads per warp (wave): 32, or 64 on AMD.
  unsigned W = 32;
  int64_t bid[3] = {0, 0, 0};
  int64_t ctaLinear = 0;
  std::vector<uint64_t> arena;
  std::vector<MemDesc> mems;
  std::vector<uint64_t> scratch;
  // cp.async state per thread (deferred mode).
  std::vector<std::vector<PendingCopy>> uncommitted;
  std::vector<std::deque<std::vector<PendingCopy>>> groups;
  // Race detection: barrier epochs, per shared byte the last plain write,
  // plain read and atomic update (thread -2: several threads).
  int64_t epoch = 0;
  std::vector<int32_t> wEpoch, wThread, rEpoch, rThread, aEpoch, aThread;
  // Per global byte: 0 if never written, else 1 + the linear id of the
  // thread that wrote it last, with kAtomicWrite set if that was an atomic.
  std::vector<std::vector<uint32_t>> globalWriter;
  // Per global byte: the barrier epoch of that write (in its CTA).
  std::vector<std::vector<int32_t>> globalEpoch;
  static constexpr uint32_t kAtomicWrite = uint32_t(1) << 31;

  uint64_t *R(int id) { return &arena[P.vals[id].off * T]; }
  const VInfo &V(int id) const { return P.vals[id]; }

  [[noreturn]] void fail(const Instr &I, int64_t thread,
                         const std::string &msg) {
    std::string s = opDesc(I.op) + ": " + msg + " (CTA (" +
                    std::to_string(bid[0]) + ", " + std::to_string(bid[1]) +
                    ", " + std::to_string(bid[2]) + ")";
    if (thread >= 0)
      s += ", thread " + std::to_string(thread);
    fatal(s + ")");
  }

  /// The value of scalar `id` in the active threads; fatal if they differ.
  uint64_t uniform(const Instr &I, int id, const Mask &m, const char *what) {
    const uint64_t *r = R(id);
    int first = -1;
    for (unsigned l = 0; l < T; ++l) {
      if (!m.on[l])
        continue;
      if (first < 0)
        first = int(l);
      else if (r[l] != r[first])
        fail(I, l,
             std::string(what) + " is not uniform across the CTA (thread " +
                 std::to_string(first) + ": " + std::to_string(r[first]) +
                 ", thread " + std::to_string(l) + ": " + std::to_string(r[l]) +
                 ")");
    }
    if (first < 0)
      fail(I, -1, "internal: no active thread");
    return r[first];
  }

  void fill(int id, uint64_t v) {
    uint64_t *d = R(id);
    std::fill(d, d + size_t(V(id).n) * T, v);
  }

  /// Copies the per-thread values of `src` into `dst` for the threads in
  /// `m` (all threads if m is null).
  void copyVals(int dst, const uint64_t *src, const Mask *m) {
    unsigned n = V(dst).n;
    uint64_t *d = R(dst);
    if (!m || m->all()) {
      std::memcpy(d, src, sizeof(uint64_t) * n * T);
      return;
    }
    for (unsigned l = 0; l < T; ++l)
      if (m->on[l])
        for (unsigned e = 0; e < n; ++e)
          d[l * n + e] = src[l * n + e];
  }

  /// Moves the values `from` into the slots `to` (which may overlap them).
  void transfer(llvm::ArrayRef<int> to, llvm::ArrayRef<int> from,
                const Mask &m) {
    if (to.size() != from.size())
      fatal("internal: value count mismatch in a region transfer");
    size_t total = 0;
    for (int f : from)
      total += V(f).n * T;
    if (scratch.size() < total)
      scratch.resize(total);
    size_t pos = 0;
    for (int f : from) {
      size_t c = size_t(V(f).n) * T;
      std::memcpy(scratch.data() + pos, R(f), c * sizeof(uint64_t));
      pos += c;
    }
    pos = 0;
    for (size_t i = 0; i < to.size(); ++i) {
      copyVals(to[i], scratch.data() + pos, &m);
      pos += size_t(V(from[i]).n) * T;
    }
  }

  const Instr *run(const CBlock &b, const Mask &m);
  void exec(const Instr &I, const Mask &m);
  void execFor(const Instr &I, const Mask &m);
  void execIf(const Instr &I, const Mask &m);
  void execWhile(const Instr &I, const Mask &m);
  void execConst(const Instr &I);
  void execSelect(const Instr &I);
  void execMemDim(const Instr &I, const Mask &m);
  void execView(const Instr &I, const Mask &m);
  void execThreadId(const Instr &I);
  void execBarrier(const Instr &I, const Mask &m);
  void execDynSmem(const Instr &I);
  void execVector(const Instr &I);
  void execAsyncCreateGroup(const Mask &m);
  void execIntBin(const Instr &I, const Mask &m);
  void execIntDiv(const Instr &I, const Mask &m);
  void execCmpI(const Instr &I);
  void execFloat(const Instr &I);
  void execFma(const Instr &I);
  void execCmpF(const Instr &I);
  void execCast(const Instr &I);
  int64_t address(const Instr &I, const MemDesc &d, const int *idx,
                  unsigned nIdx, unsigned lane, int64_t extent,
                  const char *what);
  int64_t linear(const MemDesc &d, const int *idx, unsigned nIdx,
                 unsigned lane);
  /// The element offset of an access of `n` elements on a raw buffer, or
  /// -1 if it is wholly out of range (fatal if partly).
  int64_t bufferAddress(const Instr &I, const MemDesc &d, const int *idx,
                        unsigned nIdx, unsigned lane, int64_t n);
  void execLoadStore(const Instr &I, const Mask &m);
  void execSubView(const Instr &I, const Mask &m);
  void execFatBuffer(const Instr &I, const Mask &m);
  void execAtomicRMW(const Instr &I, const Mask &m);
  void execAsyncCopy(const Instr &I, const Mask &m);
  void completeCopy(const PendingCopy &c);
  void execAsyncWait(const Instr &I, const Mask &m);
  void execLdMatrix(const Instr &I, const Mask &m);
  void execMma(const Instr &I, const Mask &m);
  void execMfma(const Instr &I, const Mask &m);
  void execShuffle(const Instr &I, const Mask &m);
  void sharedRead(const Instr &I, unsigned lane, int64_t byte, int64_t n);
  void sharedWrite(const Instr &I, unsigned lane, int64_t byte, int64_t n,
                   int64_t since);
  void sharedAtomic(const Instr &I, unsigned lane, int64_t byte, int64_t n);
  /// Fails if byte `i`'s latest access of one kind (in epoch `when`, by
  /// thread `who`, -2 for several) was another thread's at or after epoch
  /// `since`: "byte i is <here> here and <there><who><how>".
  void raceIf(const Instr &I, unsigned lane, int64_t i, int32_t when,
              int32_t who, int64_t since, const char *here, const char *there,
              const std::string &how);
  void globalWrite(const Instr &I, unsigned lane, int buf, int64_t byte,
                   int64_t n, bool atomic = false);
  void requireFullWarps(const Instr &I, const Mask &m);
};

const Instr *Machine::run(const CBlock &b, const Mask &m) {
  for (const Instr &I : b.ops) {
    ++ops;
    switch (I.k) {
    case K::Yield:
    case K::Condition:
    case K::Return:
      return &I;
    default:
      exec(I, m);
    }
  }
  return nullptr;
}

void Machine::execFor(const Instr &I, const Mask &m) {
  const CBlock &body = *I.regions[0];
  int64_t lb =
      sext(uniform(I, I.in[0], m, "scf.for lower bound"), widthOf(I.ekIn));
  int64_t ub =
      sext(uniform(I, I.in[1], m, "scf.for upper bound"), widthOf(I.ekIn));
  int64_t step = sext(uniform(I, I.in[2], m, "scf.for step"), widthOf(I.ekIn));
  if (step <= 0)
    fail(I, -1, "scf.for with a non-positive step");
  llvm::ArrayRef<int> iters(body.args);
  iters = iters.drop_front();
  llvm::ArrayRef<int> inits(I.in);
  inits = inits.drop_front(3);
  transfer(iters, inits, m);
  auto less = [&](int64_t a, int64_t b) {
    return I.a0 ? uint64_t(a) < uint64_t(b) : a < b;
  };
  for (int64_t iv = lb; less(iv, ub); iv += step) {
    fill(body.args[0], uint64_t(iv) & wmask(widthOf(I.ekIn)));
    const Instr *y = run(body, m);
    if (!y || y->k != K::Yield)
      fail(I, -1, "scf.for body without scf.yield");
    transfer(iters, y->in, m);
  }
  transfer(I.out, iters, m);
}

void Machine::execIf(const Instr &I, const Mask &m) {
  const uint64_t *c = R(I.in[0]);
  Mask mt, me;
  mt.on.assign(T, 0);
  me.on.assign(T, 0);
  for (unsigned l = 0; l < T; ++l) {
    if (!m.on[l])
      continue;
    if (c[l] & 1) {
      mt.on[l] = 1;
      ++mt.count;
    } else {
      me.on[l] = 1;
      ++me.count;
    }
  }
  auto branch = [&](const CBlock *b, const Mask &bm) {
    if (!b) {
      if (!I.out.empty())
        fail(I, -1, "scf.if with results has no else region");
      return;
    }
    const Instr *y = run(*b, bm);
    if (!y || y->k != K::Yield)
      fail(I, -1, "scf.if region without scf.yield");
    if (!I.out.empty())
      transfer(I.out, y->in, bm);
  };
  if (mt.count)
    branch(I.regions[0].get(), mt.count == m.count ? m : mt);
  if (me.count)
    branch(I.regions[1].get(), me.count == m.count ? m : me);
}

void Machine::execWhile(const Instr &I, const Mask &m) {
  const CBlock &before = *I.regions[0], &after = *I.regions[1];
  transfer(before.args, I.in, m);
  for (uint64_t iter = 0;; ++iter) {
    if (iter > (uint64_t(1) << 28))
      fail(I, -1, "scf.while did not terminate after 2^28 iterations");
    const Instr *c = run(before, m);
    if (!c || c->k != K::Condition)
      fail(I, -1, "scf.while before region without scf.condition");
    bool go = uniform(*c, c->in[0], m, "scf.while condition") & 1;
    llvm::ArrayRef<int> vals(c->in);
    vals = vals.drop_front();
    if (!go) {
      transfer(I.out, vals, m);
      return;
    }
    transfer(after.args, vals, m);
    const Instr *y = run(after, m);
    if (!y || y->k != K::Yield)
      fail(I, -1, "scf.while after region without scf.yield");
    transfer(before.args, y->in, m);
  }
}

void Machine::execIntBin(const Instr &I, const Mask &m) {
  unsigned w = widthOf(I.ekIn);
  uint64_t msk = wmask(w);
  size_t cnt = size_t(V(I.out[0]).n) * T;
  const uint64_t *a = R(I.in[0]), *b = R(I.in[1]);
  uint64_t *d = R(I.out[0]);
  auto each = [&](auto fn) {
    for (size_t i = 0; i < cnt; ++i)
      d[i] = fn(a[i], b[i]) & msk;
  };
  auto S = [&](uint64_t x) { return sext(x, w); };
  switch (I.k) {
  case K::AddI:
    return each([](uint64_t x, uint64_t y) { return x + y; });
  case K::SubI:
    return each([](uint64_t x, uint64_t y) { return x - y; });
  case K::MulI:
    return each([](uint64_t x, uint64_t y) { return x * y; });
  case K::AndI:
    return each([](uint64_t x, uint64_t y) { return x & y; });
  case K::OrI:
    return each([](uint64_t x, uint64_t y) { return x | y; });
  case K::XOrI:
    return each([](uint64_t x, uint64_t y) { return x ^ y; });
  case K::MinUI:
    return each([](uint64_t x, uint64_t y) { return std::min(x, y); });
  case K::MaxUI:
    return each([](uint64_t x, uint64_t y) { return std::max(x, y); });
  case K::MinSI:
    return each([&](uint64_t x, uint64_t y) { return S(x) < S(y) ? x : y; });
  case K::MaxSI:
    return each([&](uint64_t x, uint64_t y) { return S(x) > S(y) ? x : y; });
  case K::ShLI:
    return each(
        [&](uint64_t x, uint64_t y) { return y >= w ? uint64_t(0) : x << y; });
  case K::ShRUI:
    return each(
        [&](uint64_t x, uint64_t y) { return y >= w ? uint64_t(0) : x >> y; });
  case K::ShRSI:
    return each([&](uint64_t x, uint64_t y) {
      return uint64_t(S(x) >> (y >= w ? w - 1 : y));
    });
  case K::DivUI:
  case K::RemUI:
  case K::CeilDivUI:
  case K::DivSI:
  case K::RemSI:
  case K::FloorDivSI:
  case K::CeilDivSI:
    return execIntDiv(I, m);
  case K::CmpI:
    return execCmpI(I);
  default:
    fail(I, -1, "internal: not an integer op");
  }
}

void Machine::execIntDiv(const Instr &I, const Mask &m) {
  unsigned w = widthOf(I.ekIn);
  uint64_t msk = wmask(w);
  unsigned n = V(I.out[0]).n;
  size_t cnt = size_t(n) * T;
  const uint64_t *a = R(I.in[0]), *b = R(I.in[1]);
  uint64_t *d = R(I.out[0]);
  // Division: by zero (or signed overflow) is an error in active threads.
  auto divide = [&](auto fn, bool isSigned) {
    for (size_t i = 0; i < cnt; ++i) {
      bool bad = b[i] == 0 || (isSigned && sext(b[i], w) == -1 &&
                               a[i] == (uint64_t(1) << (w - 1)));
      if (bad) {
        if (m.on[i / n])
          fail(I, int64_t(i / n), "integer division by zero or overflow");
        d[i] = 0;
        continue;
      }
      d[i] = fn(a[i], b[i]) & msk;
    }
  };
  auto S = [&](uint64_t x) { return sext(x, w); };
  switch (I.k) {
  case K::DivUI:
    return divide([](uint64_t x, uint64_t y) { return x / y; }, false);
  case K::RemUI:
    return divide([](uint64_t x, uint64_t y) { return x % y; }, false);
  case K::CeilDivUI:
    return divide([](uint64_t x, uint64_t y) { return x / y + (x % y != 0); },
                  false);
  case K::DivSI:
    return divide([&](uint64_t x, uint64_t y) { return uint64_t(S(x) / S(y)); },
                  true);
  case K::RemSI:
    return divide([&](uint64_t x, uint64_t y) { return uint64_t(S(x) % S(y)); },
                  true);
  case K::FloorDivSI:
    return divide(
        [&](uint64_t x, uint64_t y) {
          int64_t p = S(x), q = S(y), r = p / q;
          if ((p % q != 0) && ((p < 0) != (q < 0)))
            --r;
          return uint64_t(r);
        },
        true);
  case K::CeilDivSI:
    return divide(
        [&](uint64_t x, uint64_t y) {
          int64_t p = S(x), q = S(y), r = p / q;
          if ((p % q != 0) && ((p < 0) == (q < 0)))
            ++r;
          return uint64_t(r);
        },
        true);
  default:
    fail(I, -1, "internal: not an integer division");
  }
}

void Machine::execCmpI(const Instr &I) {
  unsigned w = widthOf(I.ekIn);
  size_t cnt = size_t(V(I.out[0]).n) * T;
  const uint64_t *a = R(I.in[0]), *b = R(I.in[1]);
  uint64_t *d = R(I.out[0]);
  auto S = [&](uint64_t x) { return sext(x, w); };
  auto pred = arith::CmpIPredicate(I.a0);
  auto cmp = [&](uint64_t x, uint64_t y) -> uint64_t {
    switch (pred) {
    case arith::CmpIPredicate::eq:
      return x == y;
    case arith::CmpIPredicate::ne:
      return x != y;
    case arith::CmpIPredicate::slt:
      return S(x) < S(y);
    case arith::CmpIPredicate::sle:
      return S(x) <= S(y);
    case arith::CmpIPredicate::sgt:
      return S(x) > S(y);
    case arith::CmpIPredicate::sge:
      return S(x) >= S(y);
    case arith::CmpIPredicate::ult:
      return x < y;
    case arith::CmpIPredicate::ule:
      return x <= y;
    case arith::CmpIPredicate::ugt:
      return x > y;
    case arith::CmpIPredicate::uge:
      return x >= y;
    }
    return 0;
  };
  for (size_t i = 0; i < cnt; ++i)
    d[i] = cmp(a[i], b[i]);
}

// Generic float helpers: `fn` is called with float (for f16, bf16, f32) or
// double (f64) arguments.
template <typename Fn>
static void fUnary(EK ek, uint64_t *d, const uint64_t *a, size_t cnt, Fn fn) {
  if (ek == EK::F64) {
    for (size_t i = 0; i < cnt; ++i)
      d[i] = fromF64(double(fn(asF64(a[i]))));
  } else if (ek == EK::F32) {
    for (size_t i = 0; i < cnt; ++i)
      d[i] = fromF32(float(fn(asF32(a[i]))));
  } else {
    for (size_t i = 0; i < cnt; ++i)
      d[i] = fromF(float(fn(toF(a[i], ek))), ek);
  }
}
template <typename Fn>
static void fBinary(EK ek, uint64_t *d, const uint64_t *a, const uint64_t *b,
                    size_t cnt, Fn fn) {
  if (ek == EK::F64) {
    for (size_t i = 0; i < cnt; ++i)
      d[i] = fromF64(double(fn(asF64(a[i]), asF64(b[i]))));
  } else if (ek == EK::F32) {
    for (size_t i = 0; i < cnt; ++i)
      d[i] = fromF32(float(fn(asF32(a[i]), asF32(b[i]))));
  } else {
    for (size_t i = 0; i < cnt; ++i)
      d[i] = fromF(float(fn(toF(a[i], ek), toF(b[i], ek))), ek);
  }
}

template <typename F> static F maximumF(F x, F y) {
  if (std::isnan(x) || std::isnan(y))
    return std::numeric_limits<F>::quiet_NaN();
  if (x == 0 && y == 0)
    return std::signbit(x) ? y : x;
  return x > y ? x : y;
}
template <typename F> static F minimumF(F x, F y) {
  if (std::isnan(x) || std::isnan(y))
    return std::numeric_limits<F>::quiet_NaN();
  if (x == 0 && y == 0)
    return std::signbit(x) ? x : y;
  return x < y ? x : y;
}

void Machine::execFloat(const Instr &I) {
  EK ek = I.ekIn;
  size_t cnt = size_t(V(I.out[0]).n) * T;
  uint64_t *d = R(I.out[0]);
  const uint64_t *a = R(I.in[0]);
  const uint64_t *b = I.in.size() > 1 ? R(I.in[1]) : nullptr;
#define UN(KIND, EXPR)                                                         \
  case K::KIND:                                                                \
    return fUnary(ek, d, a, cnt, [](auto x) { return EXPR; });
#define BIN(KIND, EXPR)                                                        \
  case K::KIND:                                                                \
    return fBinary(ek, d, a, b, cnt, [](auto x, auto y) { return EXPR; });
  switch (I.k) {
    BIN(AddF, x + y)
    BIN(SubF, x - y)
    BIN(MulF, x * y)
    BIN(DivF, x / y)
    BIN(RemF, std::fmod(x, y))
    BIN(MaximumF, maximumF(x, y))
    BIN(MinimumF, minimumF(x, y))
    BIN(MaxNumF, std::fmax(x, y))
    BIN(MinNumF, std::fmin(x, y))
    BIN(PowF, std::pow(x, y))
    BIN(Atan2, std::atan2(x, y))
    BIN(CopySign, std::copysign(x, y))
    UN(NegF, -x)
    UN(AbsF, std::fabs(x))
    UN(Exp, std::exp(x))
    UN(Exp2, std::exp2(x))
    UN(Log, std::log(x))
    UN(Log2, std::log2(x))
    UN(Log1p, std::log1p(x))
    UN(Expm1, std::expm1(x))
    UN(Sqrt, std::sqrt(x))
    UN(Rsqrt, decltype(x)(1) / std::sqrt(x))
    UN(Tanh, std::tanh(x))
    UN(Sin, std::sin(x))
    UN(Cos, std::cos(x))
    UN(Tan, std::tan(x))
    UN(Atan, std::atan(x))
    UN(Erf, std::erf(x))
    UN(Floor, std::floor(x))
    UN(Ceil, std::ceil(x))
    UN(Round, std::round(x))
    UN(RoundEven, std::nearbyint(x))
    UN(TruncFl, std::trunc(x))
  case K::Fma:
    return execFma(I);
  case K::CmpF:
    return execCmpF(I);
  default:
    fail(I, -1, "internal: not a float op");
  }
#undef UN
#undef BIN
}

void Machine::execFma(const Instr &I) {
  EK ek = I.ekIn;
  size_t cnt = size_t(V(I.out[0]).n) * T;
  uint64_t *d = R(I.out[0]);
  const uint64_t *a = R(I.in[0]), *b = R(I.in[1]), *c = R(I.in[2]);
  if (ek == EK::F64) {
    for (size_t i = 0; i < cnt; ++i)
      d[i] = fromF64(std::fma(asF64(a[i]), asF64(b[i]), asF64(c[i])));
  } else if (ek == EK::F32) {
    for (size_t i = 0; i < cnt; ++i)
      d[i] = fromF32(std::fma(asF32(a[i]), asF32(b[i]), asF32(c[i])));
  } else {
    for (size_t i = 0; i < cnt; ++i)
      d[i] = roundDouble(std::fma(double(toF(a[i], ek)), double(toF(b[i], ek)),
                                  double(toF(c[i], ek))),
                         ek);
  }
}

/// arith.cmpf predicate `p` on x and y.
static bool cmpF(arith::CmpFPredicate p, double x, double y) {
  bool uno = std::isnan(x) || std::isnan(y);
  using P = arith::CmpFPredicate;
  switch (p) {
  case P::AlwaysFalse:
    return false;
  case P::OEQ:
    return !uno && x == y;
  case P::OGT:
    return !uno && x > y;
  case P::OGE:
    return !uno && x >= y;
  case P::OLT:
    return !uno && x < y;
  case P::OLE:
    return !uno && x <= y;
  case P::ONE:
    return !uno && x != y;
  case P::ORD:
    return !uno;
  case P::UEQ:
    return uno || x == y;
  case P::UGT:
    return uno || x > y;
  case P::UGE:
    return uno || x >= y;
  case P::ULT:
    return uno || x < y;
  case P::ULE:
    return uno || x <= y;
  case P::UNE:
    return uno || x != y;
  case P::UNO:
    return uno;
  case P::AlwaysTrue:
    return true;
  }
  return false;
}

void Machine::execCmpF(const Instr &I) {
  EK ek = I.ekIn;
  size_t cnt = size_t(V(I.out[0]).n) * T;
  uint64_t *d = R(I.out[0]);
  const uint64_t *a = R(I.in[0]), *b = R(I.in[1]);
  auto pred = arith::CmpFPredicate(I.a0);
  for (size_t i = 0; i < cnt; ++i)
    d[i] = cmpF(pred, rawToDouble(a[i], ek), rawToDouble(b[i], ek));
}

void Machine::execCast(const Instr &I) {
  size_t cnt = size_t(V(I.out[0]).n) * T;
  uint64_t *d = R(I.out[0]);
  const uint64_t *a = R(I.in[0]);
  EK ei = I.ekIn, eo = I.ekOut;
  unsigned wi = widthOf(ei), wo = widthOf(eo);
  switch (I.k) {
  case K::ExtF:
  case K::TruncF:
    if (ei == EK::F32 && eo == EK::BF16) {
      for (size_t i = 0; i < cnt; ++i)
        d[i] = f32ToBf16(asF32(a[i]));
    } else if (ei == EK::F32 && eo == EK::F16) {
      for (size_t i = 0; i < cnt; ++i)
        d[i] = f32ToF16(asF32(a[i]));
    } else if (ei == EK::F64 && eo == EK::F32) {
      for (size_t i = 0; i < cnt; ++i)
        d[i] = fromF32(float(asF64(a[i])));
    } else {
      for (size_t i = 0; i < cnt; ++i)
        d[i] = roundDouble(rawToDouble(a[i], ei), eo);
    }
    return;
  case K::SIToFP:
  case K::UIToFP: {
    bool sgn = I.k == K::SIToFP;
    for (size_t i = 0; i < cnt; ++i) {
      if (eo == EK::F32)
        d[i] = fromF32(sgn ? float(sext(a[i], wi)) : float(a[i]));
      else if (eo == EK::F64)
        d[i] = fromF64(sgn ? double(sext(a[i], wi)) : double(a[i]));
      else {
        llvm::APFloat f(eo == EK::BF16 ? llvm::APFloat::BFloat()
                                       : llvm::APFloat::IEEEhalf());
        f.convertFromAPInt(llvm::APInt(64, a[i]), sgn && wi == 64,
                           llvm::APFloat::rmNearestTiesToEven);
        if (sgn && wi < 64)
          f.convertFromAPInt(llvm::APInt(64, uint64_t(sext(a[i], wi))), true,
                             llvm::APFloat::rmNearestTiesToEven);
        d[i] = f.bitcastToAPInt().getZExtValue();
      }
    }
    return;
  }
  case K::FPToSI:
  case K::FPToUI:
    for (size_t i = 0; i < cnt; ++i) {
      double x = std::trunc(rawToDouble(a[i], ei));
      if (std::isnan(x))
        x = 0;
      if (I.k == K::FPToSI) {
        double lo = -std::ldexp(1.0, int(wo) - 1),
               hi = std::ldexp(1.0, int(wo) - 1) - 1;
        x = std::min(std::max(x, lo), hi);
        d[i] = uint64_t(int64_t(x)) & wmask(wo);
      } else {
        x = std::min(std::max(x, 0.0), std::ldexp(1.0, int(wo)) - 1);
        d[i] = uint64_t(x) & wmask(wo);
      }
    }
    return;
  case K::IntResize:
    for (size_t i = 0; i < cnt; ++i)
      d[i] = (I.a0 ? uint64_t(sext(a[i], wi)) : a[i]) & wmask(wo);
    return;
  case K::Bitcast: {
    unsigned ni = V(I.in[0]).n, no = V(I.out[0]).n;
    for (unsigned l = 0; l < T; ++l) {
      uint64_t bits = 0;
      for (unsigned e = 0; e < ni; ++e)
        bits |= (a[l * ni + e] & wmask(wi)) << (e * wi);
      for (unsigned e = 0; e < no; ++e)
        d[l * no + e] = (bits >> (e * wo)) & wmask(wo);
    }
    return;
  }
  default:
    fail(I, -1, "internal: not a cast");
  }
}

void Machine::requireFullWarps(const Instr &I, const Mask &m) {
  if (T % W)
    fail(I, -1,
         "warp-level op in a CTA whose size is not a multiple of " +
             std::to_string(W));
  for (unsigned w = 0; w < T / W; ++w) {
    unsigned c = 0;
    for (unsigned l = 0; l < W; ++l)
      c += m.on[w * W + l];
    if (c != 0 && c != W)
      fail(I, w * W,
           "warp-synchronous op executed by " + std::to_string(c) + " of the " +
               std::to_string(W) + " threads of warp " + std::to_string(w) +
               " (.aligned requires all of them)");
  }
}

static std::string listStr(llvm::ArrayRef<int64_t> v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i)
    s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

/// Element offset (into the buffer) of the memref element at the indices
/// (values `idx`) of thread `lane`; `extent` contiguous elements along the
/// last dimension must be in bounds (0 checks the index tuple only).
int64_t Machine::address(const Instr &I, const MemDesc &d, const int *idx,
                         unsigned nIdx, unsigned lane, int64_t extent,
                         const char *what) {
  llvm::SmallVector<int64_t, 4> ix;
  for (unsigned i = 0; i < nIdx; ++i)
    ix.push_back(int64_t(R(idx[i])[lane]));
  if (d.buf < 0)
    fail(I, lane, std::string(what) + " through a null memref");
  if (ix.size() != d.sizes.size())
    fail(I, lane, "index count does not match the memref rank");
  const std::string &bufName = bufs[d.buf].name;
  bool bad = false;
  for (size_t i = 0; i < ix.size(); ++i)
    if (ix[i] < 0 || ix[i] >= d.sizes[i])
      bad = true;
  if (!ix.empty() && extent > 1 && ix.back() + extent > d.sizes.back())
    bad = true;
  if (bad)
    fail(I, lane,
         std::string("out-of-bounds ") + what + " of " + bufName + ": index " +
             listStr(ix) +
             (extent > 1 ? " (+" + std::to_string(extent) + " elements)"
                         : std::string()) +
             ", sizes " + listStr(d.sizes));
  int64_t lin = d.offset;
  for (size_t i = 0; i < ix.size(); ++i)
    lin += ix[i] * d.strides[i];
  int64_t last = lin + (extent > 1 ? (extent - 1) * d.strides.back() : 0);
  int64_t nElem = int64_t(bufs[d.buf].bytes.size() / d.eltBytes);
  if (lin < 0 || last >= nElem || std::min(lin, last) < 0)
    fail(I, lane,
         std::string("out-of-bounds ") + what + " of " + bufName +
             ": element offset " + std::to_string(lin) + " outside the " +
             std::to_string(nElem) + "-element buffer");
  return lin;
}

/// "thread T", or "several threads" for the race tables' -2.
static std::string threadStr(int32_t t) {
  return t == -2 ? std::string("several threads")
                 : "thread " + std::to_string(t);
}

/// Records that `lane` is one more thread accessing a byte in this epoch.
static void addAccessor(int32_t &epochOf, int32_t &threadOf, int64_t epoch,
                        unsigned lane) {
  if (epochOf != epoch) {
    epochOf = int32_t(epoch);
    threadOf = int32_t(lane);
  } else if (threadOf != int32_t(lane)) {
    threadOf = -2;
  }
}

void Machine::raceIf(const Instr &I, unsigned lane, int64_t i, int32_t when,
                     int32_t who, int64_t since, const char *here,
                     const char *there, const std::string &how) {
  if (when >= since && who != int32_t(lane))
    fail(I, lane,
         "shared-memory race: byte " + std::to_string(i) + " is " + here +
             " here and " + there + threadStr(who) + how);
}

void Machine::sharedRead(const Instr &I, unsigned lane, int64_t byte,
                         int64_t n) {
  if (!cfg.raceCheck)
    return;
  const std::string how = " with no barrier in between";
  for (int64_t i = byte; i < byte + n; ++i) {
    raceIf(I, lane, i, wEpoch[i], wThread[i], epoch, "read", "written by ",
           how);
    raceIf(I, lane, i, aEpoch[i], aThread[i], epoch, "read",
           "atomically updated by ", how);
    addAccessor(rEpoch[i], rThread[i], epoch, lane);
  }
}

void Machine::sharedWrite(const Instr &I, unsigned lane, int64_t byte,
                          int64_t n, int64_t since) {
  if (!cfg.raceCheck)
    return;
  // A cp.async lands at some point between its issue (epoch `since`) and
  // the wait that retires it (now): any access by another thread in between
  // races with it.
  std::string how =
      since == epoch
          ? std::string(" with no barrier in between")
          : " while this cp.async was in flight (issued " +
                std::to_string(epoch - since) +
                " barrier(s) before the nvgpu.device_async_wait that "
                "retired it)";
  for (int64_t i = byte; i < byte + n; ++i) {
    raceIf(I, lane, i, rEpoch[i], rThread[i], since, "written", "read by ",
           how);
    raceIf(I, lane, i, wEpoch[i], wThread[i], since, "written", "by ", how);
    raceIf(I, lane, i, aEpoch[i], aThread[i], since, "written",
           "atomically updated by ", how);
    wEpoch[i] = int32_t(epoch);
    wThread[i] = int32_t(lane);
  }
}

/// Atomic updates of shared memory do not race with each other, only with
/// plain reads and writes by other threads in the same barrier interval.
void Machine::sharedAtomic(const Instr &I, unsigned lane, int64_t byte,
                           int64_t n) {
  if (!cfg.raceCheck)
    return;
  const std::string how = " with no barrier in between";
  for (int64_t i = byte; i < byte + n; ++i) {
    raceIf(I, lane, i, wEpoch[i], wThread[i], epoch, "atomically updated",
           "written by ", how);
    raceIf(I, lane, i, rEpoch[i], rThread[i], epoch, "atomically updated",
           "read by ", how);
    addAccessor(aEpoch[i], aThread[i], epoch, lane);
  }
}

/// Each global byte may be written by plain stores of one thread (or of
/// threads of one CTA with a barrier between them), or by atomic adds of any
/// number of threads, but not both: a plain store that meets an atomic add
/// (in either order) loses updates or is lost.
void Machine::globalWrite(const Instr &I, unsigned lane, int buf, int64_t byte,
                          int64_t n, bool atomic) {
  if (!cfg.raceCheck)
    return;
  int64_t me = ctaLinear * T + lane;
  if (me + 1 >= int64_t(kAtomicWrite))
    return; // grids this large go unchecked
  auto &w = globalWriter[buf];
  auto &we = globalEpoch[buf];
  if (w.empty()) {
    w.assign(bufs[buf].bytes.size(), 0);
    we.assign(bufs[buf].bytes.size(), 0);
  }
  uint32_t mark = uint32_t(me + 1) | (atomic ? kAtomicWrite : 0);
  for (int64_t i = byte; i < byte + n; ++i) {
    uint32_t prev = w[i];
    bool prevAtomic = prev & kAtomicWrite;
    int64_t other = int64_t(prev & ~kAtomicWrite) - 1;
    bool ordered =
        !atomic && !prevAtomic && other / T == ctaLinear && we[i] < epoch;
    if (prev && prev != mark && !(atomic && prevAtomic) && !ordered) {
      std::string where = "global element of " + bufs[buf].name + " (byte " +
                          std::to_string(i) + ") written by ";
      std::string who = "CTA " + std::to_string(other / T) + " thread " +
                        std::to_string(other % T);
      if (!atomic && !prevAtomic)
        fail(I, lane,
             where + "two threads: " + who + " and this one" +
                 (other / T == ctaLinear ? " with no barrier in between" : ""));
      auto kind = [](bool a) { return a ? "an atomic add" : "a plain store"; };
      fail(I, lane,
           where + "a plain store and an atomic add: " + kind(prevAtomic) +
               " by " + who + ", then " + kind(atomic) + " by this one");
    }
    w[i] = mark;
    we[i] = int32_t(epoch);
  }
}

int64_t Machine::linear(const MemDesc &d, const int *idx, unsigned nIdx,
                        unsigned lane) {
  int64_t lin = d.offset;
  for (unsigned i = 0; i < nIdx && i < d.strides.size(); ++i)
    lin += int64_t(R(idx[i])[lane]) * d.strides[i];
  return lin;
}

int64_t Machine::bufferAddress(const Instr &I, const MemDesc &d, const int *idx,
                               unsigned nIdx, unsigned lane, int64_t n) {
  if (nIdx != d.sizes.size())
    fail(I, lane, "index count does not match the memref rank");
  int64_t lin = linear(d, idx, nIdx, lane);
  int64_t rel = (lin - d.fatBase) * int64_t(d.eltBytes);
  int64_t bytes = n * int64_t(d.eltBytes);
  bool inside = rel >= 0 && rel + bytes <= d.fatBytes;
  bool outside = rel >= d.fatBytes || rel + bytes <= 0;
  if (!inside && !outside)
    fail(I, lane,
         "buffer access of bytes [" + std::to_string(rel) + ", " +
             std::to_string(rel + bytes) + ") is partly outside its " +
             std::to_string(d.fatBytes) +
             "-byte range: what it returns depends on the chip");
  if (outside)
    return -1;
  int64_t nElem = int64_t(bufs[d.buf].bytes.size() / d.eltBytes);
  if (lin < 0 || lin + n > nElem)
    fail(I, lane,
         "buffer access inside its range but outside " + bufs[d.buf].name +
             " (element offset " + std::to_string(lin) +
             "): a memory fault on the GPU");
  return lin;
}

/// memref.load/store of one element and vector.load/store of n contiguous
/// ones; raw buffers follow the range-checking rules above.
void Machine::execLoadStore(const Instr &I, const Mask &m) {
  bool store = I.k == K::Store || I.k == K::VStore;
  bool vec = I.k == K::VLoad || I.k == K::VStore;
  int memId = store ? I.in[1] : I.in[0];
  const MemDesc &d = mems[V(memId).mem];
  const int *idx = I.in.data() + (store ? 2 : 1);
  unsigned nIdx = unsigned(I.in.size()) - (store ? 2 : 1);
  int valId = store ? I.in[0] : I.out[0];
  unsigned n = V(valId).n;
  if (n != 1 && !vec)
    fail(I, -1, "memref.load/store of a vector");
  if (d.buf < 0)
    for (unsigned l = 0; l < T; ++l)
      if (m.on[l])
        fail(I, l,
             std::string(store ? "store" : "load") + " through a null memref");
  if (d.buf < 0)
    return;
  if (vec && !d.strides.empty() && d.strides.back() != 1)
    fail(I, -1, "vector access along a non-unit-stride dimension");
  bool shared = bufs[d.buf].shared;
  uint64_t *v = R(valId);
  int64_t bytes = int64_t(n) * d.eltBytes;
  for (unsigned l = 0; l < T; ++l) {
    if (!m.on[l])
      continue;
    int64_t lin;
    if (d.fatBase >= 0) {
      lin = bufferAddress(I, d, idx, nIdx, l, n);
      if (lin < 0) {
        if (!store)
          for (unsigned e = 0; e < n; ++e)
            v[l * n + e] = 0;
        continue;
      }
    } else {
      lin = address(I, d, idx, nIdx, l, n, store ? "store" : "load");
    }
    int64_t byte = lin * d.eltBytes;
    if (vec && shared && I.a0 > 1 && byte % I.a0)
      fail(I, l,
           "shared-memory vector access at byte " + std::to_string(byte) +
               " is not " + std::to_string(I.a0) +
               "-byte aligned as its alignment attribute claims");
    uint8_t *p = bufs[d.buf].bytes.data() + byte;
    if (store) {
      for (unsigned e = 0; e < n; ++e) {
        uint64_t x = v[l * n + e];
        std::memcpy(p + e * d.eltBytes, &x, d.eltBytes);
      }
      if (shared)
        sharedWrite(I, l, byte, bytes, epoch);
      else
        globalWrite(I, l, d.buf, byte, bytes);
    } else {
      for (unsigned e = 0; e < n; ++e) {
        uint64_t x = 0;
        std::memcpy(&x, p + e * d.eltBytes, d.eltBytes);
        v[l * n + e] = x & wmask(widthOf(d.ek));
      }
      if (shared)
        sharedRead(I, l, byte, bytes);
    }
  }
}

/// memref.subview: offsets, sizes and strides (static or uniform values),
/// rank-reducing.
void Machine::execSubView(const Instr &I, const Mask &m) {
  auto sv = cast<memref::SubViewOp>(I.op);
  const MemDesc &s = mems[V(I.in[0]).mem];
  auto get = [&](OpFoldResult f, const char *what) -> int64_t {
    if (auto a = dyn_cast<Attribute>(f))
      return cast<IntegerAttr>(a).getInt();
    return int64_t(uniform(I, P.ids.lookup(cast<Value>(f)), m, what));
  };
  MemDesc d = s;
  d.sizes.clear();
  d.strides.clear();
  llvm::SmallBitVector dropped = sv.getDroppedDims();
  auto offsets = sv.getMixedOffsets(), sizes = sv.getMixedSizes(),
       strides = sv.getMixedStrides();
  if (offsets.size() != s.sizes.size())
    fail(I, -1, "memref.subview rank mismatch");
  for (size_t i = 0; i < offsets.size(); ++i) {
    int64_t off = get(offsets[i], "memref.subview offset");
    int64_t size = get(sizes[i], "memref.subview size");
    int64_t step = get(strides[i], "memref.subview stride");
    if (off < 0 || size < 0 || step < 1 ||
        (size > 0 && off + (size - 1) * step >= s.sizes[i]))
      fail(I, -1,
           "memref.subview dimension " + std::to_string(i) + " [" +
               std::to_string(off) + ", size " + std::to_string(size) +
               "] outside the source's " + std::to_string(s.sizes[i]));
    d.offset += off * s.strides[i];
    if (dropped.test(i))
      continue;
    d.sizes.push_back(size);
    d.strides.push_back(s.strides[i] * step);
  }
  mems[V(I.out[0]).mem] = d;
}

/// amdgpu.fat_raw_buffer_cast resetOffset: base = the memref's first
/// element, num_records = validBytes or max_d(size_d stride_d) bytes.
void Machine::execFatBuffer(const Instr &I, const Mask &m) {
  const MemDesc &s = mems[V(I.in[0]).mem];
  if (s.buf < 0)
    fail(I, -1, "raw buffer of a null memref");
  if (bufs[s.buf].shared)
    fail(I, -1, "raw buffer of shared memory");
  MemDesc d = s;
  d.fatBase = s.offset;
  int64_t extent = 0;
  if (I.a0) {
    extent = int64_t(uniform(I, I.in[1], m, "validBytes"));
  } else {
    for (size_t i = 0; i < s.sizes.size(); ++i)
      extent = std::max(extent, s.sizes[i] * s.strides[i]);
    extent *= s.eltBytes;
  }
  if (extent < 0 || extent > int64_t(UINT32_MAX))
    fail(I, -1,
         "raw buffer extent " + std::to_string(extent) +
             " bytes does not fit num_records (32 bits)");
  d.fatBytes = extent;
  mems[V(I.out[0]).mem] = d;
}

/// a + b in float kind `ek`, rounded once. An f32 add flushes subnormal
/// inputs and results to zero, as PTX atom.add.f32 does.
static uint64_t atomicAddF(uint64_t a, uint64_t b, EK ek) {
  if (ek == EK::F64)
    return fromF64(asF64(a) + asF64(b));
  if (ek != EK::F32)
    return fromF(toF(a, ek) + toF(b, ek), ek);
  auto ftz = [](float x) {
    return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x;
  };
  return fromF32(ftz(ftz(asF32(a)) + ftz(asF32(b))));
}

/// memref.atomic_rmw: the active threads' updates apply one after the other
/// (in thread order), so lanes that hit the same element all count; each
/// thread gets the value it replaced.
void Machine::execAtomicRMW(const Instr &I, const Mask &m) {
  const MemDesc &d = mems[V(I.in[1]).mem];
  const int *idx = I.in.data() + 2;
  unsigned nIdx = unsigned(I.in.size()) - 2;
  const uint64_t *val = R(I.in[0]);
  uint64_t *old = R(I.out[0]);
  uint64_t msk = wmask(widthOf(d.ek));
  for (unsigned l = 0; l < T; ++l) {
    if (!m.on[l])
      continue;
    int64_t lin = address(I, d, idx, nIdx, l, 0, "atomic add");
    int64_t byte = lin * d.eltBytes;
    uint8_t *p = bufs[d.buf].bytes.data() + byte;
    uint64_t x = 0;
    std::memcpy(&x, p, d.eltBytes);
    x &= msk;
    uint64_t y = I.a0 ? (x + val[l]) & msk : atomicAddF(x, val[l], d.ek);
    std::memcpy(p, &y, d.eltBytes);
    old[l] = x;
    if (bufs[d.buf].shared)
      sharedAtomic(I, l, byte, d.eltBytes);
    else
      globalWrite(I, l, d.buf, byte, d.eltBytes, /*atomic=*/true);
  }
}

void Machine::completeCopy(const PendingCopy &c) {
  Buffer &dst = bufs[c.dstBuf];
  const Buffer &src = bufs[c.srcBuf];
  std::memcpy(dst.bytes.data() + c.dstByte, src.bytes.data() + c.srcByte,
              c.copyBytes);
  std::memset(dst.bytes.data() + c.dstByte + c.copyBytes, 0,
              c.totalBytes - c.copyBytes);
  if (dst.shared)
    sharedWrite(*c.I, c.lane, c.dstByte, c.totalBytes, c.issueEpoch);
  else
    globalWrite(*c.I, c.lane, c.dstBuf, c.dstByte, c.totalBytes);
}

void Machine::execAsyncCopy(const Instr &I, const Mask &m) {
  unsigned nd = unsigned(I.a0), ns = unsigned(I.a1);
  int dstId = I.in[0], srcId = I.in[1 + nd];
  const MemDesc &dd = mems[V(dstId).mem];
  const MemDesc &sd = mems[V(srcId).mem];
  const int *dIdx = I.in.data() + 1, *sIdx = I.in.data() + 2 + nd;
  const uint64_t *srcElems = I.a3 ? R(I.in[2 + nd + ns]) : nullptr;
  int64_t dstElements = I.a2;
  int64_t cpBytes = dstElements * dd.eltBytes;
  if (cpBytes != 4 && cpBytes != 8 && cpBytes != 16)
    fail(I, -1,
         "cp.async size must be 4, 8 or 16 bytes, got " +
             std::to_string(cpBytes));
  if (dd.buf < 0 || !bufs[dd.buf].shared)
    fail(I, -1, "cp.async destination is not shared memory");
  if ((!dd.strides.empty() && dd.strides.back() != 1) ||
      (!sd.strides.empty() && sd.strides.back() != 1))
    fail(I, -1, "cp.async on a memref whose last dimension is not contiguous");
  for (unsigned l = 0; l < T; ++l) {
    if (!m.on[l])
      continue;
    int64_t n = srcElems ? int64_t(srcElems[l]) : dstElements;
    if (n < 0 || n > dstElements)
      fail(I, l,
           "cp.async src-size " + std::to_string(n) +
               " elements exceeds "
               "the copy size of " +
               std::to_string(dstElements));
    int64_t dl = address(I, dd, dIdx, nd, l, dstElements, "cp.async write");
    int64_t sl =
        address(I, sd, sIdx, ns, l, std::max<int64_t>(n, 1), "cp.async read");
    int64_t dByte = dl * dd.eltBytes, sByte = sl * sd.eltBytes;
    // Device addresses: buffers are 256-byte aligned.
    if (dByte % cpBytes || sByte % cpBytes)
      fail(I, l,
           "misaligned cp.async of " + std::to_string(cpBytes) + " bytes: " +
               (dByte % cpBytes ? "shared" : "global") + " byte offset " +
               std::to_string(dByte % cpBytes ? dByte : sByte) +
               " is not a multiple of " + std::to_string(cpBytes));
    PendingCopy c{&I,      l,    dd.buf, sd.buf, dByte, sByte, n * dd.eltBytes,
                  cpBytes, epoch};
    if (cfg.async == AsyncMode::Immediate)
      completeCopy(c);
    else
      uncommitted[l].push_back(c);
  }
}

void Machine::execAsyncWait(const Instr &I, const Mask &m) {
  if (cfg.async == AsyncMode::Immediate)
    return;
  for (unsigned l = 0; l < T; ++l) {
    if (!m.on[l])
      continue;
    auto &g = groups[l];
    while (int64_t(g.size()) > I.a0) {
      for (const PendingCopy &c : g.front())
        completeCopy(c);
      g.pop_front();
    }
  }
}

void Machine::execLdMatrix(const Instr &I, const Mask &m) {
  requireFullWarps(I, m);
  const MemDesc &d = mems[V(I.in[0]).mem];
  const int *idx = I.in.data() + 1;
  unsigned nIdx = unsigned(I.in.size()) - 1;
  unsigned tiles = unsigned(I.a0);
  bool trans = I.a1;
  if (d.buf < 0 || !bufs[d.buf].shared)
    fail(I, -1, "ldmatrix from a memref that is not shared memory");
  if (d.strides.empty() || d.strides.back() != 1)
    fail(I, -1, "ldmatrix rows must be contiguous");
  uint64_t *out = R(I.out[0]); // [lane][tile][2]
  for (unsigned w = 0; w < T / 32; ++w) {
    if (!m.on[w * 32])
      continue;
    // rows[i][r][c]: matrix i, row r, column c (16-bit raw values).
    uint16_t rows[4][8][8];
    for (unsigned i = 0; i < tiles; ++i)
      for (unsigned r = 0; r < 8; ++r) {
        unsigned lane = w * 32 + 8 * i + r;
        int64_t lin = address(I, d, idx, nIdx, lane, 8, "ldmatrix read");
        int64_t byte = lin * 2;
        if (byte % 16)
          fail(I, lane,
               "misaligned ldmatrix row address: shared byte offset " +
                   std::to_string(byte) + " is not a multiple of 16");
        std::memcpy(rows[i][r], bufs[d.buf].bytes.data() + byte, 16);
        sharedRead(I, lane, byte, 16);
      }
    for (unsigned l = 0; l < 32; ++l) {
      uint64_t *o = out + size_t(w * 32 + l) * (2 * tiles);
      unsigned g = l / 4, t = l % 4;
      for (unsigned i = 0; i < tiles; ++i) {
        if (!trans) {
          o[2 * i] = rows[i][g][2 * t];
          o[2 * i + 1] = rows[i][g][2 * t + 1];
        } else {
          o[2 * i] = rows[i][2 * t][g];
          o[2 * i + 1] = rows[i][2 * t + 1][g];
        }
      }
    }
  }
}

void Machine::execMma(const Instr &I, const Mask &m) {
  requireFullWarps(I, m);
  bool f16 = I.a0 == 1;
  auto half = [&](uint16_t h) { return f16 ? f16ToF32(h) : bf16ToF32(h); };
  // The two 16-bit values of register operand `id` in thread `lane`, the
  // lower-indexed first.
  auto pair = [&](int id, unsigned lane, float &x0, float &x1) {
    const VInfo &v = V(id);
    const uint64_t *r = R(id);
    if (v.n == 1) {
      uint64_t bits = r[lane];
      x0 = half(uint16_t(bits & 0xffff));
      x1 = half(uint16_t((bits >> 16) & 0xffff));
    } else {
      x0 = half(uint16_t(r[lane * 2]));
      x1 = half(uint16_t(r[lane * 2 + 1]));
    }
  };
  uint64_t *out = R(I.out[0]);
  for (unsigned w = 0; w < T / 32; ++w) {
    if (!m.on[w * 32])
      continue;
    float A[16][16], B[16][8], C[16][8];
    for (unsigned l = 0; l < 32; ++l) {
      unsigned lane = w * 32 + l, g = l / 4, t = l % 4;
      // A: register j holds a_2j, a_2j+1.
      const unsigned ar[4] = {g, g + 8, g, g + 8};
      const unsigned ac[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
      for (unsigned j = 0; j < 4; ++j)
        pair(I.in[j], lane, A[ar[j]][ac[j]], A[ar[j]][ac[j] + 1]);
      // B: register 0 holds b0, b1 = B[2t][g], B[2t+1][g]; register 1
      // holds b2, b3 = B[2t+8][g], B[2t+9][g].
      pair(I.in[4], lane, B[2 * t][g], B[2 * t + 1][g]);
      pair(I.in[5], lane, B[2 * t + 8][g], B[2 * t + 9][g]);
      C[g][2 * t] = asF32(R(I.in[6])[lane]);
      C[g][2 * t + 1] = asF32(R(I.in[7])[lane]);
      C[g + 8][2 * t] = asF32(R(I.in[8])[lane]);
      C[g + 8][2 * t + 1] = asF32(R(I.in[9])[lane]);
    }
    float D[16][8];
    for (unsigned i = 0; i < 16; ++i)
      for (unsigned j = 0; j < 8; ++j) {
        float acc = C[i][j];
        for (unsigned k = 0; k < 16; ++k)
          acc += A[i][k] * B[k][j]; // exact product, f32 accumulation
        D[i][j] = acc;
      }
    for (unsigned l = 0; l < 32; ++l) {
      unsigned lane = w * 32 + l, g = l / 4, t = l % 4;
      uint64_t *o = out + size_t(lane) * 4;
      o[0] = fromF32(D[g][2 * t]);
      o[1] = fromF32(D[g][2 * t + 1]);
      o[2] = fromF32(D[g + 8][2 * t]);
      o[3] = fromF32(D[g + 8][2 * t + 1]);
    }
  }
}

void Machine::execMfma(const Instr &I, const Mask &m) {
  if (W != 64)
    fail(I, -1, "amdgpu.mfma in a launch whose wave size is not 64");
  requireFullWarps(I, m);
  bool f16 = I.a0 == 1;
  auto half = [&](uint64_t h) {
    return f16 ? f16ToF32(uint16_t(h)) : bf16ToF32(uint16_t(h));
  };
  const uint64_t *ra = R(I.in[0]), *rb = R(I.in[1]), *rc = R(I.in[2]);
  uint64_t *out = R(I.out[0]);
  for (unsigned w = 0; w < T / 64; ++w) {
    if (!m.on[w * 64])
      continue;
    float A[32][8], B[8][32], C[32][32];
    for (unsigned l = 0; l < 64; ++l) {
      unsigned lane = w * 64 + l, j = l % 32, hiHalf = l / 32;
      for (unsigned e = 0; e < 4; ++e) {
        A[j][4 * hiHalf + e] = half(ra[lane * 4 + e]);
        B[4 * hiHalf + e][j] = half(rb[lane * 4 + e]);
      }
      for (unsigned e = 0; e < 16; ++e)
        C[8 * (e / 4) + 4 * hiHalf + e % 4][j] = asF32(rc[lane * 16 + e]);
    }
    for (unsigned l = 0; l < 64; ++l) {
      unsigned lane = w * 64 + l, j = l % 32, hiHalf = l / 32;
      for (unsigned e = 0; e < 16; ++e) {
        unsigned i = 8 * (e / 4) + 4 * hiHalf + e % 4;
        float acc = C[i][j];
        for (unsigned k = 0; k < 8; ++k)
          acc += A[i][k] * B[k][j]; // exact product, f32 accumulation
        out[lane * 16 + e] = fromF32(acc);
      }
    }
  }
}

void Machine::execShuffle(const Instr &I, const Mask &m) {
  const uint64_t *val = R(I.in[0]), *off = R(I.in[1]), *wid = R(I.in[2]);
  uint64_t *res = R(I.out[0]), *valid = R(I.out[1]);
  auto mode = gpu::ShuffleMode(I.a0);
  std::vector<uint64_t> src(val, val + T);
  for (unsigned l = 0; l < T; ++l) {
    if (!m.on[l])
      continue;
    unsigned lane = l % W, warpBase = l - lane;
    int64_t o = int64_t(uint32_t(off[l])), w = int64_t(uint32_t(wid[l]));
    if (w <= 0 || w > int64_t(W))
      fail(I, l, "gpu.shuffle width must be in [1, " + std::to_string(W) + "]");
    int64_t segBase = (lane / w) * w, segEnd = segBase + w;
    int64_t j;
    switch (mode) {
    case gpu::ShuffleMode::XOR:
      j = int64_t(lane) ^ o;
      break;
    case gpu::ShuffleMode::UP:
      j = int64_t(lane) - o;
      break;
    case gpu::ShuffleMode::DOWN:
      j = int64_t(lane) + o;
      break;
    case gpu::ShuffleMode::IDX:
      j = segBase + o;
      break;
    }
    bool ok = j >= segBase && j < segEnd;
    if (!ok) {
      res[l] = src[l];
      valid[l] = 0;
      continue;
    }
    unsigned sl = warpBase + unsigned(j);
    if (sl >= T || !m.on[sl])
      fail(I, l,
           "gpu.shuffle reads thread " + std::to_string(sl) +
               ", which is not active");
    res[l] = src[sl];
    valid[l] = 1;
  }
}

void Machine::exec(const Instr &I, const Mask &m) {
  if (isIntOp(I.k))
    return execIntBin(I, m);
  if (isFloatOp(I.k))
    return execFloat(I);
  if (isCastOp(I.k))
    return execCast(I);
  switch (I.k) {
  case K::Const:
    return execConst(I);
  case K::Select:
    return execSelect(I);
  case K::MemDim:
    return execMemDim(I, m);
  case K::Load:
  case K::Store:
  case K::VLoad:
  case K::VStore:
    return execLoadStore(I, m);
  case K::SubView:
    return execSubView(I, m);
  case K::FatBuffer:
    return execFatBuffer(I, m);
  case K::AtomicRMW:
    return execAtomicRMW(I, m);
  case K::View:
    return execView(I, m);
  case K::ExtractPtr: {
    const MemDesc &d = mems[V(I.in[0]).mem];
    return fill(I.out[0], d.buf < 0 ? 0 : bufs[d.buf].fakeBase);
  }
  case K::For:
    return execFor(I, m);
  case K::If:
    return execIf(I, m);
  case K::While:
    return execWhile(I, m);
  case K::ThreadId:
    return execThreadId(I);
  case K::BlockId:
    return fill(I.out[0], uint64_t(bid[I.a0]));
  case K::BlockDim:
    return fill(I.out[0], uint64_t(cfg.block[I.a0]));
  case K::GridDim:
    return fill(I.out[0], uint64_t(cfg.grid[I.a0]));
  case K::Barrier:
    return execBarrier(I, m);
  case K::Shuffle:
    return execShuffle(I, m);
  case K::DynSmem:
    return execDynSmem(I);
  case K::VExtract:
  case K::ExtractValue:
  case K::VFromElements:
  case K::VBroadcast:
    return execVector(I);
  case K::AsyncCopy:
    return execAsyncCopy(I, m);
  case K::AsyncCreateGroup:
    return execAsyncCreateGroup(m);
  case K::AsyncWait:
    return execAsyncWait(I, m);
  case K::LdMatrix:
    return execLdMatrix(I, m);
  case K::Mma:
    return execMma(I, m);
  case K::Mfma:
    return execMfma(I, m);
  case K::Yield:
  case K::Condition:
  case K::Return:
    fail(I, -1, "internal: terminator executed as an op");
  default:
    fail(I, -1, "internal: op kind without an executor");
  }
}

void Machine::execConst(const Instr &I) {
  unsigned n = V(I.out[0]).n;
  uint64_t *d = R(I.out[0]);
  for (unsigned l = 0; l < T; ++l)
    for (unsigned e = 0; e < n; ++e)
      d[l * n + e] = I.cst[e];
}

void Machine::execSelect(const Instr &I) {
  unsigned n = V(I.out[0]).n, nc = V(I.in[0]).n;
  const uint64_t *c = R(I.in[0]), *x = R(I.in[1]), *y = R(I.in[2]);
  uint64_t *d = R(I.out[0]);
  for (unsigned l = 0; l < T; ++l)
    for (unsigned e = 0; e < n; ++e) {
      size_t i = size_t(l) * n + e;
      bool t = c[nc == 1 ? l : i] & 1;
      d[i] = t ? x[i] : y[i];
    }
}

void Machine::execMemDim(const Instr &I, const Mask &m) {
  const MemDesc &d = mems[V(I.in[0]).mem];
  int64_t i = int64_t(uniform(I, I.in[1], m, "memref.dim index"));
  if (i < 0 || i >= int64_t(d.sizes.size()))
    fail(I, -1, "memref.dim index out of range");
  fill(I.out[0], uint64_t(d.sizes[i]));
}

void Machine::execView(const Instr &I, const Mask &m) {
  const MemDesc &s = mems[V(I.in[0]).mem];
  int64_t shift = int64_t(uniform(I, I.in[1], m, "memref.view byte shift"));
  auto rt = cast<MemRefType>(I.op->getResult(0).getType());
  MemDesc d;
  d.buf = s.buf;
  d.ek = Simulator::elementKind(rt.getElementType(), &d.eltBytes);
  unsigned dyn = 0;
  for (int64_t dim : rt.getShape()) {
    if (ShapedType::isDynamic(dim))
      dim = int64_t(uniform(I, I.in[2 + dyn++], m, "memref.view size"));
    d.sizes.push_back(dim);
  }
  int64_t numel = 1;
  for (int64_t x : d.sizes)
    numel *= x;
  d.strides.resize(d.sizes.size());
  int64_t st = 1;
  for (int i = int(d.sizes.size()) - 1; i >= 0; --i) {
    d.strides[i] = st;
    st *= d.sizes[i];
  }
  int64_t startByte = s.offset + shift;
  if (s.buf < 0)
    fail(I, -1, "memref.view of a null memref");
  if (shift < 0 || shift + numel * d.eltBytes > s.sizes[0])
    fail(I, -1,
         "memref.view [" + std::to_string(shift) + ", " +
             std::to_string(shift + numel * d.eltBytes) +
             ") bytes outside its " + std::to_string(s.sizes[0]) +
             "-byte source");
  if (startByte % d.eltBytes)
    fail(I, -1, "memref.view byte shift not a multiple of the element size");
  d.offset = startByte / d.eltBytes;
  mems[V(I.out[0]).mem] = d;
}

void Machine::execThreadId(const Instr &I) {
  uint64_t *d = R(I.out[0]);
  for (unsigned l = 0; l < T; ++l) {
    int64_t x = l % cfg.block[0], y = (l / cfg.block[0]) % cfg.block[1],
            z = l / (cfg.block[0] * cfg.block[1]);
    d[l] = uint64_t(I.a0 == 0 ? x : I.a0 == 1 ? y : z);
  }
}

void Machine::execBarrier(const Instr &I, const Mask &m) {
  if (!m.all())
    fail(I, -1,
         "gpu.barrier reached by " + std::to_string(m.count) + " of " +
             std::to_string(T) + " threads (divergent control flow)");
  ++epoch;
}

void Machine::execDynSmem(const Instr &I) {
  MemDesc d;
  d.buf = smem;
  d.ek = EK::I8;
  d.eltBytes = 1;
  d.sizes = {int64_t(bufs[smem].bytes.size())};
  d.strides = {1};
  mems[V(I.out[0]).mem] = d;
}

/// vector.extract, llvm.extractvalue, vector.from_elements and
/// vector.broadcast: element moves within a thread.
void Machine::execVector(const Instr &I) {
  unsigned ni = V(I.in[0]).n, no = V(I.out[0]).n;
  const uint64_t *s = R(I.in[0]);
  uint64_t *d = R(I.out[0]);
  switch (I.k) {
  case K::VExtract:
    for (unsigned l = 0; l < T; ++l)
      for (unsigned e = 0; e < no; ++e)
        d[l * no + e] = s[l * ni + I.a0 + e];
    return;
  case K::ExtractValue:
    for (unsigned l = 0; l < T; ++l)
      d[l] = s[l * ni + I.a0];
    return;
  case K::VFromElements:
    if (I.in.size() != no)
      fail(I, -1, "vector.from_elements operand count");
    for (unsigned e = 0; e < no; ++e) {
      s = R(I.in[e]);
      for (unsigned l = 0; l < T; ++l)
        d[l * no + e] = s[l];
    }
    return;
  case K::VBroadcast:
    if (ni != 1)
      fail(I, -1, "only scalar broadcasts are supported");
    for (unsigned l = 0; l < T; ++l)
      for (unsigned e = 0; e < no; ++e)
        d[l * no + e] = s[l];
    return;
  default:
    fail(I, -1, "internal: not a vector op");
  }
}

/// cp.async.commit_group: every copy this thread issued since the last commit
/// forms one group.
void Machine::execAsyncCreateGroup(const Mask &m) {
  if (cfg.async == AsyncMode::Deferred)
    for (unsigned l = 0; l < T; ++l)
      if (m.on[l]) {
        groups[l].push_back(std::move(uncommitted[l]));
        uncommitted[l].clear();
      }
}

} // namespace

//===----------------------------------------------------------------------===//
// Simulator
//===----------------------------------------------------------------------===//

Simulator::Simulator(gpu::GPUFuncOp fn) : prog(std::make_unique<Program>()) {
  prog->fn = fn;
  Region &body = fn.getBody();
  if (!body.hasOneBlock())
    fatal("kernel '" + fn.getName().str() +
          "' has several blocks (only structured control flow is supported)");
  Compiler c(*prog);
  for (BlockArgument a : body.front().getArguments()) {
    if (!isa<MemRefType>(a.getType()))
      fatal("kernel arguments must be memrefs");
    prog->argIds.push_back(c.def(a));
  }
  for (Operation &op : body.front())
    prog->body.ops.push_back(c.compile(&op));
}

Simulator::~Simulator() = default;

void Simulator::launch(const LaunchConfig &cfg, std::vector<Buffer> &buffers,
                       llvm::ArrayRef<MemDesc> args) {
  if (args.size() != prog->argIds.size())
    fatal("kernel takes " + std::to_string(prog->argIds.size()) +
          " arguments, got " + std::to_string(args.size()));
  int64_t T = cfg.block[0] * cfg.block[1] * cfg.block[2];
  if (T <= 0 || T > 1024)
    fatal("block size must be in [1, 1024]");
  Buffer sh;
  sh.name = "shared memory";
  sh.shared = true;
  sh.bytes.assign(size_t(cfg.sharedBytes), 0xff);
  buffers.push_back(std::move(sh));
  int smem = int(buffers.size()) - 1;
  for (size_t i = 0; i < buffers.size(); ++i)
    buffers[i].fakeBase = (uint64_t(i) + 1) << 32;
  Machine mach(*prog, cfg, buffers, smem, ops);
  int64_t b[3];
  for (b[2] = 0; b[2] < cfg.grid[2]; ++b[2])
    for (b[1] = 0; b[1] < cfg.grid[1]; ++b[1])
      for (b[0] = 0; b[0] < cfg.grid[0]; ++b[0]) {
        mach.runCTA(b, args);
        ++ctas;
      }
  buffers.pop_back();
}

} // namespace attn::gpusim
