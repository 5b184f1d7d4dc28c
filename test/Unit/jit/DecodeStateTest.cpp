//===- DecodeStateTest.cpp - linear attention with a carried state --------===//
//
// A linear-attention kernel compiled with CompileOptions::linearState starts
// from the `state` (and `zstate`) inputs and writes the final state back. Run
// on a sequence in pieces — a prefill, then single decode steps — it must
// give the outputs of one run over the whole sequence, in both the chunked
// and the recurrent form.
//
//===----------------------------------------------------------------------===//

#include "attn/JIT/Compiler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

namespace fs = std::filesystem;
using namespace attn;

namespace {

const char *const kExamplesDir = ATTN_EXAMPLES_DIR;

struct View {
  DLTensor t{};
  std::vector<int64_t> shape, strides;
};

/// A [B, H, n, D] window at step t0 of a compact [B, H, N, D] buffer.
View window(float *data, int64_t B, int64_t H, int64_t N, int64_t D,
            int64_t t0, int64_t n) {
  View v;
  v.shape = {B, H, n, D};
  v.strides = {H * N * D, N * D, D, 1};
  v.t.data = data;
  v.t.byte_offset = uint64_t(t0 * D) * sizeof(float);
  v.t.device = {kDLCPU, 0};
  v.t.ndim = 4;
  v.t.dtype = {kDLFloat, 32, 1};
  v.t.shape = v.shape.data();
  v.t.strides = v.strides.data();
  return v;
}

View compact(float *data, std::vector<int64_t> shape) {
  View v;
  v.shape = std::move(shape);
  v.t.data = data;
  v.t.device = {kDLCPU, 0};
  v.t.ndim = static_cast<int32_t>(v.shape.size());
  v.t.dtype = {kDLFloat, 32, 1};
  v.t.shape = v.shape.data();
  return v;
}

/// Runs `spec` (with a per-key-dim gate input when `gated`) over N steps in
/// the pieces `cuts` and returns the max relative difference to one run.
double piecewiseError(const std::string &spec, bool gated, bool normalized,
                      int64_t chunk, std::vector<int64_t> cuts) {
  const int64_t B = 2, H = 3, N = 41, D = 12, Dv = 20;
  fs::path cache = fs::temp_directory_path() / "attn-decode-test-cache";
  CompileOptions opts;
  opts.cacheDir = cache.string();
  opts.linearChunk = chunk;
  opts.linearState = true;
  std::string err;
  Compiler compiler;
  auto kernel = compiler.compile(spec, opts, err);
  EXPECT_TRUE(kernel) << err;
  if (!kernel)
    return INFINITY;

  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> q(B * H * N * D), k(q.size()), v(B * H * N * Dv),
      g(q.size());
  for (auto *x : {&q, &k, &v})
    for (float &e : *x)
      e = nd(rng);
  for (float &e : g)
    e = -std::log1p(std::exp(-nd(rng))); // log gates <= 0
  auto run = [&](std::vector<float> &o, const std::vector<int64_t> &pieces) {
    std::vector<float> state(B * H * D * Dv, 0.f), zstate(B * H * D, 0.f);
    View st = compact(state.data(), {B, H, D, Dv});
    View zs = compact(zstate.data(), {B, H, D});
    int64_t t0 = 0;
    for (int64_t n : pieces) {
      View vq = window(q.data(), B, H, N, D, t0, n);
      View vk = window(k.data(), B, H, N, D, t0, n);
      View vv = window(v.data(), B, H, N, Dv, t0, n);
      View vg = window(g.data(), B, H, N, D, t0, n);
      View vo = window(o.data(), B, H, N, Dv, t0, n);
      std::vector<const DLTensor *> in = {&vq.t, &vk.t, &vv.t};
      if (gated)
        in.push_back(&vg.t);
      in.push_back(&st.t);
      if (normalized)
        in.push_back(&zs.t);
      attn_status_t status = kernel->run(in.data(), &vo.t, nullptr);
      EXPECT_EQ(status, ATTN_OK) << attn_last_error();
      t0 += n;
    }
  };
  std::vector<float> whole(B * H * N * Dv), pieces(whole.size());
  run(whole, {N});
  run(pieces, cuts);
  double maxDiff = 0, maxAbs = 0;
  for (size_t i = 0; i < whole.size(); ++i) {
    maxDiff = std::max(maxDiff, double(std::fabs(whole[i] - pieces[i])));
    maxAbs = std::max(maxAbs, double(std::fabs(whole[i])));
  }
  return maxDiff / std::max(maxAbs, 1e-30);
}

std::string example(const char *name) {
  return std::string(kExamplesDir) + "/" + name + ".attn";
}

// A prefill of 29 steps, then 12 single decode steps.
std::vector<int64_t> prefillThenSteps() {
  std::vector<int64_t> cuts = {29};
  for (int i = 0; i < 12; ++i)
    cuts.push_back(1);
  return cuts;
}

} // namespace

TEST(LinearState, RetnetChunkedPieces) {
  EXPECT_LT(piecewiseError(example("retnet"), false, false, 16, {10, 17, 14}),
            1e-5);
}

TEST(LinearState, RetnetDecodeSteps) {
  EXPECT_LT(piecewiseError(example("retnet"), false, false, 64,
                           prefillThenSteps()),
            1e-5);
}

TEST(LinearState, GLAChunkedAndRecurrent) {
  EXPECT_LT(piecewiseError(example("gla"), true, false, 16, prefillThenSteps()),
            1e-5);
  EXPECT_LT(piecewiseError(example("gla"), true, false, 0, prefillThenSteps()),
            1e-5);
}

TEST(LinearState, NormalizedCarriesZ) {
  EXPECT_LT(piecewiseError(example("linear_elu"), false, true, 8,
                           prefillThenSteps()),
            1e-5);
}

TEST(LinearState, DeltaRuleRecurrent) {
  // Gated DeltaNet reads alpha and beta [B, H, N]: use a spec with the
  // per-key-dim gate input instead so the windows above apply.
  const char *spec = "attention gdelta {\n"
                     "  input g : f32[B, Hq, N, Dqk]\n"
                     "  linear {\n"
                     "    feature_map = l2norm\n"
                     "    gate = g[b, h, t, d]\n"
                     "    delta = 0.5\n"
                     "  }\n"
                     "}\n";
  EXPECT_LT(piecewiseError(spec, true, false, 64, prefillThenSteps()), 1e-5);
}

TEST(LinearState, RejectsDimensionChangingMaps) {
  CompileOptions opts;
  opts.cacheDir = (fs::temp_directory_path() / "attn-decode-test-cache").string();
  opts.linearState = true;
  std::string err;
  Compiler compiler;
  auto kernel = compiler.compile(example("based"), opts, err);
  EXPECT_FALSE(kernel);
  EXPECT_NE(err.find("not supported yet for feature maps that change the "
                     "dimension"),
            std::string::npos)
      << err;
}
