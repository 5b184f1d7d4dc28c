//===- CudaBatchTest.cpp - attn_cuda_run_batch, fake driver ---------------===//
//
// attn_cuda_run_batch (runtime.h, ABI 7-9) against the fake driver: a
// ragged or paged batch of short sequences is one decode launch and one
// merge launch, of longer ones (or with ATTN_GPU_SCHEDULE=prefill) one
// launch of the batch prefill variant; grids come from the layout's longest
// runs, packed tensors reach the kernels as views [B, H, rows, D] with a
// zero batch stride, pools as they are, the tables last (NULL where
// absent); and what it refuses before touching the driver (the tables'
// devices, dtypes and shapes, the layout's flags and lengths, a kernel
// without the variants a batch needs, malformed batch variants); with
// ATTN_GPU_CHECK_TABLES=1 the tables' values, read back. The kernels' side:
// decode-batch.test.
//
//===----------------------------------------------------------------------===//

#include "CudaTestUtil.h"
#include "FakeCudaAccess.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

using namespace attn_test;

namespace {

using V = std::vector<int64_t>;

V words(const FakeCudaLaunch &l, int begin, int n) {
  return V(l.params + begin, l.params + begin + n);
}

/// Three sequences of 1, 3 and 1 queries (packed q, o, lse) against a
/// paged cache: pools of 10 pages of 16 rows, a block table [3, 4] and
/// kv_lens; G = 4, D = 128; doc : i32[B, N] binds [3, max_seqlen_q].
struct BatchCall {
  static constexpr uintptr_t kQ = 0x10000000, kK = 0x20000000, kV = 0x30000000,
                             kO = 0x40000000, kLse = 0x50000000,
                             kDoc = 0x60000000, kCuQ = 0x70000000,
                             kCuK = 0x71000000, kTable = 0x72000000,
                             kLens = 0x73000000;
  Tensor q{{5, 8, 128}, bf16(), kQ};
  Tensor k{{10, 16, 2, 128}, bf16(), kK};
  Tensor v{{10, 16, 2, 128}, bf16(), kV};
  Tensor o{{5, 8, 128}, f32(), kO};
  Tensor lse{{8, 5}, f32(), kLse};
  Tensor doc{{3, 3}, i32(), kDoc};
  Tensor cuQ{{4}, i32(), kCuQ};
  Tensor cuK{{4}, i32(), kCuK};
  Tensor table{{3, 4}, i32(), kTable};
  Tensor lens{{3}, i32(), kLens};
  attn_gpu_batch_layout_t layout{};
  bool withLse = true;

  BatchCall() {
    layout.tables.cu_seqlens_q = cuQ.get();
    layout.tables.block_table = table.get();
    layout.tables.kv_lens = lens.get();
    layout.max_seqlen_q = 3;
    layout.max_seqlen_k = 64;
  }

  /// Packed q, o, lse of `totalQ` rows, sequences of up to `maxQ` queries
  /// (doc binds [B, maxQ]).
  void packQueries(int64_t totalQ, int64_t maxQ) {
    q = Tensor({totalQ, 8, 128}, bf16(), kQ);
    o = Tensor({totalQ, 8, 128}, f32(), kO);
    lse = Tensor({8, totalQ}, f32(), kLse);
    doc = Tensor({3, maxQ}, i32(), kDoc);
    layout.max_seqlen_q = maxQ;
  }

  attn_status_t run(const attn_cuda_kernel_desc_t *kernel,
                    void *stream = nullptr) {
    const DLTensor *ins[] = {q.get(), k.get(), v.get(), doc.get()};
    return attn_cuda_run_batch(kernel, ins, &layout, o.get(),
                               withLse ? lse.get() : nullptr, stream);
  }
};

class CudaBatch : public ::testing::Test {
protected:
  void SetUp() override {
    resetFake();
    unsetenv("ATTN_GPU_SCHEDULE");
    unsetenv("ATTN_DECODE_SPLITS");
  }
  void TearDown() override { unsetenv("ATTN_GPU_SCHEDULE"); }
};

/// The batch prefill's parameters (82 words): q, k, v, o (11 each), lse
/// (9), doc (7), cu_seqlens_q, cu_seqlens_k (5 each), block_table (7),
/// kv_lens (5).
enum PrefillWord {
  kPQ = 0,
  kPK = 11,
  kPV = 22,
  kPO = 33,
  kPLse = 44,
  kPDoc = 53,
  kPCuQ = 60,
  kPCuK = 65,
  kPTable = 70,
  kPLens = 77,
  kPWords = 82
};

/// Drops the kernel's batch prefill variants (a non-softmax spec's or an
/// emitter's before ABI 9).
void dropBatchVariants(DecodeKernel &k) {
  k.desc.num_batch_variants = 0;
  k.desc.batch_variants = nullptr;
}

/// Drops its decode schedule.
void dropDecodeVariants(DecodeKernel &k) {
  k.desc.decode_max_n = 0;
  k.desc.num_decode_variants = 0;
  k.desc.decode_variants = nullptr;
  k.desc.merge_variant = nullptr;
}

TEST_F(CudaBatch, PagedRaggedBatchIsOneDecodeAndOneMerge) {
  DecodeKernel k;
  BatchCall call;
  void *stream = reinterpret_cast<void *>(0x5100);
  int launches = state().launch_calls;
  ASSERT_EQ(call.run(&k.desc, stream), ATTN_OK) << lastError();
  ASSERT_EQ(state().launch_calls, launches + 2);
  EXPECT_EQ(state().live_allocs, 0);

  // C = ceil(4 * 3 / 16) = 1 chunk for each of B * Hkv = 6 (b, hk); splits
  // from max_seqlen_k: at most ceil(64 / 128) = 1.
  const FakeCudaLaunch &dec = state().prev_launch;
  EXPECT_STREQ(dec.function, "attn_dec_d128");
  EXPECT_EQ(dec.grid[0], 6u);
  EXPECT_EQ(dec.stream, stream);
  ASSERT_EQ(dec.num_params, 86);
  // q: packed [5, 8, 128] as [3, 8, 5, 128] with batch stride 0.
  EXPECT_EQ(words(dec, 0, 11),
            (V{int64_t(BatchCall::kQ), int64_t(BatchCall::kQ), 0, 3, 8, 5, 128,
               0, 128, 8 * 128, 1}));
  // k: the pool as it is.
  EXPECT_EQ(words(dec, 11, 11),
            (V{int64_t(BatchCall::kK), int64_t(BatchCall::kK), 0, 10, 16, 2,
               128, 16 * 2 * 128, 2 * 128, 128, 1}));
  // o_part [3, 2, 1, 16, 128].
  EXPECT_EQ(words(dec, 36, 5), (V{3, 2, 1, 16, 128}));
  // doc binds [B, max_seqlen_q].
  EXPECT_EQ(words(dec, 60, 4), (V{3, 3, 3, 1}));
  // The tables: cu_seqlens_q, no cu_seqlens_k, block_table, kv_lens.
  EXPECT_EQ(words(dec, 64, 5),
            (V{int64_t(BatchCall::kCuQ), int64_t(BatchCall::kCuQ), 0, 4, 1}));
  EXPECT_EQ(words(dec, 69, 5), (V{0, 0, 0, 0, 1}));
  EXPECT_EQ(words(dec, 74, 7), (V{int64_t(BatchCall::kTable),
                                  int64_t(BatchCall::kTable), 0, 3, 4, 4, 1}));
  EXPECT_EQ(words(dec, 81, 5),
            (V{int64_t(BatchCall::kLens), int64_t(BatchCall::kLens), 0, 3, 1}));

  // The merge: grid (ceil(3 / 4), B * Hq); o and lse as views, then
  // cu_seqlens_q.
  const FakeCudaLaunch &mrg = state().last_launch;
  EXPECT_STREQ(mrg.function, "attn_merge");
  EXPECT_EQ(mrg.grid[0], 1u);
  EXPECT_EQ(mrg.grid[1], 24u);
  ASSERT_EQ(mrg.num_params, 49);
  EXPECT_EQ(words(mrg, 24, 11),
            (V{int64_t(BatchCall::kO), int64_t(BatchCall::kO), 0, 3, 8, 5, 128,
               0, 128, 8 * 128, 1}));
  EXPECT_EQ(words(mrg, 35, 9),
            (V{int64_t(BatchCall::kLse), int64_t(BatchCall::kLse), 0, 3, 8, 5,
               0, 5, 1}));
  EXPECT_EQ(words(mrg, 44, 5), words(dec, 64, 5));
}

TEST_F(CudaBatch, RaggedKeysDenseQueries) {
  DecodeKernel k;
  BatchCall call;
  // Dense q [2, 8, 1, 128], packed k and v [100, 2, 128] with cu_seqlens_k.
  call.q = Tensor({2, 8, 1, 128}, bf16(), BatchCall::kQ);
  call.o = Tensor({2, 8, 1, 128}, f32(), BatchCall::kO);
  call.lse = Tensor({2, 8, 1}, f32(), BatchCall::kLse);
  call.doc = Tensor({2, 1}, i32(), BatchCall::kDoc);
  call.k = Tensor({100, 2, 128}, bf16(), BatchCall::kK);
  call.v = Tensor({100, 2, 128}, bf16(), BatchCall::kV);
  call.cuK = Tensor({3}, i32(), BatchCall::kCuK);
  call.layout.tables = {};
  call.layout.tables.cu_seqlens_k = call.cuK.get();
  call.layout.max_seqlen_q = 7; // ignored: q is dense (N = 1)
  call.layout.max_seqlen_k = 80;
  call.withLse = false;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  const FakeCudaLaunch &dec = state().prev_launch;
  EXPECT_EQ(dec.grid[0], 4u); // B * Hkv * 1 chunk * 1 split
  EXPECT_EQ(words(dec, 0, 11),
            (V{int64_t(BatchCall::kQ), int64_t(BatchCall::kQ), 0, 2, 8, 1, 128,
               8 * 128, 128, 128, 1}));
  EXPECT_EQ(words(dec, 11, 11),
            (V{int64_t(BatchCall::kK), int64_t(BatchCall::kK), 0, 2, 2, 100,
               128, 0, 128, 2 * 128, 1}));
  EXPECT_EQ(words(dec, 64, 5), (V{0, 0, 0, 0, 1}));
  EXPECT_EQ(words(dec, 69, 5),
            (V{int64_t(BatchCall::kCuK), int64_t(BatchCall::kCuK), 0, 3, 1}));
  EXPECT_EQ(words(dec, 74, 12), (V{0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}));
  // The merge: a NULL lse of [B, Hq, N] and a NULL cu_seqlens_q.
  const FakeCudaLaunch &mrg = state().last_launch;
  EXPECT_EQ(words(mrg, 35, 14), (V{0, 0, 0, 2, 8, 1, 8, 1, 1, 0, 0, 0, 0, 1}));
}

TEST_F(CudaBatch, Refusals) {
  DecodeKernel k;
  auto expectFail = [&](BatchCall &c, attn_status_t want, const char *text) {
    int launches = state().launch_calls;
    EXPECT_EQ(c.run(&k.desc), want) << lastError();
    EXPECT_NE(lastError().find(text), std::string::npos) << lastError();
    EXPECT_EQ(state().launch_calls, launches);
  };
  {
    BatchCall c;
    c.table.t.device = {kDLCPU, 0};
    expectFail(c, ATTN_ERROR_DEVICE, "block_table");
  }
  {
    BatchCall c;
    c.lens.t.dtype = {kDLInt, 64, 1};
    expectFail(c, ATTN_ERROR_DTYPE, "kv_lens");
  }
  {
    BatchCall c;
    c.cuQ = Tensor({3}, i32(), BatchCall::kCuQ); // B = 2, the table's 3
    c.layout.tables.cu_seqlens_q = c.cuQ.get();
    expectFail(c, ATTN_ERROR_SHAPE, "sequences");
  }
  {
    BatchCall c;
    c.layout.max_seqlen_k = 0;
    expectFail(c, ATTN_ERROR_INVALID_ARGUMENT, "max_seqlen_k = 0");
  }
  {
    BatchCall c;
    c.layout.tables.kv_lens = nullptr;
    expectFail(c, ATTN_ERROR_INVALID_ARGUMENT, "block_table without kv_lens");
  }
  {
    BatchCall c;
    c.layout.tables.cu_seqlens_k = c.cuK.get();
    expectFail(c, ATTN_ERROR_INVALID_ARGUMENT, "either packed or paged");
  }
  {
    BatchCall c;
    c.table = Tensor({3, 0}, i32(), BatchCall::kTable);
    c.layout.tables.block_table = c.table.get();
    expectFail(c, ATTN_ERROR_SHAPE, "max_pages is 0");
  }
  {
    BatchCall c;
    c.k = Tensor({10, 16, 128}, bf16(), BatchCall::kK);
    expectFail(c, ATTN_ERROR_SHAPE, "k: ndim is 3, expected 4 [pages");
  }
  {
    BatchCall c;
    c.o = Tensor({3, 8, 3, 128}, f32(), BatchCall::kO);
    expectFail(c, ATTN_ERROR_SHAPE, "o");
  }
  {
    BatchCall c;
    EXPECT_EQ(attn_cuda_run_batch(&k.desc, nullptr, &c.layout, c.o.get(),
                                  nullptr, nullptr),
              ATTN_ERROR_INVALID_ARGUMENT);
    const DLTensor *ins[] = {c.q.get(), c.k.get(), c.v.get(), c.doc.get()};
    EXPECT_EQ(
        attn_cuda_run_batch(&k.desc, ins, nullptr, c.o.get(), nullptr, nullptr),
        ATTN_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(lastError().find("layout"), std::string::npos);
  }
  {
    // A kernel with neither schedule (sigmoid, ROCm's).
    BatchCall c;
    dropDecodeVariants(k);
    dropBatchVariants(k);
    expectFail(c, ATTN_ERROR_UNSUPPORTED,
               "no decode variants and no batch prefill variants");
  }
}

TEST_F(CudaBatch, RaggedPrefillBatchIsOneLaunch) {
  // Packed q (120 rows) and packed k, v (100 rows): no partials, one launch
  // of the batch variant on grid (ceil(max_seqlen_q / 64), B * Hq).
  for (auto [maxQ, tiles] : {std::pair<int64_t, unsigned>{17, 1}, {70, 2}}) {
    DecodeKernel k;
    BatchCall call;
    call.packQueries(120, maxQ);
    call.k = Tensor({100, 2, 128}, bf16(), BatchCall::kK);
    call.v = Tensor({100, 2, 128}, bf16(), BatchCall::kV);
    call.layout.tables = {};
    call.layout.tables.cu_seqlens_q = call.cuQ.get();
    call.layout.tables.cu_seqlens_k = call.cuK.get();
    void *stream = reinterpret_cast<void *>(0x5300);
    int launches = state().launch_calls, allocs = state().alloc_calls;
    ASSERT_EQ(call.run(&k.desc, stream), ATTN_OK) << lastError();
    EXPECT_EQ(state().launch_calls, launches + 1);
    EXPECT_EQ(state().alloc_calls, allocs);
    EXPECT_EQ(state().live_allocs, 0);

    const FakeCudaLaunch &l = state().last_launch;
    EXPECT_STREQ(l.function, "attn_batch_d128");
    EXPECT_EQ(l.grid[0], tiles);
    EXPECT_EQ(l.grid[1], 24u); // B * Hq = 3 * 8
    EXPECT_EQ(l.grid[2], 1u);
    EXPECT_EQ(l.block[0], 128u);
    EXPECT_EQ(l.shared_mem_bytes, 81920u);
    EXPECT_EQ(l.stream, stream);
    ASSERT_EQ(l.num_params, kPWords);
    // q and o: packed [120, 8, 128] as [3, 8, 120, 128], batch stride 0.
    EXPECT_EQ(words(l, kPQ, 11),
              (V{int64_t(BatchCall::kQ), int64_t(BatchCall::kQ), 0, 3, 8, 120,
                 128, 0, 128, 8 * 128, 1}));
    EXPECT_EQ(words(l, kPK, 11),
              (V{int64_t(BatchCall::kK), int64_t(BatchCall::kK), 0, 3, 2, 100,
                 128, 0, 128, 2 * 128, 1}));
    EXPECT_EQ(words(l, kPV, 2),
              (V{int64_t(BatchCall::kV), int64_t(BatchCall::kV)}));
    EXPECT_EQ(words(l, kPO, 11),
              (V{int64_t(BatchCall::kO), int64_t(BatchCall::kO), 0, 3, 8, 120,
                 128, 0, 128, 8 * 128, 1}));
    // lse: packed [8, 120] as [3, 8, 120].
    EXPECT_EQ(words(l, kPLse, 9),
              (V{int64_t(BatchCall::kLse), int64_t(BatchCall::kLse), 0, 3, 8,
                 120, 0, 120, 1}));
    // doc in place, binding [B, max_seqlen_q].
    EXPECT_EQ(words(l, kPDoc, 7),
              (V{int64_t(BatchCall::kDoc), int64_t(BatchCall::kDoc), 0, 3, maxQ,
                 maxQ, 1}));
    EXPECT_EQ(words(l, kPCuQ, 5),
              (V{int64_t(BatchCall::kCuQ), int64_t(BatchCall::kCuQ), 0, 4, 1}));
    EXPECT_EQ(words(l, kPCuK, 5),
              (V{int64_t(BatchCall::kCuK), int64_t(BatchCall::kCuK), 0, 4, 1}));
    // No block table, no kv_lens: NULL descriptors.
    EXPECT_EQ(words(l, kPTable, 12), (V{0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}));
  }
}

TEST_F(CudaBatch, PagedPrefillPassesThePools) {
  DecodeKernel k;
  BatchCall call;
  call.packQueries(40, 17);
  call.withLse = false;
  int launches = state().launch_calls, allocs = state().alloc_calls;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(state().launch_calls, launches + 1);
  EXPECT_EQ(state().alloc_calls, allocs);
  const FakeCudaLaunch &l = state().last_launch;
  EXPECT_STREQ(l.function, "attn_batch_d128");
  EXPECT_EQ(l.grid[0], 1u);
  EXPECT_EQ(l.grid[1], 24u);
  ASSERT_EQ(l.num_params, kPWords);
  // k and v: the pools [10, 16, 2, 128] as they are.
  EXPECT_EQ(words(l, kPK, 11),
            (V{int64_t(BatchCall::kK), int64_t(BatchCall::kK), 0, 10, 16, 2,
               128, 16 * 2 * 128, 2 * 128, 128, 1}));
  EXPECT_EQ(words(l, kPV, 11),
            (V{int64_t(BatchCall::kV), int64_t(BatchCall::kV), 0, 10, 16, 2,
               128, 16 * 2 * 128, 2 * 128, 128, 1}));
  // No lse: a NULL [B, Hq, total_q].
  EXPECT_EQ(words(l, kPLse, 9), (V{0, 0, 0, 3, 8, 40, 8 * 40, 40, 1}));
  // cu_seqlens_q, no cu_seqlens_k, block_table, kv_lens.
  EXPECT_EQ(words(l, kPCuQ, 5),
            (V{int64_t(BatchCall::kCuQ), int64_t(BatchCall::kCuQ), 0, 4, 1}));
  EXPECT_EQ(words(l, kPCuK, 5), (V{0, 0, 0, 0, 1}));
  EXPECT_EQ(words(l, kPTable, 7),
            (V{int64_t(BatchCall::kTable), int64_t(BatchCall::kTable), 0, 3, 4,
               4, 1}));
  EXPECT_EQ(words(l, kPLens, 5),
            (V{int64_t(BatchCall::kLens), int64_t(BatchCall::kLens), 0, 3, 1}));
}

TEST_F(CudaBatch, ScheduleFollowsTheEnvironmentAndTheVariants) {
  DecodeKernel k;
  BatchCall call;
  call.packQueries(3, 1);
  int launches = state().launch_calls;
  // prefill: the batch variant even for one query per sequence.
  setenv("ATTN_GPU_SCHEDULE", "prefill", 1);
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(state().launch_calls, launches + 1);
  EXPECT_STREQ(state().last_launch.function, "attn_batch_d128");
  EXPECT_EQ(state().last_launch.grid[0], 1u);
  EXPECT_EQ(state().last_launch.grid[1], 24u);
  // Unset: decode and merge.
  unsetenv("ATTN_GPU_SCHEDULE");
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(state().launch_calls, launches + 3);
  EXPECT_STREQ(state().prev_launch.function, "attn_dec_d128");
  // decode: refused past decode_max_n, though the batch variant could run.
  setenv("ATTN_GPU_SCHEDULE", "decode", 1);
  call.packQueries(40, 17);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_UNSUPPORTED);
  EXPECT_NE(lastError().find("ATTN_GPU_SCHEDULE=decode"), std::string::npos)
      << lastError();
  EXPECT_NE(lastError().find("decode_max_n = 16"), std::string::npos);
  EXPECT_EQ(state().launch_calls, launches + 3);
  // ... and ignored by a kernel without decode variants, whose batches all
  // take the batch variant.
  dropDecodeVariants(k);
  call.packQueries(3, 1);
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(state().launch_calls, launches + 4);
  EXPECT_STREQ(state().last_launch.function, "attn_batch_d128");
  // A small head dim picks the d64 variant.
  call.q = Tensor({3, 8, 64}, bf16(), BatchCall::kQ);
  call.k = Tensor({10, 16, 2, 64}, bf16(), BatchCall::kK);
  call.v = Tensor({10, 16, 2, 64}, bf16(), BatchCall::kV);
  call.o = Tensor({3, 8, 64}, f32(), BatchCall::kO);
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_STREQ(state().last_launch.function, "attn_batch_d64");
  EXPECT_EQ(state().last_launch.shared_mem_bytes, 40960u);
}

TEST_F(CudaBatch, LongSequencesWithoutBatchVariantsAreRefused) {
  DecodeKernel k;
  dropBatchVariants(k);
  BatchCall call;
  call.packQueries(40, 17);
  int launches = state().launch_calls;
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_UNSUPPORTED);
  EXPECT_NE(lastError().find("no batch prefill variants"), std::string::npos)
      << lastError();
  EXPECT_NE(lastError().find("decode_max_n = 16"), std::string::npos);
  // prefill asks for what the kernel lacks: it keeps its decode schedule.
  setenv("ATTN_GPU_SCHEDULE", "prefill", 1);
  call.packQueries(3, 1);
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(state().launch_calls, launches + 2);
  EXPECT_STREQ(state().prev_launch.function, "attn_dec_d128");
}

TEST_F(CudaBatch, PrefillGridWithinTheLimits) {
  // Without the aux input, nothing but the grid bounds max_seqlen_q.
  DecodeKernel k;
  k.desc.num_inputs = 3;
  BatchCall call;
  int launches = state().launch_calls;
  for (int64_t maxQ : {(int64_t(1) << 31) * 64 + 1, INT64_MAX}) {
    call.layout.max_seqlen_q = maxQ;
    EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_SHAPE) << lastError();
    EXPECT_NE(lastError().find("q: ceil(max_seqlen_q / block_q) = "),
              std::string::npos)
        << lastError();
  }
  EXPECT_EQ(state().launch_calls, launches);
}

TEST_F(CudaBatch, BatchVariantDescriptorChecks) {
  BatchCall call;
  int launches = state().launch_calls;
  auto expectInvalid = [&](const DecodeKernel &k, const std::string &part) {
    EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_INVALID_ARGUMENT) << lastError();
    EXPECT_NE(lastError().find(part), std::string::npos) << lastError();
  };
  {
    DecodeKernel k;
    k.desc.num_batch_variants = -1;
    expectInvalid(k, "num_batch_variants -1");
    // attn_cuda_run checks the same fields.
    Call dense;
    EXPECT_EQ(dense.run(&k.desc), ATTN_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(lastError().find("num_batch_variants -1"), std::string::npos);
  }
  {
    DecodeKernel k;
    k.desc.batch_variants = nullptr;
    expectInvalid(k, "num_batch_variants is 2 but batch_variants is NULL");
  }
  {
    DecodeKernel k;
    std::swap(k.batch[0], k.batch[1]);
    expectInvalid(k, "batch_variants must be sorted");
  }
  {
    DecodeKernel k;
    k.batch[1].num_threads = 0;
    expectInvalid(k, "batch_variants[1] 'attn_batch_d128'");
  }
  EXPECT_EQ(state().launch_calls, launches);
}

/// ATTN_GPU_CHECK_TABLES=1: the tables come back in stream order (the fake
/// copies from their addresses as host memory) and are checked before any
/// launch; without it no copy is made, whatever the values.
class CudaBatchCheckTables : public CudaBatch {
protected:
  std::vector<int32_t> cuQ{0, 1, 4, 5};
  std::vector<int32_t> table{3, 7, -1, -1, 0, 1, 2, 9, 4, -1, -1, -1};
  std::vector<int32_t> lens{20, 64, 1};
  void *stream = reinterpret_cast<void *>(0x5200);

  void TearDown() override { unsetenv("ATTN_GPU_CHECK_TABLES"); }

  /// The call with the tables at these vectors' host addresses.
  BatchCall call() {
    BatchCall c;
    c.cuQ.t.data = cuQ.data();
    c.table.t.data = table.data();
    c.lens.t.data = lens.data();
    return c;
  }
  void expectRefused(BatchCall c, const char *text,
                     attn_status_t want = ATTN_ERROR_SHAPE) {
    DecodeKernel k;
    int launches = state().launch_calls;
    EXPECT_EQ(c.run(&k.desc, stream), want) << lastError();
    EXPECT_NE(lastError().find(text), std::string::npos) << lastError();
    EXPECT_EQ(state().launch_calls, launches);
  }
};

TEST_F(CudaBatchCheckTables, GoodTablesAreReadBackThenRun) {
  setenv("ATTN_GPU_CHECK_TABLES", "1", 1);
  DecodeKernel k;
  BatchCall c = call();
  int launches = state().launch_calls, copies = state().copy_calls;
  ASSERT_EQ(c.run(&k.desc, stream), ATTN_OK) << lastError();
  EXPECT_EQ(state().launch_calls, launches + 2);
  // cu_seqlens_q, block_table, kv_lens: each copied on the call's stream
  // and waited for.
  EXPECT_EQ(state().copy_calls, copies + 3);
  EXPECT_EQ(state().last_copy_stream, stream);
  EXPECT_EQ(state().last_sync_stream, stream);
  // A strided table: every other entry of a longer buffer.
  std::vector<int32_t> spread{0, -5, 1, -5, 4, -5, 5};
  BatchCall s = call();
  s.cuQ = Tensor({4}, i32(), reinterpret_cast<uintptr_t>(spread.data()), {2});
  s.layout.tables.cu_seqlens_q = s.cuQ.get();
  EXPECT_EQ(s.run(&k.desc, stream), ATTN_OK) << lastError();
}

TEST_F(CudaBatchCheckTables, BadValuesAreRefusedBeforeAnyLaunch) {
  setenv("ATTN_GPU_CHECK_TABLES", "1", 1);
  cuQ = {0, 1, 4, 4};
  expectRefused(call(), "cu_seqlens_q: the last entry is 4, expected 5");
  cuQ = {0, 4, 1, 5};
  expectRefused(call(), "cu_seqlens_q: entry 2 (1) is less than entry 1 (4)");
  cuQ = {0, 1, 5, 5};
  expectRefused(call(), "cu_seqlens_q: sequence 1 has 4 queries, more than "
                        "layout max_seqlen_q = 3");
  cuQ = {0, 1, 4, 5};
  lens = {20, 65, 1};
  expectRefused(call(), "kv_lens: sequence 1 has 65 keys, outside [0, "
                        "max_pages * page_size = 64]");
  lens = {20, 64, 1};
  table[1] = 10;
  expectRefused(call(), "block_table: sequence 0, entry 1 is page 10, outside "
                        "[0, 10)");
  table[1] = 7;
  BatchCall shortK = call();
  shortK.layout.max_seqlen_k = 32;
  expectRefused(shortK, "kv_lens: sequence 1 has 64 keys, more than layout "
                        "max_seqlen_k = 32");
  // A failed copy is the driver's error, named.
  std::strcpy(state().fail_function, "cuMemcpyDtoHAsync_v2");
  state().fail_code = 700;
  expectRefused(call(), "reading cu_seqlens_q", ATTN_ERROR_DRIVER);
}

TEST_F(CudaBatchCheckTables, PrefillBatchesAreCheckedToo) {
  setenv("ATTN_GPU_CHECK_TABLES", "1", 1);
  // Sequences of 1, 17 and 2 queries within max_seqlen_q = 17: read back,
  // then one launch of the batch variant.
  cuQ = {0, 1, 18, 20};
  BatchCall good = call();
  good.packQueries(20, 17);
  DecodeKernel k;
  int launches = state().launch_calls, copies = state().copy_calls;
  ASSERT_EQ(good.run(&k.desc, stream), ATTN_OK) << lastError();
  EXPECT_EQ(state().copy_calls, copies + 3);
  EXPECT_EQ(state().launch_calls, launches + 1);
  EXPECT_STREQ(state().last_launch.function, "attn_batch_d128");
  // One of 18: more than the grid covers.
  cuQ = {0, 1, 19, 20};
  BatchCall bad = call();
  bad.packQueries(20, 17);
  expectRefused(bad, "cu_seqlens_q: sequence 1 has 18 queries, more than "
                     "layout max_seqlen_q = 17");
}

TEST_F(CudaBatchCheckTables, OffByDefault) {
  // The same bad table without the variable: no copy, the launch happens
  // (the kernels clamp what they read).
  table[1] = 10;
  DecodeKernel k;
  BatchCall c = call();
  int copies = state().copy_calls, launches = state().launch_calls;
  EXPECT_EQ(c.run(&k.desc, stream), ATTN_OK) << lastError();
  EXPECT_EQ(state().copy_calls, copies);
  EXPECT_EQ(state().launch_calls, launches + 2);
  setenv("ATTN_GPU_CHECK_TABLES", "0", 1);
  EXPECT_EQ(c.run(&k.desc, stream), ATTN_OK) << lastError();
  EXPECT_EQ(state().copy_calls, copies);
}

} // namespace
