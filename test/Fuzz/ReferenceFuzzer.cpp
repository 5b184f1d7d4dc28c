//===- ReferenceFuzzer.cpp - libFuzzer target: the float64 reference ------===//
//
// Runs the reference evaluator (evaluateReference, its gradients
// evaluateReferenceBackward, and evaluateMask for softmax-family specs) on
// whatever spec the input holds, with tiny shapes
// and values derived from the input. Input layout:
//
//   byte 0..6  B = 1 + b0 % 2, Hkv = 1 + b1 % 2, Hq = Hkv * (1 + b2 % 2),
//              N = 1 + b3 % 5, M = 1 + b4 % 5, Dqk = 1 + b5 % 4,
//              Dv = 1 + b6 % 4
//   byte 7     bits 0-1: values (0 normal, 1 with NaN/inf/huge/denormal,
//              2 large magnitudes, 3 zeros); bit 2: float inputs as float64
//              arrays; bit 3: int inputs as int64 arrays; bit 4: a dlse for
//              the softmax backward; all bits also seed
//              the value generator and size the other symbols (1..4)
//   byte 8..   the .attn spec
//
// Small shapes are the evaluator's documented use (an oracle for tests and
// `--reference`, naive loops); inputs whose declared fixed dims need more
// than kMaxElements elements are skipped, since this harness would allocate
// them itself. Checks: no crash or sanitizer report, errors are one line,
// and a successful run returns o (and lse for softmax) of the bound shape,
// and gradients of their inputs' shapes.
//
//===----------------------------------------------------------------------===//

#include "FuzzCommon.h"

#include "attn/Frontend/Driver.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

using namespace mlir;
using namespace mlir::attn;
using ::attn::DType;
using ::attn::HostArray;
using ::attn::fuzz::invariantFailed;
using ::attn::fuzz::isOneLine;

namespace {

constexpr size_t kHeaderBytes = 8;
/// Most elements this harness allocates for one input tensor.
constexpr int64_t kMaxElements = 4096;

enum class Values { Normal, Special, Large, Zero };

/// The canonical dims from the header (G included, as bindShapes derives it).
::attn::DimBinding headerDims(const uint8_t *h) {
  ::attn::DimBinding d;
  d["B"] = 1 + h[0] % 2;
  d["Hkv"] = 1 + h[1] % 2;
  d["G"] = 1 + h[2] % 2;
  d["Hq"] = d["Hkv"] * d["G"];
  d["N"] = 1 + h[3] % 5;
  d["M"] = 1 + h[4] % 5;
  d["Dqk"] = 1 + h[5] % 4;
  d["Dv"] = 1 + h[6] % 4;
  return d;
}

/// A size in 1..4 for a symbol that is not canonical, fixed per input.
int64_t otherDimSize(const std::string &symbol, uint8_t salt) {
  uint32_t hsh = 2166136261u ^ salt;
  for (char c : symbol)
    hsh = (hsh ^ static_cast<uint8_t>(c)) * 16777619u;
  return 1 + hsh % 4;
}

double floatValue(Values mode, std::mt19937_64 &rng) {
  static const double kSpecial[] = {std::numeric_limits<double>::quiet_NaN(),
                                    std::numeric_limits<double>::infinity(),
                                    -std::numeric_limits<double>::infinity(),
                                    std::numeric_limits<float>::max(),
                                    -std::numeric_limits<float>::max(),
                                    std::numeric_limits<float>::denorm_min(),
                                    0.0,
                                    -0.0};
  std::normal_distribution<double> normal(0.0, 1.0);
  switch (mode) {
  case Values::Normal:
    return normal(rng);
  case Values::Special:
    if (rng() % 4 == 0)
      return kSpecial[rng() % (sizeof(kSpecial) / sizeof(kSpecial[0]))];
    return normal(rng);
  case Values::Large:
    return normal(rng) * 1e30;
  case Values::Zero:
    return 0.0;
  }
  return 0.0;
}

int64_t intValue(Values mode, const ::attn::DimBinding &dims,
                 std::mt19937_64 &rng) {
  if (mode == Values::Special && rng() % 4 == 0)
    return rng() % 2 ? std::numeric_limits<int32_t>::max()
                     : std::numeric_limits<int32_t>::min();
  if (mode == Values::Zero)
    return 0;
  // Mostly valid indices (ids, positions), sometimes just out of range.
  int64_t hi = std::max(dims.at("N"), dims.at("M")) + 1;
  return static_cast<int64_t>(rng() % static_cast<uint64_t>(hi + 2)) - 1;
}

/// Builds every input of \p sig with dims from \p dims (other symbols get
/// 1..4). Returns false when an input would exceed kMaxElements.
bool makeInputs(const ::attn::Signature &sig, ::attn::DimBinding dims,
                uint8_t flags, std::map<std::string, HostArray> &inputs) {
  Values mode = static_cast<Values>(flags & 3);
  bool floatsAsF64 = flags & 4, intsAsI64 = flags & 8;
  std::mt19937_64 rng(flags);
  for (const ::attn::InputSig &in : sig.inputs) {
    std::vector<int64_t> shape;
    int64_t numel = 1;
    for (const ::attn::DimRef &d : in.dims) {
      int64_t size = d.size;
      if (!d.symbol.empty()) {
        auto it = dims.find(d.symbol);
        if (it == dims.end())
          it = dims.emplace(d.symbol, otherDimSize(d.symbol, flags)).first;
        size = it->second;
      }
      if (size <= 0 || size > kMaxElements || numel * size > kMaxElements)
        return false;
      numel *= size;
      shape.push_back(size);
    }
    bool isInt = in.type == ::attn::ElemType::I32;
    DType dtype = isInt ? (intsAsI64 ? DType::I64 : DType::I32)
                        : (floatsAsF64 ? DType::F64 : DType::F32);
    HostArray a = HostArray::zeros(dtype, shape);
    for (int64_t i = 0; i < numel; ++i)
      a.setDouble(i, isInt ? static_cast<double>(intValue(mode, dims, rng))
                           : floatValue(mode, rng));
    inputs[in.name] = std::move(a);
  }
  return true;
}

void checkShape(const HostArray &a, const std::vector<int64_t> &want,
                const char *what) {
  if (a.shape != want)
    invariantFailed(std::string("reference ") + what + " has shape " +
                    a.shapeString());
  if (a.dtype != DType::F64 ||
      a.bytes.size() != static_cast<size_t>(a.numel()) * sizeof(double))
    invariantFailed(std::string("reference ") + what +
                    " is not a float64 array of its shape");
}

/// The gradients of the same inputs for an output gradient (and, for
/// softmax, an lse gradient) made like the inputs: one-line errors, and on
/// success dq, dk, dv and one gradient per differentiable input, of their
/// inputs' shapes.
void checkGradients(SpecOp spec, const std::map<std::string, HostArray> &inputs,
                    const ::attn::DimBinding &dims, uint8_t flags) {
  int64_t B = dims.at("B"), Hq = dims.at("Hq"), N = dims.at("N"),
          Dv = dims.at("Dv");
  std::mt19937_64 rng(flags ^ 0x5a);
  Values mode = static_cast<Values>(flags & 3);
  HostArray dout = HostArray::zeros(DType::F64, {B, Hq, N, Dv});
  for (int64_t i = 0; i < dout.numel(); ++i)
    dout.setDouble(i, floatValue(mode, rng));
  AttentionOp att = spec.getAttention();
  bool softmax = att && att.getNormalizer() == NormalizerKind::softmax;
  HostArray dlse = HostArray::zeros(DType::F64, {B, Hq, N});
  for (int64_t i = 0; i < dlse.numel(); ++i)
    dlse.setDouble(i, floatValue(mode, rng));
  ReferenceGradients grads;
  std::string err = evaluateReferenceBackward(
      spec, inputs, dout, softmax && (flags & 16) ? &dlse : nullptr, grads);
  if (!isOneLine(err))
    invariantFailed("a reference gradient error is not one line", err);
  if (!err.empty())
    return;
  checkShape(grads.dq, inputs.at("q").shape, "dq");
  checkShape(grads.dk, inputs.at("k").shape, "dk");
  checkShape(grads.dv, inputs.at("v").shape, "dv");
  std::vector<std::string> names = differentiableInputs(spec);
  if (grads.daux.size() != names.size())
    invariantFailed("reference gradients for " +
                    std::to_string(grads.daux.size()) + " aux inputs, " +
                    std::to_string(names.size()) + " differentiable");
  for (const std::string &name : names) {
    auto it = grads.daux.find(name);
    if (it == grads.daux.end())
      invariantFailed("no reference gradient for " + name);
    checkShape(it->second, inputs.at(name).shape, ("d" + name).c_str());
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < kHeaderBytes)
    return 0;
  ::attn::DimBinding dims = headerDims(data);
  uint8_t flags = data[7];
  llvm::StringRef text(reinterpret_cast<const char *>(data + kHeaderBytes),
                       size - kHeaderBytes);

  MLIRContext ctx(MLIRContext::Threading::DISABLED);
  ScopedDiagnosticHandler handler(&ctx, [](Diagnostic &) { return success(); });
  llvm::SourceMgr sourceMgr;
  unsigned id = sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(text, "fuzz.attn"), llvm::SMLoc());
  std::string paramError;
  OwningOpRef<ModuleOp> module = loadSpec(ctx, sourceMgr, id, {}, paramError);
  if (!module)
    return 0; // the frontend target covers rejected specs
  SpecOp spec = getSpec(*module);

  std::map<std::string, HostArray> inputs;
  if (!makeInputs(getSignature(spec), dims, flags, inputs))
    return 0;

  ReferenceOutputs out;
  std::string err = evaluateReference(spec, inputs, out);
  if (!isOneLine(err))
    invariantFailed("a reference error is not one line", err);
  if (err.empty()) {
    int64_t B = dims["B"], Hq = dims["Hq"], N = dims["N"], Dv = dims["Dv"];
    checkShape(out.o, {B, Hq, N, Dv}, "o");
    AttentionOp att = spec.getAttention();
    if (att && att.getNormalizer() == NormalizerKind::softmax)
      checkShape(out.lse, {B, Hq, N}, "lse");
    else if (!out.lse.shape.empty() || !out.lse.bytes.empty())
      invariantFailed("reference lse for a spec without softmax");
    checkGradients(spec, inputs, dims, flags);
  }

  // The mask oracle of the block classifier, on the last (b, h).
  if (spec.getAttention()) {
    std::vector<uint8_t> mask;
    int64_t b = dims["B"] - 1, h = dims["Hq"] - 1;
    std::string maskErr = evaluateMask(spec, inputs, b, h, mask);
    if (!isOneLine(maskErr))
      invariantFailed("a mask error is not one line", maskErr);
    if (maskErr.empty()) {
      if (mask.size() != static_cast<size_t>(dims["N"] * dims["M"]))
        invariantFailed("evaluateMask returned " + std::to_string(mask.size()) +
                        " entries");
      for (uint8_t m : mask)
        if (m > 1)
          invariantFailed("evaluateMask returned a value other than 0/1");
    }
  }
  return 0;
}
