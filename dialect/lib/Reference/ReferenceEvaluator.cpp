//===- ReferenceEvaluator.cpp - float64 oracle for attn specs -------------===//
//
// Each region is flattened once into a list of steps over numbered slots, then
// run per element. Floats are evaluated in double whatever their IR type: the
// oracle states the math, not a kernel's rounding. Masked-out entries never
// evaluate the score (so a score lookup valid only under the mask is safe).
// Linear attention runs its recurrence one step at a time (never the chunked
// or parallel forms a kernel uses), with the regions evaluated per element.
//
// Shapes come from users, so what the evaluator allocates (float64 copies of
// the inputs, o and lse, scratch) is computed with saturating arithmetic and
// checked against a memory budget before anything is allocated; allocations
// go through HostArray::allocate, which reports failure instead of aborting.
// Index arithmetic then stays within arrays that exist.
//
//===----------------------------------------------------------------------===//

#include "attn/Reference/ReferenceEvaluator.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/TypeSwitch.h"
#include <cmath>
#include <functional>
#include <limits>

using namespace mlir;
using namespace mlir::attn;
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

::attn::Signature mlir::attn::getSignature(SpecOp spec) {
  ::attn::Signature sig = ::attn::Signature::withQKV();
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
// Region programs
//===----------------------------------------------------------------------===//

namespace {

/// An auxiliary tensor, widened for the evaluator: int64 for i32 inputs,
/// float64 for the rest.
struct AuxTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool isInt;
  HostArray values;
};

/// Everything a region can read besides its arguments.
struct Env {
  const DimBinding *dims;
  const std::map<std::string, ScalarValue> *params;
  const std::map<std::string, AuxTensor> *aux;
};

using Slots = std::vector<ScalarValue>;
/// One step: computes its result slot from earlier slots; returns "" or an
/// error message.
using Step = std::function<std::string(Slots &, const Env &)>;

class Program {
public:
  /// Flattens `region` (one block ending in attn.yield). Reports unsupported
  /// ops as an error string.
  static std::string build(Region &region, Program &out);

  /// Runs with `args` bound to the block arguments; `out` gets the yielded
  /// value. On error, `where` prefixes the message with the op's location.
  std::string run(llvm::ArrayRef<ScalarValue> args, const Env &env,
                  ScalarValue &result) {
    for (size_t i = 0; i < args.size(); ++i)
      slots[i] = args[i];
    for (size_t s = 0; s < steps.size(); ++s) {
      std::string err = steps[s](slots, env);
      if (!err.empty())
        return err + " (at " + stepLocs[s] + ")";
    }
    result = slots[resultSlot];
    return "";
  }

private:
  std::vector<Step> steps;
  std::vector<std::string> stepLocs;
  Slots slots;
  unsigned resultSlot = 0;
};

} // namespace

static std::string locString(Location loc) {
  std::string s;
  llvm::raw_string_ostream os(s);
  if (auto fl = dyn_cast<FileLineColLoc>(loc))
    os << fl.getFilename().getValue() << ":" << fl.getLine() << ":"
       << fl.getColumn();
  else
    os << loc;
  return s;
}

static ScalarValue mkInt(int64_t v) {
  ScalarValue s;
  s.isInt = true;
  s.i = v;
  return s;
}
static ScalarValue mkFloat(double v) {
  ScalarValue s;
  s.f = v;
  return s;
}

static bool cmpI(arith::CmpIPredicate p, int64_t a, int64_t b) {
  using P = arith::CmpIPredicate;
  switch (p) {
  case P::eq:
    return a == b;
  case P::ne:
    return a != b;
  case P::slt:
    return a < b;
  case P::sle:
    return a <= b;
  case P::sgt:
    return a > b;
  case P::sge:
    return a >= b;
  case P::ult:
    return uint64_t(a) < uint64_t(b);
  case P::ule:
    return uint64_t(a) <= uint64_t(b);
  case P::ugt:
    return uint64_t(a) > uint64_t(b);
  case P::uge:
    return uint64_t(a) >= uint64_t(b);
  }
  return false;
}

static bool cmpF(arith::CmpFPredicate p, double a, double b) {
  using P = arith::CmpFPredicate;
  bool unordered = std::isnan(a) || std::isnan(b);
  switch (p) {
  case P::AlwaysFalse:
    return false;
  case P::AlwaysTrue:
    return true;
  case P::OEQ:
    return !unordered && a == b;
  case P::OGT:
    return !unordered && a > b;
  case P::OGE:
    return !unordered && a >= b;
  case P::OLT:
    return !unordered && a < b;
  case P::OLE:
    return !unordered && a <= b;
  case P::ONE:
    return !unordered && a != b;
  case P::ORD:
    return !unordered;
  case P::UEQ:
    return unordered || a == b;
  case P::UGT:
    return unordered || a > b;
  case P::UGE:
    return unordered || a >= b;
  case P::ULT:
    return unordered || a < b;
  case P::ULE:
    return unordered || a <= b;
  case P::UNE:
    return unordered || a != b;
  case P::UNO:
    return unordered;
  }
  return false;
}

/// Wraps an int result to the width of `t` (i1 results are 0/1).
static int64_t wrapTo(Type t, int64_t v) {
  unsigned w = t.getIntOrFloatBitWidth();
  if (w >= 64)
    return v;
  if (w == 1)
    return v & 1;
  int64_t m = int64_t(1) << w;
  v &= m - 1;
  if (v >= m / 2)
    v -= m;
  return v;
}

std::string Program::build(Region &region, Program &out) {
  llvm::DenseMap<Value, unsigned> slotOf;
  Block &block = region.front();
  unsigned next = 0;
  for (BlockArgument a : block.getArguments())
    slotOf[a] = next++;
  for (Operation &op : block) {
    std::string loc = locString(op.getLoc());
    if (auto y = dyn_cast<YieldOp>(op)) {
      out.resultSlot = slotOf.lookup(y.getValues().front());
      continue;
    }
    if (op.getNumResults() != 1)
      return "reference evaluator: unsupported op '" +
             op.getName().getStringRef().str() + "' at " + loc;
    unsigned r = next++;
    slotOf[op.getResult(0)] = r;
    llvm::SmallVector<unsigned> in;
    for (Value v : op.getOperands())
      in.push_back(slotOf.lookup(v));
    Type rt = op.getResult(0).getType();
    Step step;
    auto intBin = [&](std::function<int64_t(int64_t, int64_t)> f) {
      return [=](Slots &s, const Env &) {
        s[r] = mkInt(wrapTo(rt, f(s[in[0]].i, s[in[1]].i)));
        return std::string();
      };
    };
    auto fBin = [&](std::function<double(double, double)> f) {
      return [=](Slots &s, const Env &) {
        s[r] = mkFloat(f(s[in[0]].f, s[in[1]].f));
        return std::string();
      };
    };
    auto fUn = [&](double (*f)(double)) {
      return [=](Slots &s, const Env &) {
        s[r] = mkFloat(f(s[in[0]].f));
        return std::string();
      };
    };
    std::string unsupported;
    llvm::TypeSwitch<Operation *>(&op)
        .Case<arith::ConstantOp>([&](arith::ConstantOp c) {
          ScalarValue v;
          if (auto i = dyn_cast<IntegerAttr>(c.getValue()))
            v = mkInt(rt.isInteger(1) ? (i.getValue().getBoolValue() ? 1 : 0)
                                      : i.getInt());
          else if (auto f = dyn_cast<FloatAttr>(c.getValue()))
            v = mkFloat(f.getValueAsDouble());
          else
            unsupported = "constant";
          step = [=](Slots &s, const Env &) {
            s[r] = v;
            return std::string();
          };
        })
        .Case<arith::AddIOp>([&](auto) {
          step = intBin([](int64_t a, int64_t b) {
            return int64_t(uint64_t(a) + uint64_t(b));
          });
        })
        .Case<arith::SubIOp>([&](auto) {
          step = intBin([](int64_t a, int64_t b) {
            return int64_t(uint64_t(a) - uint64_t(b));
          });
        })
        .Case<arith::MulIOp>([&](auto) {
          step = intBin([](int64_t a, int64_t b) {
            return int64_t(uint64_t(a) * uint64_t(b));
          });
        })
        .Case<arith::MinSIOp>([&](auto) {
          step = intBin([](int64_t a, int64_t b) { return std::min(a, b); });
        })
        .Case<arith::MaxSIOp>([&](auto) {
          step = intBin([](int64_t a, int64_t b) { return std::max(a, b); });
        })
        .Case<arith::AndIOp>([&](auto) {
          step = intBin([](int64_t a, int64_t b) { return a & b; });
        })
        .Case<arith::OrIOp>([&](auto) {
          step = intBin([](int64_t a, int64_t b) { return a | b; });
        })
        .Case<arith::XOrIOp>([&](auto) {
          step = intBin([](int64_t a, int64_t b) { return a ^ b; });
        })
        .Case<arith::FloorDivSIOp, arith::DivSIOp, arith::RemSIOp>(
            [&](Operation *o) {
              int kind = isa<arith::FloorDivSIOp>(o) ? 0
                         : isa<arith::DivSIOp>(o)    ? 1
                                                     : 2;
              step = [=](Slots &s, const Env &) {
                int64_t a = s[in[0]].i, b = s[in[1]].i;
                if (b == 0)
                  return std::string("division by zero: ") + std::to_string(a) +
                         " divided by 0";
                if (a == std::numeric_limits<int64_t>::min() && b == -1)
                  return std::string("integer overflow in division");
                int64_t q = a / b, rem = a % b;
                if (kind == 0 && rem != 0 && ((rem < 0) != (b < 0)))
                  --q;
                s[r] = mkInt(kind == 2 ? rem : q);
                return std::string();
              };
            })
        .Case<arith::CmpIOp>([&](arith::CmpIOp c) {
          auto p = c.getPredicate();
          step = [=](Slots &s, const Env &) {
            s[r] = mkInt(cmpI(p, s[in[0]].i, s[in[1]].i) ? 1 : 0);
            return std::string();
          };
        })
        .Case<arith::CmpFOp>([&](arith::CmpFOp c) {
          auto p = c.getPredicate();
          step = [=](Slots &s, const Env &) {
            s[r] = mkInt(cmpF(p, s[in[0]].f, s[in[1]].f) ? 1 : 0);
            return std::string();
          };
        })
        .Case<arith::SelectOp>([&](auto) {
          step = [=](Slots &s, const Env &) {
            s[r] = s[in[0]].i ? s[in[1]] : s[in[2]];
            return std::string();
          };
        })
        .Case<arith::SIToFPOp>([&](auto) {
          step = [=](Slots &s, const Env &) {
            s[r] = mkFloat(static_cast<double>(s[in[0]].i));
            return std::string();
          };
        })
        .Case<arith::ExtFOp>([&](auto) {
          step = [=](Slots &s, const Env &) {
            s[r] = s[in[0]];
            return std::string();
          };
        })
        .Case<arith::ExtSIOp>([&](auto) {
          step = [=](Slots &s, const Env &) {
            s[r] = mkInt(s[in[0]].i);
            return std::string();
          };
        })
        .Case<arith::AddFOp>([&](auto) {
          step = fBin([](double a, double b) { return a + b; });
        })
        .Case<arith::SubFOp>([&](auto) {
          step = fBin([](double a, double b) { return a - b; });
        })
        .Case<arith::MulFOp>([&](auto) {
          step = fBin([](double a, double b) { return a * b; });
        })
        .Case<arith::DivFOp>([&](auto) {
          step = fBin([](double a, double b) { return a / b; });
        })
        .Case<arith::MinimumFOp>([&](auto) {
          step = fBin([](double a, double b) {
            return std::isnan(a) || std::isnan(b)
                       ? std::numeric_limits<double>::quiet_NaN()
                       : std::min(a, b);
          });
        })
        .Case<arith::MaximumFOp>([&](auto) {
          step = fBin([](double a, double b) {
            return std::isnan(a) || std::isnan(b)
                       ? std::numeric_limits<double>::quiet_NaN()
                       : std::max(a, b);
          });
        })
        .Case<math::PowFOp>([&](auto) {
          step = fBin([](double a, double b) { return std::pow(a, b); });
        })
        .Case<arith::NegFOp>(
            [&](auto) { step = fUn([](double a) { return -a; }); })
        .Case<math::ExpOp>([&](auto) { step = fUn(std::exp); })
        .Case<math::LogOp>([&](auto) { step = fUn(std::log); })
        .Case<math::Exp2Op>([&](auto) { step = fUn(std::exp2); })
        .Case<math::Log2Op>([&](auto) { step = fUn(std::log2); })
        .Case<math::SqrtOp>([&](auto) { step = fUn(std::sqrt); })
        .Case<math::TanhOp>([&](auto) { step = fUn(std::tanh); })
        .Case<math::AbsFOp>([&](auto) { step = fUn(std::fabs); })
        .Case<math::AbsIOp>([&](auto) {
          step = [=](Slots &s, const Env &) {
            int64_t v = s[in[0]].i;
            s[r] = mkInt(v < 0 ? -v : v);
            return std::string();
          };
        })
        .Case<DimOp>([&](DimOp d) {
          std::string name = d.getName().str();
          step = [=](Slots &s, const Env &env) {
            auto it = env.dims->find(name);
            if (it == env.dims->end())
              return "dim '" + name + "' is not bound";
            s[r] = mkInt(it->second);
            return std::string();
          };
        })
        .Case<GetParamOp>([&](GetParamOp g) {
          std::string name = g.getParam().str();
          bool wantInt = rt.isInteger(64);
          step = [=](Slots &s, const Env &env) {
            auto it = env.params->find(name);
            if (it == env.params->end())
              return "param '" + name + "' is not bound";
            ScalarValue v = it->second;
            s[r] = wantInt ? v : mkFloat(v.asDouble());
            return std::string();
          };
        })
        .Case<LoadOp>([&](LoadOp l) {
          std::string name = l.getInput().str();
          step = [=](Slots &s, const Env &env) {
            auto it = env.aux->find(name);
            if (it == env.aux->end())
              return "input '" + name + "' is not bound";
            const AuxTensor &t = it->second;
            int64_t flat = 0;
            for (size_t d = 0; d < in.size(); ++d) {
              int64_t idx = s[in[d]].i;
              if (idx < 0 || idx >= t.shape[d])
                return "index " + std::to_string(idx) +
                       " is out of range [0, " + std::to_string(t.shape[d]) +
                       ") in dim " + std::to_string(d) + " of input '" + name +
                       "'";
              flat = flat * t.shape[d] + idx;
            }
            s[r] = t.isInt ? mkInt(t.values.data<int64_t>()[flat])
                           : mkFloat(t.values.data<double>()[flat]);
            return std::string();
          };
        })
        .Default([&](Operation *o) {
          unsupported = o->getName().getStringRef().str();
        });
    if (!unsupported.empty())
      return "reference evaluator: unsupported op '" + unsupported + "' at " +
             loc;
    out.steps.push_back(std::move(step));
    out.stepLocs.push_back(loc);
  }
  out.slots.assign(next, ScalarValue());
  return "";
}

//===----------------------------------------------------------------------===//
// Evaluation
//===----------------------------------------------------------------------===//

/// Runs a zero-argument region (param default, scale, bias).
static std::string runConstantRegion(Region &region, const Env &env,
                                     ScalarValue &out) {
  Program p;
  std::string err = Program::build(region, p);
  if (!err.empty())
    return err;
  return p.run({}, env, out);
}

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

/// A copy of \p a widened to float64 (or int64, when \p asInt).
static std::string widen(const HostArray &a, HostArray &out,
                         bool asInt = false) {
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

/// The feature dimension Dphi of a feature map on Dqk-vectors (R: the rows
/// of a random map's projection), saturating at UINT64_MAX.
static uint64_t featureDim(FeatureMapKind kind, uint64_t dqk, uint64_t r) {
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

//===----------------------------------------------------------------------===//
// Linear attention: the recurrent form, one step at a time
//===----------------------------------------------------------------------===//

namespace {

/// A feature map φ: a Dqk-vector (one row of q or k) to a Dphi-vector.
struct FeatureMap {
  FeatureMapKind kind = FeatureMapKind::identity;
  int64_t dqk = 0;
  int64_t dphi = 0;
  /// random: the projection W [R, Dqk], row-major.
  const double *proj = nullptr;

  void apply(const double *x, double *out) const {
    const int64_t D = dqk;
    switch (kind) {
    case FeatureMapKind::identity:
      for (int64_t d = 0; d < D; ++d)
        out[d] = x[d];
      return;
    case FeatureMapKind::elu_plus_one:
      for (int64_t d = 0; d < D; ++d)
        out[d] = x[d] > 0 ? x[d] + 1.0 : std::exp(x[d]);
      return;
    case FeatureMapKind::relu:
      for (int64_t d = 0; d < D; ++d)
        out[d] = x[d] > 0 ? x[d] : 0.0;
      return;
    case FeatureMapKind::relu2:
      for (int64_t d = 0; d < D; ++d)
        out[d] = x[d] > 0 ? x[d] * x[d] : 0.0;
      return;
    case FeatureMapKind::sigmoid:
      for (int64_t d = 0; d < D; ++d)
        out[d] = 1.0 / (1.0 + std::exp(-x[d]));
      return;
    case FeatureMapKind::silu:
      for (int64_t d = 0; d < D; ++d)
        out[d] = x[d] / (1.0 + std::exp(-x[d]));
      return;
    case FeatureMapKind::exp:
      for (int64_t d = 0; d < D; ++d)
        out[d] = std::exp(x[d]);
      return;
    case FeatureMapKind::l2norm: {
      double ss = 0;
      for (int64_t d = 0; d < D; ++d)
        ss += x[d] * x[d];
      double n = std::sqrt(ss);
      for (int64_t d = 0; d < D; ++d)
        out[d] = n > 0 ? x[d] / n : 0.0; // the zero vector stays 0
      return;
    }
    case FeatureMapKind::pos_neg:
      for (int64_t d = 0; d < D; ++d) {
        out[d] = x[d];
        out[D + d] = -x[d];
      }
      return;
    case FeatureMapKind::taylor2: {
      // [1, x_a / D^(1/4), x_a^2 / sqrt(2D), x_a x_b / sqrt(D) (a < b)]:
      // φ(q)·φ(k) = 1 + q·k/sqrt(D) + (q·k)^2 / (2D).
      double r4 = std::pow(double(D), 0.25), s2 = std::sqrt(2.0 * double(D)),
             s1 = std::sqrt(double(D));
      out[0] = 1.0;
      for (int64_t a = 0; a < D; ++a) {
        out[1 + a] = x[a] / r4;
        out[1 + D + a] = x[a] * x[a] / s2;
      }
      int64_t f = 1 + 2 * D;
      for (int64_t a = 0; a < D; ++a)
        for (int64_t b = a + 1; b < D; ++b)
          out[f++] = x[a] * x[b] / s1;
      return;
    }
    case FeatureMapKind::random: {
      // x' = x / D^(1/4); φ_r = exp(w_r·x' - ||x'||^2 / 2) / sqrt(R).
      double r4 = std::pow(double(D), 0.25), n2 = 0;
      for (int64_t d = 0; d < D; ++d)
        n2 += (x[d] / r4) * (x[d] / r4);
      const double *W = proj;
      for (int64_t r = 0; r < dphi; ++r) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d)
          dot += W[r * D + d] * (x[d] / r4);
        out[r] = std::exp(dot - 0.5 * n2) / std::sqrt(double(dphi));
      }
      return;
    }
    }
  }
};

} // namespace

static std::string evaluateLinear(LinearAttentionOp lin, const Env &env,
                                  const double *q, const double *k,
                                  const double *v, ReferenceOutputs &out) {
  const DimBinding &dims = *env.dims;
  int64_t B = dims.at("B"), Hq = dims.at("Hq"), Hkv = dims.at("Hkv"),
          N = dims.at("N"), M = dims.at("M"), Dqk = dims.at("Dqk"),
          Dv = dims.at("Dv"), G = dims.at("G");
  bool causal = !lin.getNoncausal();
  if (causal && N != M)
    return "causal linear attention needs N == M (got N=" + std::to_string(N) +
           ", M=" + std::to_string(M) + ")";

  std::string err;
  double scale = 1.0 / std::sqrt(static_cast<double>(Dqk));
  if (!lin.getScale().empty()) {
    ScalarValue s;
    if (!(err = runConstantRegion(lin.getScale(), env, s)).empty())
      return "scale: " + err;
    scale = s.asDouble();
  }

  // Feature maps. The verifier makes the q and k maps agree whenever they
  // change the dimension, so both give the same Dphi.
  FeatureMap phiQ, phiK;
  phiQ.kind = lin.getFeatureMapQ();
  phiK.kind = lin.getFeatureMapK();
  const double *proj = nullptr;
  int64_t R = 0;
  if (auto p = lin.getProjectionAttr()) {
    std::string name = p.getValue().str();
    auto it = env.aux->find(name);
    if (it == env.aux->end())
      return "projection input '" + name + "' is not bound";
    const AuxTensor &w = it->second;
    if (w.isInt || w.shape.size() != 2 || w.shape[1] != Dqk)
      return "projection input '" + name +
             "' must be f32 [R, Dqk] with Dqk=" + std::to_string(Dqk);
    proj = w.values.data<double>();
    R = w.shape[0];
  }
  for (FeatureMap *f : {&phiQ, &phiK}) {
    f->dqk = Dqk;
    f->proj = proj;
    // Within the budget checked before (the state alone is Dphi x Dv).
    f->dphi = static_cast<int64_t>(std::min<uint64_t>(
        featureDim(f->kind, Dqk, R), std::numeric_limits<int64_t>::max()));
  }
  if (phiQ.dphi != phiK.dphi)
    return "the q and k feature maps give different feature dimensions (" +
           std::to_string(phiQ.dphi) + " and " + std::to_string(phiK.dphi) +
           ")";
  const int64_t Dphi = phiQ.dphi;
  if (Dphi <= 0)
    return "the feature dimension is 0 (projection with R=0 rows?)";

  Program gateProg, betaProg, bonusProg;
  bool hasGate = !lin.getGate().empty(), hasBeta = !lin.getBeta().empty(),
       hasBonus = !lin.getBonus().empty();
  if (hasGate && !(err = Program::build(lin.getGate(), gateProg)).empty())
    return err;
  if (hasBeta && !(err = Program::build(lin.getBeta(), betaProg)).empty())
    return err;
  if (hasBonus && !(err = Program::build(lin.getBonus(), bonusProg)).empty())
    return err;
  bool vectorGate = hasGate && lin.hasVectorGate();
  bool exclusive = lin.getExclusive(), normalize = lin.getNormalize();

  if (!(err = HostArray::allocate(::attn::DType::F64, {B, Hq, N, Dv}, out.o))
           .empty())
    return "reference evaluator: o: " + err;
  double *o = out.o.data<double>();
  // The state S [Dphi, Dv] is the big one (Dphi grows as Dqk^2 for taylor2).
  HostArray state;
  if (!(err = HostArray::allocate(::attn::DType::F64, {Dphi, Dv}, state))
           .empty())
    return "reference evaluator: the recurrent state: " + err;
  double *S = state.data<double>();
  const int64_t stateSize = Dphi * Dv;
  std::vector<double> z(Dphi), fq(Dphi), fk(Dphi), g(Dphi), u(Dphi, 0.0),
      num(Dv), corr(Dv);

  // o = φq^T S (+ c v_t), scaled, or divided by φq·z (+ c); 0 when that
  // denominator is 0.
  auto readout = [&](double *oi, double c, const double *vt) {
    for (int64_t e = 0; e < Dv; ++e)
      num[e] = vt ? c * vt[e] : 0.0;
    double den = vt ? c : 0.0;
    for (int64_t d = 0; d < Dphi; ++d) {
      const double *Sd = &S[d * Dv];
      for (int64_t e = 0; e < Dv; ++e)
        num[e] += fq[d] * Sd[e];
      den += fq[d] * z[d];
    }
    for (int64_t e = 0; e < Dv; ++e)
      oi[e] = normalize ? (den != 0 ? num[e] / den : 0.0) : scale * num[e];
  };

  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < Hq; ++h) {
      int64_t hk = h / G;
      auto where = [&](int64_t t, int64_t d) {
        std::string s = " [b=" + std::to_string(b) +
                        ", h=" + std::to_string(h) + ", t=" + std::to_string(t);
        if (d >= 0)
          s += ", d=" + std::to_string(d);
        return s + "]";
      };
      const double *kb = &k[(b * Hkv + hk) * M * Dqk];
      const double *vb = &v[(b * Hkv + hk) * M * Dv];
      const double *qb = &q[(b * Hq + h) * N * Dqk];
      double *ob = &o[(b * Hq + h) * N * Dv];
      std::fill(S, S + stateSize, 0.0);
      std::fill(z.begin(), z.end(), 0.0);
      if (hasBonus) {
        for (int64_t d = 0; d < Dphi; ++d) {
          ScalarValue args[2] = {mkInt(h), mkInt(d)}, r;
          if (!(err = bonusProg.run(args, env, r)).empty())
            return "bonus: " + err + " [h=" + std::to_string(h) +
                   ", d=" + std::to_string(d) + "]";
          u[d] = r.asDouble();
        }
      }

      if (!causal) {
        // Every query reads the state after all M keys.
        for (int64_t j = 0; j < M; ++j) {
          phiK.apply(&kb[j * Dqk], fk.data());
          for (int64_t d = 0; d < Dphi; ++d) {
            for (int64_t e = 0; e < Dv; ++e)
              S[d * Dv + e] += fk[d] * vb[j * Dv + e];
            z[d] += fk[d];
          }
        }
        for (int64_t t = 0; t < N; ++t) {
          phiQ.apply(&qb[t * Dqk], fq.data());
          readout(&ob[t * Dv], 0.0, nullptr);
        }
        continue;
      }

      for (int64_t t = 0; t < N; ++t) {
        const double *vt = &vb[t * Dv];
        phiQ.apply(&qb[t * Dqk], fq.data());
        phiK.apply(&kb[t * Dqk], fk.data());

        // Exclusive readout: the state before this step, plus the bonus
        // term (φq ⊙ u)·φk v_t.
        if (exclusive) {
          double c = 0;
          for (int64_t d = 0; d < Dphi; ++d)
            c += fq[d] * u[d] * fk[d];
          readout(&ob[t * Dv], c, vt);
        }

        // Decay: S = diag(g) S, z = g ⊙ z, g = exp(log gate).
        if (hasGate) {
          for (int64_t d = 0; d < (vectorGate ? Dphi : 1); ++d) {
            ScalarValue args[4] = {mkInt(b), mkInt(h), mkInt(t), mkInt(d)}, r;
            if (!(err = gateProg.run(args, env, r)).empty())
              return "gate: " + err + where(t, vectorGate ? d : -1);
            g[d] = std::exp(r.asDouble());
          }
          if (!vectorGate)
            std::fill(g.begin() + 1, g.end(), g[0]);
          for (int64_t d = 0; d < Dphi; ++d) {
            for (int64_t e = 0; e < Dv; ++e)
              S[d * Dv + e] *= g[d];
            z[d] *= g[d];
          }
        }

        // Update: the delta rule S += β φk (v - S^T φk)^T, or S += φk v^T.
        if (hasBeta) {
          ScalarValue args[3] = {mkInt(b), mkInt(h), mkInt(t)}, r;
          if (!(err = betaProg.run(args, env, r)).empty())
            return "beta: " + err + where(t, -1);
          double beta = r.asDouble();
          for (int64_t e = 0; e < Dv; ++e) {
            double pred = 0;
            for (int64_t d = 0; d < Dphi; ++d)
              pred += S[d * Dv + e] * fk[d];
            corr[e] = beta * (vt[e] - pred);
          }
        } else {
          for (int64_t e = 0; e < Dv; ++e)
            corr[e] = vt[e];
        }
        for (int64_t d = 0; d < Dphi; ++d) {
          for (int64_t e = 0; e < Dv; ++e)
            S[d * Dv + e] += fk[d] * corr[e];
          z[d] += fk[d];
        }

        if (!exclusive)
          readout(&ob[t * Dv], 0.0, nullptr);
      }
    }
  }
  return "";
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
    m.scratch = saturatingMul(M, 9); // a row of scores and of visibility
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
  const double *q = wideQ.data<double>(), *k = wideK.data<double>(),
               *v = wideV.data<double>();
  AttentionOp att = spec.getAttention();
  if (!att) {
    LinearAttentionOp lin = spec.getLinearAttention();
    if (!lin)
      return "spec '" + spec.getSymName().str() + "' has no attention op";
    return evaluateLinear(lin, env, q, k, v, out);
  }
  int64_t B = dims.at("B"), Hq = dims.at("Hq"), N = dims.at("N"),
          M = dims.at("M"), Dqk = dims.at("Dqk"), Dv = dims.at("Dv"),
          G = dims.at("G");

  double scale = 1.0 / std::sqrt(static_cast<double>(Dqk));
  if (!att.getScale().empty()) {
    ScalarValue v;
    err = runConstantRegion(att.getScale(), env, v);
    if (!err.empty())
      return "scale: " + err;
    scale = v.asDouble();
  }
  double bias = 0;
  if (!att.getBias().empty()) {
    ScalarValue v;
    err = runConstantRegion(att.getBias(), env, v);
    if (!err.empty())
      return "sigmoid bias: " + err;
    bias = v.asDouble();
  }
  Program maskProg, scoreProg;
  bool hasMask = !att.getMask().empty(), hasScore = !att.getScore().empty();
  if (hasMask && !(err = Program::build(att.getMask(), maskProg)).empty())
    return err;
  if (hasScore && !(err = Program::build(att.getScore(), scoreProg)).empty())
    return err;

  int64_t Hkv = dims.at("Hkv");
  if (!(err = HostArray::allocate(::attn::DType::F64, {B, Hq, N, Dv}, out.o))
           .empty())
    return "reference evaluator: o: " + err;
  NormalizerKind kind = att.getNormalizer();
  bool isSoftmax = kind == NormalizerKind::softmax;
  if (isSoftmax &&
      !(err = HostArray::allocate(::attn::DType::F64, {B, Hq, N}, out.lse))
           .empty())
    return "reference evaluator: lse: " + err;
  double *o = out.o.data<double>();
  int64_t power = att.getReluPower();
  bool rowNormalize = att.getRowNormalize();

  std::vector<double> p(M);
  std::vector<char> visible(M);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < Hq; ++h) {
      int64_t hk = h / G;
      const double *kb = &k[((b * Hkv + hk) * M) * Dqk];
      const double *vb = &v[((b * Hkv + hk) * M) * Dv];
      for (int64_t i = 0; i < N; ++i) {
        const double *qi = &q[((b * Hq + h) * N + i) * Dqk];
        auto where = [&](int64_t j) {
          return " [b=" + std::to_string(b) + ", h=" + std::to_string(h) +
                 ", q_idx=" + std::to_string(i) +
                 ", kv_idx=" + std::to_string(j) + "]";
        };
        double rowMax = -std::numeric_limits<double>::infinity();
        bool any = false, anyNaN = false;
        for (int64_t j = 0; j < M; ++j) {
          ScalarValue idx[5] = {mkFloat(0), mkInt(b), mkInt(h), mkInt(i),
                                mkInt(j)};
          bool vis = true;
          if (hasMask) {
            ScalarValue m;
            err = maskProg.run(llvm::ArrayRef(idx + 1, 4), env, m);
            if (!err.empty())
              return "mask: " + err + where(j);
            vis = m.i != 0;
          }
          visible[j] = vis;
          if (!vis) {
            p[j] = 0;
            continue;
          }
          double x = 0;
          for (int64_t d = 0; d < Dqk; ++d)
            x += qi[d] * kb[j * Dqk + d];
          x *= scale;
          if (hasScore) {
            idx[0] = mkFloat(x);
            ScalarValue s;
            err = scoreProg.run(idx, env, s);
            if (!err.empty())
              return "score: " + err + where(j);
            x = s.asDouble();
          }
          p[j] = x;
          any = true;
          rowMax = std::max(rowMax, x);
          anyNaN |= std::isnan(x); // std::max would drop it
        }
        double *oi = &o[((b * Hq + h) * N + i) * Dv];
        double denom = 1;
        switch (kind) {
        case NormalizerKind::softmax: {
          double sum = 0;
          if (anyNaN) {
            // A NaN score makes the whole row's softmax NaN (IEEE, as
            // torch.softmax): o and lse are NaN, not an empty row.
            double nan = std::numeric_limits<double>::quiet_NaN();
            out.lse.data<double>()[(b * Hq + h) * N + i] = nan;
            std::fill(oi, oi + Dv, nan);
            continue;
          }
          // A row with no visible key, or only -inf scores, is all zeros.
          if (any && rowMax != -std::numeric_limits<double>::infinity()) {
            for (int64_t j = 0; j < M; ++j)
              if (visible[j]) {
                p[j] = std::exp(p[j] - rowMax);
                sum += p[j];
              }
          } else {
            std::fill(p.begin(), p.end(), 0.0);
          }
          out.lse.data<double>()[(b * Hq + h) * N + i] =
              sum > 0 ? rowMax + std::log(sum)
                      : -std::numeric_limits<double>::infinity();
          denom = sum > 0 ? sum : 1;
          break;
        }
        case NormalizerKind::sigmoid:
          for (int64_t j = 0; j < M; ++j)
            if (visible[j])
              p[j] = 1.0 / (1.0 + std::exp(-(p[j] + bias)));
          break;
        case NormalizerKind::relu: {
          double sum = 0;
          for (int64_t j = 0; j < M; ++j)
            if (visible[j]) {
              double r = std::max(p[j], 0.0);
              p[j] = std::pow(r, static_cast<double>(power));
              sum += p[j];
            }
          if (rowNormalize)
            denom = sum > 0 ? sum : 1;
          break;
        }
        case NormalizerKind::none:
          break;
        }
        for (int64_t j = 0; j < M; ++j) {
          if (!visible[j] || p[j] == 0)
            continue;
          double w = p[j] / denom;
          for (int64_t d = 0; d < Dv; ++d)
            oi[d] += w * vb[j * Dv + d];
        }
      }
    }
  }
  return "";
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
