//===- ReferenceGradientTest.cpp - analytic gradients vs finite differences
//===//
//
// evaluateReferenceBackward computes dq, dk, dv and the aux gradients
// analytically. Each test here checks every element of every gradient
// against a central finite difference of the loss
//
//   L = sum(o ∘ do) + sum(lse ∘ dlse)
//
// computed with the forward evaluator alone, in float64, on small awkward
// shapes (N != M both ways, GQA, Dqk != Dv): every example, every
// normalizer, every feature map, and regions that read learnable tables.
//
//===----------------------------------------------------------------------===//

#include "LoadSpec.h"

#include "llvm/Support/MemoryBuffer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <set>

using namespace mlir;
using namespace mlir::attn;
using ::attn::DType;
using ::attn::HostArray;
using attn_test::load;
using attn_test::Loaded;

namespace {

struct Dims {
  int64_t B = 1, Hq = 4, Hkv = 2, N = 5, M = 7, Dqk = 3, Dv = 2, R = 4;
};

/// Random inputs for every input of the spec's signature. Aux values are
/// chosen to look like what users pass: log gates in [-1, 0], delta-rule
/// steps in (0, 1), small integer ids.
std::map<std::string, HostArray> makeInputs(SpecOp spec, const Dims &d,
                                            uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> sym(-1.0, 1.0), neg(-1.0, 0.0),
      unit(0.05, 0.95);
  std::map<std::string, int64_t> named = {
      {"B", d.B}, {"Hq", d.Hq},   {"Hkv", d.Hkv}, {"N", d.N},
      {"M", d.M}, {"Dqk", d.Dqk}, {"Dv", d.Dv},   {"G", d.Hq / d.Hkv}};
  std::map<std::string, HostArray> in;
  for (const ::attn::InputSig &s : getSignature(spec).inputs) {
    std::vector<int64_t> shape;
    for (const auto &dim : s.dims)
      shape.push_back(dim.symbol.empty()        ? dim.size
                      : named.count(dim.symbol) ? named.at(dim.symbol)
                                                : d.R);
    bool isInt = s.type == ::attn::ElemType::I32;
    HostArray a = HostArray::zeros(isInt ? DType::I32 : DType::F64, shape);
    bool qkv = s.name == "q" || s.name == "k" || s.name == "v";
    for (int64_t i = 0, n = a.numel(); i < n; ++i)
      a.setDouble(i, isInt              ? double(rng() % 2)
                     : qkv              ? sym(rng)
                     : s.name == "beta" ? unit(rng)
                                        : neg(rng));
    in[s.name] = std::move(a);
  }
  return in;
}

HostArray randomLike(std::vector<int64_t> shape, std::mt19937_64 &rng) {
  HostArray a = HostArray::zeros(DType::F64, std::move(shape));
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  for (int64_t i = 0, n = a.numel(); i < n; ++i)
    a.setDouble(i, dist(rng));
  return a;
}

/// L = sum(o ∘ do) + sum(lse ∘ dlse), by the forward evaluator.
double loss(SpecOp spec, const std::map<std::string, HostArray> &in,
            const HostArray &dout, const HostArray *dlse) {
  ReferenceOutputs out;
  std::string err = evaluateReference(spec, in, out);
  EXPECT_EQ(err, "");
  double l = 0;
  for (int64_t i = 0, n = out.o.numel(); i < n; ++i)
    l += out.o.data<double>()[i] * dout.data<double>()[i];
  if (dlse)
    for (int64_t i = 0, n = out.lse.numel(); i < n; ++i)
      if (dlse->data<double>()[i] != 0)
        l += out.lse.data<double>()[i] * dlse->data<double>()[i];
  return l;
}

/// Checks every gradient element against a central difference. Rows whose
/// lse is -inf (no visible key) get dlse = 0 so the loss stays finite.
void checkGradients(const Loaded &l, std::map<std::string, HostArray> in,
                    uint64_t seed = 7) {
  SpecOp spec = l.spec;
  ReferenceOutputs fwd;
  ASSERT_EQ(evaluateReference(spec, in, fwd), "");
  std::mt19937_64 rng(seed);
  HostArray dout = randomLike(fwd.o.shape, rng);
  HostArray dlse;
  bool hasLse = !fwd.lse.bytes.empty();
  if (hasLse) {
    dlse = randomLike(fwd.lse.shape, rng);
    for (int64_t i = 0, n = dlse.numel(); i < n; ++i)
      if (std::isinf(fwd.lse.data<double>()[i]))
        dlse.data<double>()[i] = 0;
  }
  ReferenceGradients g;
  ASSERT_EQ(
      evaluateReferenceBackward(spec, in, dout, hasLse ? &dlse : nullptr, g),
      "");

  std::map<std::string, const HostArray *> grads = {
      {"q", &g.dq}, {"k", &g.dk}, {"v", &g.dv}};
  for (const std::string &name : differentiableInputs(spec)) {
    ASSERT_TRUE(g.daux.count(name)) << "no gradient for '" << name << "'";
    grads[name] = &g.daux.at(name);
  }
  EXPECT_EQ(g.daux.size(), grads.size() - 3);

  const double h = 1e-5;
  int checked = 0;
  for (const auto &[name, grad] : grads) {
    HostArray &x = in.at(name);
    ASSERT_EQ(grad->shape, x.shape) << name;
    ASSERT_EQ(x.dtype, DType::F64) << name;
    for (int64_t i = 0, n = x.numel(); i < n; ++i) {
      double saved = x.data<double>()[i];
      x.data<double>()[i] = saved + h;
      double up = loss(spec, in, dout, hasLse ? &dlse : nullptr);
      x.data<double>()[i] = saved - h;
      double down = loss(spec, in, dout, hasLse ? &dlse : nullptr);
      x.data<double>()[i] = saved;
      double fd = (up - down) / (2 * h);
      double an = grad->data<double>()[i];
      ASSERT_TRUE(std::isfinite(an)) << "d" << name << "[" << i << "] = " << an;
      ASSERT_NEAR(an, fd, 1e-6 + 1e-5 * std::fabs(fd))
          << "d" << name << "[" << i << "] of " << x.shapeString();
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

void checkSpec(const std::string &text, Dims d = {},
               std::vector<std::string> params = {}, uint64_t seed = 1) {
  auto l = load(text, params);
  ASSERT_TRUE(l);
  checkGradients(*l, makeInputs(l->spec, d, seed), seed);
}

//===----------------------------------------------------------------------===//
// Every example
//===----------------------------------------------------------------------===//

/// Params that make the examples' masks interesting at these sizes, and the
/// sizes a spec needs (N == M for self-attention masks and causal linear).
struct ExampleSetup {
  std::vector<std::string> params;
  Dims dims;
};

ExampleSetup setupFor(const std::string &name, SpecOp spec) {
  ExampleSetup s;
  bool selfAttention = name == "document" || name == "neighborhood_2d";
  if (spec.getLinearAttention() || selfAttention)
    s.dims.N = s.dims.M = 6;
  if (name == "neighborhood_2d") {
    s.params = {"height=4", "width=3", "kernel=3"};
    s.dims.N = s.dims.M = 12;
  }
  if (name == "sliding_window")
    s.params = {"window=3"};
  if (name == "sinks_window")
    s.params = {"window=2", "sinks=1"};
  if (name == "prefix_lm")
    s.params = {"prefix=2"};
  if (name == "softcap")
    s.params = {"cap=0.5"};
  return s;
}

TEST(ReferenceGradients, EveryExampleMatchesFiniteDifferences) {
  std::set<std::string> seen;
  for (const auto &entry :
       std::filesystem::directory_iterator(ATTN_EXAMPLES_DIR)) {
    if (entry.path().extension() != ".attn")
      continue;
    std::string name = entry.path().stem().string();
    SCOPED_TRACE(name);
    auto buf = llvm::MemoryBuffer::getFile(entry.path().string());
    ASSERT_TRUE(bool(buf));
    auto probe = load((*buf)->getBuffer().str(), {}, entry.path().string());
    ASSERT_TRUE(probe);
    ExampleSetup s = setupFor(name, probe->spec);
    auto l = load((*buf)->getBuffer().str(), s.params, entry.path().string());
    ASSERT_TRUE(l);
    checkGradients(*l, makeInputs(l->spec, s.dims, 11), 11);
    seen.insert(name);
  }
  EXPECT_GE(seen.size(), 16u) << "examples/ should hold every tier-1 variant";
}

//===----------------------------------------------------------------------===//
// Softmax family: shapes, normalizers, score regions
//===----------------------------------------------------------------------===//

TEST(ReferenceGradients, CausalFewerKeysThanQueriesHasZeroRows) {
  // N = 7 > M = 5: the first two queries see no key. Their gradients are
  // zero, not NaN, and their keys get nothing from them.
  Dims d;
  d.N = 7;
  d.M = 5;
  auto l = load("attention c { mask = causal }");
  ASSERT_TRUE(l);
  auto in = makeInputs(l->spec, d, 3);
  checkGradients(*l, in);
  std::mt19937_64 rng(5);
  HostArray dout = randomLike({d.B, d.Hq, d.N, d.Dv}, rng);
  HostArray dlse = randomLike({d.B, d.Hq, d.N}, rng);
  ReferenceGradients g;
  ASSERT_EQ(evaluateReferenceBackward(l->spec, in, dout, &dlse, g), "");
  for (int64_t h = 0; h < d.Hq; ++h)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t c = 0; c < d.Dqk; ++c)
        EXPECT_EQ(g.dq.data<double>()[(h * d.N + i) * d.Dqk + c], 0.0);
}

TEST(ReferenceGradients, MultiQueryAndDqkDiffersFromDv) {
  Dims d;
  d.Hq = 3;
  d.Hkv = 1;
  d.Dqk = 5;
  d.Dv = 1;
  checkSpec("attention dense { }", d);
}

TEST(ReferenceGradients, HeadDimOne) {
  Dims d;
  d.Dqk = 1;
  d.Dv = 1;
  checkSpec("attention c { mask = causal }", d);
}

TEST(ReferenceGradients, Normalizers) {
  checkSpec("attention s { normalizer = sigmoid(bias = -0.5) }");
  checkSpec("attention r { normalizer = relu }");
  checkSpec("attention r { mask = causal  normalizer = relu(power = 2) }");
  checkSpec("attention r { normalizer = relu(power = 3, normalize = true) }");
  checkSpec("attention r { mask = causal\n"
            "  normalizer = relu(power = 1, normalize = true) }");
  checkSpec("attention n { mask = causal  normalizer = none }");
  checkSpec("attention l { mask = causal  normalizer = softmax(lse = true) }");
}

TEST(ReferenceGradients, ScoreRegionsWithLearnableTables) {
  // A T5-style relative bias table, gathered through a clamp: every table
  // entry's gradient is the sum of dS over the (i, j) that read it.
  checkSpec("attention rpb {\n"
            "  input rpb : f32[Hq, 9]\n"
            "  input win : i32[Hq]\n"
            "  let rel = max(-4, min(q_idx - kv_idx, 4))\n"
            "  mask = causal && q_idx + M - N - kv_idx < win[h] + 3\n"
            "  score = score + rpb[h, rel + 4]\n"
            "}");
  // Per-head temperatures and slopes as tensors, and a learnable sink-like
  // per-key bias; nonlinear score ops.
  checkSpec("attention t {\n"
            "  input temp : f32[Hq]\n"
            "  input slope : f32[Hq]\n"
            "  input kb : f32[B, M]\n"
            "  score = score * exp(temp[h]) + slope[h] * abs(q_idx - kv_idx)"
            " + kb[b, kv_idx]\n"
            "}");
  checkSpec("attention f {\n"
            "  input w : f32[Hq]\n"
            "  score = select(kv_idx > q_idx, score * 2.0, "
            "sqrt(score * score + 1.0))"
            " + log2(2.0 - w[h]) - pow(2.0 - w[h], 0.5 + score)\n"
            "  normalizer = sigmoid(bias = 0.25)\n"
            "}");
  checkSpec("attention softcap {\n"
            "  input cap : f32[Hq]\n"
            "  mask = causal\n"
            "  score = (2.0 - cap[h]) * tanh(score / (2.0 - cap[h])) "
            "- exp2(min(score, 0.0) + max(score, cap[h]))\n"
            "}");
}

//===----------------------------------------------------------------------===//
// Linear family: feature maps, gates, the delta rule, readouts
//===----------------------------------------------------------------------===//

Dims linearDims() {
  Dims d;
  d.N = d.M = 6;
  return d;
}

TEST(ReferenceGradients, EveryFeatureMap) {
  const char *maps[] = {"identity", "elu_plus_one", "relu", "relu2",
                        "sigmoid",  "silu",         "exp",  "l2norm",
                        "pos_neg",  "taylor2"};
  for (const char *map : maps) {
    SCOPED_TRACE(map);
    for (const char *normalize : {"false", "true"}) {
      SCOPED_TRACE(normalize);
      // relu features can make a normalized row's denominator 0; the
      // ratio then has no derivative, so only elementwise-positive maps
      // are normalized.
      bool positive =
          std::string(map) == "elu_plus_one" || std::string(map) == "sigmoid" ||
          std::string(map) == "exp" || std::string(map) == "taylor2";
      if (std::string(normalize) == "true" && !positive)
        continue;
      checkSpec(std::string("attention lin {\n  input g : f32[B, Hq, N]\n"
                            "  linear {\n    feature_map = ") +
                    map + "\n    normalize = " + normalize +
                    "\n    gate = g[b, h, t]\n  }\n}",
                linearDims());
    }
  }
  checkSpec("attention performer {\n  input W : f32[R, Dqk]\n"
            "  linear {\n    feature_map = random(W)\n"
            "    normalize = true\n  }\n}",
            linearDims());
  checkSpec("attention mixed {\n  linear {\n    feature_map_q = silu\n"
            "    feature_map_k = elu_plus_one\n  }\n}",
            linearDims());
}

TEST(ReferenceGradients, GatesDeltaRuleAndBonus) {
  // Per-feature gates (GLA, KDA), the delta rule, RWKV's exclusive readout
  // with a learnable bonus.
  checkSpec("attention kda {\n  input a : f32[B, Hq, N, Dqk]\n"
            "  input beta : f32[B, Hq, N]\n  linear {\n"
            "    feature_map = l2norm\n    gate = a[b, h, t, d]\n"
            "    delta = beta[b, h, t]\n  }\n}",
            linearDims());
  checkSpec("attention rwkv6 {\n  input w : f32[B, Hq, N, Dqk]\n"
            "  input u : f32[Hq, Dqk]\n  linear {\n"
            "    gate = w[b, h, t, d]\n    readout = exclusive\n"
            "    bonus = u[h, d]\n  }\n}",
            linearDims());
  checkSpec("attention rwkvn {\n  input w : f32[B, Hq, N, Dqk]\n"
            "  input u : f32[Hq, Dqk]\n  linear {\n"
            "    feature_map = exp\n    normalize = true\n"
            "    gate = -exp(w[b, h, t, d])\n    readout = exclusive\n"
            "    bonus = u[h, d]\n  }\n}",
            linearDims());
  checkSpec("attention deltaexcl {\n  input beta : f32[B, Hq, N]\n"
            "  input a : f32[B, Hq, N]\n  linear {\n"
            "    feature_map = l2norm\n    gate = a[b, hk, t]\n"
            "    delta = beta[b, h, t] * 0.5\n    readout = exclusive\n"
            "  }\n}",
            linearDims());
  checkSpec("attention posneg {\n  input g : f32[B, Hq, N, Dqk]\n"
            "  linear {\n    feature_map = pos_neg\n"
            "    gate = g[b, h, t, d % Dqk]\n  }\n}",
            linearDims());
}

TEST(ReferenceGradients, NonCausalBothWays) {
  for (auto [n, m] : {std::pair<int64_t, int64_t>{5, 7}, {7, 5}}) {
    Dims d;
    d.N = n;
    d.M = m;
    checkSpec("attention nc {\n  linear {\n    feature_map = elu_plus_one\n"
              "    causal = false\n  }\n}",
              d);
    checkSpec("attention ncn {\n  linear {\n    feature_map = exp\n"
              "    normalize = true\n    causal = false\n  }\n}",
              d);
  }
}

TEST(ReferenceGradients, LongerSequenceCrossesCheckpointSegments) {
  // N = 23: checkpoints every 5 steps, the last segment short.
  Dims d;
  d.N = d.M = 23;
  d.Hq = d.Hkv = 1;
  checkSpec("attention gdn {\n  input alpha : f32[B, Hq, N]\n"
            "  input beta : f32[B, Hq, N]\n  linear {\n"
            "    feature_map = l2norm\n    gate = alpha[b, h, t]\n"
            "    delta = beta[b, h, t]\n  }\n}",
            d);
}

TEST(ReferenceGradients, GatesAtZeroAndMinusHuge) {
  // log gate 0 (no decay) and -1e30 (the state is wiped): gradients stay
  // finite and still match the finite differences.
  auto l = load("attention gla {\n  input g : f32[B, Hq, N, Dqk]\n"
                "  linear {\n    gate = g[b, h, t, d]\n  }\n}");
  ASSERT_TRUE(l);
  auto in = makeInputs(l->spec, linearDims(), 9);
  HostArray &g = in.at("g");
  for (int64_t i = 0, n = g.numel(); i < n; ++i)
    g.data<double>()[i] = i % 3 == 0 ? 0.0 : (i % 3 == 1 ? -1e30 : -0.5);
  checkGradients(*l, in);
}

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

TEST(ReferenceGradientErrors, BadGradientInputs) {
  auto l = load("attention c { mask = causal }");
  ASSERT_TRUE(l);
  Dims d;
  auto in = makeInputs(l->spec, d, 1);
  std::mt19937_64 rng(1);
  ReferenceGradients g;
  HostArray wrong = randomLike({d.B, d.Hq, d.N, d.Dv + 1}, rng);
  EXPECT_EQ(evaluateReferenceBackward(l->spec, in, wrong, nullptr, g),
            "do has shape [1, 4, 5, 3], expected [1, 4, 5, 2]");
  HostArray dout = randomLike({d.B, d.Hq, d.N, d.Dv}, rng);
  HostArray ints = HostArray::zeros(DType::I32, {d.B, d.Hq, d.N});
  EXPECT_EQ(evaluateReferenceBackward(l->spec, in, dout, &ints, g),
            "dlse must be a float array");
  auto s = load("attention s { normalizer = sigmoid }");
  ASSERT_TRUE(s);
  HostArray dlse = randomLike({d.B, d.Hq, d.N}, rng);
  EXPECT_NE(evaluateReferenceBackward(s->spec, in, dout, &dlse, g)
                .find("dlse is only defined for the softmax normalizer"),
            std::string::npos);
}

TEST(ReferenceGradientErrors, OverBudgetBeforeAllocating) {
  auto l = load("attention c { mask = causal }");
  ASSERT_TRUE(l);
  Dims d;
  auto in = makeInputs(l->spec, d, 1);
  std::mt19937_64 rng(1);
  HostArray dout = randomLike({d.B, d.Hq, d.N, d.Dv}, rng);
  ReferenceGradients g;
  std::string err = evaluateReferenceBackward(l->spec, in, dout, nullptr, g,
                                              /*maxBytes=*/1000);
  EXPECT_NE(err.find("the gradients of this spec needs"), std::string::npos)
      << err;
  EXPECT_TRUE(g.dq.bytes.empty());
}

TEST(ReferenceGradientErrors, DifferentiableInputsSkipIntsAndProjection) {
  auto l = load("attention rpb {\n  input rpb : f32[Hq, 9]\n"
                "  input win : i32[Hq]\n  mask = causal && kv_idx < win[h]\n"
                "  score = score + rpb[h, 0]\n}");
  ASSERT_TRUE(l);
  EXPECT_EQ(differentiableInputs(l->spec), std::vector<std::string>{"rpb"});
  auto p = load("attention performer {\n  input W : f32[R, Dqk]\n"
                "  input g : f32[B, Hq, N]\n  linear {\n"
                "    feature_map = random(W)\n    gate = g[b, h, t]\n  }\n}");
  ASSERT_TRUE(p);
  EXPECT_EQ(differentiableInputs(p->spec), std::vector<std::string>{"g"});
}

} // namespace
