//===- RegionProgram.cpp - attn regions as scalar programs ----------------===//
//
// Forward steps compute a slot from earlier slots; each float step also gets
// an adjoint that adds its result's adjoint to its operands'. Floats are
// evaluated in double whatever their IR type: the oracle states the math,
// not a kernel's rounding.
//
//===----------------------------------------------------------------------===//

#include "RegionProgram.h"
#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/TypeSwitch.h"
#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::reference;

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

ScalarValue mlir::attn::reference::mkInt(int64_t v) {
  ScalarValue s;
  s.isInt = true;
  s.i = v;
  return s;
}
ScalarValue mlir::attn::reference::mkFloat(double v) {
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
    Adjoint adjoint;
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
    // Gradients: `d` gives (dr/da, dr/db) at (a, b, r), or dr/da at (a, r).
    using BinGrad =
        std::function<std::pair<double, double>(double, double, double)>;
    auto fBinGrad = [&](BinGrad d) {
      adjoint = [=](const Slots &s, std::vector<double> &adj, const Env &) {
        double g = adj[r];
        auto [da, db] = d(s[in[0]].f, s[in[1]].f, s[r].f);
        adj[in[0]] += g * da;
        adj[in[1]] += g * db;
      };
    };
    auto fUnGrad = [&](std::function<double(double, double)> d) {
      adjoint = [=](const Slots &s, std::vector<double> &adj, const Env &) {
        adj[in[0]] += adj[r] * d(s[in[0]].f, s[r].f);
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
          if (isa<FloatType>(rt)) // the taken branch gets it (torch.where)
            adjoint = [=](const Slots &s, std::vector<double> &adj,
                          const Env &) {
              adj[s[in[0]].i ? in[1] : in[2]] += adj[r];
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
          fUnGrad([](double, double) { return 1.0; });
        })
        .Case<arith::ExtSIOp>([&](auto) {
          step = [=](Slots &s, const Env &) {
            s[r] = mkInt(s[in[0]].i);
            return std::string();
          };
        })
        .Case<arith::AddFOp>([&](auto) {
          step = fBin([](double a, double b) { return a + b; });
          fBinGrad([](double, double, double) { return std::pair(1.0, 1.0); });
        })
        .Case<arith::SubFOp>([&](auto) {
          step = fBin([](double a, double b) { return a - b; });
          fBinGrad([](double, double, double) { return std::pair(1.0, -1.0); });
        })
        .Case<arith::MulFOp>([&](auto) {
          step = fBin([](double a, double b) { return a * b; });
          fBinGrad([](double a, double b, double) { return std::pair(b, a); });
        })
        .Case<arith::DivFOp>([&](auto) {
          step = fBin([](double a, double b) { return a / b; });
          fBinGrad([](double a, double b, double) {
            return std::pair(1.0 / b, -a / (b * b));
          });
        })
        .Case<arith::MinimumFOp>([&](auto) {
          step = fBin([](double a, double b) {
            return std::isnan(a) || std::isnan(b)
                       ? std::numeric_limits<double>::quiet_NaN()
                       : std::min(a, b);
          });
          // torch.minimum: a tie splits the gradient evenly.
          fBinGrad([](double a, double b, double) {
            return std::pair(a == b ? 0.5 : (a > b ? 0.0 : 1.0),
                             a == b ? 0.5 : (b > a ? 0.0 : 1.0));
          });
        })
        .Case<arith::MaximumFOp>([&](auto) {
          step = fBin([](double a, double b) {
            return std::isnan(a) || std::isnan(b)
                       ? std::numeric_limits<double>::quiet_NaN()
                       : std::max(a, b);
          });
          // torch.maximum: a tie splits the gradient evenly.
          fBinGrad([](double a, double b, double) {
            return std::pair(a == b ? 0.5 : (a < b ? 0.0 : 1.0),
                             a == b ? 0.5 : (b < a ? 0.0 : 1.0));
          });
        })
        .Case<math::PowFOp>([&](auto) {
          step = fBin([](double a, double b) { return std::pow(a, b); });
          // torch.pow: 0 for exponent 0, and for base 0 with exponent >= 0.
          fBinGrad([](double a, double b, double r) {
            double da = b == 0 ? 0.0 : b * std::pow(a, b - 1);
            double db = a == 0 && b >= 0 ? 0.0 : r * std::log(a);
            return std::pair(da, db);
          });
        })
        .Case<arith::NegFOp>([&](auto) {
          step = fUn([](double a) { return -a; });
          fUnGrad([](double, double) { return -1.0; });
        })
        .Case<math::ExpOp>([&](auto) {
          step = fUn(std::exp);
          fUnGrad([](double, double r) { return r; });
        })
        .Case<math::LogOp>([&](auto) {
          step = fUn(std::log);
          fUnGrad([](double a, double) { return 1.0 / a; });
        })
        .Case<math::Exp2Op>([&](auto) {
          step = fUn(std::exp2);
          fUnGrad([](double, double r) { return r * M_LN2; });
        })
        .Case<math::Log2Op>([&](auto) {
          step = fUn(std::log2);
          fUnGrad([](double a, double) { return 1.0 / (a * M_LN2); });
        })
        .Case<math::SqrtOp>([&](auto) {
          step = fUn(std::sqrt);
          fUnGrad([](double, double r) { return 0.5 / r; });
        })
        .Case<math::TanhOp>([&](auto) {
          step = fUn(std::tanh);
          fUnGrad([](double, double r) { return 1.0 - r * r; });
        })
        .Case<math::AbsFOp>([&](auto) {
          step = fUn(std::fabs);
          // torch.abs: sign(a), 0 at 0.
          fUnGrad([](double a, double) {
            return a > 0 ? 1.0 : (a < 0 ? -1.0 : 0.0);
          });
        })
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
          if (isa<FloatType>(rt))
            adjoint = [=](const Slots &s, std::vector<double> &adj,
                          const Env &env) {
              if (!env.auxGrads)
                return;
              auto g = env.auxGrads->find(name);
              if (g == env.auxGrads->end())
                return;
              // run() checked every index, and the slots still hold them.
              const AuxTensor &t = env.aux->at(name);
              int64_t flat = 0;
              for (size_t d = 0; d < in.size(); ++d)
                flat = flat * t.shape[d] + s[in[d]].i;
              g->second[flat] += adj[r];
            };
        })
        .Default([&](Operation *o) {
          unsupported = o->getName().getStringRef().str();
        });
    if (!unsupported.empty())
      return "reference evaluator: unsupported op '" + unsupported + "' at " +
             loc;
    out.steps.push_back(std::move(step));
    out.adjoints.push_back(std::move(adjoint));
    out.stepLocs.push_back(loc);
  }
  out.numArgs = block.getNumArguments();
  out.slots.assign(next, ScalarValue());
  out.adj.assign(next, 0.0);
  return "";
}

std::string Program::run(llvm::ArrayRef<ScalarValue> args, const Env &env,
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

void Program::backward(double seed, const Env &env,
                       llvm::MutableArrayRef<double> argAdjoints) {
  std::fill(adj.begin(), adj.end(), 0.0);
  adj[resultSlot] = seed;
  for (size_t s = steps.size(); s-- > 0;)
    if (adjoints[s])
      adjoints[s](slots, adj, env);
  for (unsigned a = 0; a < numArgs && a < argAdjoints.size(); ++a)
    argAdjoints[a] += adj[a];
}

std::string mlir::attn::reference::runConstantRegion(Region &region,
                                                     const Env &env,
                                                     ScalarValue &out) {
  Program p;
  std::string err = Program::build(region, p);
  if (!err.empty())
    return err;
  return p.run({}, env, out);
}

//===----------------------------------------------------------------------===//
// Evaluation
