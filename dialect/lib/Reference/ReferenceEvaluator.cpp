//===- ReferenceEvaluator.cpp - float64 oracle for attn specs -------------===//
//
// The entry points: binding inputs to the signature, the memory budget, and
// dispatch to the two families (AttentionReference.cpp, LinearReference.cpp;
// regions run as RegionProgram.h's scalar programs), forward and backward,
// plus the element-wise mask evaluator.
//
// Shapes come from users, so what the evaluator allocates (float64 copies of
// the inputs, o and lse, scratch) is computed with saturating arithmetic and
// checked against a memory budget before anything is allocated; allocations
// go through HostArray::allocate, which reports failure instead of aborting.
// Index arithmetic then stays within arrays that exist.
//
//===----------------------------------------------------------------------===//

#include "attn/Reference/ReferenceEvaluator.h"
#include "ReferenceInternal.h"
#include <cmath>
#include <limits>
#include <set>

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::reference;
using ::attn::DimBinding;
using ::attn::HostArray;

//===----------------------------------------------------------------------===//
// Signature
//===----------------------------------------------------------------------===//

static ::attn::ElemType elemTypeOf(Type t) {
  if (t.isBF16())
    return ::attn::ElemType::BF16;
  if (t.isF16())
    return ::attn::ElemType::F16;
  if (t.isInteger(32))
    return ::attn::ElemType::I32;
  return ::attn::ElemType::F32;
}

/// Whether `spec` is a causal linear attention (in any of its forms): its
/// step t pairs q_t with k_t and v_t, so keys and queries are the same rows.
static bool isCausalLinear(SpecOp spec) {
  if (LinearAttentionOp op = spec.getLinearAttention())
    return !op.getNoncausal();
  if (TiledLinearAttentionOp op = spec.getTiledLinearAttention())
    return !op.getNoncausal();
  if (TiledLinearAttentionBackwardOp op =
          spec.getTiledLinearAttentionBackward())
    return !op.getNoncausal();
  return false;
}

::attn::Signature mlir::attn::getSignature(SpecOp spec) {
  ::attn::Signature sig = ::attn::Signature::withQKV();
  // A causal linear attention's k and v have N rows: binding a call's
  // shapes then refuses M != N before any kernel runs (bindShapes sets
  // M = N for the code that reads M).
  if (isCausalLinear(spec))
    for (const char *name : {"k", "v"})
      const_cast<::attn::InputSig *>(sig.find(name))->dims[2].symbol = "N";
  for (InputOp in : spec.getBodyBlock().getOps<InputOp>()) {
    ::attn::InputSig s;
    s.name = in.getSymName().str();
    s.type = elemTypeOf(in.getElementType());
    for (Attribute d : in.getDims()) {
      if (auto str = dyn_cast<StringAttr>(d))
        s.dims.push_back({str.getValue().str(), 0});
      else
        s.dims.push_back({"", cast<IntegerAttr>(d).getInt()});
    }
    if (::attn::InputSig *existing =
            const_cast<::attn::InputSig *>(sig.find(s.name)))
      existing->type = s.type; // q/k/v: the declaration only sets the type
    else
      sig.inputs.push_back(std::move(s));
  }
  return sig;
}

//===----------------------------------------------------------------------===//
// Evaluation
//===----------------------------------------------------------------------===//

std::string
mlir::attn::evaluateParams(SpecOp spec, const DimBinding &dims,
                           std::map<std::string, ScalarValue> &params) {
  std::map<std::string, AuxTensor> noAux;
  Env env{&dims, &params, &noAux};
  for (ParamOp p : spec.getBodyBlock().getOps<ParamOp>()) {
    ScalarValue v;
    std::string err = runConstantRegion(p.getDefaultValue(), env, v);
    if (!err.empty())
      return "param '" + p.getSymName().str() + "': " + err;
    if (p.getType().isF64())
      v = mkFloat(v.asDouble());
    params[p.getSymName().str()] = v;
  }
  return "";
}

std::string mlir::attn::reference::widen(const HostArray &a, HostArray &out,
                                         bool asInt) {
  if (std::string err = HostArray::allocate(
          asInt ? ::attn::DType::I64 : ::attn::DType::F64, a.shape, out);
      !err.empty())
    return "reference evaluator: " + err;
  for (int64_t i = 0, e = a.numel(); i < e; ++i) {
    if (asInt)
      out.data<int64_t>()[i] = static_cast<int64_t>(a.getDouble(i));
    else
      out.data<double>()[i] = a.getDouble(i);
  }
  return "";
}

uint64_t mlir::attn::reference::featureDim(FeatureMapKind kind, uint64_t dqk,
                                           uint64_t r) {
  using ::attn::saturatingAdd;
  using ::attn::saturatingMul;
  switch (kind) {
  case FeatureMapKind::pos_neg:
    return saturatingMul(2, dqk);
  case FeatureMapKind::taylor2:
    // 1 + Dqk + Dqk (Dqk + 1) / 2: [1, x_a, x_a^2, x_a x_b (a < b)].
    return saturatingAdd(saturatingAdd(1, dqk),
                         dqk % 2
                             ? saturatingMul(dqk, saturatingAdd(dqk, 1) / 2)
                             : saturatingMul(dqk / 2, saturatingAdd(dqk, 1)));
  case FeatureMapKind::random:
    return r;
  default:
    return dqk;
  }
}

/// Binds shapes and dtypes of `inputs` against the spec's signature and
/// evaluates the params: the checks shared by evaluateReference and
/// MaskEvaluator, before anything is allocated.
static std::string bindInputs(SpecOp spec,
                              const std::map<std::string, HostArray> &inputs,
                              DimBinding &dims,
                              std::map<std::string, ScalarValue> &params) {
  ::attn::Signature sig = getSignature(spec);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto &kv : inputs)
    shapes[kv.first] = kv.second.shape;
  std::string err = ::attn::bindShapes(sig, shapes, dims);
  if (!err.empty())
    return err;
  for (const ::attn::InputSig &in : sig.inputs) {
    err = ::attn::checkDType(in, inputs.at(in.name));
    if (!err.empty())
      return err;
  }
  return evaluateParams(spec, dims, params);
}

/// Widens the aux tensors (every input but q, k and v) for the regions.
static std::string widenAux(SpecOp spec,
                            const std::map<std::string, HostArray> &inputs,
                            std::map<std::string, AuxTensor> &aux) {
  for (const ::attn::InputSig &in : getSignature(spec).inputs) {
    if (in.name == "q" || in.name == "k" || in.name == "v")
      continue;
    const HostArray &a = inputs.at(in.name);
    AuxTensor t{in.name, a.shape, in.type == ::attn::ElemType::I32, {}};
    if (std::string err = widen(a, t.values, t.isInt); !err.empty())
      return err;
    aux[in.name] = std::move(t);
  }
  return "";
}

/// Element `i` of `shape`, or 0 when it has no such dim.
static uint64_t dimOf(const std::vector<int64_t> &shape, size_t i) {
  return i < shape.size() && shape[i] > 0 ? static_cast<uint64_t>(shape[i]) : 0;
}

uint64_t mlir::attn::ReferenceMemory::total() const {
  return ::attn::saturatingAdd(::attn::saturatingAdd(widened, outputs),
                               scratch);
}

ReferenceMemory mlir::attn::referenceMemory(
    SpecOp spec, const std::map<std::string, std::vector<int64_t>> &shapes) {
  using ::attn::saturatingAdd;
  using ::attn::saturatingMul;
  static const std::vector<int64_t> none;
  auto shapeOf = [&](const std::string &name) -> const std::vector<int64_t> & {
    auto it = shapes.find(name);
    return it == shapes.end() ? none : it->second;
  };
  ReferenceMemory m;
  for (const auto &[name, shape] : shapes)
    m.widened = saturatingAdd(m.widened, ::attn::arrayBytes(shape, 8));
  const std::vector<int64_t> &q = shapeOf("q"), &k = shapeOf("k"),
                             &v = shapeOf("v");
  uint64_t B = dimOf(q, 0), Hq = dimOf(q, 1), N = dimOf(q, 2),
           Dqk = dimOf(q, 3), M = dimOf(k, 2), Dv = dimOf(v, 3);
  uint64_t rows = saturatingMul(saturatingMul(B, Hq), N);
  m.outputs = saturatingMul(saturatingMul(rows, Dv), 8);
  if (AttentionOp att = spec.getAttention()) {
    if (att.getNormalizer() == NormalizerKind::softmax)
      m.outputs = saturatingAdd(m.outputs, saturatingMul(rows, 8));
    // A row's visibility, dot products, scores and weights.
    m.scratch = saturatingMul(M, 25);
  } else if (LinearAttentionOp lin = spec.getLinearAttention()) {
    uint64_t r = 0;
    if (auto p = lin.getProjectionAttr())
      r = dimOf(shapeOf(p.getValue().str()), 0);
    uint64_t dphi = std::max(featureDim(lin.getFeatureMapQ(), Dqk, r),
                             featureDim(lin.getFeatureMapK(), Dqk, r));
    // S [Dphi, Dv], five Dphi-vectors and two Dv-vectors.
    uint64_t elems = saturatingAdd(
        saturatingAdd(saturatingMul(dphi, Dv), saturatingMul(dphi, 5)),
        saturatingMul(Dv, 2));
    m.scratch = saturatingMul(elems, 8);
  }
  return m;
}

/// Checks `need` against `maxBytes` (0: the default budget).
static std::string checkBudget(const ReferenceMemory &need, uint64_t maxBytes,
                               const char *what) {
  uint64_t budget = maxBytes ? maxBytes : ::attn::defaultMemoryBudget();
  uint64_t total = need.total();
  if (total <= budget)
    return "";
  return std::string("reference evaluator: ") + what + " needs " +
         (total == ::attn::kSaturatedBytes
              ? std::string("more than 16 EiB (the sizes overflow 64 bits)")
              : ::attn::formatBytes(total)) +
         " (float64 inputs " + ::attn::formatBytes(need.widened) +
         ", outputs " + ::attn::formatBytes(need.outputs) + ", scratch " +
         ::attn::formatBytes(need.scratch) +
         "), more than the memory budget "
         "of " +
         ::attn::formatBytes(budget);
}

std::string
mlir::attn::evaluateReference(SpecOp spec,
                              const std::map<std::string, HostArray> &inputs,
                              ReferenceOutputs &out, uint64_t maxBytes) {
  std::string err = bindInputs(spec, inputs, out.dims, out.params);
  if (!err.empty())
    return err;
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto &kv : inputs)
    shapes[kv.first] = kv.second.shape;
  if (!(err = checkBudget(referenceMemory(spec, shapes), maxBytes,
                          "evaluating this spec"))
           .empty())
    return err;
  std::map<std::string, AuxTensor> aux;
  if (!(err = widenAux(spec, inputs, aux)).empty())
    return err;
  const DimBinding &dims = out.dims;
  Env env{&dims, &out.params, &aux};

  HostArray wideQ, wideK, wideV;
  if (!(err = widen(inputs.at("q"), wideQ)).empty() ||
      !(err = widen(inputs.at("k"), wideK)).empty() ||
      !(err = widen(inputs.at("v"), wideV)).empty())
    return err;
  WideQKV qkv{wideQ.data<double>(), wideK.data<double>(), wideV.data<double>()};
  if (AttentionOp att = spec.getAttention())
    return evaluateAttention(att, env, qkv, out);
  if (LinearAttentionOp lin = spec.getLinearAttention())
    return evaluateLinear(lin, env, qkv, out);
  return "spec '" + spec.getSymName().str() + "' has no attention op";
}

//===----------------------------------------------------------------------===//
// Gradients
//===----------------------------------------------------------------------===//

std::vector<std::string> mlir::attn::differentiableInputs(SpecOp spec) {
  std::set<std::string> names;
  auto collect = [&](Region &r) {
    r.walk([&](LoadOp l) {
      if (isa<FloatType>(l.getResult().getType()))
        names.insert(l.getInput().str());
    });
  };
  if (AttentionOp att = spec.getAttention()) {
    collect(att.getScore());
  } else if (LinearAttentionOp lin = spec.getLinearAttention()) {
    collect(lin.getGate());
    collect(lin.getBeta());
    collect(lin.getBonus());
  }
  // Declaration order, as the compiled kernels take their gradients.
  std::vector<std::string> out;
  for (InputOp in : spec.getBodyBlock().getOps<InputOp>())
    if (names.count(in.getSymName().str()))
      out.push_back(in.getSymName().str());
  return out;
}

ReferenceMemory mlir::attn::referenceBackwardMemory(
    SpecOp spec, const std::map<std::string, std::vector<int64_t>> &shapes) {
  using ::attn::arrayBytes;
  using ::attn::saturatingAdd;
  ReferenceMemory m = referenceMemory(spec, shapes);
  static const std::vector<int64_t> none;
  auto shapeOf = [&](const std::string &name) -> const std::vector<int64_t> & {
    auto it = shapes.find(name);
    return it == shapes.end() ? none : it->second;
  };
  // do and dlse widened; the gradients of q, k, v and the aux inputs. The
  // forward's o and lse are not kept (each row is recomputed).
  for (const char *name : {"do", "lse"})
    if (shapes.count(name))
      m.widened = saturatingAdd(m.widened, arrayBytes(shapeOf(name), 8));
  m.outputs = 0;
  for (const char *name : {"q", "k", "v"})
    m.outputs = saturatingAdd(m.outputs, arrayBytes(shapeOf(name), 8));
  for (const std::string &name : differentiableInputs(spec))
    m.outputs = saturatingAdd(m.outputs, arrayBytes(shapeOf(name), 8));
  if (spec.getAttention()) // a row's dP and dS
    m.scratch = saturatingAdd(
        m.scratch, ::attn::saturatingMul(dimOf(shapeOf("k"), 2), 16));
  if (LinearAttentionOp lin = spec.getLinearAttention()) {
    const std::vector<int64_t> &q = shapeOf("q"), &v = shapeOf("v");
    uint64_t r = 0;
    if (auto p = lin.getProjectionAttr())
      r = dimOf(shapeOf(p.getValue().str()), 0);
    uint64_t dphi = std::max(featureDim(lin.getFeatureMapQ(), dimOf(q, 3), r),
                             featureDim(lin.getFeatureMapK(), dimOf(q, 3), r));
    m.scratch = saturatingAdd(
        m.scratch, linearBackwardScratch(dimOf(q, 2), dphi, dimOf(v, 3)));
  }
  return m;
}

/// Checks that `a` is a float array of exactly `shape`.
static std::string checkGradientInput(const char *what, const HostArray &a,
                                      const std::vector<int64_t> &shape) {
  if (a.dtype != ::attn::DType::F32 && a.dtype != ::attn::DType::F64 &&
      a.dtype != ::attn::DType::BF16 && a.dtype != ::attn::DType::F16)
    return std::string(what) + " must be a float array";
  if (a.shape != shape) {
    HostArray expected; // only its shape, for the message
    expected.shape = shape;
    return std::string(what) + " has shape " + a.shapeString() + ", expected " +
           expected.shapeString();
  }
  return "";
}

std::string mlir::attn::evaluateReferenceBackward(
    SpecOp spec, const std::map<std::string, HostArray> &inputs,
    const HostArray &dout, const HostArray *dlse, ReferenceGradients &grads,
    uint64_t maxBytes) {
  ReferenceOutputs bound;
  std::string err = bindInputs(spec, inputs, bound.dims, bound.params);
  if (!err.empty())
    return err;
  const DimBinding &dims = bound.dims;
  int64_t B = dims.at("B"), Hq = dims.at("Hq"), N = dims.at("N"),
          Dv = dims.at("Dv");
  if (!(err = checkGradientInput("do", dout, {B, Hq, N, Dv})).empty())
    return err;
  AttentionOp att = spec.getAttention();
  LinearAttentionOp lin = spec.getLinearAttention();
  if (!att && !lin)
    return "spec '" + spec.getSymName().str() + "' has no attention op";
  if (dlse) {
    if (!att || att.getNormalizer() != NormalizerKind::softmax)
      return "dlse is only defined for the softmax normalizer (this spec has "
             "no lse output)";
    if (!(err = checkGradientInput("dlse", *dlse, {B, Hq, N})).empty())
      return err;
  }
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto &kv : inputs)
    shapes[kv.first] = kv.second.shape;
  shapes["do"] = dout.shape;
  if (dlse)
    shapes["lse"] = dlse->shape;
  if (!(err = checkBudget(referenceBackwardMemory(spec, shapes), maxBytes,
                          "the gradients of this spec"))
           .empty())
    return err;

  std::map<std::string, AuxTensor> aux;
  if (!(err = widenAux(spec, inputs, aux)).empty())
    return err;
  HostArray wideQ, wideK, wideV, wideDo, wideDlse;
  if (!(err = widen(inputs.at("q"), wideQ)).empty() ||
      !(err = widen(inputs.at("k"), wideK)).empty() ||
      !(err = widen(inputs.at("v"), wideV)).empty() ||
      !(err = widen(dout, wideDo)).empty() ||
      (dlse && !(err = widen(*dlse, wideDlse)).empty()))
    return err;

  grads = ReferenceGradients();
  auto zeros = [&](const std::vector<int64_t> &shape, HostArray &out) {
    std::string e = HostArray::allocate(::attn::DType::F64, shape, out);
    return e.empty() ? e : "reference evaluator: gradients: " + e;
  };
  if (!(err = zeros(wideQ.shape, grads.dq)).empty() ||
      !(err = zeros(wideK.shape, grads.dk)).empty() ||
      !(err = zeros(wideV.shape, grads.dv)).empty())
    return err;
  std::map<std::string, double *> auxGrads;
  for (const std::string &name : differentiableInputs(spec)) {
    HostArray &g = grads.daux[name];
    if (!(err = zeros(aux.at(name).shape, g)).empty())
      return err;
    auxGrads[name] = g.data<double>();
  }
  Env env{&dims, &bound.params, &aux, &auxGrads};
  WideQKV qkv{wideQ.data<double>(), wideK.data<double>(), wideV.data<double>()};
  GradientBuffers g{wideDo.data<double>(),
                    dlse ? wideDlse.data<double>() : nullptr,
                    grads.dq.data<double>(), grads.dk.data<double>(),
                    grads.dv.data<double>()};
  return att ? backwardAttention(att, env, qkv, g)
             : backwardLinear(lin, env, qkv, g);
}

//===----------------------------------------------------------------------===//
// Element-wise mask (the oracle for block classification)
//===----------------------------------------------------------------------===//

struct mlir::attn::MaskEvaluator::Impl {
  DimBinding dims;
  std::map<std::string, ScalarValue> params;
  std::map<std::string, AuxTensor> aux;
  bool hasMask = false;
  Program mask;
  bool ready = false;
};

mlir::attn::MaskEvaluator::MaskEvaluator() : impl(std::make_unique<Impl>()) {}
mlir::attn::MaskEvaluator::~MaskEvaluator() = default;

const DimBinding &mlir::attn::MaskEvaluator::dims() const { return impl->dims; }
const std::map<std::string, ScalarValue> &
mlir::attn::MaskEvaluator::params() const {
  return impl->params;
}

/// The memory MaskEvaluator::init allocates: the widened aux tensors.
static ReferenceMemory
maskMemory(SpecOp spec, const std::map<std::string, HostArray> &inputs) {
  ReferenceMemory m;
  for (const auto &[name, a] : inputs)
    if (name != "q" && name != "k" && name != "v")
      m.widened =
          ::attn::saturatingAdd(m.widened, ::attn::arrayBytes(a.shape, 8));
  return m;
}

std::string
mlir::attn::MaskEvaluator::init(SpecOp spec,
                                const std::map<std::string, HostArray> &inputs,
                                uint64_t maxBytes) {
  Impl &m = *impl;
  m = Impl();
  std::string err = bindInputs(spec, inputs, m.dims, m.params);
  if (!err.empty())
    return err;
  if (!(err = checkBudget(maskMemory(spec, inputs), maxBytes,
                          "the mask's inputs"))
           .empty())
    return err;
  if (!(err = widenAux(spec, inputs, m.aux)).empty())
    return err;
  AttentionOp att = spec.getAttention();
  if (!att)
    return "linear attention has no mask";
  m.hasMask = !att.getMask().empty();
  if (m.hasMask && !(err = Program::build(att.getMask(), m.mask)).empty())
    return err;
  m.ready = true;
  return "";
}

std::string mlir::attn::MaskEvaluator::evaluate(int64_t b, int64_t h,
                                                int64_t q0, int64_t q1,
                                                int64_t k0, int64_t k1,
                                                uint8_t *mask) {
  Impl &m = *impl;
  if (!m.ready)
    return "mask evaluator: not initialized";
  int64_t width = std::max<int64_t>(k1 - k0, 0);
  Env env{&m.dims, &m.params, &m.aux};
  for (int64_t i = q0; i < q1; ++i) {
    for (int64_t j = k0; j < k1; ++j) {
      bool vis = true;
      if (m.hasMask) {
        ScalarValue idx[4] = {mkInt(b), mkInt(h), mkInt(i), mkInt(j)};
        ScalarValue r;
        std::string err = m.mask.run(idx, env, r);
        if (!err.empty())
          return "mask: " + err + " [b=" + std::to_string(b) +
                 ", h=" + std::to_string(h) + ", q_idx=" + std::to_string(i) +
                 ", kv_idx=" + std::to_string(j) + "]";
        vis = r.i != 0;
      }
      mask[(i - q0) * width + (j - k0)] = vis ? 1 : 0;
    }
  }
  return "";
}

std::string
mlir::attn::evaluateMask(SpecOp spec,
                         const std::map<std::string, HostArray> &inputs,
                         int64_t b, int64_t h, std::vector<uint8_t> &mask,
                         ReferenceOutputs *bound, uint64_t maxBytes) {
  MaskEvaluator ev;
  std::string err = ev.init(spec, inputs, maxBytes);
  if (!err.empty())
    return err;
  if (bound) {
    bound->dims = ev.dims();
    bound->params = ev.params();
  }
  const DimBinding &dims = ev.dims();
  int64_t B = dims.at("B"), Hq = dims.at("Hq"), N = dims.at("N"),
          M = dims.at("M");
  if (b < 0 || b >= B || h < 0 || h >= Hq)
    return "mask: (b=" + std::to_string(b) + ", h=" + std::to_string(h) +
           ") is out of range (B=" + std::to_string(B) +
           ", Hq=" + std::to_string(Hq) + ")";
  ReferenceMemory need = maskMemory(spec, inputs);
  need.outputs = ::attn::arrayBytes({N, M}, 1);
  if (!(err = checkBudget(need, maxBytes, "the element mask")).empty())
    return err;
  HostArray bytes;
  if (!(err = HostArray::allocate(::attn::DType::Bool, {N, M}, bytes)).empty())
    return "mask: " + err;
  mask = std::move(bytes.bytes);
  return ev.evaluate(b, h, 0, N, 0, M, mask.data());
}
