//===- MergeTest.cpp - tests for attn_merge_states (the LSE merge) --------===//
//
// Against float64: random parts with empty ones (lse = -inf) mixed in, rows
// with every part empty, one part, strided views and byte offsets, no lse,
// one thread and many, zero sizes; every validation error's code and
// message, with the outputs untouched. And the identity the merge exists
// for: attention over keys split into parts, each part computed on its own
// and merged, equals attention over all the keys. Linked against the shared
// libattn_runtime, so it also checks that the entry is exported.
//
//===----------------------------------------------------------------------===//

#include "attn/runtime.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kSentinel = 12345.0f;

/// Calls \p fn with every index of \p shape, in C order.
void forEachIndex(const std::vector<int64_t> &shape,
                  const std::function<void(const std::vector<int64_t> &)> &fn) {
  for (int64_t s : shape)
    if (s == 0)
      return;
  std::vector<int64_t> idx(shape.size(), 0);
  while (true) {
    fn(idx);
    size_t d = shape.size();
    while (d > 0 && ++idx[d - 1] == shape[d - 1])
      idx[--d] = 0;
    if (d == 0)
      return;
  }
}

/// A float32 host tensor over its own storage: compact, or any strides and
/// an element offset (passed as byte_offset).
struct Tensor {
  std::vector<int64_t> shape, strides;
  int64_t offset = 0;
  std::vector<float> storage;
  DLTensor t{};

  explicit Tensor(std::vector<int64_t> shape, std::vector<int64_t> strides = {},
                  int64_t offset = 0)
      : shape(std::move(shape)), strides(std::move(strides)), offset(offset) {
    if (this->strides.empty()) {
      this->strides.assign(this->shape.size(), 1);
      for (size_t d = this->shape.size(); d-- > 1;)
        this->strides[d - 1] = this->strides[d] * this->shape[d];
    }
    int64_t last = 0;
    for (size_t d = 0; d < this->shape.size(); ++d)
      last += std::max<int64_t>(this->shape[d] - 1, 0) * this->strides[d];
    storage.assign(offset + last + 1, kSentinel);
  }

  float &at(const std::vector<int64_t> &idx) {
    int64_t off = offset;
    for (size_t d = 0; d < idx.size(); ++d)
      off += idx[d] * strides[d];
    return storage[off];
  }

  /// The DLTensor (rebuilt on each call: the tensor may have moved).
  DLTensor *dl() {
    t.data = storage.data();
    t.device = {kDLCPU, 0};
    t.ndim = static_cast<int32_t>(shape.size());
    t.dtype = {kDLFloat, 32, 1};
    t.shape = shape.data();
    t.strides = strides.data();
    t.byte_offset = static_cast<uint64_t>(offset) * sizeof(float);
    return &t;
  }
};

std::vector<int64_t> concat(std::vector<int64_t> a, int64_t b) {
  a.push_back(b);
  return a;
}

/// The float64 merge of P parts; rows over `rowShape`, Dv `dv`.
struct Expected {
  std::vector<double> o, lse; // C order over [rows..., dv] and [rows...]
};
Expected mergeF64(Tensor &oParts, Tensor &lseParts) {
  int64_t P = oParts.shape[0], dv = oParts.shape.back();
  std::vector<int64_t> rowShape(oParts.shape.begin() + 1,
                                oParts.shape.end() - 1);
  Expected e;
  forEachIndex(rowShape, [&](const std::vector<int64_t> &row) {
    auto part = [&](int64_t p) {
      std::vector<int64_t> idx = {p};
      idx.insert(idx.end(), row.begin(), row.end());
      return idx;
    };
    double m = -INFINITY;
    for (int64_t p = 0; p < P; ++p)
      m = std::max(m, double(lseParts.at(part(p))));
    if (m == -INFINITY) {
      e.o.insert(e.o.end(), dv, 0.0);
      e.lse.push_back(-INFINITY);
      return;
    }
    double sum = 0;
    std::vector<double> acc(dv, 0.0);
    for (int64_t p = 0; p < P; ++p) {
      double l = lseParts.at(part(p));
      if (l == -INFINITY)
        continue;
      double w = std::exp(l - m);
      sum += w;
      for (int64_t d = 0; d < dv; ++d)
        acc[d] += w * oParts.at(concat(part(p), d));
    }
    for (double a : acc)
      e.o.push_back(a / sum);
    e.lse.push_back(m + std::log(sum));
  });
  return e;
}

/// Checks o (and lse, when given) against \p e: finite where expected,
/// within \p tol relative to max(1, |expected|).
void expectMatches(const Expected &e, Tensor &o, Tensor *lse, double tol) {
  size_t i = 0, j = 0;
  forEachIndex(o.shape, [&](const std::vector<int64_t> &idx) {
    float got = o.at(idx);
    ASSERT_FALSE(std::isnan(got)) << "o NaN at flat " << i;
    EXPECT_NEAR(got, e.o[i], tol * std::max(1.0, std::fabs(e.o[i])))
        << "o at flat " << i;
    ++i;
  });
  if (!lse)
    return;
  forEachIndex(lse->shape, [&](const std::vector<int64_t> &idx) {
    float got = lse->at(idx);
    ASSERT_FALSE(std::isnan(got)) << "lse NaN at flat " << j;
    if (std::isinf(e.lse[j]))
      EXPECT_EQ(got, e.lse[j]) << "lse at flat " << j;
    else
      EXPECT_NEAR(got, e.lse[j], tol * std::max(1.0, std::fabs(e.lse[j])))
          << "lse at flat " << j;
    ++j;
  });
}

/// Random parts [P, rows..., dv]: o normal, lse uniform in [-6, 6].
void fillRandom(Tensor &oParts, Tensor &lseParts, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> uniform(-6.0f, 6.0f);
  forEachIndex(oParts.shape, [&](const std::vector<int64_t> &i) {
    oParts.at(i) = normal(rng);
  });
  forEachIndex(lseParts.shape, [&](const std::vector<int64_t> &i) {
    lseParts.at(i) = uniform(rng);
  });
}

/// Makes part p of every row empty (lse -inf) and fills its o with NaN: the
/// merge must not read it.
void emptyPart(
    Tensor &oParts, Tensor &lseParts, int64_t p,
    const std::function<bool(const std::vector<int64_t> &)> &which = nullptr) {
  forEachIndex(lseParts.shape, [&](const std::vector<int64_t> &i) {
    if (i[0] != p || (which && !which(i)))
      return;
    lseParts.at(i) = -kInf;
    for (int64_t d = 0; d < oParts.shape.back(); ++d)
      oParts.at(concat(i, d)) = NAN;
  });
}

attn_status_t merge(Tensor &oParts, Tensor &lseParts, Tensor &o, Tensor *lse,
                    int32_t threads = 0) {
  attn_run_options_t opts = {threads};
  return attn_merge_states(oParts.dl(), lseParts.dl(), o.dl(),
                           lse ? lse->dl() : nullptr, &opts);
}

//===----------------------------------------------------------------------===//
// Numbers
//===----------------------------------------------------------------------===//

TEST(Merge, RandomPartsWithEmptyOnesMatchFloat64) {
  // [P, B, Hq, N, Dv]: part 2 empty everywhere, part 0 empty on some rows,
  // and row (1, 2, 4) empty in every part.
  const int64_t P = 4, B = 2, H = 3, N = 5, Dv = 8;
  Tensor oParts({P, B, H, N, Dv}), lseParts({P, B, H, N});
  fillRandom(oParts, lseParts, 1);
  emptyPart(oParts, lseParts, 2);
  emptyPart(oParts, lseParts, 0,
            [](const std::vector<int64_t> &i) { return i[3] % 2 == 0; });
  for (int64_t p = 0; p < P; ++p)
    emptyPart(oParts, lseParts, p, [](const std::vector<int64_t> &i) {
      return i[1] == 1 && i[2] == 2 && i[3] == 4;
    });
  Expected e = mergeF64(oParts, lseParts);
  for (int32_t threads : {1, 0, 7}) {
    Tensor o({B, H, N, Dv}), lse({B, H, N});
    ASSERT_EQ(merge(oParts, lseParts, o, &lse, threads), ATTN_OK)
        << attn_last_error();
    EXPECT_STREQ(attn_last_error(), "");
    expectMatches(e, o, &lse, 1e-6);
    for (int64_t d = 0; d < Dv; ++d)
      EXPECT_EQ(o.at({1, 2, 4, d}), 0.0f);
    EXPECT_EQ(lse.at({1, 2, 4}), -kInf);
  }
}

TEST(Merge, ExtremeLseDoesNotOverflow) {
  // exp(lse) alone would overflow float and double; the merge scales by the
  // largest lse. Parts with equal lse weigh the same.
  Tensor oParts({2, 1, 2}), lseParts({2, 1}), o({1, 2}), lse({1});
  oParts.at({0, 0, 0}) = 1, oParts.at({0, 0, 1}) = 2;
  oParts.at({1, 0, 0}) = 3, oParts.at({1, 0, 1}) = 4;
  lseParts.at({0, 0}) = 1e30f, lseParts.at({1, 0}) = 1e30f;
  ASSERT_EQ(merge(oParts, lseParts, o, &lse), ATTN_OK) << attn_last_error();
  EXPECT_FLOAT_EQ(o.at({0, 0}), 2.0f);
  EXPECT_FLOAT_EQ(o.at({0, 1}), 3.0f);
  EXPECT_FLOAT_EQ(lse.at({0}), 1e30f);
}

TEST(Merge, OneRowOfRankOne) {
  // o_parts [P, Dv]: one row; lse is a rank-0 tensor (no shape needed).
  Tensor oParts({3, 4}), lseParts({3});
  fillRandom(oParts, lseParts, 9);
  Expected e = mergeF64(oParts, lseParts);
  Tensor o({4}), lse(std::vector<int64_t>{});
  DLTensor *l = lse.dl();
  l->shape = nullptr;
  l->strides = nullptr;
  ASSERT_EQ(attn_merge_states(oParts.dl(), lseParts.dl(), o.dl(), l, nullptr),
            ATTN_OK)
      << attn_last_error();
  expectMatches(e, o, nullptr, 1e-6);
  EXPECT_NEAR(lse.storage[0], e.lse[0], 1e-6 * std::fabs(e.lse[0]) + 1e-6);
}

TEST(Merge, OnePartIsACopy) {
  Tensor oParts({1, 3, 4, 16}), lseParts({1, 3, 4});
  fillRandom(oParts, lseParts, 2);
  emptyPart(oParts, lseParts, 0,
            [](const std::vector<int64_t> &i) { return i[2] == 1; });
  Tensor o({3, 4, 16}), lse({3, 4});
  ASSERT_EQ(merge(oParts, lseParts, o, &lse, 1), ATTN_OK) << attn_last_error();
  forEachIndex(o.shape, [&](const std::vector<int64_t> &i) {
    float want = i[1] == 1 ? 0.0f : oParts.at({0, i[0], i[1], i[2]});
    EXPECT_EQ(o.at(i), want);
  });
  forEachIndex(lse.shape, [&](const std::vector<int64_t> &i) {
    EXPECT_EQ(lse.at(i), lseParts.at({0, i[0], i[1]}));
  });
}

TEST(Merge, StridedViewsAndByteOffsets) {
  // o_parts a transposed view: the storage is [B, N, P, Dv, H] (so Dv is
  // not the inner dim); lse_parts [N, P, B] storage with an offset; o with a
  // padded row (Dv + 3) and an offset; lse every other float.
  const int64_t P = 3, B = 2, H = 4, N = 6, Dv = 5;
  int64_t sH = 1, sDv = H, sP = Dv * H, sN = P * Dv * H, sB = N * P * Dv * H;
  Tensor oParts({P, B, H, N, Dv}, {sP, sB, sH, sN, sDv});
  Tensor lseParts({P, B, H, N}, {B, 1, 0, P * B}, 7);
  // lse_parts ignores H (stride 0: one lse per (p, b, n) broadcast over h).
  fillRandom(oParts, lseParts, 3);
  emptyPart(oParts, lseParts, 1,
            [](const std::vector<int64_t> &i) { return i[3] == 2; });
  Expected e = mergeF64(oParts, lseParts);
  Tensor o({B, H, N, Dv}, {H * N * (Dv + 3), N * (Dv + 3), Dv + 3, 1}, 5);
  Tensor lse({B, H, N}, {2 * H * N, 2 * N, 2}, 1);
  ASSERT_EQ(merge(oParts, lseParts, o, &lse, 3), ATTN_OK) << attn_last_error();
  expectMatches(e, o, &lse, 1e-6);
  // The padding and the offsets are untouched.
  EXPECT_EQ(o.storage[0], kSentinel);
  EXPECT_EQ(o.storage[5 + Dv], kSentinel);
  EXPECT_EQ(lse.storage[0], kSentinel);
  EXPECT_EQ(lse.storage[2], kSentinel);
}

TEST(Merge, NoLse) {
  Tensor oParts({2, 3, 4}), lseParts({2, 3}), o({3, 4});
  fillRandom(oParts, lseParts, 4);
  Expected e = mergeF64(oParts, lseParts);
  ASSERT_EQ(
      attn_merge_states(oParts.dl(), lseParts.dl(), o.dl(), nullptr, nullptr),
      ATTN_OK)
      << attn_last_error();
  expectMatches(e, o, nullptr, 1e-6);
}

TEST(Merge, ManyThreadsGiveTheSameBits) {
  // Large enough that the work is split over the pool; each row is merged
  // by one thread in the same order, so the results are bit-identical.
  const int64_t P = 3, R = 64, N = 64, Dv = 32;
  Tensor oParts({P, R, N, Dv}), lseParts({P, R, N});
  fillRandom(oParts, lseParts, 5);
  emptyPart(oParts, lseParts, 1,
            [](const std::vector<int64_t> &i) { return i[2] % 3 == 0; });
  Tensor o1({R, N, Dv}), l1({R, N}), o16({R, N, Dv}), l16({R, N});
  ASSERT_EQ(merge(oParts, lseParts, o1, &l1, 1), ATTN_OK);
  ASSERT_EQ(merge(oParts, lseParts, o16, &l16, 16), ATTN_OK);
  EXPECT_EQ(std::memcmp(o1.storage.data(), o16.storage.data(),
                        o1.storage.size() * sizeof(float)),
            0);
  EXPECT_EQ(std::memcmp(l1.storage.data(), l16.storage.data(),
                        l1.storage.size() * sizeof(float)),
            0);
  expectMatches(mergeF64(oParts, lseParts), o16, &l16, 1e-6);
}

TEST(Merge, ZeroSizesDoNothing) {
  // No rows: nothing written. Dv = 0: no o to write, lse still merged.
  // Compact strides as NumPy gives them (0 before the empty dim).
  Tensor oParts({2, 3, 0, 4}), lseParts({2, 3, 0}), o({3, 0, 4}), lse({3, 0});
  EXPECT_EQ(o.strides[0], 0);
  EXPECT_EQ(merge(oParts, lseParts, o, &lse), ATTN_OK) << attn_last_error();
  EXPECT_EQ(o.storage[0], kSentinel);
  EXPECT_EQ(lse.storage[0], kSentinel);
  Tensor oParts2({2, 3, 0}), lseParts2({2, 3}), o2({3, 0}), lse2({3});
  lseParts2.at({0, 0}) = 0, lseParts2.at({1, 0}) = 0;
  lseParts2.at({0, 1}) = -kInf, lseParts2.at({1, 1}) = 1;
  lseParts2.at({0, 2}) = -kInf, lseParts2.at({1, 2}) = -kInf;
  ASSERT_EQ(merge(oParts2, lseParts2, o2, &lse2), ATTN_OK) << attn_last_error();
  EXPECT_FLOAT_EQ(lse2.at({0}), std::log(2.0f));
  EXPECT_FLOAT_EQ(lse2.at({1}), 1.0f);
  EXPECT_EQ(lse2.at({2}), -kInf);
}

TEST(Merge, PinnedHostMemoryIsHostMemory) {
  Tensor oParts({2, 1, 2}), lseParts({2, 1}), o({1, 2}), lse({1});
  fillRandom(oParts, lseParts, 6);
  DLTensor *t = oParts.dl();
  t->device = {kDLCUDAHost, 0};
  DLTensor *l = lseParts.dl();
  l->device = {kDLROCMHost, 0};
  EXPECT_EQ(attn_merge_states(t, l, o.dl(), lse.dl(), nullptr), ATTN_OK)
      << attn_last_error();
}

//===----------------------------------------------------------------------===//
// The identity: attention over split keys, merged
//===----------------------------------------------------------------------===//

TEST(Merge, SplitAttentionEqualsWholeAttention) {
  // Causal attention (query i sees keys j <= i) over M = N = 11 keys, split
  // into parts [0, 3), [3, 8), [8, 11): early queries see nothing of the
  // later parts (lse = -inf), as a split-KV kernel would report them.
  const int64_t B = 2, H = 3, N = 11, M = 11, D = 6, Dv = 5;
  const int64_t bounds[] = {0, 3, 8, 11};
  const int64_t P = 3;
  std::mt19937 rng(7);
  std::normal_distribution<double> normal;
  std::vector<double> q(B * H * N * D), k(B * H * M * D), v(B * H * M * Dv);
  for (auto *x : {&q, &k, &v})
    for (double &e : *x)
      e = normal(rng);
  const double scale = 1.0 / std::sqrt(double(D));
  // Softmax attention of query (b, h, i) over keys [lo, hi): o and lse.
  auto attend = [&](int64_t b, int64_t h, int64_t i, int64_t lo, int64_t hi,
                    std::vector<double> &o) -> double {
    std::vector<double> s;
    double m = -INFINITY;
    for (int64_t j = lo; j < hi && j <= i; ++j) {
      double dot = 0;
      for (int64_t d = 0; d < D; ++d)
        dot +=
            q[((b * H + h) * N + i) * D + d] * k[((b * H + h) * M + j) * D + d];
      s.push_back(dot * scale);
      m = std::max(m, s.back());
    }
    o.assign(Dv, 0.0);
    if (s.empty())
      return -INFINITY;
    double sum = 0;
    for (size_t j = 0; j < s.size(); ++j) {
      double p = std::exp(s[j] - m);
      sum += p;
      for (int64_t d = 0; d < Dv; ++d)
        o[d] += p * v[((b * H + h) * M + lo + int64_t(j)) * Dv + d];
    }
    for (double &x : o)
      x /= sum;
    return m + std::log(sum);
  };

  Tensor oParts({P, B, H, N, Dv}), lseParts({P, B, H, N});
  Expected whole;
  int64_t emptyRows = 0;
  std::vector<double> out;
  forEachIndex({B, H, N}, [&](const std::vector<int64_t> &r) {
    for (int64_t p = 0; p < P; ++p) {
      double l = attend(r[0], r[1], r[2], bounds[p], bounds[p + 1], out);
      emptyRows += l == -INFINITY;
      lseParts.at({p, r[0], r[1], r[2]}) = float(l);
      for (int64_t d = 0; d < Dv; ++d)
        oParts.at({p, r[0], r[1], r[2], d}) = float(out[d]);
    }
    whole.lse.push_back(attend(r[0], r[1], r[2], 0, M, out));
    whole.o.insert(whole.o.end(), out.begin(), out.end());
  });
  ASSERT_GT(emptyRows, 0); // the causal mask made some parts empty
  Tensor o({B, H, N, Dv}), lse({B, H, N});
  ASSERT_EQ(merge(oParts, lseParts, o, &lse, 2), ATTN_OK) << attn_last_error();
  expectMatches(whole, o, &lse, 1e-5);
}

//===----------------------------------------------------------------------===//
// Validation
//===----------------------------------------------------------------------===//

/// A valid call ([P=2, 3, 4, 8] parts) that each case breaks one way.
struct Call {
  Tensor oParts{std::vector<int64_t>{2, 3, 4, 8}},
      lseParts{std::vector<int64_t>{2, 3, 4}}, o{std::vector<int64_t>{3, 4, 8}},
      lse{std::vector<int64_t>{3, 4}};
  DLTensor *op, *lp, *ot, *lt;
  attn_run_options_t opts = {1};
  Call() {
    fillRandom(oParts, lseParts, 8);
    op = oParts.dl(), lp = lseParts.dl(), ot = o.dl(), lt = lse.dl();
  }
  attn_status_t run() { return attn_merge_states(op, lp, ot, lt, &opts); }
  bool outputsUntouched() const {
    for (float x : o.storage)
      if (x != kSentinel)
        return false;
    for (float x : lse.storage)
      if (x != kSentinel)
        return false;
    return true;
  }
};

struct ErrorCase {
  const char *what;
  std::function<void(Call &)> breakIt;
  attn_status_t status;
  const char *message; // a substring of attn_last_error()
};

TEST(Merge, ValidationErrorsWriteNothing) {
  static int64_t negStrides[] = {96, -32, 8, 1};
  static int64_t zeroStrides[] = {8, 0, 1};
  static int64_t badShape[] = {2, 3, -1, 8};
  const std::vector<ErrorCase> cases = {
      {"o_parts NULL", [](Call &c) { c.op = nullptr; },
       ATTN_ERROR_INVALID_ARGUMENT, "o_parts: tensor is NULL"},
      {"lse_parts NULL", [](Call &c) { c.lp = nullptr; },
       ATTN_ERROR_INVALID_ARGUMENT, "lse_parts: tensor is NULL"},
      {"o NULL", [](Call &c) { c.ot = nullptr; }, ATTN_ERROR_INVALID_ARGUMENT,
       "o: tensor is NULL"},
      {"negative threads", [](Call &c) { c.opts.num_threads = -1; },
       ATTN_ERROR_INVALID_ARGUMENT, "options: num_threads is -1"},
      {"o data NULL", [](Call &c) { c.ot->data = nullptr; },
       ATTN_ERROR_INVALID_ARGUMENT, "o: data is NULL"},
      {"o_parts shape NULL", [](Call &c) { c.op->shape = nullptr; },
       ATTN_ERROR_INVALID_ARGUMENT, "o_parts: shape is NULL"},
      {"o_parts f16", [](Call &c) { c.op->dtype = {kDLFloat, 16, 1}; },
       ATTN_ERROR_DTYPE, "o_parts: dtype is float16, expected float32"},
      {"lse f64", [](Call &c) { c.lt->dtype = {kDLFloat, 64, 1}; },
       ATTN_ERROR_DTYPE, "lse: dtype is float64, expected float32"},
      {"lse_parts lanes", [](Call &c) { c.lp->dtype = {kDLFloat, 32, 4}; },
       ATTN_ERROR_DTYPE, "lse_parts: dtype is float32x4"},
      {"o_parts rank 1", [](Call &c) { c.op->ndim = 1; }, ATTN_ERROR_SHAPE,
       "o_parts: ndim is 1, expected 2 to 16 [P, ..., Dv]"},
      {"P = 0", [](Call &c) { c.oParts.shape[0] = 0; }, ATTN_ERROR_SHAPE,
       "o_parts: dim 0 (P, the number of parts) is 0, expected >= 1"},
      {"negative size", [](Call &c) { c.op->shape = badShape; },
       ATTN_ERROR_SHAPE, "o_parts: dim 2 is -1, expected >= 0"},
      {"lse_parts rank", [](Call &c) { c.lp->ndim = 4; }, ATTN_ERROR_SHAPE,
       "lse_parts: ndim is 4, expected 3 from o_parts [2, 3, 4, 8]"},
      {"lse_parts P", [](Call &c) { c.lseParts.shape[0] = 1; },
       ATTN_ERROR_SHAPE,
       "lse_parts: dim 0 is 1, expected 2 (shape [1, 3, 4], expected "
       "[2, 3, 4] from o_parts [2, 3, 4, 8])"},
      {"o Dv", [](Call &c) { c.o.shape[2] = 7; }, ATTN_ERROR_SHAPE,
       "o: dim 2 is 7, expected 8"},
      {"lse rows", [](Call &c) { c.lse.shape[1] = 5; }, ATTN_ERROR_SHAPE,
       "lse: dim 1 is 5, expected 4"},
      {"o rank", [](Call &c) { c.ot->ndim = 2; }, ATTN_ERROR_SHAPE,
       "o: ndim is 2, expected 3"},
      {"o on CUDA", [](Call &c) { c.ot->device = {kDLCUDA, 0}; },
       ATTN_ERROR_DEVICE, "o: tensor is on kDLCUDA, expected host memory"},
      {"lse_parts unknown device",
       [](Call &c) { std::memset(&c.lp->device.device_type, 0x7f, 4); },
       ATTN_ERROR_DEVICE, "lse_parts: tensor is on device type 2139062143"},
      {"negative stride", [](Call &c) { c.op->strides = negStrides; },
       ATTN_ERROR_LAYOUT, "o_parts: dim 1 has stride -32"},
      {"misaligned o", [](Call &c) { c.ot->byte_offset = 2; },
       ATTN_ERROR_LAYOUT,
       "o: data + byte_offset (2) is not aligned to the 4-byte element size"},
      {"o overlaps itself", [](Call &c) { c.ot->strides = zeroStrides; },
       ATTN_ERROR_LAYOUT, "o: dim 1 (dim 1) has stride 0"},
      {"o aliases o_parts", [](Call &c) { c.ot->data = c.op->data; },
       ATTN_ERROR_LAYOUT, "o: overlaps o_parts"},
      {"lse inside o",
       [](Call &c) {
         c.lt->data = c.ot->data;
         c.lt->byte_offset = 16 * sizeof(float);
       },
       ATTN_ERROR_LAYOUT, "o: overlaps lse"},
      {"lse aliases lse_parts", [](Call &c) { c.lt->data = c.lp->data; },
       ATTN_ERROR_LAYOUT, "lse: overlaps lse_parts"},
  };
  for (const ErrorCase &ec : cases) {
    SCOPED_TRACE(ec.what);
    Call c;
    ec.breakIt(c);
    EXPECT_EQ(c.run(), ec.status) << attn_last_error();
    std::string msg = attn_last_error();
    EXPECT_NE(msg.find(ec.message), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    // Read the sentinels through the original buffers (data may be moved).
    EXPECT_TRUE(c.outputsUntouched());
  }
  // The error is cleared by the next call.
  Call ok;
  EXPECT_EQ(ok.run(), ATTN_OK) << attn_last_error();
  EXPECT_STREQ(attn_last_error(), "");
}

} // namespace
