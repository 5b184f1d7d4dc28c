//===- DecodeScheduleTest.cpp - the runtime's decode schedule contract ----===//
//
// A fake decode kernel with the compiled kernels' ABI (runtime.h,
// attn_kernel_desc_t::decode_fn) reads the partial-result descriptors
// attn_cpu_run builds and writes known partials: split s gives lane f the
// output value (s + 1) * (f + 1) + d and lse = log(s + 1), except splits
// the test marks empty (lse = -inf, o left as garbage NaN to prove the
// merge ignores it). The merged o must then be the exp(lse)-weighted
// average, on every (b, h, i) the lane mapping names, for forced and
// automatic split counts, GQA and G * N past the lanes, strided outputs and
// thread counts; the wide decode kernel (64 lanes) taking the groups past
// one vector; and the descriptor checks, attn_cpu_decode_splits and
// attn_cpu_decode_lanes.
//
//===----------------------------------------------------------------------===//

#include "attn/runtime.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

namespace {

template <int R> struct Memref {
  float *allocated, *aligned;
  int64_t offset, sizes[R], strides[R];
};

/// Splits whose items write lse = -inf (a bit mask over s).
unsigned gEmptySplits = 0;
/// Items run by the one-vector (16 lanes) and the wide (64 lanes) kernel.
int64_t gItems = 0, gWideItems = 0;

/// A decode kernel of L lanes per item.
template <int64_t L>
void fakeDecodeLanes(void **args, int64_t begin, int64_t end) {
  auto &o = *static_cast<Memref<5> *>(args[3]);
  auto &lse = *static_cast<Memref<4> *>(args[4]);
  int64_t Hkv = o.sizes[1], S = o.sizes[2], R = o.sizes[3], Dv = o.sizes[4];
  int64_t chunks = R / L;
  EXPECT_EQ(R % L, 0) << "partials of " << R << " rows for " << L << " lanes";
  __atomic_fetch_add(L == 16 ? &gItems : &gWideItems, end - begin,
                     __ATOMIC_RELAXED);
  for (int64_t item = begin; item < end; ++item) {
    int64_t s = item % S, t = item / S, c = t % chunks, bh = t / chunks;
    int64_t hk = bh % Hkv, b = bh / Hkv;
    bool empty = (gEmptySplits >> s) & 1;
    for (int64_t l = 0; l < L; ++l) {
      int64_t f = c * L + l;
      int64_t base = b * lse.strides[0] + hk * lse.strides[1] +
                     s * lse.strides[2] + f * lse.strides[3];
      lse.aligned[lse.offset + base] =
          empty ? -std::numeric_limits<float>::infinity()
                : std::log(float(s + 1));
      for (int64_t d = 0; d < Dv; ++d)
        o.aligned[o.offset + b * o.strides[0] + hk * o.strides[1] +
                  s * o.strides[2] + f * o.strides[3] + d * o.strides[4]] =
            empty ? std::nanf("") : float((s + 1) * (f + 1) + d);
    }
  }
}

void fakeDecode(void **args, int64_t begin, int64_t end) {
  fakeDecodeLanes<16>(args, begin, end);
}
void fakeDecodeWide(void **args, int64_t begin, int64_t end) {
  fakeDecodeLanes<64>(args, begin, end);
}

void unusedPrefill(void **, int64_t, int64_t) {
  ADD_FAILURE() << "the prefill schedule ran";
}

const char *const kQDims[] = {"B", "Hq", "N", "Dqk"};
const char *const kKDims[] = {"B", "Hkv", "M", "Dqk"};
const char *const kVDims[] = {"B", "Hkv", "M", "Dv"};

struct Fixture {
  attn_input_desc_t inputs[3] = {{"q", ATTN_F32, 4, kQDims, nullptr},
                                 {"k", ATTN_F32, 4, kKDims, nullptr},
                                 {"v", ATTN_F32, 4, kVDims, nullptr}};
  attn_kernel_desc_t desc{};
  explicit Fixture(bool wide = false) {
    desc.abi_version = ATTN_ABI_VERSION;
    desc.name = "fake_decode";
    desc.tile_q = 64;
    desc.num_inputs = 3;
    desc.inputs = inputs;
    desc.has_lse = 1;
    desc.cpu_fn = unusedPrefill;
    desc.decode_fn = fakeDecode;
    desc.decode_lanes = 16;
    if (wide) {
      desc.decode_wide_fn = fakeDecodeWide;
      desc.decode_wide_lanes = 64;
    }
  }
};

struct Buf {
  std::vector<int64_t> shape, strides;
  std::vector<float> data;
  DLTensor dl{};
  /// Compact, or with the last dim's rows padded by `pad` floats.
  Buf(std::vector<int64_t> s, int64_t pad = 0) : shape(std::move(s)) {
    strides.assign(shape.size(), 1);
    int64_t n = 1;
    for (int d = int(shape.size()) - 1; d >= 0; --d) {
      strides[d] = n;
      n *= shape[d] + (d == int(shape.size()) - 1 ? pad : 0);
    }
    data.assign(n, -7.0f);
    dl.data = data.data();
    dl.device = {kDLCPU, 0};
    dl.ndim = int32_t(shape.size());
    dl.dtype = {kDLFloat, 32, 1};
    dl.shape = shape.data();
    dl.strides = strides.data();
  }
};

struct Shape {
  int64_t B, Hq, Hkv, N, M, Dqk, Dv;
};

/// Runs the fake decode over `s` and checks every merged row; with `wide`
/// the kernel has a 64-lane wide decode kernel too, and the call must take
/// the kernel of `lanes` lanes.
void checkMerge(const Shape &s, int threads, int64_t forcedSplits,
                unsigned emptySplits, bool wide = false, int64_t lanes = 16) {
  SCOPED_TRACE("B=" + std::to_string(s.B) + " Hq=" + std::to_string(s.Hq) +
               " Hkv=" + std::to_string(s.Hkv) + " N=" + std::to_string(s.N) +
               " splits=" + std::to_string(forcedSplits) + " threads=" +
               std::to_string(threads) + " lanes=" + std::to_string(lanes));
  Fixture f(wide);
  EXPECT_EQ(attn_cpu_decode_lanes(&f.desc, s.Hq, s.Hkv, s.N), lanes);
  Buf q({s.B, s.Hq, s.N, s.Dqk}), k({s.B, s.Hkv, s.M, s.Dqk}),
      v({s.B, s.Hkv, s.M, s.Dv});
  Buf o({s.B, s.Hq, s.N, s.Dv}, /*pad=*/3), lse({s.B, s.Hq, s.N});
  const DLTensor *ins[] = {&q.dl, &k.dl, &v.dl};
  if (forcedSplits)
    setenv("ATTN_DECODE_SPLITS", std::to_string(forcedSplits).c_str(), 1);
  else
    unsetenv("ATTN_DECODE_SPLITS");
  int64_t S =
      attn_cpu_decode_splits(&f.desc, s.B, s.Hq, s.Hkv, s.N, s.M, threads);
  ASSERT_GT(S, 0);
  if (forcedSplits)
    EXPECT_EQ(S, forcedSplits);
  gEmptySplits = emptySplits;
  gItems = gWideItems = 0;
  attn_run_options_t opts{threads};
  ASSERT_EQ(attn_cpu_run(&f.desc, ins, &o.dl, &lse.dl, &opts), ATTN_OK)
      << attn_last_error();
  unsetenv("ATTN_DECODE_SPLITS");
  int64_t G = s.Hq / s.Hkv, chunks = (G * s.N + lanes - 1) / lanes;
  EXPECT_EQ(lanes == 16 ? gItems : gWideItems, s.B * s.Hkv * chunks * S);
  EXPECT_EQ(lanes == 16 ? gWideItems : gItems, 0);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.Hq; ++h)
      for (int64_t i = 0; i < s.N; ++i) {
        int64_t lane = (h % G) * s.N + i;
        double wsum = 0, lseRef;
        std::vector<double> ref(s.Dv, 0);
        for (int64_t p = 0; p < S; ++p) {
          if ((emptySplits >> p) & 1)
            continue;
          wsum += p + 1;
          for (int64_t d = 0; d < s.Dv; ++d)
            ref[d] += double(p + 1) * ((p + 1) * (lane + 1) + d);
        }
        lseRef = wsum > 0 ? std::log(wsum)
                          : -std::numeric_limits<double>::infinity();
        float got = lse.data[b * lse.strides[0] + h * lse.strides[1] + i];
        if (wsum > 0)
          EXPECT_NEAR(got, lseRef, 1e-5) << "lse " << b << " " << h << " " << i;
        else
          EXPECT_TRUE(std::isinf(got) && got < 0);
        for (int64_t d = 0; d < s.Dv; ++d) {
          float od = o.data[b * o.strides[0] + h * o.strides[1] +
                            i * o.strides[2] + d];
          double want = wsum > 0 ? ref[d] / wsum : 0.0;
          ASSERT_NEAR(od, want, 1e-4 * (1 + std::fabs(want)))
              << "o " << b << " " << h << " " << i << " " << d;
        }
        // The padding between rows is untouched.
        EXPECT_EQ(o.data[b * o.strides[0] + h * o.strides[1] +
                         i * o.strides[2] + s.Dv],
                  -7.0f);
      }
}

TEST(DecodeScheduleTest, MergesEverySplitIntoEveryRow) {
  // G * N below, at and above the 16 lanes (chunks spanning heads).
  checkMerge({1, 8, 2, 1, 300, 8, 5}, 1, 3, 0);
  checkMerge({2, 8, 2, 4, 300, 8, 5}, 2, 1, 0);
  checkMerge({2, 12, 2, 3, 40, 4, 7}, 2, 5, 0);
  checkMerge({1, 4, 4, 16, 40, 4, 3}, 3, 2, 0);
}

TEST(DecodeScheduleTest, WideKernelTakesGroupsPastOneVector) {
  unsetenv("ATTN_DECODE_WIDE");
  // G * N = 4 and 16 fit one vector: the one-vector kernel.
  checkMerge({1, 8, 2, 1, 300, 8, 5}, 2, 3, 0, true, 16);
  checkMerge({1, 4, 4, 16, 40, 4, 3}, 2, 2, 0, true, 16);
  // 18 (one wide chunk, most lanes padding), 64 (one full chunk), 72 (two
  // chunks, the second spanning heads 7 and 8 of the group).
  checkMerge({2, 12, 2, 3, 40, 4, 7}, 2, 5, 0, true, 64);
  checkMerge({1, 32, 8, 16, 300, 8, 5}, 2, 1, 0, true, 64);
  checkMerge({1, 16, 2, 9, 300, 8, 5}, 1, 3, 0b010u, true, 64);
}

TEST(DecodeScheduleTest, DecodeWideForcesAKernel) {
  setenv("ATTN_DECODE_WIDE", "1", 1);
  checkMerge({1, 8, 2, 1, 300, 8, 5}, 2, 3, 0, true, 64);
  setenv("ATTN_DECODE_WIDE", "0", 1);
  checkMerge({1, 16, 2, 9, 300, 8, 5}, 2, 2, 0, true, 16);
  // Without a wide kernel, and for values other than 0 and 1: no effect.
  setenv("ATTN_DECODE_WIDE", "1", 1);
  checkMerge({1, 8, 2, 1, 300, 8, 5}, 2, 3, 0, false, 16);
  setenv("ATTN_DECODE_WIDE", "yes", 1);
  checkMerge({1, 8, 2, 1, 300, 8, 5}, 2, 3, 0, true, 16);
  unsetenv("ATTN_DECODE_WIDE");
  // attn_cpu_decode_lanes on dims that form no call, and on no decode.
  Fixture f(true);
  EXPECT_EQ(attn_cpu_decode_lanes(nullptr, 8, 2, 1), 0);
  EXPECT_EQ(attn_cpu_decode_lanes(&f.desc, 8, 3, 1), 0);
  EXPECT_EQ(attn_cpu_decode_lanes(&f.desc, 8, 2, 0), 0);
  EXPECT_EQ(attn_cpu_decode_lanes(&f.desc, int64_t(1) << 62, 1, 8), 0);
  f.desc.decode_fn = nullptr;
  f.desc.decode_lanes = 0;
  EXPECT_EQ(attn_cpu_decode_lanes(&f.desc, 8, 2, 1), 0);
}

TEST(DecodeScheduleTest, EmptySplitsHaveNoWeightAndAllEmptyRowsAreZero) {
  checkMerge({1, 8, 2, 1, 300, 8, 5}, 2, 4, 0b0101u);
  checkMerge({2, 6, 3, 2, 300, 8, 5}, 1, 3, 0b111u); // every split empty
}

TEST(DecodeScheduleTest, AutomaticSplitsKeepEveryThreadBusy) {
  Fixture f;
  unsetenv("ATTN_DECODE_SPLITS");
  unsetenv("ATTN_CPU_SCHEDULE");
  // One (b, kv head, chunk) item and 4 threads: 16 splits wanted, but at
  // least 512 keys each.
  EXPECT_EQ(attn_cpu_decode_splits(&f.desc, 1, 1, 1, 1, 1 << 20, 4), 16);
  EXPECT_EQ(attn_cpu_decode_splits(&f.desc, 1, 1, 1, 1, 1000, 4), 2);
  EXPECT_EQ(attn_cpu_decode_splits(&f.desc, 1, 1, 1, 1, 100, 4), 1);
  // Enough items already: no split; one thread: no split.
  EXPECT_EQ(attn_cpu_decode_splits(&f.desc, 4, 8, 4, 1, 1 << 20, 4), 1);
  EXPECT_EQ(attn_cpu_decode_splits(&f.desc, 1, 1, 1, 1, 1 << 20, 1), 1);
  checkMerge({1, 4, 1, 1, 5000, 8, 4}, 2, 0, 0);
}

TEST(DecodeScheduleTest, WhichScheduleRuns) {
  Fixture f;
  unsetenv("ATTN_CPU_SCHEDULE");
  // N past the lanes: prefill; no decode kernel: prefill.
  EXPECT_EQ(attn_cpu_decode_splits(&f.desc, 1, 8, 8, 17, 64, 2), 0);
  EXPECT_GT(attn_cpu_decode_splits(&f.desc, 1, 8, 8, 16, 64, 2), 0);
  setenv("ATTN_CPU_SCHEDULE", "decode", 1);
  EXPECT_GT(attn_cpu_decode_splits(&f.desc, 1, 8, 8, 100, 64, 2), 0);
  setenv("ATTN_CPU_SCHEDULE", "prefill", 1);
  EXPECT_EQ(attn_cpu_decode_splits(&f.desc, 1, 8, 8, 1, 64, 2), 0);
  unsetenv("ATTN_CPU_SCHEDULE");
  // Invalid dims and kernels.
  EXPECT_EQ(attn_cpu_decode_splits(nullptr, 1, 8, 8, 1, 64, 2), 0);
  EXPECT_EQ(attn_cpu_decode_splits(&f.desc, 1, 8, 3, 1, 64, 2), 0);
  EXPECT_EQ(attn_cpu_decode_splits(&f.desc, 0, 8, 8, 1, 64, 2), 0);
  f.desc.decode_fn = nullptr;
  f.desc.decode_lanes = 0;
  EXPECT_EQ(attn_cpu_decode_splits(&f.desc, 1, 8, 8, 1, 64, 2), 0);
}

TEST(DecodeScheduleTest, MismatchedDecodeFieldsAreRefused) {
  Fixture f;
  Buf q({1, 2, 1, 4}), k({1, 2, 8, 4}), v({1, 2, 8, 4}), o({1, 2, 1, 4});
  const DLTensor *ins[] = {&q.dl, &k.dl, &v.dl};
  f.desc.decode_lanes = 0;
  EXPECT_EQ(attn_cpu_run(&f.desc, ins, &o.dl, nullptr, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(attn_last_error()).find("decode_lanes is 0"),
            std::string::npos)
      << attn_last_error();
  f.desc.decode_fn = nullptr;
  f.desc.decode_lanes = 16;
  EXPECT_EQ(attn_cpu_run(&f.desc, ins, &o.dl, nullptr, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  f.desc.decode_lanes = -1;
  EXPECT_EQ(attn_cpu_run(&f.desc, ins, &o.dl, nullptr, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  for (float x : o.data)
    EXPECT_EQ(x, -7.0f); // nothing written
}

TEST(DecodeScheduleTest, MismatchedWideDecodeFieldsAreRefused) {
  Buf q({1, 2, 1, 4}), k({1, 2, 8, 4}), v({1, 2, 8, 4}), o({1, 2, 1, 4});
  const DLTensor *ins[] = {&q.dl, &k.dl, &v.dl};
  auto refused = [&](attn_kernel_desc_t &desc, const char *what) {
    SCOPED_TRACE(what);
    EXPECT_EQ(attn_cpu_run(&desc, ins, &o.dl, nullptr, nullptr),
              ATTN_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(attn_last_error()).find(what), std::string::npos)
        << attn_last_error();
  };
  {
    Fixture f(true);
    f.desc.decode_wide_lanes = 0;
    refused(f.desc, "decode_wide_lanes is 0 with decode_wide_fn set");
    f.desc.decode_wide_lanes = -64;
    refused(f.desc, "decode_wide_lanes is -64");
  }
  {
    Fixture f(true);
    f.desc.decode_wide_fn = nullptr;
    refused(f.desc, "decode_wide_lanes is 64 with decode_wide_fn NULL");
  }
  {
    Fixture f(true);
    f.desc.decode_fn = nullptr;
    f.desc.decode_lanes = 0;
    refused(f.desc, "decode_wide_fn is set while decode_fn is NULL");
  }
  {
    // The paged kernels: paged_decode_wide_fn exactly with paged_fn and
    // decode_wide_fn.
    Fixture f(true);
    f.desc.paged_fn = unusedPrefill;
    f.desc.paged_decode_fn = fakeDecode;
    refused(f.desc, "paged_decode_wide_fn is NULL");
    Fixture g(false);
    g.desc.paged_decode_wide_fn = fakeDecodeWide;
    refused(g.desc, "paged_decode_wide_fn is set");
  }
  for (float x : o.data)
    EXPECT_EQ(x, -7.0f); // nothing written
}

} // namespace
