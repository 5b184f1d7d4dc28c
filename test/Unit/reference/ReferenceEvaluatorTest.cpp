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

#include "attn/Reference/ReferenceEvaluator.h"
#include "LoadSpec.h"
#include "mlir/Parser/Parser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>

using namespace mlir;
using namespace mlir::attn;
using ::attn::DType;
using ::attn::HostArray;
using attn_test::load;
using attn_test::Loaded;

namespace {

constexpr double kTol = 1e-12;
constexpr double kInf = std::numeric_limits<double>::infinity();

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

//===----------------------------------------------------------------------===//
// Linear attention
//
// The specs are attn.linear_attention ops written as MLIR text (parsed and
// verified here). The expected outputs come from the parallel ("T") form,
// which never forms the recurrent state:
//   o_t = sum_{s <= t} sum_d φq(q_t)_d φk(k_s)_d exp(sum_{r=s+1..t} log g_r,d) v_s
// (s < t and r up to t - 1 for the exclusive readout, plus the bonus term
// (φq ⊙ u)·φk(k_t) v_t; every s < M without gates for non-causal), scaled,
// or divided by the same sum without v (0 when it is 0). The delta rule has
// no such form; its oracle is the matrix recurrence
// S_t = α_t (I - β_t k kᵀ) S_{t-1} + β_t k v_tᵀ of VARIANTS.md E5.
//===----------------------------------------------------------------------===//

std::unique_ptr<Loaded> loadMLIR(const std::string &text) {
  auto l = std::make_unique<Loaded>();
  l->text = text;
  loadAttnDialects(l->ctx);
  ScopedDiagnosticHandler handler(&l->ctx, [&](Diagnostic &d) {
    l->diagnostics += d.str() + "\n";
    return success();
  });
  l->module = parseSourceString<ModuleOp>(l->text, ParserConfig(&l->ctx));
  EXPECT_TRUE(l->module) << "IR did not parse/verify:\n"
                         << l->diagnostics << text;
  if (!l->module)
    return nullptr;
  l->spec = getSpec(*l->module);
  EXPECT_TRUE(l->spec && l->spec.getLinearAttention());
  return l;
}

/// The parts of an attn.linear_attention spec.
struct LinSpec {
  std::string featureMap = "identity";
  std::string featureMapK; ///< "" = featureMap
  std::string attrs;       ///< e.g. "normalize, noncausal"
  std::string inputs;      ///< attn.input lines
  std::string scale, gate, beta, bonus; ///< region bodies ("" = empty)
};

std::string linText(const LinSpec &s) {
  std::string fk = s.featureMapK.empty() ? s.featureMap : s.featureMapK;
  return "attn.spec @lin {\n" + s.inputs +
         "  attn.linear_attention feature_map = <" + s.featureMap + ">, <" +
         fk + ">" + (s.attrs.empty() ? "" : " attributes {" + s.attrs + "}") +
         " scale {\n" + s.scale + "  } gate {\n" + s.gate + "  } beta {\n" +
         s.beta + "  } bonus {\n" + s.bonus + "  }\n}\n";
}

std::string scaleConst(const std::string &value) {
  return "    %s = arith.constant " + value + " : f64\n"
         "    attn.yield %s : f64\n";
}

/// A region body that loads `input[indices]` (f32) and yields it as f64.
std::string loadRegion(const std::string &args, const std::string &input,
                       const std::string &indices) {
  return "  ^bb0(" + args + "):\n    %x = attn.load @" + input + "[" +
         indices + "] : f32\n    %y = arith.extf %x : f32 to f64\n"
         "    attn.yield %y : f64\n";
}
const char *kGateArgs = "%b: i64, %h: i64, %t: i64, %d: i64";
const char *kBetaArgs = "%b: i64, %h: i64, %t: i64";
const char *kBonusArgs = "%h: i64, %d: i64";

/// RetNet's constant per-head decay: log(1 - 2^(-5 - h)).
const char *kRetNetGate = R"(  ^bb0(%b: i64, %h: i64, %t: i64, %d: i64):
    %c = arith.constant -5.0 : f64
    %hf = arith.sitofp %h : i64 to f64
    %e = arith.subf %c, %hf : f64
    %p = math.exp2 %e : f64
    %one = arith.constant 1.0 : f64
    %l = arith.subf %one, %p : f64
    %g = math.log %l : f64
    attn.yield %g : f64
)";

using Vec = std::vector<double>;
using PhiFn = std::function<Vec(const double *, int64_t)>;

Vec phiIdentity(const double *x, int64_t D) { return Vec(x, x + D); }
Vec phiElu1(const double *x, int64_t D) {
  Vec r(D);
  for (int64_t d = 0; d < D; ++d)
    r[d] = x[d] > 0 ? x[d] + 1 : std::exp(x[d]);
  return r;
}
Vec phiL2(const double *x, int64_t D) {
  double n = 0;
  for (int64_t d = 0; d < D; ++d)
    n += x[d] * x[d];
  n = std::sqrt(n);
  Vec r(D, 0.0);
  for (int64_t d = 0; d < D && n > 0; ++d)
    r[d] = x[d] / n;
  return r;
}

struct LinOracle {
  PhiFn phiQ = phiIdentity, phiK = phiIdentity;
  /// φq(q)·φk(k) in closed form (used instead of the features when set;
  /// only without vector gates).
  std::function<double(const double *, const double *, int64_t)> kernel;
  std::function<double(int64_t, int64_t, int64_t, int64_t)> logGate; ///< b,h,t,d
  std::function<double(int64_t, int64_t)> bonus;                     ///< h,d
  bool exclusive = false, normalize = false, noncausal = false;
  double scale = std::numeric_limits<double>::quiet_NaN();
};

/// The parallel form (see the section comment).
Expected naiveLinear(const LinOracle &L,
                     const std::map<std::string, HostArray> &in) {
  const HostArray &q = in.at("q"), &k = in.at("k"), &v = in.at("v");
  int64_t B = q.shape[0], Hq = q.shape[1], N = q.shape[2], Dqk = q.shape[3];
  int64_t Hkv = k.shape[1], M = k.shape[2], Dv = v.shape[3];
  double scale = std::isnan(L.scale) ? 1.0 / std::sqrt(double(Dqk)) : L.scale;
  Expected e;
  e.o.assign(B * Hq * N * Dv, 0.0);
  auto row = [](const HostArray &a, int64_t off, int64_t D) {
    Vec r(D);
    for (int64_t d = 0; d < D; ++d)
      r[d] = a.getDouble(off + d);
    return r;
  };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      int64_t hk = h / (Hq / Hkv);
      for (int64_t t = 0; t < N; ++t) {
        Vec qt = row(q, ((b * Hq + h) * N + t) * Dqk, Dqk);
        Vec fq = L.phiQ(qt.data(), Dqk);
        auto weight = [&](int64_t s, int64_t lastDecay, bool withBonus) {
          Vec ks = row(k, ((b * Hkv + hk) * M + s) * Dqk, Dqk);
          if (L.kernel && !withBonus)
            return L.kernel(qt.data(), ks.data(), Dqk);
          Vec fk = L.phiK(ks.data(), Dqk);
          double w = 0;
          for (size_t d = 0; d < fq.size(); ++d) {
            double lg = 0;
            for (int64_t r = s + 1; L.logGate && r <= lastDecay; ++r)
              lg += L.logGate(b, h, r, d);
            w += fq[d] * fk[d] * std::exp(lg) * (withBonus ? L.bonus(h, d) : 1);
          }
          return w;
        };
        Vec acc(Dv, 0.0);
        double den = 0;
        auto add = [&](int64_t s, double w) {
          for (int64_t d = 0; d < Dv; ++d)
            acc[d] += w * v.getDouble(((b * Hkv + hk) * M + s) * Dv + d);
          den += w;
        };
        if (L.noncausal) {
          for (int64_t s = 0; s < M; ++s)
            add(s, weight(s, -1, false));
        } else if (L.exclusive) {
          for (int64_t s = 0; s < t; ++s)
            add(s, weight(s, t - 1, false));
          if (L.bonus)
            add(t, weight(t, -1, true));
        } else {
          for (int64_t s = 0; s <= t; ++s)
            add(s, weight(s, t, false));
        }
        for (int64_t d = 0; d < Dv; ++d)
          e.o[((b * Hq + h) * N + t) * Dv + d] =
              L.normalize ? (den != 0 ? acc[d] / den : 0.0) : scale * acc[d];
      }
    }
  return e;
}

/// Log gates in [log sigmoid(-2), log sigmoid(3)], i.e. about [-2.1, -0.05].
HostArray logGates(std::vector<int64_t> shape, std::mt19937_64 &rng) {
  HostArray a = HostArray::zeros(DType::F64, std::move(shape));
  std::uniform_real_distribution<double> dist(-2.0, 3.0);
  for (int64_t i = 0, n = a.numel(); i < n; ++i)
    a.setDouble(i, -std::log1p(std::exp(-dist(rng))));
  return a;
}

void checkLinear(const LinSpec &spec, const LinOracle &oracle, const Shape &s,
                 const std::map<std::string, HostArray> &inputs) {
  auto l = loadMLIR(linText(spec));
  ASSERT_TRUE(l);
  ReferenceOutputs out = run(*l, inputs);
  expectMatches(out, naiveLinear(oracle, inputs), s);
}

TEST(ReferenceLinear, RetNetConstantGate) {
  // Per-head λ_h = 1 - 2^(-5-h), default scale, GQA and Dqk != Dv.
  Shape s{2, 4, 2, 9, 9, 5, 3};
  LinSpec spec;
  spec.gate = kRetNetGate;
  LinOracle o;
  o.logGate = [](int64_t, int64_t h, int64_t, int64_t) {
    return std::log(1.0 - std::exp2(-5.0 - double(h)));
  };
  checkLinear(spec, o, s, makeQKV(s, 100));
  // The same decay in its quadratic form: sum_s λ^(t-s) scale (q·k) v.
  auto inputs = makeQKV(s, 100);
  auto l = loadMLIR(linText(spec));
  ASSERT_TRUE(l);
  ReferenceOutputs out = run(*l, inputs);
  for (int64_t h = 0; h < s.Hq; ++h) {
    double lam = 1.0 - std::exp2(-5.0 - double(h));
    for (int64_t t = 0; t < s.N; ++t)
      for (int64_t e = 0; e < s.Dv; ++e) {
        double acc = 0;
        for (int64_t j = 0; j <= t; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < s.Dqk; ++d)
            dot += inputs["q"].getDouble((h * s.N + t) * s.Dqk + d) *
                   inputs["k"].getDouble(((h / 2) * s.M + j) * s.Dqk + d);
          acc += std::pow(lam, double(t - j)) * dot / std::sqrt(5.0) *
                 inputs["v"].getDouble(((h / 2) * s.M + j) * s.Dv + e);
        }
        EXPECT_NEAR(out.o.data<double>()[(h * s.N + t) * s.Dv + e], acc, kTol);
      }
  }
}

TEST(ReferenceLinear, GLAVectorGate) {
  Shape s{2, 4, 2, 8, 8, 4, 6};
  auto inputs = makeQKV(s, 101);
  std::mt19937_64 rng(102);
  inputs["g"] = logGates({s.B, s.Hq, s.N, s.Dqk}, rng);
  const HostArray &g = inputs["g"];
  LinSpec spec;
  spec.inputs = "  attn.input @g : f32 [\"B\", \"Hq\", \"N\", \"Dqk\"]\n";
  spec.gate = loadRegion(kGateArgs, "g", "%b, %h, %t, %d");
  LinOracle o;
  o.logGate = [&](int64_t b, int64_t h, int64_t t, int64_t d) {
    return g.getDouble(((b * s.Hq + h) * s.N + t) * s.Dqk + d);
  };
  checkLinear(spec, o, s, inputs);
}

TEST(ReferenceLinear, Mamba2ScalarGateScaleOne) {
  Shape s{1, 3, 1, 10, 10, 4, 5};
  auto inputs = makeQKV(s, 103);
  std::mt19937_64 rng(104);
  inputs["a"] = logGates({s.B, s.Hq, s.N}, rng);
  const HostArray &a = inputs["a"];
  LinSpec spec;
  spec.inputs = "  attn.input @a : f32 [\"B\", \"Hq\", \"N\"]\n";
  spec.scale = scaleConst("1.0");
  spec.gate = loadRegion(kGateArgs, "a", "%b, %h, %t");
  LinOracle o;
  o.scale = 1.0;
  o.logGate = [&](int64_t b, int64_t h, int64_t t, int64_t) {
    return a.getDouble((b * s.Hq + h) * s.N + t);
  };
  checkLinear(spec, o, s, inputs);
}

TEST(ReferenceLinear, GatedDeltaRuleL2Norm) {
  Shape s{2, 4, 2, 9, 9, 4, 3};
  auto inputs = makeQKV(s, 105);
  std::mt19937_64 rng(106);
  inputs["alpha"] = logGates({s.B, s.Hq, s.N}, rng);
  HostArray beta = HostArray::zeros(DType::F64, {s.B, s.Hq, s.N});
  std::uniform_real_distribution<double> u01(0.05, 0.95);
  for (int64_t i = 0; i < beta.numel(); ++i)
    beta.setDouble(i, u01(rng));
  inputs["beta"] = beta;
  LinSpec spec;
  spec.featureMap = "l2norm";
  spec.inputs = "  attn.input @alpha : f32 [\"B\", \"Hq\", \"N\"]\n"
                "  attn.input @beta : f32 [\"B\", \"Hq\", \"N\"]\n";
  spec.gate = loadRegion(kGateArgs, "alpha", "%b, %h, %t");
  spec.beta = loadRegion(kBetaArgs, "beta", "%b, %h, %t");
  auto l = loadMLIR(linText(spec));
  ASSERT_TRUE(l);
  ReferenceOutputs out = run(*l, inputs);

  // S_t = α_t (I - β_t k kᵀ) S_{t-1} + β_t k v_tᵀ, o_t = scale qᵀ S_t,
  // with q, k L2-normalized; matrices as nested vectors.
  const HostArray &q = inputs["q"], &k = inputs["k"], &v = inputs["v"];
  const HostArray &al = inputs["alpha"];
  Expected want;
  want.o.assign(s.B * s.Hq * s.N * s.Dv, 0.0);
  const int64_t D = s.Dqk;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.Hq; ++h) {
      int64_t hk = h / 2;
      std::vector<Vec> S(D, Vec(s.Dv, 0.0));
      for (int64_t t = 0; t < s.N; ++t) {
        Vec kr(D), qr(D);
        for (int64_t d = 0; d < D; ++d) {
          kr[d] = k.getDouble(((b * s.Hkv + hk) * s.M + t) * D + d);
          qr[d] = q.getDouble(((b * s.Hq + h) * s.N + t) * D + d);
        }
        Vec kn = phiL2(kr.data(), D), qn = phiL2(qr.data(), D);
        double alpha = std::exp(al.getDouble((b * s.Hq + h) * s.N + t));
        double bt = beta.getDouble((b * s.Hq + h) * s.N + t);
        std::vector<Vec> A(D, Vec(D));
        for (int64_t i = 0; i < D; ++i)
          for (int64_t j = 0; j < D; ++j)
            A[i][j] = alpha * ((i == j ? 1.0 : 0.0) - bt * kn[i] * kn[j]);
        std::vector<Vec> next(D, Vec(s.Dv, 0.0));
        for (int64_t i = 0; i < D; ++i)
          for (int64_t e = 0; e < s.Dv; ++e) {
            for (int64_t j = 0; j < D; ++j)
              next[i][e] += A[i][j] * S[j][e];
            next[i][e] +=
                bt * kn[i] * v.getDouble(((b * s.Hkv + hk) * s.M + t) * s.Dv + e);
          }
        S = next;
        for (int64_t e = 0; e < s.Dv; ++e) {
          double acc = 0;
          for (int64_t i = 0; i < D; ++i)
            acc += qn[i] * S[i][e];
          want.o[((b * s.Hq + h) * s.N + t) * s.Dv + e] =
              acc / std::sqrt(double(D));
        }
      }
    }
  expectMatches(out, want, s);
}

TEST(ReferenceLinear, NormalizedEluPlusOne) {
  Shape s{2, 4, 2, 11, 11, 5, 3};
  LinSpec spec;
  spec.featureMap = "elu_plus_one";
  spec.attrs = "normalize";
  LinOracle o;
  o.phiQ = o.phiK = phiElu1;
  o.normalize = true;
  checkLinear(spec, o, s, makeQKV(s, 107));
}

double taylorKernel(const double *q, const double *k, int64_t D) {
  double x = 0;
  for (int64_t d = 0; d < D; ++d)
    x += q[d] * k[d];
  x /= std::sqrt(double(D));
  return 1 + x + x * x / 2;
}

TEST(ReferenceLinear, Taylor2KernelIdentity) {
  // Non-causal, one key, v = 1, scale 1: o = φ(q)·φ(k), which must equal
  // 1 + q·k/sqrt(D) + (q·k)^2/(2D). Larger q, k so the square term matters.
  for (int64_t D : {1, 3, 16}) {
    Shape s{1, 1, 1, 3, 1, D, 1};
    auto inputs = makeQKV(s, 108 + D);
    for (const char *n : {"q", "k"})
      for (int64_t i = 0; i < inputs[n].numel(); ++i)
        inputs[n].setDouble(i, 3.0 * inputs[n].getDouble(i));
    inputs["v"].setDouble(0, 1.0);
    LinSpec spec;
    spec.featureMap = "taylor2";
    spec.attrs = "noncausal";
    spec.scale = scaleConst("1.0");
    auto l = loadMLIR(linText(spec));
    ASSERT_TRUE(l);
    ReferenceOutputs out = run(*l, inputs);
    for (int64_t t = 0; t < s.N; ++t) {
      Vec qt(D), k0(D);
      for (int64_t d = 0; d < D; ++d) {
        qt[d] = inputs["q"].getDouble(t * D + d);
        k0[d] = inputs["k"].getDouble(d);
      }
      double want = taylorKernel(qt.data(), k0.data(), D);
      EXPECT_NEAR(out.o.data<double>()[t], want, 1e-12 * std::fabs(want))
          << "D=" << D << " t=" << t;
    }
  }
}

TEST(ReferenceLinear, BasedTaylor2Normalized) {
  // The Dphi = 1 + D + D(D+1)/2 = 153 features for D = 16.
  Shape s{1, 4, 2, 12, 12, 16, 5};
  LinSpec spec;
  spec.featureMap = "taylor2";
  spec.attrs = "normalize";
  LinOracle o;
  o.kernel = taylorKernel;
  o.normalize = true;
  checkLinear(spec, o, s, makeQKV(s, 120));
}

TEST(ReferenceLinear, ExclusiveReadoutWithBonusRWKV6) {
  Shape s{2, 2, 1, 8, 8, 4, 3};
  auto inputs = makeQKV(s, 121);
  std::mt19937_64 rng(122);
  inputs["w"] = logGates({s.B, s.Hq, s.N, s.Dqk}, rng);
  inputs["u"] = randomArray(DType::F64, {s.Hq, s.Dqk}, rng);
  const HostArray &w = inputs["w"], &u = inputs["u"];
  LinSpec spec;
  spec.attrs = "exclusive";
  spec.inputs = "  attn.input @w : f32 [\"B\", \"Hq\", \"N\", \"Dqk\"]\n"
                "  attn.input @u : f32 [\"Hq\", \"Dqk\"]\n";
  spec.gate = loadRegion(kGateArgs, "w", "%b, %h, %t, %d");
  spec.bonus = loadRegion(kBonusArgs, "u", "%h, %d");
  LinOracle o;
  o.exclusive = true;
  o.logGate = [&](int64_t b, int64_t h, int64_t t, int64_t d) {
    return w.getDouble(((b * s.Hq + h) * s.N + t) * s.Dqk + d);
  };
  o.bonus = [&](int64_t h, int64_t d) { return u.getDouble(h * s.Dqk + d); };
  checkLinear(spec, o, s, inputs);

  // Without a bonus region, the exclusive readout reads only S_{t-1}: the
  // first row is 0.
  LinSpec noBonus = spec;
  noBonus.bonus = "";
  LinOracle o2 = o;
  o2.bonus = nullptr;
  checkLinear(noBonus, o2, s, inputs);
}

TEST(ReferenceLinear, ExclusiveNormalized) {
  // Denominator φq·(z + u ⊙ φk), the exclusive analogue of φq·z.
  Shape s{1, 2, 2, 7, 7, 3, 2};
  auto inputs = makeQKV(s, 123);
  std::mt19937_64 rng(124);
  HostArray u = HostArray::zeros(DType::F64, {s.Hq, s.Dqk});
  std::uniform_real_distribution<double> pos(0.1, 1.0);
  for (int64_t i = 0; i < u.numel(); ++i)
    u.setDouble(i, pos(rng));
  inputs["u"] = u;
  LinSpec spec;
  spec.featureMap = "elu_plus_one";
  spec.attrs = "normalize, exclusive";
  spec.inputs = "  attn.input @u : f32 [\"Hq\", \"Dqk\"]\n";
  spec.bonus = loadRegion(kBonusArgs, "u", "%h, %d");
  LinOracle o;
  o.phiQ = o.phiK = phiElu1;
  o.exclusive = o.normalize = true;
  o.bonus = [&](int64_t h, int64_t d) { return u.getDouble(h * s.Dqk + d); };
  checkLinear(spec, o, s, inputs);
}

TEST(ReferenceLinear, NonCausalMDiffersFromN) {
  Shape s{2, 4, 2, 5, 9, 4, 6};
  LinSpec plain;
  plain.attrs = "noncausal";
  LinOracle o;
  o.noncausal = true;
  checkLinear(plain, o, s, makeQKV(s, 125));
  LinSpec norm;
  norm.featureMap = "elu_plus_one";
  norm.attrs = "normalize, noncausal";
  LinOracle on;
  on.noncausal = on.normalize = true;
  on.phiQ = on.phiK = phiElu1;
  Shape s2{1, 2, 1, 13, 4, 3, 5};
  checkLinear(norm, on, s2, makeQKV(s2, 126));
}

TEST(ReferenceLinear, FeatureMapsElementwise) {
  // Every element-wise map, non-causal (M != N) and scaled; the exp map
  // also normalized. q and k maps may differ when neither changes Dphi.
  struct Case {
    const char *name;
    std::function<double(double)> f;
  };
  std::vector<Case> cases = {
      {"identity", [](double x) { return x; }},
      {"elu_plus_one", [](double x) { return x > 0 ? x + 1 : std::exp(x); }},
      {"relu", [](double x) { return x > 0 ? x : 0.0; }},
      {"relu2", [](double x) { return x > 0 ? x * x : 0.0; }},
      {"sigmoid", [](double x) { return 1 / (1 + std::exp(-x)); }},
      {"silu", [](double x) { return x / (1 + std::exp(-x)); }},
      {"exp", [](double x) { return std::exp(x); }},
  };
  Shape s{1, 2, 1, 6, 7, 5, 3};
  auto inputs = makeQKV(s, 127);
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    PhiFn phi = [f = c.f](const double *x, int64_t D) {
      Vec r(D);
      for (int64_t d = 0; d < D; ++d)
        r[d] = f(x[d]);
      return r;
    };
    LinSpec spec;
    spec.featureMap = c.name;
    spec.attrs = "noncausal";
    LinOracle o;
    o.noncausal = true;
    o.phiQ = o.phiK = phi;
    checkLinear(spec, o, s, inputs);
    // q through this map, k through sigmoid, causal with N == M.
    Shape sq{1, 2, 2, 6, 6, 5, 3};
    LinSpec mixed;
    mixed.featureMap = c.name;
    mixed.featureMapK = "sigmoid";
    LinOracle om;
    om.phiQ = phi;
    om.phiK = [](const double *x, int64_t D) {
      Vec r(D);
      for (int64_t d = 0; d < D; ++d)
        r[d] = 1 / (1 + std::exp(-x[d]));
      return r;
    };
    checkLinear(mixed, om, sq, makeQKV(sq, 128));
  }
  LinSpec spec;
  spec.featureMap = "exp";
  spec.attrs = "normalize";
  LinOracle o;
  o.normalize = true;
  o.phiQ = o.phiK = [](const double *x, int64_t D) {
    Vec r(D);
    for (int64_t d = 0; d < D; ++d)
      r[d] = std::exp(x[d]);
    return r;
  };
  Shape sq{1, 2, 2, 6, 6, 5, 3};
  checkLinear(spec, o, sq, makeQKV(sq, 129));
}

TEST(ReferenceLinear, L2NormZeroVectorStaysZero) {
  // A zero key contributes nothing; a zero query reads 0 (no NaN).
  Shape s{1, 1, 1, 4, 4, 3, 2};
  auto inputs = makeQKV(s, 130);
  for (int64_t d = 0; d < s.Dqk; ++d) {
    inputs["k"].setDouble(1 * s.Dqk + d, 0.0);
    inputs["q"].setDouble(2 * s.Dqk + d, 0.0);
  }
  LinSpec spec;
  spec.featureMap = "l2norm";
  LinOracle o;
  o.phiQ = o.phiK = phiL2;
  checkLinear(spec, o, s, inputs);
}

TEST(ReferenceLinear, PosNegWithPerFeatureGate) {
  // Dphi = 2 Dqk; the gate's d runs over 0 .. 2 Dqk - 1 and the region
  // folds it back with d mod Dqk.
  Shape s{1, 2, 1, 7, 7, 3, 4};
  auto inputs = makeQKV(s, 131);
  std::mt19937_64 rng(132);
  inputs["g"] = logGates({s.B, s.Hq, s.N, s.Dqk}, rng);
  const HostArray &g = inputs["g"];
  LinSpec spec;
  spec.featureMap = "pos_neg";
  spec.inputs = "  attn.input @g : f32 [\"B\", \"Hq\", \"N\", \"Dqk\"]\n";
  spec.gate = R"(  ^bb0(%b: i64, %h: i64, %t: i64, %d: i64):
    %n = attn.dim "Dqk" : i64
    %dd = arith.remsi %d, %n : i64
    %x = attn.load @g[%b, %h, %t, %dd] : f32
    %y = arith.extf %x : f32 to f64
    attn.yield %y : f64
)";
  LinOracle o;
  o.phiQ = o.phiK = [](const double *x, int64_t D) {
    Vec r(2 * D);
    for (int64_t d = 0; d < D; ++d) {
      r[d] = x[d];
      r[D + d] = -x[d];
    }
    return r;
  };
  o.logGate = [&](int64_t b, int64_t h, int64_t t, int64_t d) {
    return g.getDouble(((b * s.Hq + h) * s.N + t) * s.Dqk + d % s.Dqk);
  };
  checkLinear(spec, o, s, inputs);
}

TEST(ReferenceLinear, GatesNearZeroAndOne) {
  // Log gates of -1e30 (g = 0: the state is wiped) and 0 (g = 1), in a
  // vector and in a scalar gate: finite outputs, no NaN.
  Shape s{1, 2, 2, 9, 9, 4, 3};
  auto inputs = makeQKV(s, 133);
  std::mt19937_64 rng(134);
  HostArray g = logGates({s.B, s.Hq, s.N, s.Dqk}, rng);
  HostArray a = logGates({s.B, s.Hq, s.N}, rng);
  for (int64_t h = 0; h < s.Hq; ++h)
    for (int64_t t = 0; t < s.N; ++t) {
      double val = t % 3 == 0 ? -1e30 : (t % 3 == 1 ? 0.0 : -0.5);
      a.setDouble(h * s.N + t, val);
      for (int64_t d = 0; d < s.Dqk; ++d)
        if ((t + d) % 2 == 0)
          g.setDouble((h * s.N + t) * s.Dqk + d, (t + d) % 4 == 0 ? -1e30 : 0.0);
    }
  inputs["g"] = g;
  inputs["a"] = a;
  LinSpec vec;
  vec.inputs = "  attn.input @g : f32 [\"B\", \"Hq\", \"N\", \"Dqk\"]\n";
  vec.gate = loadRegion(kGateArgs, "g", "%b, %h, %t, %d");
  LinOracle ov;
  ov.logGate = [&](int64_t b, int64_t h, int64_t t, int64_t d) {
    return g.getDouble(((b * s.Hq + h) * s.N + t) * s.Dqk + d);
  };
  std::map<std::string, HostArray> vIn = {
      {"q", inputs["q"]}, {"k", inputs["k"]}, {"v", inputs["v"]}, {"g", g}};
  checkLinear(vec, ov, s, vIn);

  LinSpec sc;
  sc.featureMap = "elu_plus_one";
  sc.attrs = "normalize";
  sc.inputs = "  attn.input @a : f32 [\"B\", \"Hq\", \"N\"]\n";
  sc.gate = loadRegion(kGateArgs, "a", "%b, %h, %t");
  LinOracle os;
  os.phiQ = os.phiK = phiElu1;
  os.normalize = true;
  os.logGate = [&](int64_t b, int64_t h, int64_t t, int64_t) {
    return a.getDouble((b * s.Hq + h) * s.N + t);
  };
  std::map<std::string, HostArray> sIn = {
      {"q", inputs["q"]}, {"k", inputs["k"]}, {"v", inputs["v"]}, {"a", a}};
  checkLinear(sc, os, s, sIn);

  // With g = 0 at step t the state holds only step t: o_t = scale (q·k) v_t
  // for the scalar-gated unnormalized form.
  LinSpec sc2 = sc;
  sc2.featureMap = "identity";
  sc2.attrs = "";
  auto l = loadMLIR(linText(sc2));
  ASSERT_TRUE(l);
  ReferenceOutputs out = run(*l, sIn);
  for (int64_t t = 0; t < s.N; t += 3) {
    double dot = 0;
    for (int64_t d = 0; d < s.Dqk; ++d)
      dot += inputs["q"].getDouble(t * s.Dqk + d) *
             inputs["k"].getDouble(t * s.Dqk + d);
    for (int64_t e = 0; e < s.Dv; ++e)
      EXPECT_NEAR(out.o.data<double>()[t * s.Dv + e],
                  dot / 2.0 * inputs["v"].getDouble(t * s.Dv + e), kTol);
  }
}

/// Performer features with projection W [R, D] (row-major).
Vec phiRandom(const HostArray &W, const double *x, int64_t D) {
  int64_t R = W.shape[0];
  double r4 = std::pow(double(D), 0.25), n2 = 0;
  Vec xs(D);
  for (int64_t d = 0; d < D; ++d) {
    xs[d] = x[d] / r4;
    n2 += xs[d] * xs[d];
  }
  Vec out(R);
  for (int64_t r = 0; r < R; ++r) {
    double dot = 0;
    for (int64_t d = 0; d < D; ++d)
      dot += W.getDouble(r * D + d) * xs[d];
    out[r] = std::exp(-n2 / 2) / std::sqrt(double(R)) * std::exp(dot);
  }
  return out;
}

TEST(ReferenceLinear, RandomFeaturesGivenProjection) {
  Shape s{1, 2, 1, 6, 8, 4, 3};
  auto inputs = makeQKV(s, 135);
  std::mt19937_64 rng(136);
  std::normal_distribution<double> normal;
  const int64_t R = 7;
  HostArray W = HostArray::zeros(DType::F64, {R, s.Dqk});
  for (int64_t i = 0; i < W.numel(); ++i)
    W.setDouble(i, normal(rng));
  inputs["W"] = W;
  LinSpec spec;
  spec.featureMap = "random";
  spec.attrs = "normalize, noncausal, projection = @W";
  spec.inputs = "  attn.input @W : f32 [\"R\", \"Dqk\"]\n";
  LinOracle o;
  o.noncausal = o.normalize = true;
  o.phiQ = o.phiK = [&](const double *x, int64_t D) {
    return phiRandom(W, x, D);
  };
  checkLinear(spec, o, s, inputs);
  // Causal and scaled too.
  Shape sc{1, 2, 2, 5, 5, 4, 2};
  auto in2 = makeQKV(sc, 137);
  in2["W"] = W;
  LinSpec causal = spec;
  causal.attrs = "projection = @W";
  LinOracle oc;
  oc.phiQ = oc.phiK = o.phiQ;
  checkLinear(causal, oc, sc, in2);
}

TEST(ReferenceLinear, RandomFeaturesApproximateSoftmaxKernel) {
  // E[φ(q)·φ(k)] = exp(q·k / sqrt(D)); with R = 20000 Gaussian rows the
  // estimate is within a few percent (fixed seed).
  const int64_t D = 4, R = 20000;
  Shape s{1, 1, 1, 1, 1, D, 1};
  auto inputs = makeQKV(s, 138);
  inputs["v"].setDouble(0, 1.0);
  std::mt19937_64 rng(139);
  std::normal_distribution<double> normal;
  HostArray W = HostArray::zeros(DType::F64, {R, D});
  for (int64_t i = 0; i < W.numel(); ++i)
    W.setDouble(i, normal(rng));
  inputs["W"] = W;
  LinSpec spec;
  spec.featureMap = "random";
  spec.attrs = "noncausal, projection = @W";
  spec.inputs = "  attn.input @W : f32 [\"R\", \"Dqk\"]\n";
  spec.scale = scaleConst("1.0");
  auto l = loadMLIR(linText(spec));
  ASSERT_TRUE(l);
  ReferenceOutputs out = run(*l, inputs);
  double dot = 0;
  for (int64_t d = 0; d < D; ++d)
    dot += inputs["q"].getDouble(d) * inputs["k"].getDouble(d);
  double want = std::exp(dot / std::sqrt(double(D)));
  EXPECT_NEAR(out.o.data<double>()[0], want, 0.05 * want);
}

TEST(ReferenceLinear, NoLseOutput) {
  Shape s{1, 1, 1, 3, 3, 2, 2};
  auto l = loadMLIR(linText(LinSpec{}));
  ASSERT_TRUE(l);
  ReferenceOutputs out = run(*l, makeQKV(s, 140));
  EXPECT_TRUE(out.lse.bytes.empty());
  EXPECT_EQ(out.o.shape, (std::vector<int64_t>{1, 1, 3, 2}));
}

TEST(ReferenceLinearErrors, CausalNeedsNEqualsM) {
  Shape s{1, 1, 1, 5, 7, 2, 2};
  auto l = loadMLIR(linText(LinSpec{}));
  ASSERT_TRUE(l);
  // Its signature gives k and v N rows, so the shapes fail to bind.
  EXPECT_NE(runError(*l, makeQKV(s, 141))
                .find("dim 'N' is 5 (from input 'q' dim 2) but 7 in input "
                      "'k' dim 2"),
            std::string::npos);
}

TEST(ReferenceLinearErrors, GateLookupOutOfRange) {
  // pos_neg doubles the feature dim; a gate indexing g by d runs past Dqk.
  Shape s{1, 1, 1, 3, 3, 2, 2};
  auto inputs = makeQKV(s, 142);
  std::mt19937_64 rng(143);
  inputs["g"] = logGates({s.B, s.Hq, s.N, s.Dqk}, rng);
  LinSpec spec;
  spec.featureMap = "pos_neg";
  spec.inputs = "  attn.input @g : f32 [\"B\", \"Hq\", \"N\", \"Dqk\"]\n";
  spec.gate = loadRegion(kGateArgs, "g", "%b, %h, %t, %d");
  auto l = loadMLIR(linText(spec));
  ASSERT_TRUE(l);
  std::string err = runError(*l, inputs);
  EXPECT_NE(err.find("gate: index 2 is out of range [0, 2) in dim 3 of "
                     "input 'g'"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("t=0, d=2]"), std::string::npos) << err;
}

TEST(ReferenceLinearErrors, ProjectionWidthMustBeDqk) {
  Shape s{1, 1, 1, 3, 3, 4, 2};
  auto inputs = makeQKV(s, 144);
  std::mt19937_64 rng(145);
  inputs["W"] = randomArray(DType::F64, {5, 3}, rng);
  LinSpec spec;
  spec.featureMap = "random";
  spec.attrs = "projection = @W";
  spec.inputs = "  attn.input @W : f32 [\"R\", \"P\"]\n";
  auto l = loadMLIR(linText(spec));
  ASSERT_TRUE(l);
  std::string err = runError(*l, inputs);
  EXPECT_NE(err.find("projection input 'W' must be f32 [R, Dqk]"),
            std::string::npos)
      << err;
}

//===----------------------------------------------------------------------===//
// Memory limits and NaN
//===----------------------------------------------------------------------===//

TEST(ReferenceLimits, MemoryAccountsForEveryBuffer) {
  auto l = load("attention c { mask = causal }");
  ASSERT_TRUE(l);
  // q, k, v [1, 2, 5, 4], [1, 2, 7, 4], [1, 2, 7, 3]: 40 + 56 + 42 elements
  // in float64; o [1, 2, 5, 3] and lse [1, 2, 5] in float64; a row of M = 7
  // dot products, scores and weights (8 bytes each) and visibility flags.
  ReferenceMemory m = referenceMemory(
      l->spec, {{"q", {1, 2, 5, 4}}, {"k", {1, 2, 7, 4}}, {"v", {1, 2, 7, 3}}});
  EXPECT_EQ(m.widened, (40u + 56u + 42u) * 8u);
  EXPECT_EQ(m.outputs, (30u + 10u) * 8u);
  EXPECT_EQ(m.scratch, 7u * 25u);
  EXPECT_EQ(m.total(), m.widened + m.outputs + m.scratch);
}

TEST(ReferenceLimits, OverflowingShapesSaturate) {
  auto l = load("attention c { mask = causal }");
  ASSERT_TRUE(l);
  int64_t huge = int64_t(1) << 62;
  ReferenceMemory m = referenceMemory(l->spec, {{"q", {1, 4, huge, 64}},
                                                {"k", {1, 4, huge, 64}},
                                                {"v", {1, 4, huge, 64}}});
  EXPECT_EQ(m.total(), ::attn::kSaturatedBytes);
}

TEST(ReferenceLimits, Taylor2StateIsCountedWithoutOverflow) {
  // Dphi = 1 + Dqk + Dqk (Dqk + 1) / 2 grows as Dqk^2: with Dqk = 2^32 it
  // overflows int64; the estimate saturates instead of wrapping.
  LinSpec spec;
  spec.featureMap = "taylor2";
  auto l = loadMLIR(linText(spec));
  ASSERT_TRUE(l);
  int64_t d = int64_t(1) << 32;
  ReferenceMemory m = referenceMemory(
      l->spec, {{"q", {1, 1, 1, d}}, {"k", {1, 1, 1, d}}, {"v", {1, 1, 1, 1}}});
  EXPECT_EQ(m.scratch, ::attn::kSaturatedBytes);
  // A small case, exactly: Dqk = 4 gives Dphi = 15; S [15, 3], five
  // 15-vectors and two 3-vectors.
  m = referenceMemory(
      l->spec, {{"q", {1, 1, 2, 4}}, {"k", {1, 1, 2, 4}}, {"v", {1, 1, 2, 3}}});
  EXPECT_EQ(m.scratch, (15u * 3u + 5u * 15u + 2u * 3u) * 8u);
}

TEST(ReferenceLimits, OverBudgetIsAnErrorBeforeAllocating) {
  auto l = load("attention c { mask = causal }");
  ASSERT_TRUE(l);
  Shape s{1, 2, 2, 5, 5, 4, 3};
  auto inputs = makeQKV(s, 7);
  ReferenceOutputs out;
  std::string err = evaluateReference(l->spec, inputs, out, 1000);
  // q, k: 40 elements, v: 30, in float64; o: 30 and lse: 10 in float64; a
  // row of 5 scores.
  EXPECT_EQ(err, "reference evaluator: evaluating this spec needs 1.3 KiB "
                 "(float64 inputs 880 B, outputs 320 B, scratch 125 B), more "
                 "than the memory budget of 1000 B");
  EXPECT_TRUE(out.o.bytes.empty());
  // Enough budget: it runs.
  EXPECT_EQ(evaluateReference(l->spec, inputs, out, 1 << 20), "");
}

TEST(ReferenceLimits, ElementMaskOverBudget) {
  auto l = load("attention c { mask = causal }");
  ASSERT_TRUE(l);
  Shape s{1, 1, 1, 50, 60, 2, 2};
  auto inputs = makeQKV(s, 8);
  std::vector<uint8_t> mask;
  std::string err = evaluateMask(l->spec, inputs, 0, 0, mask, nullptr, 2000);
  EXPECT_NE(err.find("the element mask needs 2.9 KiB"), std::string::npos)
      << err;
  EXPECT_EQ(evaluateMask(l->spec, inputs, 0, 0, mask), "");
  EXPECT_EQ(mask.size(), 50u * 60u);
}

TEST(ReferenceNaN, NaNScoreMakesTheSoftmaxRowNaN) {
  // A NaN in q makes every score of its row NaN: o and lse of that row are
  // NaN (as torch.softmax / logsumexp give), not an empty row's 0 and -inf.
  auto l = load("attention c { mask = causal }");
  ASSERT_TRUE(l);
  Shape s{1, 1, 1, 4, 4, 3, 2};
  auto inputs = makeQKV(s, 9);
  inputs["q"].setDouble(2 * s.Dqk + 1, std::nan(""));
  ReferenceOutputs out = run(*l, inputs);
  for (int64_t i = 0; i < s.N; ++i) {
    bool nanRow = i == 2;
    EXPECT_EQ(std::isnan(out.lse.data<double>()[i]), nanRow) << "row " << i;
    for (int64_t d = 0; d < s.Dv; ++d)
      EXPECT_EQ(std::isnan(out.o.data<double>()[i * s.Dv + d]), nanRow)
          << "row " << i << " col " << d;
  }
}

} // namespace
