//===- BackwardTest.cpp - compiled gradients vs the float64 reference -----===//
//
// The CPU backward kernels (attn::Compiler with CompileOptions::backward)
// against evaluateReferenceBackward, on awkward shapes: N and M not
// multiples of the tiles and different both ways (M < N leaves the first
// queries of a causal mask with no key), GQA 8:2, Dqk != Dv, head dim 1,
// every softmax-family example, each normalizer, and a score that reads a
// learnable table (its gradient too). The forward's o and lse come from the
// compiled forward kernel, as in training. Checked at 1e-4 relative to the
// largest reference gradient; fully masked rows must give exact zeros.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/Driver.h"
#include "attn/JIT/Compiler.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace fs = std::filesystem;
using ::attn::DType;
using ::attn::HostArray;

namespace {

std::string cacheDir() {
  return (fs::temp_directory_path() / "attn-backward-test-cache").string();
}

/// A compact float32 tensor and its DLTensor.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  DLTensor dl{};
  explicit Tensor(std::vector<int64_t> s, float fill = 0)
      : shape(std::move(s)) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    data.assign(size_t(n), fill);
    dl.data = data.data();
    dl.device = {kDLCPU, 0};
    dl.ndim = int32_t(shape.size());
    dl.dtype = {kDLFloat, 32, 1};
    dl.shape = shape.data();
  }
  Tensor(const Tensor &) = delete;
  /// Makes the tensor bfloat16: `data` rounded to bf16 (kept as the float
  /// values the reference sees), `bits` what the kernel reads.
  void toBF16() {
    HostArray a = HostArray::zeros(DType::BF16, shape);
    for (size_t i = 0; i < data.size(); ++i) {
      a.setDouble(int64_t(i), data[i]);
      data[i] = float(a.getDouble(int64_t(i)));
    }
    bits.assign(reinterpret_cast<const uint16_t *>(a.bytes.data()),
                reinterpret_cast<const uint16_t *>(a.bytes.data()) +
                    data.size());
    dl.data = bits.data();
    dl.dtype = {kDLBfloat, 16, 1};
  }
  std::vector<uint16_t> bits;
  HostArray host() const {
    HostArray a = HostArray::zeros(DType::F32, shape);
    std::memcpy(a.bytes.data(), data.data(), data.size() * sizeof(float));
    return a;
  }
};

struct Dims {
  int64_t B = 2, Hq = 8, Hkv = 2, N = 37, M = 45, Dqk = 24, Dv = 20;
};

struct Problem {
  std::string text;
  std::vector<std::pair<std::string, std::string>> params;
  Dims d;
  /// Relative tolerance; bf16 inputs reach the backward through the
  /// forward's bf16-dot o and lse.
  double tol = 1e-4;
  /// Where the reference's gradient is exactly 0, the kernel's must be
  /// within tol * zeroFactor of the largest gradient.
  double zeroFactor = 1e-2;
};

/// Runs forward and backward through the JIT and the reference; compares.
void check(const Problem &p, uint64_t seed = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> sym(-1, 1);
  const Dims &d = p.d;
  attn::Compiler compiler;
  attn::CompileOptions opts;
  opts.params = p.params;
  opts.cacheDir = cacheDir();
  std::string err;
  auto fwd = compiler.compile(p.text, opts, err);
  ASSERT_TRUE(fwd) << err;
  opts.backward = true;
  auto bwd = compiler.compile(p.text, opts, err);
  ASSERT_TRUE(bwd) << err;
  ASSERT_TRUE(bwd->isBackward());

  // Inputs: q, k, v, then the aux inputs of the signature (f32 tables
  // random, i32 small ids).
  std::vector<std::unique_ptr<Tensor>> tensors;
  std::map<std::string, HostArray> hostIn;
  std::vector<const DLTensor *> inputs;
  std::map<std::string, int64_t> named = {
      {"B", d.B}, {"Hq", d.Hq},   {"Hkv", d.Hkv}, {"N", d.N},
      {"M", d.M}, {"Dqk", d.Dqk}, {"Dv", d.Dv},   {"G", d.Hq / d.Hkv}};
  for (const attn::InputSig &in : fwd->signature().inputs) {
    std::vector<int64_t> shape;
    for (const attn::DimRef &r : in.dims)
      shape.push_back(r.symbol.empty() ? r.size : named.at(r.symbol));
    auto t = std::make_unique<Tensor>(shape);
    if (in.type == attn::ElemType::I32) {
      t->dl.dtype = {kDLInt, 32, 1};
      auto *ints = reinterpret_cast<int32_t *>(t->data.data());
      for (size_t i = 0; i < t->data.size(); ++i)
        ints[i] = int32_t(rng() % 2);
      HostArray a = HostArray::zeros(DType::I32, shape);
      std::memcpy(a.bytes.data(), ints, t->data.size() * 4);
      hostIn[in.name] = std::move(a);
    } else {
      for (float &x : t->data)
        x = sym(rng);
      if (in.type == attn::ElemType::BF16)
        t->toBF16();
      hostIn[in.name] = t->host();
    }
    inputs.push_back(&t->dl);
    tensors.push_back(std::move(t));
  }
  Tensor o({d.B, d.Hq, d.N, d.Dv}), lse({d.B, d.Hq, d.N});
  bool softmax = fwd->hasLse();
  ASSERT_EQ(fwd->run(inputs.data(), &o.dl, softmax ? &lse.dl : nullptr),
            ATTN_OK)
      << attn_last_error();
  Tensor dout({d.B, d.Hq, d.N, d.Dv}), dlse({d.B, d.Hq, d.N});
  for (float &x : dout.data)
    x = sym(rng);
  for (size_t i = 0; i < dlse.data.size(); ++i)
    dlse.data[i] = std::isinf(lse.data[i]) ? 0 : sym(rng);
  Tensor dq({d.B, d.Hq, d.N, d.Dqk}, NAN), dk({d.B, d.Hkv, d.M, d.Dqk}, NAN),
      dv({d.B, d.Hkv, d.M, d.Dv}, NAN);
  std::vector<std::unique_ptr<Tensor>> grads;
  std::vector<DLTensor *> daux;
  for (const std::string &name : bwd->gradientInputs()) {
    grads.push_back(std::make_unique<Tensor>(hostIn.at(name).shape, NAN));
    daux.push_back(&grads.back()->dl);
  }
  ASSERT_EQ(bwd->backward(inputs.data(), &o.dl, softmax ? &lse.dl : nullptr,
                          &dout.dl, softmax ? &dlse.dl : nullptr, &dq.dl,
                          &dk.dl, &dv.dl, daux.data()),
            ATTN_OK)
      << attn_last_error();

  // The reference.
  mlir::MLIRContext ctx;
  llvm::SourceMgr sm;
  unsigned id = sm.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(p.text, "<test>"), llvm::SMLoc());
  std::vector<std::string> params;
  for (auto &[k, v] : p.params)
    params.push_back(k + "=" + v);
  std::string paramError;
  auto module = mlir::attn::loadSpec(ctx, sm, id, params, paramError);
  ASSERT_TRUE(module) << paramError;
  mlir::attn::SpecOp spec = mlir::attn::getSpec(*module);
  EXPECT_EQ(mlir::attn::differentiableInputs(spec), bwd->gradientInputs());
  mlir::attn::ReferenceGradients ref;
  HostArray dlseHost = dlse.host();
  ASSERT_EQ(mlir::attn::evaluateReferenceBackward(
                spec, hostIn, dout.host(), softmax ? &dlseHost : nullptr, ref),
            "");
  auto compare = [&](const char *what, const Tensor &got,
                     const HostArray &want) {
    ASSERT_EQ(got.shape, want.shape) << what;
    double scale = 1e-30, maxErr = 0;
    for (int64_t i = 0; i < want.numel(); ++i)
      scale = std::max(scale, std::fabs(want.data<double>()[i]));
    int64_t worst = -1;
    for (int64_t i = 0; i < want.numel(); ++i) {
      double g = got.data[size_t(i)];
      ASSERT_FALSE(std::isnan(g)) << what << "[" << i << "] is NaN";
      double e = std::fabs(g - want.data<double>()[i]);
      if (e > maxErr)
        maxErr = e, worst = i;
      // Exact zeros stay exact (rows with no visible key, masked keys).
      if (want.data<double>()[i] == 0)
        EXPECT_LE(std::fabs(g), p.tol * p.zeroFactor * scale)
            << what << "[" << i << "]";
    }
    EXPECT_LE(maxErr / scale, p.tol)
        << what << ": max error " << maxErr << " at " << worst
        << " (largest gradient " << scale << ")";
  };
  compare("dq", dq, ref.dq);
  compare("dk", dk, ref.dk);
  compare("dv", dv, ref.dv);
  for (size_t i = 0; i < grads.size(); ++i) {
    const std::string &name = bwd->gradientInputs()[i];
    compare(("d" + name).c_str(), *grads[i], ref.daux.at(name));
  }
}

std::string example(const std::string &name) {
  std::ifstream in(std::string(ATTN_EXAMPLES_DIR) + "/" + name + ".attn");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Backward, Causal) { check({example("causal"), {}, {}}); }

TEST(Backward, CausalFewerKeysHasEmptyRows) {
  Dims d;
  d.N = 45;
  d.M = 30;
  check({example("causal"), {}, d});
}

TEST(Backward, Dense) { check({example("dense"), {}, {}}); }

TEST(Backward, SeveralTilesEachWay) {
  // Three q tiles and three kv tiles (tile_q = tile_kv = 64), the last of
  // each a tail: dq summed over kv tiles, dK/dV over q tiles and heads,
  // and the causal classification's empty, full and partial pairs.
  Dims d;
  d.B = 1;
  d.Hq = 4;
  d.Hkv = 2;
  d.N = 150;
  d.M = 170;
  d.Dqk = 20;
  d.Dv = 12;
  check({example("causal"), {}, d});
  check({example("sliding_window"), {{"window", "70"}}, d});
  check({"attention rpb {\n"
         "  input rpb : f32[Hq, 17]\n"
         "  let rel = max(-8, min(q_idx - kv_idx, 8))\n"
         "  score = score + rpb[h, rel + 8]\n"
         "}",
         {},
         d});
}

TEST(Backward, SlidingWindow) {
  check({example("sliding_window"), {{"window", "11"}}, {}});
}

TEST(Backward, SinksWindow) {
  check({example("sinks_window"), {{"window", "9"}, {"sinks", "3"}}, {}});
}

TEST(Backward, PrefixLM) {
  check({example("prefix_lm"), {{"prefix", "5"}}, {}});
}

TEST(Backward, Document) {
  Dims d;
  d.M = d.N;
  check({example("document"), {}, d});
}

TEST(Backward, Neighborhood2D) {
  Dims d;
  d.N = d.M = 7 * 6;
  check({example("neighborhood_2d"),
         {{"height", "7"}, {"width", "6"}, {"kernel", "3"}},
         d});
}

TEST(Backward, Softcap) { check({example("softcap"), {{"cap", "0.7"}}, {}}); }

TEST(Backward, Alibi) { check({example("alibi"), {}, {}}); }

TEST(Backward, Sigmoid) { check({example("sigmoid"), {}, {}}); }

TEST(Backward, ReluAndNone) {
  check(
      {"attention r { mask = causal  normalizer = relu(power = 2) }", {}, {}});
  check({"attention r { normalizer = relu }", {}, {}});
  check({"attention n { mask = causal  normalizer = none }", {}, {}});
  // Row-normalized: the kernel recomputes the row sums the forward does not
  // keep; M < N leaves rows with no visible key (sum 0: zero gradients). A
  // row with one positive score has w = 1 and an exact zero gradient in
  // exact arithmetic, which fp32 reaches only up to rounding divided by
  // that score (the ratio's conditioning), so zeros get the full tolerance.
  Dims d;
  d.N = 45;
  d.M = 30;
  Problem normalized{"attention r { mask = causal\n"
                     "  normalizer = relu(power = 2, normalize = true) }",
                     {},
                     d};
  normalized.zeroFactor = 1;
  check(normalized);
  Problem table{"attention r {\n"
                "  input t : f32[Hq]\n"
                "  score = score + t[h]\n"
                "  normalizer = relu(power = 1, normalize = true) }",
                {},
                {}};
  table.zeroFactor = 1;
  check(table);
}

TEST(Backward, BF16Inputs) {
  // bf16 q, k, v (the forward takes the AVX512-BF16 path where the CPU has
  // it); gradients in fp32 within bf16 tolerances of the reference on the
  // same rounded inputs.
  Problem p{"attention c {\n"
            "  input q : bf16[B, Hq, N, Dqk]\n"
            "  input k : bf16[B, Hkv, M, Dqk]\n"
            "  input v : bf16[B, Hkv, M, Dv]\n"
            "  mask = causal\n"
            "  score = 30.0 * tanh(score / 30.0)\n"
            "}",
            {},
            {}};
  p.tol = 2e-2;
  check(p);
}

TEST(Backward, HeadDimOneAndMQA) {
  Dims d;
  d.Dqk = d.Dv = 1;
  d.Hkv = 1;
  check({example("causal"), {}, d});
}

TEST(Backward, LearnableBiasTable) {
  check({"attention rpb {\n"
         "  input rpb : f32[Hq, 17]\n"
         "  let rel = max(-8, min(q_idx - kv_idx, 8))\n"
         "  mask = causal\n"
         "  score = score + rpb[h, rel + 8]\n"
         "}",
         {},
         {}});
  check({"attention temp {\n"
         "  input t : f32[Hq]\n"
         "  score = score * exp(t[h]) - abs(t[h]) * 0.5\n"
         "}",
         {},
         {}});
}

TEST(Backward, ScoreRegionDerivatives) {
  // Every derivative rule of the kernels' region gradient (RegionEmitter's
  // AdjointEmitter) against the reference's: select, min/max, pow, sqrt,
  // log2, exp2, division, tanh, abs, with a table read under them.
  check({"attention f {\n"
         "  input w : f32[Hq]\n"
         "  score = select(kv_idx > q_idx, score * 2.0, "
         "sqrt(score * score + 1.0))"
         " + log2(2.0 - w[h]) - pow(2.0 - w[h], 0.5 + score)"
         " + min(score, w[h]) * max(score, 0.25) / (2.0 + abs(w[h]))"
         " + exp2(tanh(score) - 1.0)\n"
         "}",
         {},
         {}});
}

TEST(BackwardErrors, ForwardKernelHasNoBackward) {
  attn::Compiler compiler;
  attn::CompileOptions opts;
  opts.cacheDir = cacheDir();
  std::string err;
  auto fwd = compiler.compile(example("causal"), opts, err);
  ASSERT_TRUE(fwd) << err;
  EXPECT_FALSE(fwd->isBackward());
  Tensor q({1, 1, 4, 4}), dummy({1, 1, 4, 4});
  const DLTensor *in[] = {&q.dl, &q.dl, &q.dl};
  EXPECT_EQ(fwd->backward(in, &dummy.dl, nullptr, &dummy.dl, nullptr, &dummy.dl,
                          &dummy.dl, &dummy.dl),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(attn_last_error()).find("descriptor is NULL"),
            std::string::npos);
}

} // namespace

namespace {

/// A compiled causal forward/backward pair on small shapes with every
/// tensor the backward takes, for the error tests.
struct ErrorCase {
  std::unique_ptr<attn::Kernel> bwd;
  Tensor q{{1, 2, 5, 4}}, k{{1, 1, 6, 4}}, v{{1, 1, 6, 3}};
  Tensor o{{1, 2, 5, 3}}, lse{{1, 2, 5}}, dout{{1, 2, 5, 3}};
  Tensor dq{{1, 2, 5, 4}, 7}, dk{{1, 1, 6, 4}, 7}, dv{{1, 1, 6, 3}, 7};
  const DLTensor *in[3] = {&q.dl, &k.dl, &v.dl};

  ErrorCase() {
    attn::Compiler compiler;
    attn::CompileOptions opts;
    opts.cacheDir = cacheDir();
    opts.backward = true;
    std::string err;
    bwd = compiler.compile(example("causal"), opts, err);
    EXPECT_TRUE(bwd) << err;
  }
  attn_status_t run(const DLTensor *lseArg) {
    return bwd->backward(in, &o.dl, lseArg, &dout.dl, nullptr, &dq.dl, &dk.dl,
                         &dv.dl);
  }
  /// Nothing was written: the outputs still hold their fill.
  void expectUntouched() {
    for (Tensor *t : {&dq, &dk, &dv})
      for (float x : t->data)
        ASSERT_EQ(x, 7.0f);
  }
};

std::string lastError() { return attn_last_error(); }

TEST(BackwardErrors, WrongDoutShape) {
  ErrorCase c;
  ASSERT_TRUE(c.bwd);
  c.dout.shape[3] = 2;
  EXPECT_EQ(c.run(&c.lse.dl), ATTN_ERROR_SHAPE);
  EXPECT_NE(lastError().find("dout: dim 3 is 2, expected 3"), std::string::npos)
      << lastError();
  c.expectUntouched();
}

TEST(BackwardErrors, WrongDoutDtype) {
  ErrorCase c;
  ASSERT_TRUE(c.bwd);
  c.dout.dl.dtype = {kDLFloat, 64, 1};
  EXPECT_EQ(c.run(&c.lse.dl), ATTN_ERROR_DTYPE);
  EXPECT_NE(lastError().find("dout: dtype is float64, expected float32"),
            std::string::npos)
      << lastError();
  c.expectUntouched();
}

TEST(BackwardErrors, MissingForwardLse) {
  ErrorCase c;
  ASSERT_TRUE(c.bwd);
  EXPECT_EQ(c.run(nullptr), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(lastError().find("the softmax backward needs the forward's lse"),
            std::string::npos)
      << lastError();
  c.expectUntouched();
}

TEST(BackwardErrors, WrongLseShape) {
  ErrorCase c;
  ASSERT_TRUE(c.bwd);
  c.lse.shape[2] = 4;
  EXPECT_EQ(c.run(&c.lse.dl), ATTN_ERROR_SHAPE);
  EXPECT_NE(lastError().find("lse: dim 2 (N) is 4, expected 5"),
            std::string::npos)
      << lastError();
  c.expectUntouched();
}

TEST(BackwardErrors, OutputOnAnotherDevice) {
  ErrorCase c;
  ASSERT_TRUE(c.bwd);
  c.dk.dl.device = {kDLCUDA, 0};
  EXPECT_EQ(c.run(&c.lse.dl), ATTN_ERROR_DEVICE);
  EXPECT_NE(lastError().find("dk: tensor is on kDLCUDA"), std::string::npos)
      << lastError();
  c.expectUntouched();
}

TEST(BackwardErrors, OutputAliasingAnInput) {
  ErrorCase c;
  ASSERT_TRUE(c.bwd);
  // dq written over q (same shape): refused, nothing written.
  DLTensor alias = c.dq.dl;
  alias.data = c.q.data.data();
  std::vector<float> before = c.q.data;
  EXPECT_EQ(c.bwd->backward(c.in, &c.o.dl, &c.lse.dl, &c.dout.dl, nullptr,
                            &alias, &c.dk.dl, &c.dv.dl),
            ATTN_ERROR_LAYOUT);
  EXPECT_NE(lastError().find("dq: overlaps q"), std::string::npos)
      << lastError();
  EXPECT_EQ(c.q.data, before);
  // Two gradients in one buffer.
  DLTensor dvOverDk = c.dv.dl;
  dvOverDk.data = c.dk.data.data();
  EXPECT_EQ(c.bwd->backward(c.in, &c.o.dl, &c.lse.dl, &c.dout.dl, nullptr,
                            &c.dq.dl, &c.dk.dl, &dvOverDk),
            ATTN_ERROR_LAYOUT);
  EXPECT_NE(lastError().find("overlaps"), std::string::npos) << lastError();
  c.expectUntouched();
}

} // namespace

//===----------------------------------------------------------------------===//
// The linear family (causal: N == M)
//===----------------------------------------------------------------------===//

namespace {
Dims linearDims() {
  Dims d;
  d.M = d.N; // 37: chunks of 7 steps, the last one short
  return d;
}
} // namespace

TEST(BackwardLinear, GatedExamples) {
  // Per-feature (GLA), scalar (Mamba-2) and fixed (RetNet) decays; GQA
  // 8:2, Dqk != Dv.
  check({example("gla"), {}, linearDims()});
  check({example("mamba2"), {}, linearDims()});
  check({example("retnet"), {}, linearDims()});
}

TEST(BackwardLinear, DeltaRuleAndFeatureMaps) {
  check({example("gated_deltanet"), {}, linearDims()});
  check({example("linear_elu"), {}, linearDims()});
  Dims d = linearDims();
  d.Dqk = 6; // taylor2: 1 + 6 + 21 features
  check({example("based"), {}, d});
}

TEST(BackwardLinear, ExclusiveReadoutWithBonus) {
  // RWKV-6: per-feature gates, the exclusive readout, a learnable bonus
  // shared by the batch (atomic adds), normalized too.
  const char *rwkv = "attention rwkv {\n"
                     "  input w : f32[B, Hq, N, Dqk]\n"
                     "  input u : f32[Hq, Dqk]\n"
                     "  linear {\n"
                     "    gate = -exp(w[b, h, t, d])\n"
                     "    readout = exclusive\n"
                     "    bonus = u[h, d]\n%s"
                     "  }\n}";
  char buf[512];
  std::snprintf(buf, sizeof buf, rwkv, "");
  check({buf, {}, linearDims()});
  std::snprintf(buf, sizeof buf, rwkv,
                "    feature_map = exp\n    normalize = true\n");
  check({buf, {}, linearDims()});
}

TEST(BackwardLinear, NonCausalBothWays) {
  const char *nc = "attention nc {\n  linear {\n    feature_map = relu\n"
                   "    causal = false\n    normalize = true\n  }\n}";
  Dims d;
  d.N = 20;
  d.M = 61;
  check({nc, {}, d});
  d.N = 61;
  d.M = 7;
  check({nc, {}, d});
}

TEST(BackwardLinear, OneStepAndLongHeads) {
  Dims d;
  d.B = 1;
  d.Hq = 2;
  d.Hkv = 1;
  d.N = d.M = 1;
  d.Dqk = 1;
  d.Dv = 1;
  check({example("gla"), {}, d});
  d.N = d.M = 30;
  d.Dqk = 257;
  d.Dv = 3;
  check({example("gated_deltanet"), {}, d});
}

TEST(BackwardLinear, BF16Inputs) {
  Problem p{"attention gla16 {\n"
            "  input q : bf16[B, Hq, N, Dqk]\n"
            "  input k : bf16[B, Hkv, M, Dqk]\n"
            "  input v : bf16[B, Hkv, M, Dv]\n"
            "  input g : f32[B, Hq, N, Dqk]\n"
            "  linear {\n    gate = g[b, h, t, d]\n  }\n}",
            {},
            linearDims()};
  check(p);
}

TEST(BackwardErrors, LinearHasNoLseGradient) {
  attn::Compiler compiler;
  attn::CompileOptions opts;
  opts.cacheDir = cacheDir();
  opts.backward = true;
  std::string err;
  auto bwd = compiler.compile(example("retnet"), opts, err);
  ASSERT_TRUE(bwd) << err;
  EXPECT_TRUE(bwd->gradientInputs().empty());
  Tensor q({1, 1, 4, 4}, 0.5f), k({1, 1, 4, 4}, 0.5f), v({1, 1, 4, 4}, 0.5f);
  Tensor o({1, 1, 4, 4}), dout({1, 1, 4, 4}, 1.0f), dlse({1, 1, 4});
  Tensor dq({1, 1, 4, 4}, 7.0f), dk({1, 1, 4, 4}, 7.0f), dv({1, 1, 4, 4}, 7.0f);
  const DLTensor *inputs[] = {&q.dl, &k.dl, &v.dl};
  EXPECT_EQ(bwd->backward(inputs, &o.dl, nullptr, &dout.dl, &dlse.dl, &dq.dl,
                          &dk.dl, &dv.dl, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(attn_last_error()).find("has no lse"),
            std::string::npos)
      << attn_last_error();
  EXPECT_EQ(dq.data[0], 7.0f); // nothing written
}
