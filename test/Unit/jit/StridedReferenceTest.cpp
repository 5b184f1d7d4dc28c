//===- StridedReferenceTest.cpp - strided tensors, decode vs the oracle --===//
//-===//
//
// Compiled CPU kernels (attn::Compiler) against the float64 reference
// evaluator (evaluateReference), on inputs the `attnc run` tests never
// produce:
//
//  - Strided and offset fp32 tensors for every normalizer (softmax, sigmoid,
//    relu, none), each spec with a mask and f32 and i32 aux inputs: q with
//    padded rows and a byte offset, k with its heads interleaved between
//    rows, v column-major inside a head (innermost stride != 1), o with
//    padded, interleaved rows, lse with a stride, aux tensors with strides
//    and offsets. Every padding element is NaN (a kernel that reads it
//    produces NaN), and o's and lse's padding is a sentinel the kernel must
//    leave alone. Checked at 1e-5 (relative to max |o|; lse relative to
//    max(1, |lse|)).
//  - Decoding with a carried, gated, normalized linear state: a prefill and
//    then single steps (chunked and recurrent), compared with the reference
//    over the whole sequence, and the final state S and normalizer state z
//    the kernel writes back compared with a float64 recurrence written here.
//
// Why: the JIT tests checked strided tensors only for the softmax causal
// kernel and decode only against the kernel itself (DecodeStateTest), so a
// normalizer path that ignores a stride, or a z that is carried but not
// decayed, went unnoticed when every piece made the same mistake.
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
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <random>

namespace fs = std::filesystem;
using ::attn::DType;
using ::attn::HostArray;

namespace {

constexpr double kTol = 1e-5;
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kSentinel = 12345.0f;

std::string cacheDir() {
  return (fs::temp_directory_path() / "attn-strided-test-cache").string();
}

/// Runs the reference evaluator on `text` with `params`.
std::string reference(const std::string &text,
                      const std::vector<std::string> &params,
                      const std::map<std::string, HostArray> &inputs,
                      mlir::attn::ReferenceOutputs &out) {
  mlir::MLIRContext ctx;
  llvm::SourceMgr sourceMgr;
  unsigned id = sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(text, "<test>"), llvm::SMLoc());
  std::string diags;
  mlir::ScopedDiagnosticHandler handler(&ctx, [&](mlir::Diagnostic &d) {
    diags += d.str() + "\n";
    return mlir::success();
  });
  std::string paramError;
  auto module = mlir::attn::loadSpec(ctx, sourceMgr, id, params, paramError);
  if (!module)
    return "spec did not load: " + paramError + diags;
  return mlir::attn::evaluateReference(mlir::attn::getSpec(*module), inputs,
                                       out);
}

/// A logical tensor (compact values, float64 for the reference) and its
/// strided image in a padded buffer: dims laid out in memory in the order
/// `order` (outermost first), each padded by `pad[d]` elements, the
/// innermost dim with stride `inner`, starting `offset` elements in. The
/// padding holds `fill`.
template <typename T> struct Strided {
  std::vector<int64_t> shape, strides;
  std::vector<T> buffer;
  int64_t offset = 0;
  DLTensor dl{};

  Strided(std::vector<int64_t> shape_, std::vector<int> order,
          std::vector<int64_t> pad, int64_t inner, int64_t offset_, T fill,
          DLDataType dtype)
      : shape(std::move(shape_)), offset(offset_) {
    size_t r = shape.size();
    strides.assign(r, 0);
    int64_t s = inner;
    for (size_t i = r; i-- > 0;) {
      int d = order[i];
      strides[d] = s;
      s *= shape[d] + pad[d];
    }
    buffer.assign(size_t(offset + s + inner), fill);
    dl.data = buffer.data();
    dl.byte_offset = uint64_t(offset) * sizeof(T);
    dl.device = {kDLCPU, 0};
    dl.ndim = int32_t(r);
    dl.dtype = dtype;
    dl.shape = shape.data();
    dl.strides = strides.data();
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t x : shape)
      n *= x;
    return n;
  }
  /// Buffer index of the element with C-order flat index `flat`.
  int64_t at(int64_t flat) const {
    int64_t idx = offset;
    for (size_t d = shape.size(); d-- > 0;) {
      idx += (flat % shape[d]) * strides[d];
      flat /= shape[d];
    }
    return idx;
  }
};

/// Fills the elements of `t` with `gen()` and returns them as a compact
/// HostArray (F64 for floats, I32 for ints) for the reference.
template <typename T, typename Gen> HostArray fill(Strided<T> &t, Gen gen) {
  HostArray a = HostArray::zeros(
      std::is_same<T, float>::value ? DType::F64 : DType::I32, t.shape);
  for (int64_t i = 0, n = t.numel(); i < n; ++i) {
    T x = gen(i);
    t.buffer[t.at(i)] = x;
    if (std::is_same<T, float>::value)
      a.data<double>()[i] = double(x);
    else
      a.data<int32_t>()[i] = int32_t(x);
  }
  return a;
}

struct NormalizerCase {
  const char *name;
  const char *spec;
  bool lse;
  int64_t tileQ, tileKV;
  /// N = 1 runs the decode schedule (softmax); G * N = 2 then takes its
  /// head-dim-in-lanes micro-kernel when v's rows are contiguous
  /// (`vRowMajor`) and the lane one when v is column-major.
  int64_t N = 45;
  bool vRowMajor = false;
};
/// gtest prints a parameter by this (ctest's test names include it): the
/// case's name, not the struct's bytes (pointers that change per build).
void PrintTo(const NormalizerCase &c, std::ostream *os) { *os << c.name; }

// Each spec reads an f32 bias table [Hq, N, M] and i32 positions [B, M]
// (k's "document" start) so the aux inputs are strided too.
const char *const kSoftmaxSpec = "attention s_softmax {\n"
                                 "  input bias : f32[Hq, N, M]\n"
                                 "  input kpos : i32[B, M]\n"
                                 "  mask = kpos[b, kv_idx] <= q_idx + M - N\n"
                                 "  score = score + bias[h, q_idx, kv_idx]\n"
                                 "}\n";
const NormalizerCase kCases[] = {
    {"softmax", kSoftmaxSpec, true, 16, 7},
    {"softmax_decode_vcols", kSoftmaxSpec, true, 16, 7, 1, false},
    {"softmax_decode_vrows", kSoftmaxSpec, true, 16, 7, 1, true},
    {"sigmoid",
     "attention s_sigmoid {\n"
     "  input bias : f32[Hq, N, M]\n"
     "  input kpos : i32[B, M]\n"
     "  mask = kpos[b, kv_idx] <= q_idx + M - N && q_idx + M - N - kv_idx < "
     "20\n"
     "  score = score + bias[h, q_idx, kv_idx]\n"
     "  normalizer = sigmoid(bias = -1.5)\n"
     "}\n",
     false, 32, 16},
    {"relu",
     "attention s_relu {\n"
     "  input bias : f32[Hq, N, M]\n"
     "  input kpos : i32[B, M]\n"
     "  mask = kpos[b, kv_idx] <= q_idx + M - N\n"
     "  score = score + bias[h, q_idx, kv_idx]\n"
     "  normalizer = relu(power = 2, normalize = true)\n"
     "}\n",
     false, 16, 33},
    {"relu3",
     "attention s_relu3 {\n"
     "  input bias : f32[Hq, N, M]\n"
     "  input kpos : i32[B, M]\n"
     "  mask = kpos[b, kv_idx] <= q_idx + M - N\n"
     "  score = score + bias[h, q_idx, kv_idx]\n"
     "  normalizer = relu(power = 3)\n"
     "}\n",
     false, 0, 0},
    {"none",
     "attention s_none {\n"
     "  input bias : f32[Hq, N, M]\n"
     "  input kpos : i32[B, M]\n"
     "  mask = kpos[b, kv_idx] <= q_idx + M - N\n"
     "  score = score * 0.5 + bias[h, q_idx, kv_idx]\n"
     "  normalizer = none\n"
     "}\n",
     false, 48, 1},
};

class StridedNormalizers : public ::testing::TestWithParam<NormalizerCase> {};

TEST_P(StridedNormalizers, MatchesReference) {
  const NormalizerCase &c = GetParam();
  const int64_t B = 2, Hq = 4, Hkv = 2, N = c.N, M = 37, Dqk = 20, Dv = 13;
  const DLDataType f32 = {kDLFloat, 32, 1}, i32 = {kDLInt, 32, 1};
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);

  // q: padded rows and heads, 5 floats in.
  Strided<float> q({B, Hq, N, Dqk}, {0, 1, 2, 3}, {0, 1, 2, 3}, 1, 5, kNaN,
                   f32);
  // k: heads interleaved between rows ([B, M, Hkv, Dqk] in memory).
  Strided<float> k({B, Hkv, M, Dqk}, {0, 2, 1, 3}, {0, 0, 1, 1}, 1, 3, kNaN,
                   f32);
  // v: column-major inside a head ([B, Hkv, Dv, M] in memory): the
  // innermost logical dim has stride M + 2; or rows padded by 3.
  Strided<float> v = c.vRowMajor
                         ? Strided<float>({B, Hkv, M, Dv}, {0, 1, 2, 3},
                                          {0, 1, 0, 3}, 1, 7, kNaN, f32)
                         : Strided<float>({B, Hkv, M, Dv}, {0, 1, 3, 2},
                                          {0, 1, 2, 0}, 1, 7, kNaN, f32);
  // bias [Hq, N, M] with stride 2 everywhere inside, kpos [B, M] stride 3.
  Strided<float> bias({Hq, N, M}, {0, 1, 2}, {1, 1, 1}, 2, 1, kNaN, f32);
  Strided<int32_t> kpos({B, M}, {0, 1}, {2, 0}, 3, 2, -1000000, i32);
  // o: rows padded and interleaved (innermost stride 2); lse stride 3.
  Strided<float> o({B, Hq, N, Dv}, {0, 1, 2, 3}, {0, 1, 1, 2}, 2, 9, kSentinel,
                   f32);
  Strided<float> lse({B, Hq, N}, {0, 1, 2}, {1, 0, 2}, 3, 4, kSentinel, f32);

  std::map<std::string, HostArray> ref;
  ref["q"] = fill(q, [&](int64_t) { return nd(rng); });
  ref["k"] = fill(k, [&](int64_t) { return nd(rng); });
  ref["v"] = fill(v, [&](int64_t) { return nd(rng); });
  ref["bias"] = fill(bias, [&](int64_t) { return 0.5f * nd(rng); });
  // kpos[b, j] = j, except every 11th key, which starts 5 later (rows see
  // holes); with M < N the first N - M rows see no key (empty rows).
  ref["kpos"] = fill(kpos, [&](int64_t i) {
    int64_t j = i % M;
    return int32_t(j % 11 == 3 ? j + 5 : j);
  });

  attn::CompileOptions opts;
  opts.cacheDir = cacheDir();
  opts.tileQ = c.tileQ;
  opts.tileKV = c.tileKV;
  std::string err;
  attn::Compiler compiler;
  auto kernel = compiler.compile(c.spec, opts, err);
  ASSERT_TRUE(kernel) << err;
  const DLTensor *in[] = {&q.dl, &k.dl, &v.dl, &bias.dl, &kpos.dl};
  attn_run_options_t runOpts{2};
  ASSERT_EQ(kernel->run(in, &o.dl, c.lse ? &lse.dl : nullptr, &runOpts),
            ATTN_OK)
      << attn_last_error();

  mlir::attn::ReferenceOutputs out;
  ASSERT_EQ(reference(c.spec, {}, ref, out), "");
  double maxErr = 0, maxRef = 0;
  int64_t bad = 0;
  for (int64_t i = 0, n = o.numel(); i < n; ++i) {
    double x = o.buffer[o.at(i)], y = out.o.data<double>()[i];
    if (!std::isfinite(x) || !std::isfinite(y)) {
      ++bad;
      continue;
    }
    maxErr = std::max(maxErr, std::fabs(x - y));
    maxRef = std::max(maxRef, std::fabs(y));
  }
  EXPECT_EQ(bad, 0) << c.name << ": non-finite o";
  EXPECT_GT(maxRef, 0);
  EXPECT_LE(maxErr / maxRef, kTol) << c.name << ": max abs err " << maxErr;
  if (c.lse) {
    double lseErr = 0;
    int64_t empty = 0;
    for (int64_t i = 0, n = lse.numel(); i < n; ++i) {
      double x = lse.buffer[lse.at(i)], y = out.lse.data<double>()[i];
      if (std::isinf(y) && y < 0) {
        EXPECT_TRUE(std::isinf(x) && x < 0) << "lse[" << i << "] = " << x;
        ++empty;
        continue;
      }
      lseErr = std::max(lseErr, std::fabs(x - y) / std::max(1.0, std::fabs(y)));
    }
    EXPECT_LE(lseErr, kTol) << c.name;
    if (N > M)
      EXPECT_GT(empty, 0) << "the kpos blocks should leave some rows empty";
  }
  // Nothing outside the elements was written.
  std::vector<char> isElem(o.buffer.size(), 0);
  for (int64_t i = 0, n = o.numel(); i < n; ++i)
    isElem[o.at(i)] = 1;
  int64_t touched = 0;
  for (size_t i = 0; i < o.buffer.size(); ++i)
    touched += !isElem[i] && o.buffer[i] != kSentinel;
  EXPECT_EQ(touched, 0) << c.name << ": o's padding was written";
  if (c.lse) {
    std::vector<char> lseElem(lse.buffer.size(), 0);
    for (int64_t i = 0, n = lse.numel(); i < n; ++i)
      lseElem[lse.at(i)] = 1;
    int64_t lseTouched = 0;
    for (size_t i = 0; i < lse.buffer.size(); ++i)
      lseTouched += !lseElem[i] && lse.buffer[i] != kSentinel;
    EXPECT_EQ(lseTouched, 0) << c.name << ": lse's padding was written";
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllNormalizers, StridedNormalizers, ::testing::ValuesIn(kCases),
    [](const ::testing::TestParamInfo<NormalizerCase> &info) {
      return std::string(info.param.name);
    });

//===----------------------------------------------------------------------===//
// Decoding with a gated, normalized state vs the reference
//===----------------------------------------------------------------------===//

struct DecodeCase {
  const char *name;
  bool vectorGate; // g : f32[B, Hq, N, Dqk], else a : f32[B, Hkv, N]
  int64_t chunk;
};
void PrintTo(const DecodeCase &c, std::ostream *os) { *os << c.name; }

const char *const kVectorSpec = "attention dec_vec {\n"
                                "  input g : f32[B, Hq, N, Dqk]\n"
                                "  linear {\n"
                                "    feature_map = elu_plus_one\n"
                                "    gate = g[b, h, t, d]\n"
                                "    normalize = true\n"
                                "  }\n"
                                "}\n";
const char *const kScalarSpec = "attention dec_scalar {\n"
                                "  input a : f32[B, Hkv, N]\n"
                                "  linear {\n"
                                "    feature_map = elu_plus_one\n"
                                "    gate = a[b, hk, t]\n"
                                "    normalize = true\n"
                                "  }\n"
                                "}\n";

/// A window of `n` steps at step `t0` of a compact tensor whose dim 2 is the
/// time axis: same strides, shorter dim 2, a byte offset.
DLTensor timeWindow(float *data, const std::vector<int64_t> &fullShape,
                    std::vector<int64_t> &shape, std::vector<int64_t> &strides,
                    int64_t t0, int64_t n) {
  size_t r = fullShape.size();
  strides.assign(r, 1);
  for (size_t d = r - 1; d-- > 0;)
    strides[d] = strides[d + 1] * fullShape[d + 1];
  shape = fullShape;
  shape[2] = n;
  DLTensor t{};
  t.data = data;
  t.byte_offset = uint64_t(t0 * strides[2]) * sizeof(float);
  t.device = {kDLCPU, 0};
  t.ndim = int32_t(r);
  t.dtype = {kDLFloat, 32, 1};
  t.shape = shape.data();
  t.strides = strides.data();
  return t;
}

class GatedNormalizedDecode : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(GatedNormalizedDecode, MatchesReferenceAndFinalState) {
  const DecodeCase &c = GetParam();
  const int64_t B = 2, Hq = 4, Hkv = 2, N = 45, D = 12, Dv = 10;
  const char *spec = c.vectorGate ? kVectorSpec : kScalarSpec;
  attn::CompileOptions opts;
  opts.cacheDir = cacheDir();
  opts.linearChunk = c.chunk;
  opts.linearState = true;
  std::string err;
  attn::Compiler compiler;
  auto kernel = compiler.compile(spec, opts, err);
  ASSERT_TRUE(kernel) << err;

  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<int64_t> qShape = {B, Hq, N, D}, kShape = {B, Hkv, N, D},
                       vShape = {B, Hkv, N, Dv}, oShape = {B, Hq, N, Dv};
  std::vector<int64_t> gShape = c.vectorGate ? std::vector<int64_t>{B, Hq, N, D}
                                             : std::vector<int64_t>{B, Hkv, N};
  auto count = [](const std::vector<int64_t> &s) {
    int64_t n = 1;
    for (int64_t x : s)
      n *= x;
    return n;
  };
  std::vector<float> q(count(qShape)), k(count(kShape)), v(count(vShape)),
      g(count(gShape)), o(count(oShape), kNaN);
  for (auto *x : {&q, &k, &v})
    for (float &e : *x)
      e = nd(rng);
  // Log gates <= 0, mild to strong (-exp(N(-2, 1.5^2))).
  std::normal_distribution<float> lg(-2.f, 1.5f);
  for (float &e : g)
    e = -std::exp(lg(rng));

  // Prefill 29 steps, then 16 single steps; the state starts at 0.
  std::vector<float> state(B * Hq * D * Dv, 0.f), zstate(B * Hq * D, 0.f);
  std::vector<int64_t> stShape = {B, Hq, D, Dv}, zShape = {B, Hq, D};
  DLTensor st{}, zs{};
  for (auto [t, shape, data] : {std::make_tuple(&st, &stShape, state.data()),
                                std::make_tuple(&zs, &zShape, zstate.data())}) {
    t->data = data;
    t->device = {kDLCPU, 0};
    t->ndim = int32_t(shape->size());
    t->dtype = {kDLFloat, 32, 1};
    t->shape = shape->data();
  }
  std::vector<int64_t> pieces = {29};
  for (int i = 0; i < 16; ++i)
    pieces.push_back(1);
  int64_t t0 = 0;
  for (int64_t n : pieces) {
    std::vector<int64_t> s[5][2];
    DLTensor tq = timeWindow(q.data(), qShape, s[0][0], s[0][1], t0, n);
    DLTensor tk = timeWindow(k.data(), kShape, s[1][0], s[1][1], t0, n);
    DLTensor tv = timeWindow(v.data(), vShape, s[2][0], s[2][1], t0, n);
    DLTensor tg = timeWindow(g.data(), gShape, s[3][0], s[3][1], t0, n);
    DLTensor to = timeWindow(o.data(), oShape, s[4][0], s[4][1], t0, n);
    const DLTensor *in[] = {&tq, &tk, &tv, &tg, &st, &zs};
    ASSERT_EQ(kernel->run(in, &to, nullptr), ATTN_OK) << attn_last_error();
    t0 += n;
  }

  // o vs the reference over the whole sequence.
  std::map<std::string, HostArray> ref;
  auto widen = [](const std::vector<float> &x, std::vector<int64_t> shape) {
    HostArray a = HostArray::zeros(DType::F64, std::move(shape));
    for (size_t i = 0; i < x.size(); ++i)
      a.data<double>()[i] = x[i];
    return a;
  };
  ref["q"] = widen(q, qShape);
  ref["k"] = widen(k, kShape);
  ref["v"] = widen(v, vShape);
  ref[c.vectorGate ? "g" : "a"] = widen(g, gShape);
  mlir::attn::ReferenceOutputs out;
  ASSERT_EQ(reference(spec, {}, ref, out), "");
  double maxErr = 0, maxRef = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    double y = out.o.data<double>()[i];
    maxErr = std::max(maxErr, std::fabs(double(o[i]) - y));
    maxRef = std::max(maxRef, std::fabs(y));
    ASSERT_TRUE(std::isfinite(o[i])) << "o[" << i << "]";
  }
  EXPECT_LE(maxErr / maxRef, kTol) << "o: max abs err " << maxErr;

  // The final S and z vs a float64 recurrence: S = diag(e^gate) S + φk vᵀ,
  // z = e^gate ⊙ z + φk, φ = elu + 1.
  double sErr = 0, sMax = 0, zErr = 0, zMax = 0;
  auto phi = [](double x) { return x > 0 ? x + 1 : std::exp(x); };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      int64_t hk = h / (Hq / Hkv);
      std::vector<double> S(D * Dv, 0.0), z(D, 0.0);
      for (int64_t t = 0; t < N; ++t)
        for (int64_t d = 0; d < D; ++d) {
          double gate = c.vectorGate ? g[((b * Hq + h) * N + t) * D + d]
                                     : g[(b * Hkv + hk) * N + t];
          double decay = std::exp(gate);
          double kd = phi(k[((b * Hkv + hk) * N + t) * D + d]);
          for (int64_t e = 0; e < Dv; ++e)
            S[d * Dv + e] = decay * S[d * Dv + e] +
                            kd * v[((b * Hkv + hk) * N + t) * Dv + e];
          z[d] = decay * z[d] + kd;
        }
      for (int64_t d = 0; d < D; ++d) {
        for (int64_t e = 0; e < Dv; ++e) {
          double got = state[((b * Hq + h) * D + d) * Dv + e];
          sErr = std::max(sErr, std::fabs(got - S[d * Dv + e]));
          sMax = std::max(sMax, std::fabs(S[d * Dv + e]));
        }
        double got = zstate[(b * Hq + h) * D + d];
        zErr = std::max(zErr, std::fabs(got - z[d]));
        zMax = std::max(zMax, std::fabs(z[d]));
      }
    }
  EXPECT_LE(sErr / sMax, kTol) << "final state S: max abs err " << sErr;
  EXPECT_LE(zErr / zMax, kTol) << "final z: max abs err " << zErr;
}

INSTANTIATE_TEST_SUITE_P(
    Forms, GatedNormalizedDecode,
    ::testing::Values(DecodeCase{"VectorChunk8", true, 8},
                      DecodeCase{"VectorChunk64", true, 64},
                      DecodeCase{"VectorRecurrent", true, 0},
                      DecodeCase{"ScalarChunk7", false, 7},
                      DecodeCase{"ScalarRecurrent", false, 0}),
    [](const ::testing::TestParamInfo<DecodeCase> &info) {
      return std::string(info.param.name);
    });

} // namespace
