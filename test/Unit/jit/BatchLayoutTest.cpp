//===- BatchLayoutTest.cpp - ragged batches and paged KV caches -----------===//
//
// attn_cpu_run_batch (through Kernel::runBatch) against the same kernels on
// contiguous tensors: for every sequence of a batch of different lengths,
// the rows a ragged (packed q, k, v with cumulative offsets) or paged (page
// pools, shuffled pages, a block table padded with -1) run writes must
// equal a plain attn_cpu_run of that sequence alone. Shapes are awkward on
// purpose: GQA, Dqk != Dv, head dims that are not multiples of 16, kv
// lengths across several tiles and pages (page sizes 16 and 3, smaller
// than a tile), M < N (fully masked rows of causal masks), a sequence
// without keys (o = 0, lse = -inf) and one without queries; each under the
// natural schedules (decode for few queries), forced prefill and forced
// kv splits. Pool slots no sequence uses hold NaN, so a read outside a
// sequence shows. Then the validation of the tables: each bad table is
// refused with its message and o left untouched.
//
//===----------------------------------------------------------------------===//

#include "attn/JIT/Compiler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <numeric>
#include <random>

namespace fs = std::filesystem;
using namespace attn;

namespace {

const char *const kExamplesDir = ATTN_EXAMPLES_DIR;
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kSentinel = 12345.0f;

std::string cacheDir() {
  return (fs::temp_directory_path() / "attn-batch-test-cache").string();
}

/// A host array of any element type with its DLTensor (compact strides
/// unless `strides` is set).
struct Arr {
  std::vector<char> bytes;
  std::vector<int64_t> shape, strides;
  DLDataType dtype{};
  DLTensor t{};

  Arr(DLDataType dt, std::vector<int64_t> s) : shape(std::move(s)), dtype(dt) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    bytes.assign(size_t(std::max<int64_t>(n, 1)) * (dt.bits / 8), 0);
  }
  Arr(const Arr &) = delete;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
  DLTensor *dl() {
    t = DLTensor{};
    t.data = bytes.data();
    t.device = {kDLCPU, 0};
    t.ndim = int32_t(shape.size());
    t.dtype = dtype;
    t.shape = shape.data();
    t.strides = strides.empty() ? nullptr : strides.data();
    return &t;
  }
  float *f32() { return reinterpret_cast<float *>(bytes.data()); }
  uint16_t *u16() { return reinterpret_cast<uint16_t *>(bytes.data()); }
  int32_t *i32() { return reinterpret_cast<int32_t *>(bytes.data()); }
};

const DLDataType kF32 = {kDLFloat, 32, 1};
const DLDataType kBF16 = {kDLBfloat, 16, 1};
const DLDataType kI32 = {kDLInt, 32, 1};

uint16_t toBF16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/// Stores element `i` of an f32 or bf16 array.
void put(Arr &a, int64_t i, float x) {
  if (a.dtype.bits == 32)
    a.f32()[i] = x;
  else
    a.u16()[i] = toBF16(x);
}

/// One sequence: its queries and keys, [H, n, D] row-major per tensor.
struct Seq {
  int64_t n, m;
  std::vector<float> q, k, v;
};

struct Dims {
  int64_t Hq = 4, Hkv = 2, Dqk = 24, Dv = 20;
};

std::vector<Seq> makeSeqs(const std::vector<std::pair<int64_t, int64_t>> &nm,
                          const Dims &d, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<Seq> seqs;
  for (auto [n, m] : nm) {
    Seq s{n, m, {}, {}, {}};
    s.q.resize(size_t(d.Hq * n * d.Dqk));
    s.k.resize(size_t(d.Hkv * m * d.Dqk));
    s.v.resize(size_t(d.Hkv * m * d.Dv));
    for (auto *vec : {&s.q, &s.k, &s.v})
      for (float &x : *vec)
        x = u(rng);
    seqs.push_back(std::move(s));
  }
  return seqs;
}

/// o [H, n, Dv] and lse [H, n] of one sequence.
struct Out {
  std::vector<float> o, lse;
};

/// Every sequence alone through attn_cpu_run (a sequence without keys:
/// o = 0, lse = -inf, which attn_cpu_run cannot be asked for).
std::vector<Out> expected(const Kernel &kernel, const std::vector<Seq> &seqs,
                          const Dims &d, DLDataType dt) {
  std::vector<Out> outs;
  for (const Seq &s : seqs) {
    Out out;
    out.o.assign(size_t(d.Hq * s.n * d.Dv), 0.0f);
    out.lse.assign(size_t(d.Hq * s.n), -std::numeric_limits<float>::infinity());
    if (s.n > 0 && s.m > 0) {
      Arr q(dt, {1, d.Hq, s.n, d.Dqk}), k(dt, {1, d.Hkv, s.m, d.Dqk}),
          v(dt, {1, d.Hkv, s.m, d.Dv});
      for (size_t i = 0; i < s.q.size(); ++i)
        put(q, int64_t(i), s.q[i]);
      for (size_t i = 0; i < s.k.size(); ++i)
        put(k, int64_t(i), s.k[i]);
      for (size_t i = 0; i < s.v.size(); ++i)
        put(v, int64_t(i), s.v[i]);
      Arr o(kF32, {1, d.Hq, s.n, d.Dv}), lse(kF32, {1, d.Hq, s.n});
      const DLTensor *in[] = {q.dl(), k.dl(), v.dl()};
      EXPECT_EQ(kernel.run(in, o.dl(), kernel.hasLse() ? lse.dl() : nullptr),
                ATTN_OK)
          << attn_last_error();
      out.o.assign(o.f32(), o.f32() + o.numel());
      out.lse.assign(lse.f32(), lse.f32() + lse.numel());
    }
    outs.push_back(std::move(out));
  }
  return outs;
}

/// Compares sequence b's rows (o at oAt(h, i, dv), lse at lseAt(h, i)) with
/// its expected output; returns "" or the first difference. `withLse`:
/// compare lse too (a softmax kernel).
template <typename OAt, typename LseAt>
std::string compare(const std::vector<Out> &want, const Dims &d,
                    const std::vector<Seq> &seqs, OAt oAt, LseAt lseAt,
                    double tol, bool withLse = true) {
  for (size_t b = 0; b < seqs.size(); ++b) {
    const Out &w = want[b];
    float scale = 1e-30f;
    for (float x : w.o)
      scale = std::max(scale, std::fabs(x));
    for (int64_t h = 0; h < d.Hq; ++h)
      for (int64_t i = 0; i < seqs[b].n; ++i) {
        for (int64_t c = 0; c < d.Dv; ++c) {
          float got = oAt(int64_t(b), h, i, c),
                exp = w.o[size_t((h * seqs[b].n + i) * d.Dv + c)];
          if (!(std::fabs(got - exp) <= tol * scale))
            return "sequence " + std::to_string(b) + " o[" + std::to_string(h) +
                   "][" + std::to_string(i) + "][" + std::to_string(c) +
                   "] = " + std::to_string(got) + ", expected " +
                   std::to_string(exp);
        }
        if (!withLse)
          continue;
        float got = lseAt(int64_t(b), h, i),
              exp = w.lse[size_t(h * seqs[b].n + i)];
        bool same = std::isinf(exp) ? got == exp
                                    : std::fabs(got - exp) <=
                                          tol * std::max(1.0f, std::fabs(exp));
        if (!same)
          return "sequence " + std::to_string(b) + " lse[" + std::to_string(h) +
                 "][" + std::to_string(i) + "] = " + std::to_string(got) +
                 ", expected " + std::to_string(exp);
      }
  }
  return "";
}

/// Cumulative offsets of the lengths `len(s)`.
template <typename F>
std::vector<int64_t> offsets(const std::vector<Seq> &seqs, F len) {
  std::vector<int64_t> cu{0};
  for (const Seq &s : seqs)
    cu.push_back(cu.back() + len(s));
  return cu;
}

std::unique_ptr<Arr> table1(const std::vector<int64_t> &values) {
  auto a =
      std::make_unique<Arr>(kI32, std::vector<int64_t>{int64_t(values.size())});
  for (size_t i = 0; i < values.size(); ++i)
    a->i32()[i] = int32_t(values[i]);
  return a;
}

/// The packed [total, H, D] form of per-sequence [H, n, D] arrays.
std::unique_ptr<Arr> packed(const std::vector<Seq> &seqs, DLDataType dt,
                            int64_t H, int64_t D, bool keys, bool values) {
  auto cu = offsets(seqs, [&](const Seq &s) { return keys ? s.m : s.n; });
  auto a = std::make_unique<Arr>(dt, std::vector<int64_t>{cu.back(), H, D});
  for (size_t b = 0; b < seqs.size(); ++b) {
    const Seq &s = seqs[b];
    int64_t n = keys ? s.m : s.n;
    const std::vector<float> &src = !keys ? s.q : values ? s.v : s.k;
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < D; ++c)
          put(*a, ((cu[b] + i) * H + h) * D + c,
              src[size_t((h * n + i) * D + c)]);
  }
  return a;
}

/// A paged cache: pools with shuffled pages (unused slots NaN), the block
/// table padded with -1 and kv_lens.
struct Paged {
  std::unique_ptr<Arr> k, v, table, lens;
};

Paged paged(const std::vector<Seq> &seqs, const Dims &d, DLDataType dt,
            int64_t P, unsigned seed) {
  int64_t B = int64_t(seqs.size()), maxPages = 1, used = 0;
  for (const Seq &s : seqs) {
    maxPages = std::max(maxPages, (s.m + P - 1) / P + 1);
    used += (s.m + P - 1) / P;
  }
  int64_t pages = used + 3;
  std::vector<int64_t> ids(static_cast<size_t>(pages));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(seed));
  Paged p;
  p.k = std::make_unique<Arr>(dt, std::vector<int64_t>{pages, P, d.Hkv, d.Dqk});
  p.v = std::make_unique<Arr>(dt, std::vector<int64_t>{pages, P, d.Hkv, d.Dv});
  for (Arr *a : {p.k.get(), p.v.get()})
    for (int64_t i = 0; i < a->numel(); ++i)
      put(*a, i, kNaN);
  p.table = std::make_unique<Arr>(kI32, std::vector<int64_t>{B, maxPages});
  std::fill(p.table->i32(), p.table->i32() + B * maxPages, -1);
  std::vector<int64_t> lens;
  size_t next = 0;
  for (int64_t b = 0; b < B; ++b) {
    const Seq &s = seqs[size_t(b)];
    lens.push_back(s.m);
    for (int64_t pg = 0; pg < (s.m + P - 1) / P; ++pg)
      p.table->i32()[b * maxPages + pg] = int32_t(ids[next++]);
    for (int64_t j = 0; j < s.m; ++j) {
      int64_t page = p.table->i32()[b * maxPages + j / P], slot = j % P;
      for (int64_t h = 0; h < d.Hkv; ++h) {
        for (int64_t c = 0; c < d.Dqk; ++c)
          put(*p.k, ((page * P + slot) * d.Hkv + h) * d.Dqk + c,
              s.k[size_t((h * s.m + j) * d.Dqk + c)]);
        for (int64_t c = 0; c < d.Dv; ++c)
          put(*p.v, ((page * P + slot) * d.Hkv + h) * d.Dv + c,
              s.v[size_t((h * s.m + j) * d.Dv + c)]);
      }
    }
  }
  p.lens = table1(lens);
  return p;
}

std::unique_ptr<Kernel> compileSpec(const std::string &spec, bool pagedKV) {
  Compiler compiler;
  CompileOptions opts;
  opts.cacheDir = cacheDir();
  opts.pagedKV = pagedKV;
  std::string err;
  auto kernel = compiler.compile(spec, opts, err);
  EXPECT_TRUE(kernel) << err;
  return kernel;
}

/// Runs `kernel` on `seqs` ragged (q, k, v packed), ragged q with paged keys
/// (page sizes 16 and 3) and, when every sequence has the same number of
/// queries, dense q with paged keys; each against the sequences run alone.
void checkLayouts(const Kernel &kernel, const std::vector<Seq> &seqs,
                  const Dims &d, DLDataType dt, double tol) {
  std::vector<Out> want = expected(kernel, seqs, d, dt);
  auto cuQ = offsets(seqs, [](const Seq &s) { return s.n; });
  auto cuK = offsets(seqs, [](const Seq &s) { return s.m; });
  int64_t totalQ = cuQ.back(), B = int64_t(seqs.size());
  auto q = packed(seqs, dt, d.Hq, d.Dqk, false, false);
  auto cuQT = table1(cuQ), cuKT = table1(cuK);

  auto runRaggedQ = [&](const DLTensor *k, const DLTensor *v,
                        const attn_batch_layout_t &layout,
                        const std::string &what) {
    Arr o(kF32, {totalQ, d.Hq, d.Dv}), lse(kF32, {d.Hq, totalQ});
    const DLTensor *in[] = {q->dl(), k, v};
    ASSERT_EQ(kernel.runBatch(in, layout, o.dl(),
                              kernel.hasLse() ? lse.dl() : nullptr),
              ATTN_OK)
        << what << ": " << attn_last_error();
    std::string diff = compare(
        want, d, seqs,
        [&](int64_t b, int64_t h, int64_t i, int64_t c) {
          return o.f32()[((cuQ[b] + i) * d.Hq + h) * d.Dv + c];
        },
        [&](int64_t b, int64_t h, int64_t i) {
          return lse.f32()[h * totalQ + cuQ[b] + i];
        },
        tol, kernel.hasLse());
    EXPECT_EQ(diff, "") << what;
  };

  {
    auto k = packed(seqs, dt, d.Hkv, d.Dqk, true, false);
    auto v = packed(seqs, dt, d.Hkv, d.Dv, true, true);
    attn_batch_layout_t layout{cuQT->dl(), cuKT->dl(), nullptr, nullptr};
    runRaggedQ(k->dl(), v->dl(), layout, "ragged q, ragged k");
  }
  for (int64_t P : {16, 3}) {
    Paged p = paged(seqs, d, dt, P, unsigned(P));
    attn_batch_layout_t layout{cuQT->dl(), nullptr, p.table->dl(),
                               p.lens->dl()};
    runRaggedQ(p.k->dl(), p.v->dl(), layout,
               "ragged q, paged k (page size " + std::to_string(P) + ")");
    bool sameN = std::all_of(seqs.begin(), seqs.end(),
                             [&](const Seq &s) { return s.n == seqs[0].n; });
    if (!sameN || seqs[0].n == 0)
      continue;
    int64_t N = seqs[0].n;
    Arr qd(dt, {B, d.Hq, N, d.Dqk});
    for (int64_t b = 0; b < B; ++b)
      for (size_t i = 0; i < seqs[b].q.size(); ++i)
        put(qd, b * d.Hq * N * d.Dqk + int64_t(i), seqs[b].q[i]);
    Arr o(kF32, {B, d.Hq, N, d.Dv}), lse(kF32, {B, d.Hq, N});
    const DLTensor *in[] = {qd.dl(), p.k->dl(), p.v->dl()};
    attn_batch_layout_t dense{nullptr, nullptr, p.table->dl(), p.lens->dl()};
    ASSERT_EQ(kernel.runBatch(in, dense, o.dl(),
                              kernel.hasLse() ? lse.dl() : nullptr),
              ATTN_OK)
        << attn_last_error();
    std::string diff = compare(
        want, d, seqs,
        [&](int64_t b, int64_t h, int64_t i, int64_t c) {
          return o.f32()[((b * d.Hq + h) * N + i) * d.Dv + c];
        },
        [&](int64_t b, int64_t h, int64_t i) {
          return lse.f32()[(b * d.Hq + h) * N + i];
        },
        tol, kernel.hasLse());
    EXPECT_EQ(diff, "") << "dense q, paged k (page size " << P << ")";
  }
}

/// (N, M) per sequence: prefill-sized, decode-sized (N <= 16), M < N, a
/// sequence without keys and one without queries.
const std::vector<std::pair<int64_t, int64_t>> kMixed = {
    {70, 130}, {1, 200}, {3, 75}, {20, 5}, {2, 0}, {0, 9}, {33, 64}};
/// Decode steps: one query each, kv lengths across pages and tiles.
const std::vector<std::pair<int64_t, int64_t>> kDecode = {
    {1, 300}, {1, 1}, {1, 65}, {1, 0}, {1, 129}};

/// The schedules each layout runs under: natural, forced prefill, forced
/// decode with 3 splits (more splits than some sequences have tiles; the
/// sequences of kMixed with G * N > 16 take the wide decode kernel, the
/// others the one-vector one, in one batch), and forced decode on the wide
/// kernel only.
struct ScheduleEnv {
  const char *schedule, *splits, *wide;
};
const ScheduleEnv kSchedules[] = {{nullptr, nullptr, nullptr},
                                  {"prefill", nullptr, nullptr},
                                  {"decode", "3", nullptr},
                                  {"decode", "2", "1"}};

void withSchedule(const ScheduleEnv &s, const std::function<void()> &body) {
  auto set = [](const char *name, const char *value) {
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  };
  set("ATTN_CPU_SCHEDULE", s.schedule);
  set("ATTN_DECODE_SPLITS", s.splits);
  set("ATTN_DECODE_WIDE", s.wide);
  body();
  unsetenv("ATTN_CPU_SCHEDULE");
  unsetenv("ATTN_DECODE_SPLITS");
  unsetenv("ATTN_DECODE_WIDE");
}

class BatchLayoutExample : public ::testing::TestWithParam<const char *> {};

TEST_P(BatchLayoutExample, RaggedAndPagedEqualEachSequenceAlone) {
  auto kernel =
      compileSpec(std::string(kExamplesDir) + "/" + GetParam() + ".attn",
                  /*pagedKV=*/true);
  ASSERT_TRUE(kernel);
  Dims d;
  for (const ScheduleEnv &s : kSchedules)
    withSchedule(s, [&] {
      SCOPED_TRACE(std::string("schedule ") +
                   (s.schedule ? s.schedule : "natural") +
                   (s.wide ? " wide" : ""));
      checkLayouts(*kernel, makeSeqs(kMixed, d, 1), d, kF32, 1e-5);
      checkLayouts(*kernel, makeSeqs(kDecode, d, 2), d, kF32, 1e-5);
    });
}

// Every softmax-family example without aux inputs: masks aligned to the
// bottom right (N and M per sequence), params that read M (sigmoid's bias
// = -log(M)), score mods reading h and positions, sigmoid (no decode
// kernel).
INSTANTIATE_TEST_SUITE_P(Examples, BatchLayoutExample,
                         ::testing::Values("causal", "sliding_window",
                                           "sinks_window", "alibi", "softcap",
                                           "prefix_lm", "sigmoid", "dense"));

TEST(BatchLayout, BF16PagedEqualsContiguous) {
  auto kernel = compileSpec("attention cbf16 {\n"
                            "  input q : bf16[B, Hq, N, Dqk]\n"
                            "  input k : bf16[B, Hkv, M, Dqk]\n"
                            "  input v : bf16[B, Hkv, M, Dv]\n"
                            "  mask = causal\n"
                            "}\n",
                            true);
  ASSERT_TRUE(kernel);
  Dims d;
  d.Dqk = 32;
  d.Dv = 33; // odd: the bf16 pair packing's tail
  for (const ScheduleEnv &s : kSchedules)
    withSchedule(s, [&] {
      checkLayouts(*kernel, makeSeqs(kMixed, d, 3), d, kBF16, 1e-5);
    });
}

/// An aux input indexed by b and by position (document ids [B, N], the
/// padded batch's N): ragged rows see doc[b, position in the sequence].
TEST(BatchLayout, AuxInputsIndexThePaddedBatch) {
  auto kernel = compileSpec(std::string(kExamplesDir) + "/document.attn", true);
  ASSERT_TRUE(kernel);
  Dims d;
  // M = N per sequence (document.attn indexes doc with kv_idx too).
  std::vector<std::pair<int64_t, int64_t>> nm = {{40, 40}, {7, 7}, {90, 90}};
  std::vector<Seq> seqs = makeSeqs(nm, d, 4);
  int64_t B = 3, maxN = 90;
  Arr doc(kI32, {B, maxN});
  std::vector<Out> want;
  for (int64_t b = 0; b < B; ++b) {
    const Seq &s = seqs[size_t(b)];
    Arr one(kI32, {1, s.n});
    for (int64_t i = 0; i < maxN; ++i)
      doc.i32()[b * maxN + i] = int32_t((i * (b + 2)) / 17);
    for (int64_t i = 0; i < s.n; ++i)
      one.i32()[i] = doc.i32()[b * maxN + i];
    Arr q(kF32, {1, d.Hq, s.n, d.Dqk}), k(kF32, {1, d.Hkv, s.m, d.Dqk}),
        v(kF32, {1, d.Hkv, s.m, d.Dv});
    std::memcpy(q.f32(), s.q.data(), s.q.size() * 4);
    std::memcpy(k.f32(), s.k.data(), s.k.size() * 4);
    std::memcpy(v.f32(), s.v.data(), s.v.size() * 4);
    Arr o(kF32, {1, d.Hq, s.n, d.Dv}), lse(kF32, {1, d.Hq, s.n});
    const DLTensor *in[] = {q.dl(), k.dl(), v.dl(), one.dl()};
    ASSERT_EQ(kernel->run(in, o.dl(), lse.dl()), ATTN_OK) << attn_last_error();
    want.push_back({std::vector<float>(o.f32(), o.f32() + o.numel()),
                    std::vector<float>(lse.f32(), lse.f32() + lse.numel())});
  }
  auto cuQ = offsets(seqs, [](const Seq &s) { return s.n; });
  auto cuQT = table1(cuQ);
  auto q = packed(seqs, kF32, d.Hq, d.Dqk, false, false);
  int64_t totalQ = cuQ.back();
  for (int64_t P : {16, 5}) {
    Paged p = paged(seqs, d, kF32, P, 7);
    Arr o(kF32, {totalQ, d.Hq, d.Dv}), lse(kF32, {d.Hq, totalQ});
    const DLTensor *in[] = {q->dl(), p.k->dl(), p.v->dl(), doc.dl()};
    attn_batch_layout_t layout{cuQT->dl(), nullptr, p.table->dl(),
                               p.lens->dl()};
    ASSERT_EQ(kernel->runBatch(in, layout, o.dl(), lse.dl()), ATTN_OK)
        << attn_last_error();
    EXPECT_EQ(compare(
                  want, d, seqs,
                  [&](int64_t b, int64_t h, int64_t i, int64_t c) {
                    return o.f32()[((cuQ[b] + i) * d.Hq + h) * d.Dv + c];
                  },
                  [&](int64_t b, int64_t h, int64_t i) {
                    return lse.f32()[h * totalQ + cuQ[b] + i];
                  },
                  1e-5),
              "")
        << "page size " << P;
  }
}

//===----------------------------------------------------------------------===//
// Bad tables
//===----------------------------------------------------------------------===//

class BatchLayoutErrors : public ::testing::Test {
protected:
  void SetUp() override {
    kernel = compileSpec(std::string(kExamplesDir) + "/causal.attn", true);
    ASSERT_TRUE(kernel);
    seqs = makeSeqs({{2, 20}, {1, 40}}, d, 5);
    q = packed(seqs, kF32, d.Hq, d.Dqk, false, false);
    cache = paged(seqs, d, kF32, 16, 3);
    cuQ = table1({0, 2, 3});
    o = std::make_unique<Arr>(kF32, std::vector<int64_t>{3, d.Hq, d.Dv});
  }

  /// Runs with `layout` (and k, v the paged pools unless given) and
  /// expects `status` with `message` in attn_last_error() and o untouched.
  void expectRefused(const attn_batch_layout_t &layout, attn_status_t status,
                     const std::string &message, const DLTensor *k = nullptr,
                     const DLTensor *v = nullptr) {
    std::fill(o->f32(), o->f32() + o->numel(), kSentinel);
    const DLTensor *in[] = {q->dl(), k ? k : cache.k->dl(),
                            v ? v : cache.v->dl()};
    EXPECT_EQ(kernel->runBatch(in, layout, o->dl()), status);
    EXPECT_NE(std::string(attn_last_error()).find(message), std::string::npos)
        << attn_last_error();
    for (int64_t i = 0; i < o->numel(); ++i)
      ASSERT_EQ(o->f32()[i], kSentinel) << "o written at " << i;
  }

  attn_batch_layout_t pagedLayout() {
    return {cuQ->dl(), nullptr, cache.table->dl(), cache.lens->dl()};
  }

  Dims d;
  std::unique_ptr<Kernel> kernel;
  std::vector<Seq> seqs;
  std::unique_ptr<Arr> q, cuQ, o;
  Paged cache;
};

TEST_F(BatchLayoutErrors, GoodLayoutRuns) {
  const DLTensor *in[] = {q->dl(), cache.k->dl(), cache.v->dl()};
  EXPECT_EQ(kernel->runBatch(in, pagedLayout(), o->dl()), ATTN_OK)
      << attn_last_error();
}

TEST_F(BatchLayoutErrors, Offsets) {
  attn_batch_layout_t l = pagedLayout();
  auto notZero = table1({1, 2, 3});
  l.cu_seqlens_q = notZero->dl();
  expectRefused(l, ATTN_ERROR_SHAPE, "cu_seqlens_q: entry 0 is 1, expected 0");
  auto decreasing = table1({0, 3, 2});
  l.cu_seqlens_q = decreasing->dl();
  expectRefused(l, ATTN_ERROR_SHAPE, "cu_seqlens_q: entry 2 (2) is less than");
  auto shortEnd = table1({0, 1, 2});
  l.cu_seqlens_q = shortEnd->dl();
  expectRefused(l, ATTN_ERROR_SHAPE,
                "cu_seqlens_q: the last entry is 2, expected 3");
  auto wrongB = table1({0, 3});
  l.cu_seqlens_q = wrongB->dl();
  expectRefused(l, ATTN_ERROR_SHAPE, "describes 2 sequences");
  Arr wide(DLDataType{kDLInt, 64, 1}, {3});
  l.cu_seqlens_q = wide.dl();
  expectRefused(l, ATTN_ERROR_DTYPE, "cu_seqlens_q: dtype is int64");
}

TEST_F(BatchLayoutErrors, PageTables) {
  attn_batch_layout_t l = pagedLayout();
  int32_t *t = cache.table->i32();
  int64_t maxPages = cache.table->shape[1];
  // Sequence 1 uses pages 0..2 of its row (40 keys, 16 per page).
  int32_t saved = t[maxPages + 2];
  t[maxPages + 2] = int32_t(cache.k->shape[0]);
  expectRefused(l, ATTN_ERROR_SHAPE,
                "block_table: sequence 1, entry 2 is page " +
                    std::to_string(cache.k->shape[0]));
  t[maxPages + 2] = -1;
  expectRefused(l, ATTN_ERROR_SHAPE, "sequence 1, entry 2 is page -1");
  t[maxPages + 2] = saved;
  // Past the pages a sequence uses, entries are ignored.
  t[maxPages + 3] = 999999;
  const DLTensor *in[] = {q->dl(), cache.k->dl(), cache.v->dl()};
  EXPECT_EQ(kernel->runBatch(in, l, o->dl()), ATTN_OK) << attn_last_error();
  cache.lens->i32()[0] = int32_t(maxPages * 16 + 1);
  expectRefused(l, ATTN_ERROR_SHAPE,
                "kv_lens: sequence 0 has " + std::to_string(maxPages * 16 + 1) +
                    " keys, outside [0, max_pages * page_size");
  cache.lens->i32()[0] = -1;
  expectRefused(l, ATTN_ERROR_SHAPE, "kv_lens: sequence 0 has -1 keys");
}

TEST_F(BatchLayoutErrors, Combinations) {
  attn_batch_layout_t l = pagedLayout();
  l.kv_lens = nullptr;
  expectRefused(l, ATTN_ERROR_INVALID_ARGUMENT, "block_table without kv_lens");
  l = pagedLayout();
  auto cuK = table1({0, 20, 60});
  l.cu_seqlens_k = cuK->dl();
  expectRefused(l, ATTN_ERROR_INVALID_ARGUMENT,
                "cu_seqlens_k and block_table both given");
  // A packed k where the layout says pages: k's rank is wrong.
  auto k = packed(seqs, kF32, d.Hkv, d.Dqk, true, false);
  auto v = packed(seqs, kF32, d.Hkv, d.Dv, true, true);
  expectRefused(pagedLayout(), ATTN_ERROR_SHAPE,
                "k: ndim is 3, expected 4 [pages, page_size, Hkv, Dqk]",
                k->dl(), v->dl());
}

TEST_F(BatchLayoutErrors, KernelWithoutPagedKV) {
  auto plain = compileSpec(std::string(kExamplesDir) + "/causal.attn", false);
  ASSERT_TRUE(plain);
  std::fill(o->f32(), o->f32() + o->numel(), kSentinel);
  const DLTensor *in[] = {q->dl(), cache.k->dl(), cache.v->dl()};
  EXPECT_EQ(plain->runBatch(in, pagedLayout(), o->dl()),
            ATTN_ERROR_UNSUPPORTED);
  EXPECT_NE(std::string(attn_last_error()).find("compile it with --paged-kv"),
            std::string::npos)
      << attn_last_error();
  EXPECT_EQ(o->f32()[0], kSentinel);
}

} // namespace

namespace {

// The CUDA overload of runBatch on a CPU kernel: the runtime's message,
// nothing written (the CUDA path itself: test/Unit/runtime/CudaBatchTest.cpp
// and test/Integration/gpusim/decode-batch.test).
TEST_F(BatchLayoutErrors, CudaBatchOfACpuKernel) {
  std::fill(o->f32(), o->f32() + o->numel(), kSentinel);
  const DLTensor *in[] = {q->dl(), cache.k->dl(), cache.v->dl()};
  attn_gpu_batch_layout_t gpu{};
  gpu.tables = pagedLayout();
  gpu.max_seqlen_q = 2;
  gpu.max_seqlen_k = 40;
  EXPECT_EQ(kernel->runBatch(in, gpu, o->dl()), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(attn_last_error()).find("not compiled for CUDA"),
            std::string::npos)
      << attn_last_error();
  EXPECT_EQ(o->f32()[0], kSentinel);
}

} // namespace
