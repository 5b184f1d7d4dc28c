//===- ReferenceEvaluatorTest.cpp - the float64 reference vs a naive loop -===//
//
// Each test builds a spec from text with the driver API, runs
// evaluateReference on small hand-built inputs and compares o and lse with a
// naive triple loop written here in plain C++ (double): the dot product, the
// mask and score as C++ lambdas, the normalizer from its definition in
// docs/language.md. Nothing here calls the evaluator to compute an expected
// value. Error cases check that the message names what went wrong.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/Driver.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>

using namespace mlir;
using namespace mlir::attn;
using ::attn::DType;
using ::attn::HostArray;

namespace {

constexpr double kTol = 1e-12;
constexpr double kInf = std::numeric_limits<double>::infinity();

//===----------------------------------------------------------------------===//
// Loading specs
//===----------------------------------------------------------------------===//

/// A spec loaded from text, with the context and source it lives in.
struct Loaded {
  std::string text;
  MLIRContext ctx;
  llvm::SourceMgr sourceMgr;
  OwningOpRef<ModuleOp> module;
  SpecOp spec;
  std::string diagnostics;
};

std::unique_ptr<Loaded> load(const std::string &text,
                             const std::vector<std::string> &params = {}) {
  auto l = std::make_unique<Loaded>();
  l->text = text;
  unsigned id = l->sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBuffer(l->text, "<test>"), llvm::SMLoc());
  ScopedDiagnosticHandler handler(&l->ctx, [&](Diagnostic &d) {
    l->diagnostics += d.str() + "\n";
    return success();
  });
  std::string paramError;
  l->module = loadSpec(l->ctx, l->sourceMgr, id, params, paramError);
  EXPECT_EQ(paramError, "");
  EXPECT_TRUE(l->module) << "spec did not load:\n" << l->diagnostics << text;
  if (!l->module)
    return nullptr;
  l->spec = getSpec(*l->module);
  return l;
}

//===----------------------------------------------------------------------===//
// Inputs
//===----------------------------------------------------------------------===//

struct Shape {
  int64_t B = 1, Hq = 2, Hkv = 2, N = 5, M = 5, Dqk = 4, Dv = 3;
};

HostArray randomArray(DType dtype, std::vector<int64_t> shape,
                      std::mt19937_64 &rng) {
  HostArray a = HostArray::zeros(dtype, std::move(shape));
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  for (int64_t i = 0, n = a.numel(); i < n; ++i)
    a.setDouble(i, dist(rng));
  return a;
}

std::map<std::string, HostArray> makeQKV(const Shape &s, uint64_t seed,
                                         DType dtype = DType::F64) {
  std::mt19937_64 rng(seed);
  std::map<std::string, HostArray> in;
  in["q"] = randomArray(dtype, {s.B, s.Hq, s.N, s.Dqk}, rng);
  in["k"] = randomArray(dtype, {s.B, s.Hkv, s.M, s.Dqk}, rng);
  in["v"] = randomArray(dtype, {s.B, s.Hkv, s.M, s.Dv}, rng);
  return in;
}

//===----------------------------------------------------------------------===//
// The naive oracle
//===----------------------------------------------------------------------===//

enum class Norm { Softmax, Sigmoid, Relu, None };

struct Oracle {
  /// Visible (b, h, i, j); null means every key is visible.
  std::function<bool(int64_t, int64_t, int64_t, int64_t)> mask;
  /// s_ij from x_ij = scale * q.k and the indices; null means s = x.
  std::function<double(double, int64_t, int64_t, int64_t, int64_t)> score;
  /// NaN means the default 1 / sqrt(Dqk).
  double scale = std::numeric_limits<double>::quiet_NaN();
  Norm norm = Norm::Softmax;
  double bias = 0;
  int power = 1;
  bool normalize = false;
};

struct Expected {
  std::vector<double> o;   ///< [B, Hq, N, Dv]
  std::vector<double> lse; ///< [B, Hq, N], softmax only
};

Expected naive(const Oracle &spec, const std::map<std::string, HostArray> &in) {
  const HostArray &q = in.at("q"), &k = in.at("k"), &v = in.at("v");
  int64_t B = q.shape[0], Hq = q.shape[1], N = q.shape[2], Dqk = q.shape[3];
  int64_t Hkv = k.shape[1], M = k.shape[2], Dv = v.shape[3];
  int64_t groupSize = Hq / Hkv;
  double scale =
      std::isnan(spec.scale) ? 1.0 / std::sqrt(double(Dqk)) : spec.scale;
  Expected e;
  e.o.assign(B * Hq * N * Dv, 0.0);
  if (spec.norm == Norm::Softmax)
    e.lse.assign(B * Hq * N, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < Hq; ++h) {
      int64_t hk = h / groupSize;
      for (int64_t i = 0; i < N; ++i) {
        std::vector<double> s(M, 0.0), w(M, 0.0);
        std::vector<bool> visible(M, true);
        for (int64_t j = 0; j < M; ++j) {
          visible[j] = !spec.mask || spec.mask(b, h, i, j);
          if (!visible[j])
            continue;
          double dot = 0;
          for (int64_t d = 0; d < Dqk; ++d)
            dot += q.getDouble(((b * Hq + h) * N + i) * Dqk + d) *
                   k.getDouble(((b * Hkv + hk) * M + j) * Dqk + d);
          double x = scale * dot;
          s[j] = spec.score ? spec.score(x, b, h, i, j) : x;
        }
        switch (spec.norm) {
        case Norm::Softmax: {
          // Inputs are small, so the plain definition does not overflow.
          double sum = 0;
          for (int64_t j = 0; j < M; ++j)
            if (visible[j])
              sum += std::exp(s[j]);
          for (int64_t j = 0; j < M; ++j)
            if (visible[j])
              w[j] = std::exp(s[j]) / sum;
          e.lse[(b * Hq + h) * N + i] = sum > 0 ? std::log(sum) : -kInf;
          break;
        }
        case Norm::Sigmoid:
          for (int64_t j = 0; j < M; ++j)
            if (visible[j])
              w[j] = 1.0 / (1.0 + std::exp(-(s[j] + spec.bias)));
          break;
        case Norm::Relu: {
          double total = 0;
          for (int64_t j = 0; j < M; ++j) {
            if (!visible[j])
              continue;
            double r = s[j] > 0 ? s[j] : 0.0, p = 1;
            for (int n = 0; n < spec.power; ++n)
              p *= r;
            w[j] = p;
            total += p;
          }
          if (spec.normalize)
            for (int64_t j = 0; j < M; ++j)
              w[j] = total > 0 ? w[j] / total : 0.0;
          break;
        }
        case Norm::None:
          for (int64_t j = 0; j < M; ++j)
            if (visible[j])
              w[j] = s[j];
          break;
        }
        for (int64_t d = 0; d < Dv; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < M; ++j)
            acc += w[j] * v.getDouble(((b * Hkv + hk) * M + j) * Dv + d);
          e.o[((b * Hq + h) * N + i) * Dv + d] = acc;
        }
      }
    }
  }
  return e;
}

//===----------------------------------------------------------------------===//
// Comparison
//===----------------------------------------------------------------------===//

/// Runs the evaluator, expecting success.
ReferenceOutputs run(const Loaded &l,
                     const std::map<std::string, HostArray> &inputs) {
  ReferenceOutputs out;
  std::string err = evaluateReference(l.spec, inputs, out);
  EXPECT_EQ(err, "");
  return out;
}

/// Runs the evaluator, expecting an error; returns the message.
std::string runError(const Loaded &l,
                     const std::map<std::string, HostArray> &inputs) {
  ReferenceOutputs out;
  std::string err = evaluateReference(l.spec, inputs, out);
  EXPECT_NE(err, "") << "expected an error";
  return err;
}

void expectMatches(const ReferenceOutputs &out, const Expected &want,
                   const Shape &s) {
  ASSERT_EQ(out.o.dtype, DType::F64);
  ASSERT_EQ(out.o.shape, (std::vector<int64_t>{s.B, s.Hq, s.N, s.Dv}));
  const double *o = out.o.data<double>();
  for (size_t i = 0; i < want.o.size(); ++i) {
    ASSERT_FALSE(std::isnan(o[i])) << "o[" << i << "] is NaN";
    EXPECT_NEAR(o[i], want.o[i], kTol) << "o[" << i << "]";
  }
  if (want.lse.empty()) {
    EXPECT_TRUE(out.lse.bytes.empty()) << "only softmax has an lse output";
    return;
  }
  ASSERT_EQ(out.lse.dtype, DType::F64);
  ASSERT_EQ(out.lse.shape, (std::vector<int64_t>{s.B, s.Hq, s.N}));
  const double *lse = out.lse.data<double>();
  for (size_t i = 0; i < want.lse.size(); ++i) {
    ASSERT_FALSE(std::isnan(lse[i])) << "lse[" << i << "] is NaN";
    if (std::isinf(want.lse[i]))
      EXPECT_EQ(lse[i], want.lse[i]) << "lse[" << i << "]";
    else
      EXPECT_NEAR(lse[i], want.lse[i], kTol) << "lse[" << i << "]";
  }
}

/// Loads `text`, runs it on `inputs` and compares with the oracle.
void check(const std::string &text, const Oracle &oracle, const Shape &s,
           const std::map<std::string, HostArray> &inputs,
           const std::vector<std::string> &params = {}) {
  auto l = load(text, params);
  ASSERT_TRUE(l);
  ReferenceOutputs out = run(*l, inputs);
  expectMatches(out, naive(oracle, inputs), s);
}

bool causal(int64_t N, int64_t M, int64_t i, int64_t j) {
  return j <= i + M - N;
}

//===----------------------------------------------------------------------===//
// Softmax, masks, shapes
//===----------------------------------------------------------------------===//

TEST(ReferenceEvaluator, DenseSoftmax) {
  Shape s{2, 3, 3, 5, 7, 4, 3};
  check("attention dense {}", Oracle{}, s, makeQKV(s, 1));
}

TEST(ReferenceEvaluator, DenseSoftmaxFloat32Inputs) {
  // float32 q, k, v are widened exactly; the oracle reads the same values.
  Shape s{1, 2, 2, 6, 4, 8, 8};
  check("attention dense {}", Oracle{}, s, makeQKV(s, 2, DType::F32));
}

TEST(ReferenceEvaluator, CausalMoreKeysThanQueries) {
  // M > N: query i sits at absolute position i + M - N (bottom-right).
  Shape s{1, 2, 2, 3, 7, 4, 2};
  Oracle o;
  o.mask = [&](int64_t, int64_t, int64_t i, int64_t j) {
    return causal(s.N, s.M, i, j);
  };
  check("attention c { mask = causal }", o, s, makeQKV(s, 3));
}

TEST(ReferenceEvaluator, CausalFewerKeysThanQueries) {
  // M < N: the first N - M queries see no key: o = 0, lse = -inf, no NaN.
  Shape s{2, 2, 1, 7, 3, 4, 5};
  Oracle o;
  o.mask = [&](int64_t, int64_t, int64_t i, int64_t j) {
    return causal(s.N, s.M, i, j);
  };
  auto inputs = makeQKV(s, 4);
  auto l = load("attention c { mask = causal }");
  ASSERT_TRUE(l);
  ReferenceOutputs out = run(*l, inputs);
  expectMatches(out, naive(o, inputs), s);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.Hq; ++h)
      for (int64_t i = 0; i < s.N; ++i) {
        double lse = out.lse.data<double>()[(b * s.Hq + h) * s.N + i];
        bool empty = i < s.N - s.M;
        EXPECT_EQ(std::isinf(lse) && lse < 0, empty) << "row " << i;
        for (int64_t d = 0; d < s.Dv && empty; ++d)
          EXPECT_EQ(out.o.data<double>()[((b * s.Hq + h) * s.N + i) * s.Dv + d],
                    0.0);
      }
}

TEST(ReferenceEvaluator, GroupedQueryAttention) {
  // Hq = 4, Hkv = 2: query heads 0, 1 read KV head 0; 2, 3 read KV head 1.
  // The score also uses hk, which must be h // (Hq / Hkv).
  Shape s{2, 4, 2, 5, 6, 3, 2};
  Oracle o;
  o.score = [](double x, int64_t, int64_t h, int64_t, int64_t) {
    return x + 0.25 * double(h / 2);
  };
  check("attention gqa { score = score + 0.25 * hk }", o, s, makeQKV(s, 5));
}

TEST(ReferenceEvaluator, MultiQueryAttention) {
  Shape s{1, 3, 1, 4, 4, 2, 2};
  check("attention mqa {}", Oracle{}, s, makeQKV(s, 6));
}

TEST(ReferenceEvaluator, DqkDiffersFromDv) {
  Shape s{1, 2, 2, 4, 5, 7, 2};
  Oracle o;
  o.mask = [&](int64_t, int64_t, int64_t i, int64_t j) {
    return causal(s.N, s.M, i, j);
  };
  check("attention c { mask = causal }", o, s, makeQKV(s, 7));
}

TEST(ReferenceEvaluator, ScaleOverride) {
  Shape s{1, 2, 2, 4, 4, 6, 3};
  Oracle constant;
  constant.scale = 0.5;
  check("attention sc { scale = 0.5 }", constant, s, makeQKV(s, 8));
  Oracle fromDims;
  fromDims.scale = 1.0 / std::sqrt(double(s.Dqk + s.Dv));
  check("attention sc { scale = 1.0 / sqrt(Dqk + Dv) }", fromDims, s,
        makeQKV(s, 9));
  // An int scale is promoted.
  Oracle two;
  two.scale = 2.0;
  check("attention sc { scale = 2 }", two, s, makeQKV(s, 10));
}

TEST(ReferenceEvaluator, SoftcapScore) {
  Shape s{1, 2, 2, 5, 5, 4, 4};
  Oracle o;
  o.scale = 3.0; // large scores, so the cap matters
  o.score = [](double x, int64_t, int64_t, int64_t, int64_t) {
    return 1.5 * std::tanh(x / 1.5);
  };
  o.mask = [&](int64_t, int64_t, int64_t i, int64_t j) {
    return causal(s.N, s.M, i, j);
  };
  check(R"(attention softcap {
             param cap = 1.5
             scale = 3.0
             mask = causal
             score = cap * tanh(score / cap)
           })",
        o, s, makeQKV(s, 11));
}

TEST(ReferenceEvaluator, ParamOverride) {
  // sliding window with its param rebound from 8 to 2.
  Shape s{1, 1, 1, 6, 6, 3, 3};
  Oracle o;
  o.mask = [](int64_t, int64_t, int64_t i, int64_t j) {
    return j <= i && i - j < 2;
  };
  auto inputs = makeQKV(s, 12);
  auto l = load("attention sw { param window = 8\n"
                "  mask = sliding_window(window) }",
                {"window=2"});
  ASSERT_TRUE(l);
  ReferenceOutputs out = run(*l, inputs);
  expectMatches(out, naive(o, inputs), s);
  ASSERT_TRUE(out.params.count("window"));
  EXPECT_TRUE(out.params.at("window").isInt);
  EXPECT_EQ(out.params.at("window").i, 2);
  EXPECT_EQ(out.dims.at("G"), 1);
}

//===----------------------------------------------------------------------===//
// Other normalizers
//===----------------------------------------------------------------------===//

TEST(ReferenceEvaluator, SigmoidWithBias) {
  Shape s{2, 2, 1, 4, 6, 3, 2};
  Oracle o;
  o.norm = Norm::Sigmoid;
  o.bias = -std::log(double(s.M));
  o.mask = [&](int64_t, int64_t, int64_t i, int64_t j) {
    return causal(s.N, s.M, i, j);
  };
  check(R"(attention sig {
             mask = causal
             normalizer = sigmoid(bias = -log(M))
           })",
        o, s, makeQKV(s, 13));
}

TEST(ReferenceEvaluator, SigmoidDefaultBias) {
  Shape s{1, 1, 1, 3, 4, 2, 2};
  Oracle o;
  o.norm = Norm::Sigmoid;
  check("attention sig { normalizer = sigmoid }", o, s, makeQKV(s, 14));
}

/// q with row `zeroRow` all zeros in every (b, h): its scores are all 0.
std::map<std::string, HostArray> withZeroRow(const Shape &s, uint64_t seed,
                                             int64_t zeroRow) {
  auto in = makeQKV(s, seed);
  HostArray &q = in["q"];
  for (int64_t bh = 0; bh < s.B * s.Hq; ++bh)
    for (int64_t d = 0; d < s.Dqk; ++d)
      q.setDouble((bh * s.N + zeroRow) * s.Dqk + d, 0.0);
  return in;
}

TEST(ReferenceEvaluator, ReluPower2) {
  Shape s{1, 2, 2, 5, 6, 3, 4};
  Oracle o;
  o.norm = Norm::Relu;
  o.power = 2;
  check("attention r { normalizer = relu(power = 2) }", o, s,
        withZeroRow(s, 15, 1));
}

TEST(ReferenceEvaluator, ReluPower2Normalized) {
  // Row 2 has only zero scores, so its sum is 0: the row is 0, not NaN.
  Shape s{2, 2, 2, 5, 6, 3, 4};
  Oracle o;
  o.norm = Norm::Relu;
  o.power = 2;
  o.normalize = true;
  auto inputs = withZeroRow(s, 16, 2);
  auto l =
      load("attention r { normalizer = relu(power = 2, normalize = true) }");
  ASSERT_TRUE(l);
  ReferenceOutputs out = run(*l, inputs);
  expectMatches(out, naive(o, inputs), s);
  for (int64_t bh = 0; bh < s.B * s.Hq; ++bh)
    for (int64_t d = 0; d < s.Dv; ++d)
      EXPECT_EQ(out.o.data<double>()[(bh * s.N + 2) * s.Dv + d], 0.0);
}

TEST(ReferenceEvaluator, ReluNormalizedEmptyRows) {
  // With M < N and causal, the first rows see no key at all.
  Shape s{1, 1, 1, 6, 2, 3, 2};
  Oracle o;
  o.norm = Norm::Relu;
  o.normalize = true;
  o.mask = [&](int64_t, int64_t, int64_t i, int64_t j) {
    return causal(s.N, s.M, i, j);
  };
  check("attention r { mask = causal\n normalizer = relu(normalize = true) }",
        o, s, makeQKV(s, 17));
}

TEST(ReferenceEvaluator, NoNormalizer) {
  Shape s{1, 2, 1, 4, 5, 3, 3};
  Oracle o;
  o.norm = Norm::None;
  o.mask = [&](int64_t, int64_t, int64_t i, int64_t j) {
    return causal(s.N, s.M, i, j);
  };
  o.score = [](double x, int64_t, int64_t, int64_t i, int64_t j) {
    return x * std::pow(0.5, double(i - j));
  };
  check(R"(attention retnet {
             mask = causal
             score = score * pow(0.5, q_idx - kv_idx)
             normalizer = none
           })",
        o, s, makeQKV(s, 18));
}

//===----------------------------------------------------------------------===//
// Auxiliary inputs
//===----------------------------------------------------------------------===//

TEST(ReferenceEvaluator, BiasTableLookup) {
  // A relative-position bias table with a dim T bound from the tensor.
  Shape s{1, 2, 2, 5, 6, 3, 2};
  const int64_t T = 3;
  auto inputs = makeQKV(s, 19);
  std::mt19937_64 rng(20);
  inputs["tbl"] = randomArray(DType::F32, {s.Hq, T}, rng);
  const HostArray &tbl = inputs["tbl"];
  Oracle o;
  o.score = [&](double x, int64_t, int64_t h, int64_t i, int64_t j) {
    int64_t r = std::min<int64_t>(std::abs(i - j), T - 1);
    return x + tbl.getDouble(h * T + r);
  };
  check(R"(attention rpb {
             input tbl : f32[Hq, T]
             score = score + tbl[h, min(abs(q_idx - kv_idx), T - 1)]
           })",
        o, s, inputs);
}

/// Document ids per (b, token): contiguous segments.
HostArray docIds(DType dtype, int64_t B, int64_t N) {
  HostArray a = HostArray::zeros(dtype, {B, N});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < N; ++i)
      a.setDouble(b * N + i, double((i + b) / 3));
  return a;
}

const char *kDocumentSpec = R"(attention document {
  input doc : i32[B, N]
  mask = document(doc) && causal
})";

Oracle documentOracle(const HostArray &doc, int64_t N) {
  Oracle o;
  o.mask = [&doc, N](int64_t b, int64_t, int64_t i, int64_t j) {
    return doc.getDouble(b * N + i) == doc.getDouble(b * N + j) && j <= i;
  };
  return o;
}

TEST(ReferenceEvaluator, DocumentMaskInt32) {
  Shape s{2, 2, 1, 8, 8, 3, 2};
  auto inputs = makeQKV(s, 21);
  inputs["doc"] = docIds(DType::I32, s.B, s.N);
  check(kDocumentSpec, documentOracle(inputs["doc"], s.N), s, inputs);
}

TEST(ReferenceEvaluator, DocumentMaskInt64WhenValuesFit) {
  Shape s{2, 2, 2, 7, 7, 3, 2};
  auto inputs = makeQKV(s, 22);
  inputs["doc"] = docIds(DType::I64, s.B, s.N);
  check(kDocumentSpec, documentOracle(inputs["doc"], s.N), s, inputs);
}

TEST(ReferenceEvaluator, Float64QueriesAccepted) {
  // float64 q with float32 k and v.
  Shape s{1, 2, 2, 4, 4, 3, 3};
  auto inputs = makeQKV(s, 23, DType::F32);
  std::mt19937_64 rng(24);
  inputs["q"] = randomArray(DType::F64, {s.B, s.Hq, s.N, s.Dqk}, rng);
  check("attention dense {}", Oracle{}, s, inputs);
}

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

TEST(ReferenceEvaluatorErrors, LookupIndexOutOfRange) {
  // tbl has 4 entries per head; kv_idx reaches 5.
  Shape s{1, 1, 1, 3, 6, 2, 2};
  auto inputs = makeQKV(s, 30);
  std::mt19937_64 rng(31);
  inputs["tbl"] = randomArray(DType::F32, {s.Hq, 4}, rng);
  auto l = load(R"(attention oob {
  input tbl : f32[Hq, 4]
  score = score + tbl[h, kv_idx]
})");
  ASSERT_TRUE(l);
  std::string err = runError(*l, inputs);
  EXPECT_NE(err.find("index 4 is out of range [0, 4) in dim 1 of input 'tbl'"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("kv_idx=4"), std::string::npos) << err;
}

TEST(ReferenceEvaluatorErrors, LookupNegativeIndex) {
  Shape s{1, 1, 1, 3, 3, 2, 2};
  auto inputs = makeQKV(s, 32);
  inputs["ids"] = docIds(DType::I32, 1, s.N);
  auto l = load(R"(attention neg {
  input ids : i32[B, N]
  mask = ids[b, q_idx - 1] == 0
})");
  ASSERT_TRUE(l);
  std::string err = runError(*l, inputs);
  EXPECT_NE(err.find("index -1 is out of range [0, 3) in dim 1 of input 'ids'"),
            std::string::npos)
      << err;
}

TEST(ReferenceEvaluatorErrors, DivisionByZeroInMask) {
  Shape s{1, 1, 1, 3, 3, 2, 2};
  auto l = load("attention div { mask = q_idx // (kv_idx - 1) >= 0 }");
  ASSERT_TRUE(l);
  std::string err = runError(*l, makeQKV(s, 33));
  EXPECT_NE(err.find("mask: division by zero"), std::string::npos) << err;
  EXPECT_NE(err.find("kv_idx=1"), std::string::npos) << err;
}

TEST(ReferenceEvaluatorErrors, DivisionByZeroInParamDefault) {
  Shape s{1, 1, 1, 3, 3, 2, 2};
  auto l = load("attention div { param w = N // (M - N)\n"
                "  mask = sliding_window(w) }");
  ASSERT_TRUE(l);
  std::string err = runError(*l, makeQKV(s, 34));
  EXPECT_NE(err.find("param 'w': division by zero"), std::string::npos) << err;
}

TEST(ReferenceEvaluatorErrors, ShapeMismatch) {
  Shape s{1, 2, 2, 4, 4, 3, 3};
  auto l = load("attention dense {}");
  ASSERT_TRUE(l);
  auto inputs = makeQKV(s, 35);
  std::mt19937_64 rng(36);
  inputs["k"] = randomArray(DType::F64, {s.B, s.Hkv, s.M, s.Dqk + 1}, rng);
  std::string err = runError(*l, inputs);
  EXPECT_NE(err.find("dim 'Dqk'"), std::string::npos) << err;
  EXPECT_NE(err.find("input 'k'"), std::string::npos) << err;
}

TEST(ReferenceEvaluatorErrors, AuxShapeMismatch) {
  Shape s{2, 1, 1, 4, 4, 2, 2};
  auto l = load(kDocumentSpec);
  ASSERT_TRUE(l);
  auto inputs = makeQKV(s, 37);
  inputs["doc"] = docIds(DType::I32, s.B, s.N + 1);
  std::string err = runError(*l, inputs);
  EXPECT_NE(err.find("dim 'N'"), std::string::npos) << err;
  EXPECT_NE(err.find("input 'doc'"), std::string::npos) << err;
}

TEST(ReferenceEvaluatorErrors, HqNotMultipleOfHkv) {
  Shape s{1, 3, 2, 4, 4, 2, 2};
  auto l = load("attention dense {}");
  ASSERT_TRUE(l);
  std::string err = runError(*l, makeQKV(s, 38));
  EXPECT_NE(err.find("Hq=3 query heads is not a multiple of Hkv=2"),
            std::string::npos)
      << err;
}

TEST(ReferenceEvaluatorErrors, Int64AuxOutOfInt32Range) {
  Shape s{1, 1, 1, 3, 3, 2, 2};
  auto l = load(kDocumentSpec);
  ASSERT_TRUE(l);
  auto inputs = makeQKV(s, 39);
  inputs["doc"] = docIds(DType::I64, s.B, s.N);
  inputs["doc"].data<int64_t>()[1] = int64_t(1) << 40;
  std::string err = runError(*l, inputs);
  EXPECT_NE(err.find("input 'doc'"), std::string::npos) << err;
  EXPECT_NE(err.find("does not fit in int32"), std::string::npos) << err;
}

TEST(ReferenceEvaluatorErrors, WrongDType) {
  Shape s{1, 1, 1, 3, 3, 2, 2};
  auto l = load(kDocumentSpec);
  ASSERT_TRUE(l);
  auto inputs = makeQKV(s, 40);
  inputs["doc"] = docIds(DType::F32, s.B, s.N);
  std::string err = runError(*l, inputs);
  EXPECT_NE(err.find("input 'doc' must be int32"), std::string::npos) << err;
}

TEST(ReferenceEvaluatorErrors, MissingInput) {
  Shape s{1, 1, 1, 3, 3, 2, 2};
  auto l = load(kDocumentSpec);
  ASSERT_TRUE(l);
  std::string err = runError(*l, makeQKV(s, 41));
  EXPECT_NE(err.find("missing input 'doc'"), std::string::npos) << err;
}

TEST(SpecLoading, DiagnosticsAreCaptured) {
  // The capture used by load(): a bad spec yields a located message.
  MLIRContext ctx;
  llvm::SourceMgr sourceMgr;
  std::string text = "attention t {\n  mask = q_idx < windw\n}\n";
  unsigned id = sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBuffer(text, "bad.attn"), llvm::SMLoc());
  std::string messages;
  ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &d) {
    std::string loc;
    llvm::raw_string_ostream os(loc);
    os << d.getLocation();
    messages += loc + ": " + d.str() + "\n";
    return success();
  });
  std::string paramError;
  OwningOpRef<ModuleOp> module = loadSpec(ctx, sourceMgr, id, {}, paramError);
  EXPECT_FALSE(module);
  EXPECT_EQ(paramError, "");
  EXPECT_NE(messages.find("bad.attn"), std::string::npos) << messages;
  EXPECT_NE(messages.find(":2:18"), std::string::npos) << messages;
  EXPECT_NE(messages.find("unknown name 'windw'"), std::string::npos)
      << messages;
}

} // namespace
