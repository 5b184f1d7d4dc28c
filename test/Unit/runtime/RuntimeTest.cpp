//===- RuntimeTest.cpp - tests for the CPU runtime's C ABI ----------------===//
//
// Fake kernels with the exact compiled-kernel ABI read the memref descriptors
// attn_cpu_run builds, so these tests check the contract without a compiler:
// every work item exactly once for many shapes, tile sizes and thread counts;
// strided views and byte offsets; each validation error's code and message
// (and that nothing was written); concurrent and nested calls; the status
// word a kernel reports a failed scratch allocation in.
//
//===----------------------------------------------------------------------===//

#include "attn/runtime.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

extern "C" int attn_test_c_header(void);

namespace {

//===----------------------------------------------------------------------===//
// Descriptors as a compiled kernel sees them
//===----------------------------------------------------------------------===//

template <int R> struct Memref {
  void *allocated;
  void *aligned;
  int64_t offset;
  int64_t sizes[R];
  int64_t strides[R];
};

template <typename T, int R>
T &at(const Memref<R> &m, std::initializer_list<int64_t> idx) {
  int64_t off = m.offset, d = 0;
  for (int64_t i : idx)
    off += i * m.strides[d++];
  return static_cast<T *>(m.aligned)[off];
}

/// What the fake kernels saw; installed by a test, NULL otherwise.
struct Recorder {
  explicit Recorder(int64_t total) : seen(total) {}
  std::vector<std::atomic<int>> seen;
  std::atomic<int> calls{0};
  std::atomic<bool> bad{false};
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::vector<std::pair<int64_t, int64_t>> ranges;
};
Recorder *recorder = nullptr;
/// Kernel invocations, counted even with no recorder.
std::atomic<int> kernelCalls{0};

void record(int64_t begin, int64_t end, int64_t total) {
  kernelCalls.fetch_add(1);
  Recorder *r = recorder;
  if (!r)
    return;
  r->calls.fetch_add(1);
  if (begin < 0 || end > total || begin >= end ||
      total != static_cast<int64_t>(r->seen.size()))
    r->bad = true;
  for (int64_t i = std::max<int64_t>(begin, 0);
       i < std::min<int64_t>(end, r->seen.size()); ++i)
    r->seen[i].fetch_add(1);
  std::lock_guard<std::mutex> lock(r->mu);
  r->threads.insert(std::this_thread::get_id());
  r->ranges.push_back({begin, end});
}

/// o[b,h,i,d] = q[b,h,i,d%Dqk] + k[b,hk,0,d%Dqk] + 10 v[b,hk,M-1,d]
/// lse[b,h,i] = 100000 b + 1000 h + i, for the rows of each item; TQ is the
/// kernel's compiled tile_q. Flags inconsistent descriptor sizes.
template <int TQ> void fakeKernel(void **args, int64_t begin, int64_t end) {
  const auto &q = *static_cast<Memref<4> *>(args[0]);
  const auto &k = *static_cast<Memref<4> *>(args[1]);
  const auto &v = *static_cast<Memref<4> *>(args[2]);
  const auto &o = *static_cast<Memref<4> *>(args[3]);
  const auto &lse = *static_cast<Memref<3> *>(args[4]);
  int64_t B = q.sizes[0], Hq = q.sizes[1], N = q.sizes[2], Dqk = q.sizes[3];
  int64_t Hkv = k.sizes[1], M = k.sizes[2], Dv = v.sizes[3];
  int64_t numQTiles = (N + TQ - 1) / TQ, total = B * Hq * numQTiles;
  record(begin, end, total);
  bool sane = o.sizes[0] == B && o.sizes[1] == Hq && o.sizes[2] == N &&
              o.sizes[3] == Dv && lse.sizes[0] == B && lse.sizes[1] == Hq &&
              lse.sizes[2] == N && k.sizes[3] == Dqk && v.sizes[2] == M &&
              o.aligned && begin >= 0 && end <= total;
  if (!sane) {
    if (recorder)
      recorder->bad = true;
    return;
  }
  int64_t G = Hq / Hkv;
  for (int64_t item = begin; item < end; ++item) {
    int64_t qt = item % numQTiles, bh = item / numQTiles;
    int64_t h = bh % Hq, b = bh / Hq, hk = h / G;
    for (int64_t i = qt * TQ; i < std::min<int64_t>(N, qt * TQ + TQ); ++i) {
      for (int64_t d = 0; d < Dv; ++d)
        at<float>(o, {b, h, i, d}) = at<float>(q, {b, h, i, d % Dqk}) +
                                     at<float>(k, {b, hk, 0, d % Dqk}) +
                                     10 * at<float>(v, {b, hk, M - 1, d});
      if (lse.aligned)
        at<float>(lse, {b, h, i}) = float(100000 * b + 1000 * h + i);
    }
  }
}

/// Records the items and checks the aux descriptors of the validation
/// kernel (doc : i32[B, N], bias : f32[Hq, 7]); reads no data.
void countingKernel(void **args, int64_t begin, int64_t end) {
  const auto &q = *static_cast<Memref<4> *>(args[0]);
  const auto &doc = *static_cast<Memref<2> *>(args[5]);
  const auto &bias = *static_cast<Memref<2> *>(args[6]);
  int64_t total = q.sizes[0] * q.sizes[1] * ((q.sizes[2] + 15) / 16);
  record(begin, end, total);
  if (recorder && (doc.sizes[0] != q.sizes[0] || doc.sizes[1] != q.sizes[2] ||
                   bias.sizes[0] != q.sizes[1] || bias.sizes[1] != 7))
    recorder->bad = true;
}

/// Like fakeKernel<4>, plus o += doc[b, i] + bias[h, 3] from the aux inputs.
void auxKernel(void **args, int64_t begin, int64_t end) {
  fakeKernel<4>(args, begin, end);
  const auto &o = *static_cast<Memref<4> *>(args[3]);
  const auto &doc = *static_cast<Memref<2> *>(args[5]);
  const auto &bias = *static_cast<Memref<2> *>(args[6]);
  int64_t Hq = o.sizes[1], N = o.sizes[2], Dv = o.sizes[3];
  int64_t numQTiles = (N + 3) / 4;
  for (int64_t item = begin; item < end; ++item) {
    int64_t qt = item % numQTiles, h = (item / numQTiles) % Hq,
            b = item / numQTiles / Hq;
    for (int64_t i = qt * 4; i < std::min<int64_t>(N, qt * 4 + 4); ++i)
      for (int64_t d = 0; d < Dv; ++d)
        at<float>(o, {b, h, i, d}) +=
            float(at<int32_t>(doc, {b, i})) + at<float>(bias, {h, 3});
  }
}

/// The item whose call fails in failingKernel.
std::atomic<int64_t> failItem{-1};
/// Calls of failingKernel that saw a status word other than NULL/0 on entry.
std::atomic<int> badStatusWord{0};

/// fakeKernel<4>, except that the call holding item failItem computes nothing
/// and reports ATTN_KERNEL_OUT_OF_MEMORY in the status word args[5] (q, k,
/// v, o, lse, then the word), as a compiled kernel does when malloc fails.
void failingKernel(void **args, int64_t begin, int64_t end) {
  auto *status = static_cast<int32_t *>(args[5]);
  if (!status)
    badStatusWord++;
  int64_t f = failItem.load();
  if (begin <= f && f < end) {
    kernelCalls++;
    __atomic_store_n(status, int32_t(ATTN_KERNEL_OUT_OF_MEMORY),
                     __ATOMIC_RELAXED);
    return;
  }
  fakeKernel<4>(args, begin, end);
}

//===----------------------------------------------------------------------===//
// Host tensors with arbitrary layouts
//===----------------------------------------------------------------------===//

constexpr DLDataType kF32 = {kDLFloat, 32, 1};
constexpr DLDataType kI32 = {kDLInt, 32, 1};

/// Owns storage, shape and strides behind a DLTensor. `order` lists the
/// logical dims from outermost to innermost in memory; `pad` extra elements
/// follow each innermost row; `offsetBytes` goes to byte_offset.
struct Tensor {
  std::vector<int64_t> shape, strides;
  std::vector<uint64_t> storage; // 8-byte aligned
  DLTensor dl{};

  Tensor(std::vector<int64_t> shapeIn, DLDataType type = kF32,
         std::vector<int> order = {}, int64_t pad = 0, uint64_t offsetBytes = 0,
         bool explicitStrides = false)
      : shape(std::move(shapeIn)) {
    int rank = static_cast<int>(shape.size());
    if (order.empty())
      for (int d = 0; d < rank; ++d)
        order.push_back(d);
    strides.assign(rank, 0);
    int64_t s = 1;
    for (int j = rank - 1; j >= 0; --j) {
      strides[order[j]] = s;
      s *= shape[order[j]] + (j == rank - 1 ? pad : 0);
    }
    int64_t bytes = s * (type.bits / 8) + int64_t(offsetBytes) + 8;
    storage.assign((bytes + 7) / 8, 0);
    bool compact = order == identity(rank) && pad == 0 && !explicitStrides;
    dl.data = storage.data();
    dl.device = {kDLCPU, 0};
    dl.ndim = rank;
    dl.dtype = type;
    dl.shape = shape.data();
    dl.strides = compact ? nullptr : strides.data();
    dl.byte_offset = offsetBytes;
  }
  Tensor(const Tensor &) = delete;

  static std::vector<int> identity(int rank) {
    std::vector<int> v;
    for (int d = 0; d < rank; ++d)
      v.push_back(d);
    return v;
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape)
      n *= s;
    return n;
  }
  /// Element at C-order logical index `flat`.
  template <typename T> T &flat(int64_t flatIdx) {
    int64_t off = 0;
    for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
      off += (flatIdx % shape[d]) * strides[d];
      flatIdx /= shape[d];
    }
    char *base = static_cast<char *>(dl.data) + dl.byte_offset;
    return reinterpret_cast<T *>(base)[off];
  }
  /// Fills with small exactly-representable values derived from `seed`.
  void fill(int seed) {
    for (int64_t i = 0; i < numel(); ++i) {
      if (dl.dtype.code == kDLInt)
        flat<int32_t>(i) = int32_t((i * 7 + seed) % 11);
      else
        flat<float>(i) = float((i * 13 + seed * 5) % 29 - 14) / 8.0f;
    }
  }
  void fillConst(float v) {
    for (int64_t i = 0; i < numel(); ++i)
      flat<float>(i) = v;
  }
  std::vector<float> values() {
    std::vector<float> out;
    for (int64_t i = 0; i < numel(); ++i)
      out.push_back(flat<float>(i));
    return out;
  }
};

//===----------------------------------------------------------------------===//
// Kernel descriptors
//===----------------------------------------------------------------------===//

const char *const kQDims[] = {"B", "Hq", "N", "Dqk"};
const char *const kKDims[] = {"B", "Hkv", "M", "Dqk"};
const char *const kVDims[] = {"B", "Hkv", "M", "Dv"};
const char *const kDocDims[] = {"B", "N"};
const char *const kBiasDims[] = {"Hq", nullptr};
const int64_t kBiasFixed[] = {0, 7};

/// A kernel descriptor with stable storage for its inputs.
struct Kernel {
  std::vector<attn_input_desc_t> inputs;
  attn_kernel_desc_t desc{};
  Kernel(const Kernel &) = delete;

  Kernel(attn_cpu_kernel_fn fn, int32_t tileQ, bool hasLse = true,
         bool withAux = false, attn_elem_type_t qkvType = ATTN_F32) {
    inputs.push_back({"q", qkvType, 4, kQDims, nullptr});
    inputs.push_back({"k", qkvType, 4, kKDims, nullptr});
    inputs.push_back({"v", qkvType, 4, kVDims, nullptr});
    if (withAux) {
      inputs.push_back({"doc", ATTN_I32, 2, kDocDims, nullptr});
      inputs.push_back({"bias", ATTN_F32, 2, kBiasDims, kBiasFixed});
    }
    desc.abi_version = ATTN_ABI_VERSION;
    desc.name = "fake";
    desc.tile_q = tileQ;
    desc.num_inputs = static_cast<int32_t>(inputs.size());
    desc.inputs = inputs.data();
    desc.has_lse = hasLse;
    desc.cpu_fn = fn;
  }
};

attn_cpu_kernel_fn fakeKernelFor(int tileQ) {
  switch (tileQ) {
  case 1:
    return fakeKernel<1>;
  case 3:
    return fakeKernel<3>;
  case 4:
    return fakeKernel<4>;
  case 16:
    return fakeKernel<16>;
  case 64:
    return fakeKernel<64>;
  default:
    return nullptr;
  }
}

struct Dims {
  int64_t B, Hq, Hkv, N, M, Dqk, Dv;
};

/// The expected outputs of fakeKernel on compact q, k, v.
void reference(const Dims &s, Tensor &q, Tensor &k, Tensor &v,
               std::vector<float> &o, std::vector<float> &lse) {
  o.assign(s.B * s.Hq * s.N * s.Dv, 0);
  lse.assign(s.B * s.Hq * s.N, 0);
  int64_t G = s.Hq / s.Hkv;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.Hq; ++h)
      for (int64_t i = 0; i < s.N; ++i) {
        int64_t hk = h / G;
        for (int64_t d = 0; d < s.Dv; ++d)
          o[((b * s.Hq + h) * s.N + i) * s.Dv + d] =
              q.flat<float>(((b * s.Hq + h) * s.N + i) * s.Dqk + d % s.Dqk) +
              k.flat<float>(((b * s.Hkv + hk) * s.M) * s.Dqk + d % s.Dqk) +
              10 * v.flat<float>(((b * s.Hkv + hk) * s.M + s.M - 1) * s.Dv + d);
        lse[(b * s.Hq + h) * s.N + i] = float(100000 * b + 1000 * h + i);
      }
}

attn_status_t run(const Kernel &kernel, std::vector<Tensor *> in, Tensor *o,
                  Tensor *lse, int threads) {
  std::vector<const DLTensor *> dl;
  for (Tensor *t : in)
    dl.push_back(t ? &t->dl : nullptr);
  attn_run_options_t options{threads};
  return attn_cpu_run(&kernel.desc, dl.data(), o ? &o->dl : nullptr,
                      lse ? &lse->dl : nullptr, &options);
}

//===----------------------------------------------------------------------===//
// Work items and numerics
//===----------------------------------------------------------------------===//

TEST(RuntimeTest, CHeader) { EXPECT_EQ(attn_test_c_header(), 1); }

TEST(RuntimeTest, StatusStrings) {
  EXPECT_STREQ(attn_status_string(ATTN_OK), "ATTN_OK");
  EXPECT_STREQ(attn_status_string(ATTN_ERROR_SHAPE), "ATTN_ERROR_SHAPE");
  EXPECT_STREQ(attn_status_string(ATTN_ERROR_INTERNAL), "ATTN_ERROR_INTERNAL");
  EXPECT_STREQ(attn_status_string(ATTN_ERROR_OUT_OF_MEMORY),
               "ATTN_ERROR_OUT_OF_MEMORY");
  EXPECT_STREQ(attn_status_string(static_cast<attn_status_t>(42)),
               "ATTN_ERROR_UNKNOWN");
  EXPECT_GE(attn_cpu_num_threads(), 1);
}

TEST(RuntimeTest, EveryItemExactlyOnce) {
  const Dims shapes[] = {{1, 1, 1, 1, 1, 2, 2},
                         {2, 3, 1, 5, 3, 4, 3},
                         {1, 4, 2, 37, 9, 8, 5},
                         {2, 4, 4, 64, 5, 4, 4},
                         {3, 2, 1, 17, 2, 3, 3}};
  for (const Dims &s : shapes) {
    Tensor q({s.B, s.Hq, s.N, s.Dqk}), k({s.B, s.Hkv, s.M, s.Dqk}),
        v({s.B, s.Hkv, s.M, s.Dv});
    q.fill(1), k.fill(2), v.fill(3);
    std::vector<float> wantO, wantLse;
    reference(s, q, k, v, wantO, wantLse);
    for (int tileQ : {1, 3, 16, 64}) {
      Kernel kernel(fakeKernelFor(tileQ), tileQ);
      int64_t total = s.B * s.Hq * ((s.N + tileQ - 1) / tileQ);
      for (int threads : {0, 1, 2, 3, 8}) {
        SCOPED_TRACE(
            "B=" + std::to_string(s.B) + " Hq=" + std::to_string(s.Hq) +
            " N=" + std::to_string(s.N) + " tile_q=" + std::to_string(tileQ) +
            " threads=" + std::to_string(threads));
        Tensor o({s.B, s.Hq, s.N, s.Dv}), lse({s.B, s.Hq, s.N});
        o.fillConst(-1), lse.fillConst(-1);
        Recorder rec(total);
        recorder = &rec;
        attn_status_t st = run(kernel, {&q, &k, &v}, &o, &lse, threads);
        recorder = nullptr;
        ASSERT_EQ(st, ATTN_OK) << attn_last_error();
        EXPECT_STREQ(attn_last_error(), "");
        EXPECT_FALSE(rec.bad);
        for (int64_t i = 0; i < total; ++i)
          ASSERT_EQ(rec.seen[i].load(), 1) << "item " << i;
        int maxThreads = threads ? threads : attn_cpu_num_threads();
        EXPECT_LE(static_cast<int>(rec.threads.size()), maxThreads);
        if (maxThreads == 1) {
          // One call covering everything, on the calling thread.
          ASSERT_EQ(rec.ranges.size(), 1u);
          EXPECT_EQ(rec.ranges[0], std::make_pair(int64_t(0), total));
          EXPECT_EQ(*rec.threads.begin(), std::this_thread::get_id());
        } else {
          for (auto &r : rec.ranges)
            EXPECT_LE(r.second - r.first, 4);
        }
        EXPECT_EQ(o.values(), wantO);
        EXPECT_EQ(lse.values(), wantLse);
      }
    }
  }
}

TEST(RuntimeTest, NoLseGivesNullDescriptor) {
  Dims s{2, 2, 1, 9, 4, 4, 4};
  Tensor q({s.B, s.Hq, s.N, s.Dqk}), k({s.B, s.Hkv, s.M, s.Dqk}),
      v({s.B, s.Hkv, s.M, s.Dv}), o({s.B, s.Hq, s.N, s.Dv});
  q.fill(1), k.fill(2), v.fill(3);
  std::vector<float> wantO, wantLse;
  reference(s, q, k, v, wantO, wantLse);
  for (bool hasLse : {true, false}) {
    Kernel kernel(fakeKernel<4>, 4, hasLse);
    Recorder rec(s.B * s.Hq * 3);
    recorder = &rec;
    ASSERT_EQ(run(kernel, {&q, &k, &v}, &o, nullptr, 2), ATTN_OK)
        << attn_last_error();
    recorder = nullptr;
    EXPECT_FALSE(rec.bad); // lse sizes were [B, Hq, N]
    EXPECT_EQ(o.values(), wantO);
  }
}

TEST(RuntimeTest, StridedViewsMatchCompact) {
  Dims s{2, 4, 2, 13, 6, 5, 3};
  Kernel kernel(fakeKernel<4>, 4);
  Tensor q({s.B, s.Hq, s.N, s.Dqk}), k({s.B, s.Hkv, s.M, s.Dqk}),
      v({s.B, s.Hkv, s.M, s.Dv}), o({s.B, s.Hq, s.N, s.Dv}),
      lse({s.B, s.Hq, s.N});
  q.fill(1), k.fill(2), v.fill(3);
  ASSERT_EQ(run(kernel, {&q, &k, &v}, &o, &lse, 0), ATTN_OK);
  std::vector<float> wantO = o.values(), wantLse = lse.values();

  struct Layout {
    const char *name;
    std::vector<int> order4, order3;
    int64_t pad;
    uint64_t offsetBytes;
  };
  const Layout layouts[] = {
      {"transposed heads [B,N,H,D]", {0, 2, 1, 3}, {0, 2, 1}, 0, 0},
      {"padded rows", {0, 1, 2, 3}, {0, 1, 2}, 3, 0},
      {"head-major [H,B,N,D] + offset", {1, 0, 2, 3}, {1, 0, 2}, 1, 64},
      {"feature-major [B,H,D,N]", {0, 1, 3, 2}, {2, 0, 1}, 0, 4},
      {"explicit compact strides", {0, 1, 2, 3}, {0, 1, 2}, 0, 0},
  };
  for (const Layout &l : layouts) {
    SCOPED_TRACE(l.name);
    Tensor q2({s.B, s.Hq, s.N, s.Dqk}, kF32, l.order4, l.pad, l.offsetBytes,
              true),
        k2({s.B, s.Hkv, s.M, s.Dqk}, kF32, l.order4, l.pad, l.offsetBytes,
           true),
        v2({s.B, s.Hkv, s.M, s.Dv}, kF32, l.order4, l.pad, l.offsetBytes, true),
        o2({s.B, s.Hq, s.N, s.Dv}, kF32, l.order4, l.pad, l.offsetBytes, true),
        lse2({s.B, s.Hq, s.N}, kF32, l.order3, l.pad, l.offsetBytes, true);
    q2.fill(1), k2.fill(2), v2.fill(3);
    for (int threads : {1, 2}) {
      o2.fillConst(-1), lse2.fillConst(-1);
      ASSERT_EQ(run(kernel, {&q2, &k2, &v2}, &o2, &lse2, threads), ATTN_OK)
          << attn_last_error();
      EXPECT_EQ(o2.values(), wantO);
      EXPECT_EQ(lse2.values(), wantLse);
    }
  }
}

TEST(RuntimeTest, ByteOffsetOnCompactTensors) {
  Dims s{1, 2, 2, 7, 3, 4, 4};
  Kernel kernel(fakeKernel<3>, 3);
  Tensor q({s.B, s.Hq, s.N, s.Dqk}), k({s.B, s.Hkv, s.M, s.Dqk}),
      v({s.B, s.Hkv, s.M, s.Dv}), o({s.B, s.Hq, s.N, s.Dv}),
      lse({s.B, s.Hq, s.N});
  q.fill(1), k.fill(2), v.fill(3);
  ASSERT_EQ(run(kernel, {&q, &k, &v}, &o, &lse, 2), ATTN_OK);
  // Same values, 12/40 bytes into their buffers, strides NULL.
  Tensor q2({s.B, s.Hq, s.N, s.Dqk}, kF32, {}, 0, 12),
      k2({s.B, s.Hkv, s.M, s.Dqk}, kF32, {}, 0, 40),
      v2({s.B, s.Hkv, s.M, s.Dv}, kF32, {}, 0, 4),
      o2({s.B, s.Hq, s.N, s.Dv}, kF32, {}, 0, 12),
      lse2({s.B, s.Hq, s.N}, kF32, {}, 0, 8);
  ASSERT_EQ(q2.dl.strides, nullptr);
  q2.fill(1), k2.fill(2), v2.fill(3);
  o2.fillConst(-1), lse2.fillConst(-1);
  // The bytes before the offset must stay untouched.
  std::memset(o2.storage.data(), 0x5a, 12);
  ASSERT_EQ(run(kernel, {&q2, &k2, &v2}, &o2, &lse2, 2), ATTN_OK)
      << attn_last_error();
  EXPECT_EQ(o2.values(), o.values());
  EXPECT_EQ(lse2.values(), lse.values());
  const unsigned char *raw =
      reinterpret_cast<const unsigned char *>(o2.storage.data());
  for (int i = 0; i < 12; ++i)
    EXPECT_EQ(raw[i], 0x5a);
}

TEST(RuntimeTest, BroadcastInputsAccepted) {
  // k and v broadcast over B with stride 0: valid for inputs.
  Dims s{3, 2, 1, 5, 4, 4, 4};
  Kernel kernel(fakeKernel<4>, 4);
  Tensor q({s.B, s.Hq, s.N, s.Dqk}), k({1, s.Hkv, s.M, s.Dqk}),
      v({1, s.Hkv, s.M, s.Dv}), o({s.B, s.Hq, s.N, s.Dv});
  q.fill(1), k.fill(2), v.fill(3);
  Tensor kFull({s.B, s.Hkv, s.M, s.Dqk}), vFull({s.B, s.Hkv, s.M, s.Dv});
  for (int64_t i = 0; i < kFull.numel(); ++i)
    kFull.flat<float>(i) = k.flat<float>(i % k.numel());
  for (int64_t i = 0; i < vFull.numel(); ++i)
    vFull.flat<float>(i) = v.flat<float>(i % v.numel());
  std::vector<float> wantO, wantLse;
  reference(s, q, kFull, vFull, wantO, wantLse);
  int64_t kStrides[] = {0, s.M * s.Dqk, s.Dqk, 1};
  int64_t vStrides[] = {0, s.M * s.Dv, s.Dv, 1};
  k.shape[0] = v.shape[0] = s.B;
  k.dl.strides = kStrides;
  v.dl.strides = vStrides;
  ASSERT_EQ(run(kernel, {&q, &k, &v}, &o, nullptr, 2), ATTN_OK)
      << attn_last_error();
  EXPECT_EQ(o.values(), wantO);
}

TEST(RuntimeTest, AuxInputsReachTheKernel) {
  Dims s{2, 3, 1, 10, 4, 4, 2};
  Kernel kernel(auxKernel, 4, true, true);
  Tensor q({s.B, s.Hq, s.N, s.Dqk}), k({s.B, s.Hkv, s.M, s.Dqk}),
      v({s.B, s.Hkv, s.M, s.Dv}), o({s.B, s.Hq, s.N, s.Dv}),
      lse({s.B, s.Hq, s.N});
  // doc transposed in memory ([N, B] storage), bias compact.
  Tensor doc({s.B, s.N}, kI32, {1, 0}), bias({s.Hq, 7});
  q.fill(1), k.fill(2), v.fill(3), doc.fill(4), bias.fill(5);
  std::vector<float> wantO, wantLse;
  reference(s, q, k, v, wantO, wantLse);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.Hq; ++h)
      for (int64_t i = 0; i < s.N; ++i)
        for (int64_t d = 0; d < s.Dv; ++d)
          wantO[((b * s.Hq + h) * s.N + i) * s.Dv + d] +=
              float(doc.flat<int32_t>(b * s.N + i)) +
              bias.flat<float>(h * 7 + 3);
  ASSERT_EQ(run(kernel, {&q, &k, &v, &doc, &bias}, &o, &lse, 0), ATTN_OK)
      << attn_last_error();
  EXPECT_EQ(o.values(), wantO);
  EXPECT_EQ(lse.values(), wantLse);
}

//===----------------------------------------------------------------------===//
// Validation
//===----------------------------------------------------------------------===//

/// A valid call to the validation kernel: B=2 Hq=4 Hkv=2 N=37 M=41 Dqk=8
/// Dv=6, aux doc : i32[B, N] and bias : f32[Hq, 7], tile_q = 16. Each test
/// breaks one thing.
class ValidationTest : public ::testing::Test {
protected:
  Kernel kernel{countingKernel, 16, true, true};
  Tensor q{{2, 4, 37, 8}}, k{{2, 2, 41, 8}}, v{{2, 2, 41, 6}};
  Tensor doc{{2, 37}, kI32}, bias{{4, 7}};
  Tensor o{{2, 4, 37, 6}}, lse{{2, 4, 37}};
  std::vector<Tensor *> inputs{&q, &k, &v, &doc, &bias};
  Tensor *lsePtr = &lse;
  int threads = 2;

  std::vector<uint64_t> oBefore, lseBefore;

  void SetUp() override {
    o.fillConst(123), lse.fillConst(456);
    oBefore = o.storage, lseBefore = lse.storage;
    kernelCalls = 0;
  }
  attn_status_t call() { return run(kernel, inputs, &o, lsePtr, threads); }

  /// Expects `code` with a message containing `substr`, and no side effects.
  void expectError(attn_status_t code, const std::string &substr) {
    attn_status_t st = call();
    std::string msg = attn_last_error();
    EXPECT_EQ(st, code) << attn_status_string(st) << ": " << msg;
    EXPECT_NE(msg.find(substr), std::string::npos)
        << "message: " << msg << "\nexpected to contain: " << substr;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(kernelCalls.load(), 0);
    // Compare raw storage: a test may have broken o's shape.
    EXPECT_TRUE(o.storage == oBefore) << "o was written";
    EXPECT_TRUE(lse.storage == lseBefore) << "lse was written";
  }
};

TEST_F(ValidationTest, ValidCallSucceeds) {
  Recorder rec(2 * 4 * 3);
  recorder = &rec;
  EXPECT_EQ(call(), ATTN_OK) << attn_last_error();
  recorder = nullptr;
  EXPECT_FALSE(rec.bad);
  for (auto &s : rec.seen)
    EXPECT_EQ(s.load(), 1);
}

TEST_F(ValidationTest, LastErrorClearedBySuccessAndThreadLocal) {
  q.dl.dtype = {kDLFloat, 64, 1};
  ASSERT_EQ(call(), ATTN_ERROR_DTYPE);
  std::string other = "unset";
  std::thread([&] { other = attn_last_error(); }).join();
  EXPECT_EQ(other, "");
  EXPECT_STRNE(attn_last_error(), "");
  q.dl.dtype = kF32;
  ASSERT_EQ(call(), ATTN_OK);
  EXPECT_STREQ(attn_last_error(), "");
}

TEST_F(ValidationTest, WrongDTypes) {
  q.dl.dtype = {kDLFloat, 16, 1};
  expectError(ATTN_ERROR_DTYPE, "q: dtype is float16, expected float32");
  q.dl.dtype = kF32;
  v.dl.dtype = {kDLBfloat, 16, 1};
  expectError(ATTN_ERROR_DTYPE, "v: dtype is bfloat16, expected float32");
  v.dl.dtype = kF32;
  doc.dl.dtype = {kDLInt, 64, 1};
  expectError(ATTN_ERROR_DTYPE, "doc: dtype is int64, expected int32");
  doc.dl.dtype = kF32;
  expectError(ATTN_ERROR_DTYPE, "doc: dtype is float32, expected int32");
  doc.dl.dtype = kI32;
  bias.dl.dtype = kI32;
  expectError(ATTN_ERROR_DTYPE, "bias: dtype is int32, expected float32");
  bias.dl.dtype = kF32;
  o.dl.dtype = {kDLFloat, 64, 1};
  expectError(ATTN_ERROR_DTYPE, "o: dtype is float64, expected float32");
  o.dl.dtype = kF32;
  lse.dl.dtype = {kDLBfloat, 16, 1};
  expectError(ATTN_ERROR_DTYPE, "lse: dtype is bfloat16");
  lse.dl.dtype = kF32;
  k.dl.dtype = {kDLFloat, 32, 4};
  expectError(ATTN_ERROR_DTYPE, "k: dtype is float32x4");
}

TEST_F(ValidationTest, HalfPrecisionInputsMatchTheirDeclaration) {
  for (attn_elem_type_t t : {ATTN_BF16, ATTN_F16}) {
    Kernel half(countingKernel, 16, true, true, t);
    DLDataType dt = t == ATTN_BF16 ? DLDataType{kDLBfloat, 16, 1}
                                   : DLDataType{kDLFloat, 16, 1};
    // Declared half, given float32: rejected.
    std::vector<const DLTensor *> dl = {&q.dl, &k.dl, &v.dl, &doc.dl, &bias.dl};
    EXPECT_EQ(attn_cpu_run(&half.desc, dl.data(), &o.dl, nullptr, nullptr),
              ATTN_ERROR_DTYPE);
    EXPECT_NE(std::string(attn_last_error()).find("q: dtype is float32"),
              std::string::npos)
        << attn_last_error();
    // Given the declared type: accepted (the storage is larger than needed).
    q.dl.dtype = k.dl.dtype = v.dl.dtype = dt;
    EXPECT_EQ(attn_cpu_run(&half.desc, dl.data(), &o.dl, nullptr, nullptr),
              ATTN_OK)
        << attn_last_error();
    q.dl.dtype = k.dl.dtype = v.dl.dtype = kF32;
  }
}

TEST_F(ValidationTest, WrongDevice) {
  k.dl.device = {kDLCUDA, 0};
  expectError(ATTN_ERROR_DEVICE, "k: tensor is on kDLCUDA");
  k.dl.device = {kDLCPU, 0};
  o.dl.device = {kDLROCM, 1};
  expectError(ATTN_ERROR_DEVICE, "o: tensor is on kDLROCM");
  o.dl.device = {kDLCPU, 0};
  lse.dl.device = {kDLCUDAManaged, 0};
  expectError(ATTN_ERROR_DEVICE, "lse:");
  lse.dl.device = {kDLCPU, 0};
  // Pinned host memory is host memory.
  q.dl.device = {kDLCUDAHost, 0};
  EXPECT_EQ(call(), ATTN_OK) << attn_last_error();
}

TEST_F(ValidationTest, WrongNDim) {
  q.dl.ndim = 3;
  expectError(ATTN_ERROR_SHAPE, "q: ndim is 3, expected 4 [B, Hq, N, Dqk]");
  q.dl.ndim = 4;
  bias.dl.ndim = 1;
  expectError(ATTN_ERROR_SHAPE, "bias: ndim is 1, expected 2 [Hq, 7]");
  bias.dl.ndim = 2;
  o.dl.ndim = 3;
  expectError(ATTN_ERROR_SHAPE, "o: ndim is 3, expected 4 [B, Hq, N, Dv]");
  o.dl.ndim = 4;
  lse.dl.ndim = 4;
  expectError(ATTN_ERROR_SHAPE, "lse: ndim is 4, expected 3 [B, Hq, N]");
}

TEST_F(ValidationTest, InputShapeMismatches) {
  k.shape[0] = 3; // B
  expectError(ATTN_ERROR_SHAPE, "'k' dim 0");
  k.shape[0] = 2;
  v.shape[2] = 40; // M
  expectError(ATTN_ERROR_SHAPE, "'v' dim 2");
  v.shape[2] = 41;
  k.shape[3] = 9; // Dqk
  expectError(ATTN_ERROR_SHAPE, "'k' dim 3");
  k.shape[3] = 8;
  v.shape[1] = 1; // Hkv
  expectError(ATTN_ERROR_SHAPE, "'v' dim 1");
  v.shape[1] = 2;
  q.shape[2] = 0; // N must be positive
  expectError(ATTN_ERROR_SHAPE, "'q' dim 2 must be positive");
}

TEST_F(ValidationTest, HqNotMultipleOfHkv) {
  k.shape[1] = v.shape[1] = 3;
  expectError(ATTN_ERROR_SHAPE, "k: dim 1 (Hkv) is 3");
}

TEST_F(ValidationTest, OutputShapeMismatches) {
  o.shape[2] = 36;
  expectError(ATTN_ERROR_SHAPE, "o: dim 2 (N) is 36, expected 37");
  o.shape[2] = 37;
  o.shape[3] = 8;
  expectError(ATTN_ERROR_SHAPE, "o: dim 3 (Dv) is 8, expected 6");
  o.shape[3] = 6;
  o.shape[0] = 1;
  expectError(ATTN_ERROR_SHAPE, "o: dim 0 (B) is 1, expected 2");
  o.shape[0] = 2;
  lse.shape[1] = 2;
  expectError(ATTN_ERROR_SHAPE, "lse: dim 1 (Hq) is 2, expected 4");
}

TEST_F(ValidationTest, AuxShapeMismatches) {
  bias.shape[1] = 6; // fixed 7
  expectError(ATTN_ERROR_SHAPE, "input 'bias' dim 1 must be 7, got 6");
  bias.shape[1] = 7;
  doc.shape[1] = 38; // N is 37 from q
  expectError(ATTN_ERROR_SHAPE, "in input 'doc' dim 1");
  doc.shape[1] = 37;
  bias.shape[0] = 2; // Hq is 4 from q
  expectError(ATTN_ERROR_SHAPE, "in input 'bias' dim 0");
}

TEST_F(ValidationTest, NullPointers) {
  inputs[1] = nullptr;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "k: tensor is NULL");
  inputs[1] = &k;
  inputs[4] = nullptr;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "bias: tensor is NULL");
  inputs[4] = &bias;
  q.dl.data = nullptr;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "q: data is NULL");
  q.dl.data = q.storage.data();
  v.dl.shape = nullptr;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "v: shape is NULL");
  v.dl.shape = v.shape.data();
  o.dl.data = nullptr;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "o: data is NULL");
  o.dl.data = o.storage.data();

  kernelCalls = 0;
  std::vector<const DLTensor *> dl = {&q.dl, &k.dl, &v.dl, &doc.dl, &bias.dl};
  EXPECT_EQ(attn_cpu_run(nullptr, dl.data(), &o.dl, nullptr, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(attn_last_error()).find("kernel"), std::string::npos);
  EXPECT_EQ(attn_cpu_run(&kernel.desc, nullptr, &o.dl, nullptr, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(attn_last_error()).find("inputs"), std::string::npos);
  EXPECT_EQ(attn_cpu_run(&kernel.desc, dl.data(), nullptr, nullptr, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(attn_last_error()).find("o: tensor is NULL"),
            std::string::npos);
  kernel.desc.cpu_fn = nullptr;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "cpu_fn is NULL");
  EXPECT_EQ(kernelCalls.load(), 0);
}

TEST_F(ValidationTest, LseWithoutSoftmax) {
  kernel.desc.has_lse = 0;
  expectError(ATTN_ERROR_UNSUPPORTED, "lse: kernel 'fake' cannot write lse");
  lsePtr = nullptr;
  EXPECT_EQ(call(), ATTN_OK) << attn_last_error();
}

TEST_F(ValidationTest, OutputLayouts) {
  int64_t zero[] = {4 * 37 * 6, 37 * 6, 0, 1}; // rows of o collapse
  o.dl.strides = zero;
  expectError(ATTN_ERROR_LAYOUT, "o: dim 2 (N) has stride 0");
  int64_t overlap[] = {4 * 37 * 6, 37 * 6, 3, 1}; // rows overlap
  o.dl.strides = overlap;
  expectError(ATTN_ERROR_LAYOUT, "o: strides [888, 222, 3, 1]");
  int64_t negative[] = {4 * 37 * 6, 37 * 6, -6, 1};
  o.dl.strides = negative;
  expectError(ATTN_ERROR_LAYOUT, "o: dim 2 has stride -6");
  o.dl.strides = nullptr;
  int64_t lseZero[] = {0, 37, 1};
  lse.dl.strides = lseZero;
  expectError(ATTN_ERROR_LAYOUT, "lse: dim 0 (B) has stride 0");
  lse.dl.strides = nullptr;
  // A zero stride on a size-1 dim overlaps nothing.
  Tensor o1({1, 4, 37, 6}), q1({1, 4, 37, 8}), k1({1, 2, 41, 8}),
      v1({1, 2, 41, 6}), doc1({1, 37}, kI32);
  int64_t o1Strides[] = {0, 37 * 6, 6, 1};
  o1.dl.strides = o1Strides;
  std::vector<const DLTensor *> dl = {&q1.dl, &k1.dl, &v1.dl, &doc1.dl,
                                      &bias.dl};
  EXPECT_EQ(attn_cpu_run(&kernel.desc, dl.data(), &o1.dl, nullptr, nullptr),
            ATTN_OK)
      << attn_last_error();
}

TEST_F(ValidationTest, InputLayouts) {
  int64_t negative[] = {0, 0, -8, 1};
  k.dl.strides = negative;
  expectError(ATTN_ERROR_LAYOUT, "k: dim 2 has stride -8");
  k.dl.strides = nullptr;
  q.dl.byte_offset = 2; // not a multiple of 4
  expectError(ATTN_ERROR_LAYOUT, "q: data + byte_offset (2) is not aligned");
  q.dl.byte_offset = 0;
  int64_t huge[] = {INT64_MAX / 2, 1, 1, 1};
  v.dl.strides = huge;
  expectError(ATTN_ERROR_SHAPE, "v: shape [2, 2, 41, 6] overflows");
}

TEST_F(ValidationTest, MalformedKernelDescriptors) {
  // Version 1 kernels had no status word: they are refused, not run.
  kernel.desc.abi_version = 1;
  expectError(ATTN_ERROR_UNSUPPORTED,
              "kernel 'fake': ABI version 1, this runtime supports " +
                  std::to_string(ATTN_ABI_VERSION));
  kernel.desc.abi_version = ATTN_ABI_VERSION + 1;
  expectError(ATTN_ERROR_UNSUPPORTED, "kernel 'fake': ABI version " +
                                          std::to_string(ATTN_ABI_VERSION + 1));
  kernel.desc.abi_version = ATTN_ABI_VERSION;
  kernel.desc.tile_q = 0;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "tile_q is 0");
  kernel.desc.tile_q = 16;
  kernel.desc.num_inputs = 2;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "num_inputs is 2");
  kernel.desc.num_inputs = 5;
  const char *const wrongK[] = {"B", "Hq", "M", "Dqk"};
  kernel.inputs[1].dims = wrongK;
  expectError(
      ATTN_ERROR_INVALID_ARGUMENT,
      "inputs[1] 'k': expected k : f32|bf16|f16[B, Hkv, M or N, Dqk], got "
      "f32[B, Hq, M, Dqk]");
  kernel.inputs[1].dims = kKDims;
  kernel.inputs[4].name = "doc";
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "inputs[4] 'doc': the name is used");
  kernel.inputs[4].name = "bias";
  kernel.inputs[4].fixed_sizes = nullptr;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "inputs[4] 'bias': dim 1 is fixed");
  kernel.inputs[4].fixed_sizes = kBiasFixed;
  threads = -1;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "num_threads is -1");
}

//===----------------------------------------------------------------------===//
// Limits and kernel failures
//===----------------------------------------------------------------------===//

TEST(RuntimeLimitsTest, HeadDimsUpToTheLimitRun) {
  // Dqk = Dv = ATTN_MAX_HEAD_DIM is accepted and computed.
  Dims s{1, 1, 1, 5, 3, ATTN_MAX_HEAD_DIM, ATTN_MAX_HEAD_DIM};
  Tensor q({s.B, s.Hq, s.N, s.Dqk}), k({s.B, s.Hkv, s.M, s.Dqk}),
      v({s.B, s.Hkv, s.M, s.Dv}), o({s.B, s.Hq, s.N, s.Dv}),
      lse({s.B, s.Hq, s.N});
  q.fill(1), k.fill(2), v.fill(3);
  std::vector<float> wantO, wantLse;
  reference(s, q, k, v, wantO, wantLse);
  Kernel kernel(fakeKernel<4>, 4);
  ASSERT_EQ(run(kernel, {&q, &k, &v}, &o, &lse, 2), ATTN_OK)
      << attn_last_error();
  EXPECT_EQ(o.values(), wantO);
}

TEST(RuntimeLimitsTest, HeadDimsPastTheLimitAreRefused) {
  const int64_t big = ATTN_MAX_HEAD_DIM + 1;
  for (bool inDqk : {true, false}) {
    Dims s{1, 2, 1, 3, 3, inDqk ? big : 4, inDqk ? 4 : big};
    Tensor q({s.B, s.Hq, s.N, s.Dqk}), k({s.B, s.Hkv, s.M, s.Dqk}),
        v({s.B, s.Hkv, s.M, s.Dv}), o({s.B, s.Hq, s.N, s.Dv});
    o.fillConst(7);
    std::vector<uint64_t> before = o.storage;
    Kernel kernel(fakeKernel<4>, 4);
    kernelCalls = 0;
    EXPECT_EQ(run(kernel, {&q, &k, &v}, &o, nullptr, 2),
              ATTN_ERROR_UNSUPPORTED);
    std::string want =
        std::string("kernel 'fake': head dim ") + (inDqk ? "Dqk" : "Dv") +
        " = " + std::to_string(big) + " exceeds the CPU kernels' limit of " +
        std::to_string(ATTN_MAX_HEAD_DIM) + " (ATTN_MAX_HEAD_DIM)";
    EXPECT_EQ(attn_last_error(), want);
    EXPECT_EQ(kernelCalls.load(), 0);
    EXPECT_TRUE(o.storage == before) << "o was written";
  }
}

TEST(RuntimeLimitsTest, KernelOutOfMemoryIsAnError) {
  // 2 x 3 heads x 16 q tiles of 4 rows = 96 items; fail the first, one in
  // the middle, or the last, on 1, 2 or 3 threads.
  Dims s{2, 3, 3, 61, 5, 4, 4};
  Tensor q({s.B, s.Hq, s.N, s.Dqk}), k({s.B, s.Hkv, s.M, s.Dqk}),
      v({s.B, s.Hkv, s.M, s.Dv});
  q.fill(1), k.fill(2), v.fill(3);
  Kernel kernel(failingKernel, 4);
  for (int64_t item : {0, 47, 95}) {
    for (int threads : {1, 2, 3}) {
      SCOPED_TRACE("item=" + std::to_string(item) +
                   " threads=" + std::to_string(threads));
      Tensor o({s.B, s.Hq, s.N, s.Dv}), lse({s.B, s.Hq, s.N});
      failItem = item;
      kernelCalls = 0;
      badStatusWord = 0;
      attn_status_t st = run(kernel, {&q, &k, &v}, &o, &lse, threads);
      failItem = -1;
      EXPECT_EQ(st, ATTN_ERROR_OUT_OF_MEMORY);
      EXPECT_STREQ(attn_last_error(),
                   "kernel 'fake': out of memory allocating its scratch "
                   "buffers (Dqk = 4, Dv = 4); o and lse are partially "
                   "written");
      EXPECT_EQ(badStatusWord.load(), 0);
      EXPECT_GE(kernelCalls.load(), 1);
    }
  }
  // The status word is per call: the next call succeeds.
  Tensor o({s.B, s.Hq, s.N, s.Dv});
  ASSERT_EQ(run(kernel, {&q, &k, &v}, &o, nullptr, 2), ATTN_OK)
      << attn_last_error();
  EXPECT_STREQ(attn_last_error(), "");
}

//===----------------------------------------------------------------------===//
// Threads
//===----------------------------------------------------------------------===//

TEST(RuntimeThreadsTest, ConcurrentCallers) {
  auto worker = [](Dims s, int tileQ, int threads, int seed, bool *ok) {
    Kernel kernel(fakeKernelFor(tileQ), tileQ);
    Tensor q({s.B, s.Hq, s.N, s.Dqk}), k({s.B, s.Hkv, s.M, s.Dqk}),
        v({s.B, s.Hkv, s.M, s.Dv});
    q.fill(seed), k.fill(seed + 1), v.fill(seed + 2);
    std::vector<float> wantO, wantLse;
    reference(s, q, k, v, wantO, wantLse);
    *ok = true;
    for (int iter = 0; iter < 40 && *ok; ++iter) {
      Tensor o({s.B, s.Hq, s.N, s.Dv}), lse({s.B, s.Hq, s.N});
      *ok = run(kernel, {&q, &k, &v}, &o, &lse, threads) == ATTN_OK &&
            o.values() == wantO && lse.values() == wantLse;
    }
  };
  bool ok1 = false, ok2 = false;
  std::thread t1(worker, Dims{2, 4, 2, 29, 7, 4, 4}, 3, 0, 1, &ok1);
  std::thread t2(worker, Dims{1, 6, 3, 50, 5, 6, 2}, 4, 2, 7, &ok2);
  t1.join();
  t2.join();
  EXPECT_TRUE(ok1);
  EXPECT_TRUE(ok2);
}

/// Outer kernel: each item runs a whole inner attn_cpu_run (a kernel that
/// calls the runtime must not deadlock the pool).
struct Nested {
  Kernel inner{fakeKernel<4>, 4};
  Dims s{1, 2, 1, 9, 3, 4, 4};
  std::unique_ptr<Tensor> q, k, v;
  std::vector<std::unique_ptr<Tensor>> o;
  std::atomic<int> failures{0};
};
Nested *nested = nullptr;

void outerKernel(void **, int64_t begin, int64_t end) {
  for (int64_t item = begin; item < end; ++item) {
    Nested &n = *nested;
    if (run(n.inner, {n.q.get(), n.k.get(), n.v.get()}, n.o[item].get(),
            nullptr, 2) != ATTN_OK)
      n.failures++;
  }
}

TEST(RuntimeThreadsTest, NestedCallsDoNotDeadlock) {
  Nested n;
  const Dims &s = n.s;
  n.q = std::make_unique<Tensor>(std::vector<int64_t>{s.B, s.Hq, s.N, s.Dqk});
  n.k = std::make_unique<Tensor>(std::vector<int64_t>{s.B, s.Hkv, s.M, s.Dqk});
  n.v = std::make_unique<Tensor>(std::vector<int64_t>{s.B, s.Hkv, s.M, s.Dv});
  n.q->fill(1), n.k->fill(2), n.v->fill(3);
  std::vector<float> wantO, wantLse;
  reference(s, *n.q, *n.k, *n.v, wantO, wantLse);
  // Outer launch: 1 x 8 heads x 1 tile = 8 items.
  Kernel outer(outerKernel, 64);
  Tensor q({1, 8, 5, 4}), k({1, 8, 5, 4}), v({1, 8, 5, 4}), o({1, 8, 5, 4});
  for (int i = 0; i < 8; ++i)
    n.o.push_back(
        std::make_unique<Tensor>(std::vector<int64_t>{s.B, s.Hq, s.N, s.Dv}));
  nested = &n;
  ASSERT_EQ(run(outer, {&q, &k, &v}, &o, nullptr, 3), ATTN_OK);
  nested = nullptr;
  EXPECT_EQ(n.failures.load(), 0);
  for (auto &t : n.o)
    EXPECT_EQ(t->values(), wantO);
}

TEST(RuntimeThreadsTest, WorkersArePersistent) {
  // Threads are created once and reused: across many calls the set of
  // threads that ran items stays small (a thread per call would not).
  Dims s{1, 8, 8, 16, 2, 2, 2};
  Kernel kernel(fakeKernel<1>, 1);
  Tensor q({s.B, s.Hq, s.N, s.Dqk}), k({s.B, s.Hkv, s.M, s.Dqk}),
      v({s.B, s.Hkv, s.M, s.Dv}), o({s.B, s.Hq, s.N, s.Dv});
  std::set<std::thread::id> all;
  for (int iter = 0; iter < 100; ++iter) {
    Recorder rec(s.B * s.Hq * s.N);
    recorder = &rec;
    ASSERT_EQ(run(kernel, {&q, &k, &v}, &o, nullptr, 3), ATTN_OK);
    recorder = nullptr;
    EXPECT_LE(rec.threads.size(), 3u);
    all.insert(rec.threads.begin(), rec.threads.end());
  }
  EXPECT_LE(all.size(), 16u);
}

} // namespace

//===----------------------------------------------------------------------===//
// attn_run: one entry, dispatching on the tensors' device
//===----------------------------------------------------------------------===//

class DispatchTest : public ValidationTest {
protected:
  attn_kernel_target_t targets[2] = {{kDLCPU, &kernel.desc},
                                     {kDLCUDA, nullptr}};
  attn_kernel_t any{ATTN_ABI_VERSION, "fake", 1, targets};
  attn_status_t runAny() {
    std::vector<const DLTensor *> dl;
    for (Tensor *t : inputs)
      dl.push_back(&t->dl);
    attn_run_options_t options{threads};
    return attn_run(&any, dl.data(), &o.dl, &lse.dl, &options, nullptr);
  }
  void expectDispatchError(attn_status_t code, const std::string &substr) {
    attn_status_t st = runAny();
    std::string msg = attn_last_error();
    EXPECT_EQ(st, code) << attn_status_string(st) << ": " << msg;
    EXPECT_NE(msg.find(substr), std::string::npos)
        << "message: " << msg << "\nexpected to contain: " << substr;
    EXPECT_EQ(kernelCalls.load(), 0);
    EXPECT_TRUE(o.storage == oBefore) << "o was written";
  }
};

TEST_F(DispatchTest, HostTensorsRunTheCpuCode) {
  EXPECT_EQ(runAny(), ATTN_OK) << attn_last_error();
  EXPECT_EQ(kernelCalls.load(), 2 * 4 * 3);
  EXPECT_STREQ(attn_last_error(), "");
}

TEST_F(DispatchTest, PinnedHostMemoryIsHostMemory) {
  for (Tensor *t : inputs)
    t->dl.device = {kDLCUDAHost, 0};
  EXPECT_EQ(runAny(), ATTN_OK) << attn_last_error();
}

TEST_F(DispatchTest, NoCodeForTheDeviceIsADeviceError) {
  q.dl.device = {kDLCUDA, 0};
  expectDispatchError(ATTN_ERROR_DEVICE,
                      "kernel 'fake' has no code for q's device (cuda); it "
                      "was compiled for: cpu");
  q.dl.device = {kDLROCM, 0};
  expectDispatchError(ATTN_ERROR_DEVICE, "q's device (rocm)");
}

TEST_F(DispatchTest, TheBackendEntryValidates) {
  k.dl.dtype = {kDLFloat, 64, 1};
  expectDispatchError(ATTN_ERROR_DTYPE, "k");
}

TEST_F(DispatchTest, MalformedKernels) {
  any.abi_version = ATTN_ABI_VERSION + 1;
  expectDispatchError(ATTN_ERROR_UNSUPPORTED, "ABI version");
  any.abi_version = ATTN_ABI_VERSION;
  any.num_targets = 2; // the second has no descriptor
  expectDispatchError(ATTN_ERROR_INVALID_ARGUMENT, "NULL descriptor");
  targets[1] = {kDLCPU, &kernel.desc};
  expectDispatchError(ATTN_ERROR_INVALID_ARGUMENT, "two targets for cpu");
  any.num_targets = -1;
  expectDispatchError(ATTN_ERROR_INVALID_ARGUMENT, "malformed target list");
  any.num_targets = 0;
  expectDispatchError(ATTN_ERROR_DEVICE, "compiled for: nothing");
  EXPECT_EQ(attn_run(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(attn_device_type_name(kDLCUDAManaged), "cuda_managed");
  EXPECT_STREQ(attn_device_type_name(12345), "unknown");
}
