//===- CudaDecodeTest.cpp - attn_cuda_run's decode schedule, fake driver --===//
//
// The split-KV decode schedule of attn_cuda_run (runtime.h, ABI 6-7) against
// the fake driver: which calls take it, the two launches (decode variant,
// then the merge) with their grids, blocks and every descriptor of the
// stream-ordered partials, the split count from the driver's occupancy, the
// partials freed after the merge and after a failed launch, the environment
// overrides and the descriptor's checks. Its own process: the tests set
// ATTN_GPU_SCHEDULE and ATTN_DECODE_SPLITS.
//
//===----------------------------------------------------------------------===//

#include "CudaTestUtil.h"
#include "FakeCudaAccess.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <deque>
#include <string>
#include <vector>

using namespace attn_test;

namespace {

class CudaDecode : public ::testing::Test {
protected:
  void SetUp() override {
    resetFake();
    unsetenv("ATTN_GPU_SCHEDULE");
    unsetenv("ATTN_DECODE_SPLITS");
  }
  void TearDown() override {
    unsetenv("ATTN_GPU_SCHEDULE");
    unsetenv("ATTN_DECODE_SPLITS");
  }
  /// A decode-shaped call: B=2, Hq=8, Hkv=2 (G = 4), N=1, M=4096,
  /// Dqk=Dv=128.
  static Call decodeCall() {
    Call c;
    c.B = 2, c.Hq = 8, c.Hkv = 2, c.N = 1, c.M = 4096, c.Dqk = 128, c.Dv = 128;
    c.reshape();
    return c;
  }
};

using V = std::vector<int64_t>;

V words(const FakeCudaLaunch &l, int begin, int n) {
  return V(l.params + begin, l.params + begin + n);
}

TEST_F(CudaDecode, DecodeLaunchesDecodeThenMergeOnTheStream) {
  DecodeKernel k;
  Call call = decodeCall();
  void *stream = reinterpret_cast<void *>(0x5100);
  int launches = state().launch_calls, allocs = state().alloc_calls;
  int live = state().live_allocs;
  ASSERT_EQ(call.run(&k.desc, stream), ATTN_OK) << lastError();
  ASSERT_EQ(state().launch_calls, launches + 2);
  ASSERT_EQ(state().alloc_calls, allocs + 1);
  EXPECT_EQ(state().live_allocs, live);

  // C = ceil(4 * 1 / 16) = 1 chunk per (b, hk): 4 CTAs per split; 132 SMs x
  // 3 CTAs = 396 slots, at most ceil(4096 / 128) = 32 splits: 28 is the
  // first within 85 % of 32's wave efficiency.
  EXPECT_EQ(attn_cuda_decode_splits(4, 4096, 396), 28);
  EXPECT_STREQ(state().last_occupancy_function, "attn_dec_d128");
  EXPECT_EQ(state().last_occupancy_block_size, 32);
  EXPECT_EQ(state().last_occupancy_shared_bytes, 36864u);

  const FakeCudaLaunch &dec = state().prev_launch;
  EXPECT_STREQ(dec.function, "attn_dec_d128");
  EXPECT_EQ(dec.grid[0], 4u * 28);
  EXPECT_EQ(dec.grid[1], 1u);
  EXPECT_EQ(dec.block[0], 32u);
  EXPECT_EQ(dec.shared_mem_bytes, 36864u);
  EXPECT_EQ(dec.stream, stream);
  const FakeCudaLaunch &mrg = state().last_launch;
  EXPECT_STREQ(mrg.function, "attn_merge");
  EXPECT_EQ(mrg.grid[0], 1u);  // ceil(N / 4)
  EXPECT_EQ(mrg.grid[1], 16u); // B * Hq
  EXPECT_EQ(mrg.block[0], 128u);
  EXPECT_EQ(mrg.shared_mem_bytes, 0u);
  EXPECT_EQ(mrg.stream, stream);
  EXPECT_LT(dec.sequence, mrg.sequence);

  // The partials: o_part [2, 2, 28, 16, 128] then lse_part [2, 2, 28, 16],
  // one allocation on the stream, freed on it after the merge.
  int64_t lseFloats = 2 * 2 * 28 * 16, oFloats = lseFloats * 128;
  EXPECT_EQ(state().last_alloc_bytes, uint64_t(oFloats + lseFloats) * 4);
  EXPECT_EQ(state().last_alloc_stream, stream);
  EXPECT_LT(state().last_alloc_sequence, dec.sequence);
  int64_t oPart = int64_t(state().last_alloc_ptr);
  int64_t lsePart = oPart + oFloats * 4;
  EXPECT_EQ(state().last_free_ptr, state().last_alloc_ptr);
  EXPECT_EQ(state().last_free_stream, stream);
  EXPECT_GT(state().last_free_sequence, mrg.sequence);

  // Decode: q, k, v, o_part, lse_part, doc, then null batch tables (a
  // dense batch).
  ASSERT_EQ(dec.num_params, 86);
  EXPECT_EQ(words(dec, 0, 3), (V{int64_t(Call::kQ), int64_t(Call::kQ), 0}));
  EXPECT_EQ(words(dec, 33, 13),
            (V{oPart, oPart, 0, 2, 2, 28, 16, 128, 2 * 28 * 16 * 128,
               28 * 16 * 128, 16 * 128, 128, 1}));
  EXPECT_EQ(words(dec, 46, 11), (V{lsePart, lsePart, 0, 2, 2, 28, 16,
                                   2 * 28 * 16, 28 * 16, 16, 1}));
  EXPECT_EQ(words(dec, 57, 7),
            (V{int64_t(Call::kDoc), int64_t(Call::kDoc), 0, 2, 1, 1, 1}));
  EXPECT_EQ(words(dec, 64, 22), (V{0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0,
                                   0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}));
  // Merge: o_part, lse_part, o, lse, a null cu_seqlens_q.
  ASSERT_EQ(mrg.num_params, 49);
  EXPECT_EQ(words(mrg, 0, 13), words(dec, 33, 13));
  EXPECT_EQ(words(mrg, 13, 11), words(dec, 46, 11));
  EXPECT_EQ(words(mrg, 24, 11), (V{int64_t(Call::kO), int64_t(Call::kO), 0, 2,
                                   8, 1, 128, 8 * 128, 128, 128, 1}));
  EXPECT_EQ(words(mrg, 35, 9),
            (V{int64_t(Call::kLse), int64_t(Call::kLse), 0, 2, 8, 1, 8, 1, 1}));
  EXPECT_EQ(words(mrg, 44, 5), (V{0, 0, 0, 0, 1}));
}

TEST_F(CudaDecode, GqaGroupsFillChunksOfSixteenRows) {
  DecodeKernel k;
  Call call = decodeCall();
  call.Hq = 32; // G = 16, N = 3: 48 rows, 3 chunks per (b, hk)
  call.N = 3;
  call.Dqk = call.Dv = 64;
  call.reshape();
  call.withLse = false;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  int64_t ctas = 2 * 2 * 3, splits = attn_cuda_decode_splits(ctas, 4096, 396);
  EXPECT_EQ(splits, 28); // 12 * 28 = 336 of 396 slots, 85 % of 12 * 32's
  const FakeCudaLaunch &dec = state().prev_launch;
  EXPECT_STREQ(dec.function, "attn_dec_d64");
  EXPECT_EQ(dec.grid[0], uint64_t(ctas * splits));
  EXPECT_EQ(words(dec, 36, 5), (V{2, 2, splits, 48, 64}));
  // No lse: the merge gets a NULL descriptor of [B, Hq, N].
  EXPECT_EQ(words(state().last_launch, 35, 9),
            (V{0, 0, 0, 2, 32, 3, 32 * 3, 3, 1}));
}

TEST_F(CudaDecode, PrefillAboveDecodeMaxNAndWithoutDecodeVariants) {
  DecodeKernel k;
  Call call = decodeCall();
  call.N = 17;
  call.reshape();
  int allocs = state().alloc_calls, launches = state().launch_calls;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(state().launch_calls, launches + 1);
  EXPECT_EQ(state().alloc_calls, allocs);
  EXPECT_STREQ(lastLaunch().function, "attn_fwd_d128");

  // A descriptor without the schedule (as ROCm's, or a sigmoid spec's).
  k.desc.decode_max_n = 0;
  k.desc.num_decode_variants = 0;
  k.desc.decode_variants = nullptr;
  k.desc.merge_variant = nullptr;
  call.N = 1;
  call.reshape();
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(state().launch_calls, launches + 2);
  EXPECT_EQ(state().alloc_calls, allocs);
  EXPECT_STREQ(lastLaunch().function, "attn_fwd_d128");
}

TEST_F(CudaDecode, EnvironmentForcesScheduleAndSplits) {
  DecodeKernel k;
  Call call = decodeCall();
  setenv("ATTN_GPU_SCHEDULE", "prefill", 1);
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_STREQ(lastLaunch().function, "attn_fwd_d128");

  setenv("ATTN_GPU_SCHEDULE", "decode", 1);
  setenv("ATTN_DECODE_SPLITS", "1000", 1); // capped at 128
  call.N = 40;                             // G * N = 160: 10 chunks
  call.reshape();
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_STREQ(state().prev_launch.function, "attn_dec_d128");
  EXPECT_EQ(state().prev_launch.grid[0], 2u * 2 * 10 * 128);
  EXPECT_EQ(state().last_launch.grid[0], 10u); // ceil(40 / 4)
  EXPECT_EQ(attn_cuda_decode_splits(1, 1, 1), 128);
  setenv("ATTN_DECODE_SPLITS", "3", 1);
  EXPECT_EQ(attn_cuda_decode_splits(1000000, 1, 1), 3);
}

TEST_F(CudaDecode, SplitHeuristic) {
  // Enough CTAs for 80 % of the slots, no slots known, or bad arguments: 1.
  EXPECT_EQ(attn_cuda_decode_splits(317, 1 << 20, 396), 1);
  EXPECT_EQ(attn_cuda_decode_splits(8, 1 << 20, 0), 1);
  EXPECT_EQ(attn_cuda_decode_splits(0, 4096, 396), 1);
  EXPECT_EQ(attn_cuda_decode_splits(8, 0, 396), 1);
  // Short sequences: at most ceil(M / 128) splits.
  EXPECT_EQ(attn_cuda_decode_splits(8, 128, 396), 1);
  EXPECT_EQ(attn_cuda_decode_splits(8, 300, 396), 3);
  // Long ones: the first count within 85 % of the best wave efficiency
  // (8 CTAs on 396 slots: 99 splits fill two waves exactly; 43 fill 87 %
  // of one).
  EXPECT_EQ(attn_cuda_decode_splits(8, 1 << 20, 396), 43);
  EXPECT_EQ(attn_cuda_decode_splits(64, 1 << 20, 396), 6);
  for (int64_t ctas : {1, 3, 8, 40, 100, 316})
    for (int64_t m : {1, 200, 5000, 1 << 20}) {
      int64_t s = attn_cuda_decode_splits(ctas, m, 396);
      EXPECT_GE(s, 1);
      EXPECT_LE(s, std::min<int64_t>(128, (m + 127) / 128));
    }
}

TEST_F(CudaDecode, PartialsFreedWhenALaunchFails) {
  DecodeKernel k;
  Call call = decodeCall();
  int live = state().live_allocs, frees = state().free_calls;
  int launches = state().launch_calls;
  failNext("cuLaunchKernel", 701);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_NE(lastError().find("too many resources requested for launch"),
            std::string::npos)
      << lastError();
  EXPECT_NE(lastError().find("attn_dec_d128"), std::string::npos);
  EXPECT_EQ(state().launch_calls, launches + 1); // no merge after it
  EXPECT_EQ(state().free_calls, frees + 1);
  EXPECT_EQ(state().live_allocs, live);

  // A failed allocation launches nothing.
  failNext("cuMemAllocAsync", 2);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_OUT_OF_MEMORY);
  EXPECT_NE(lastError().find("decode partials"), std::string::npos);
  EXPECT_EQ(state().launch_calls, launches + 1);

  // Nor does a failed occupancy query.
  failNext("cuOccupancyMaxActiveBlocksPerMultiprocessor", 1);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_NE(lastError().find("cuOccupancyMaxActiveBlocksPerMultiprocessor"),
            std::string::npos);
  EXPECT_EQ(state().launch_calls, launches + 1);
  EXPECT_EQ(state().live_allocs, live);
}

TEST_F(CudaDecode, DescriptorChecks) {
  Call call = decodeCall();
  int launches = state().launch_calls;
  auto expectInvalid = [&](const attn_cuda_kernel_desc_t &d,
                           const std::string &part) {
    EXPECT_EQ(call.run(&d), ATTN_ERROR_INVALID_ARGUMENT) << lastError();
    EXPECT_NE(lastError().find(part), std::string::npos) << lastError();
  };
  {
    DecodeKernel k;
    k.desc.decode_max_n = -1;
    expectInvalid(k.desc, "decode_max_n -1");
  }
  {
    DecodeKernel k;
    k.desc.num_decode_variants = 0;
    expectInvalid(k.desc, "no decode variants");
  }
  {
    DecodeKernel k;
    k.desc.merge_variant = nullptr;
    expectInvalid(k.desc, "merge_variant is NULL");
  }
  {
    DecodeKernel k;
    k.merge.num_threads = 2048;
    expectInvalid(k.desc, "merge_variant[0] 'attn_merge'");
  }
  {
    DecodeKernel k;
    std::swap(k.decode[0], k.decode[1]);
    expectInvalid(k.desc, "decode_variants must be sorted");
  }
  EXPECT_EQ(state().launch_calls, launches);
}

} // namespace

int main(int argc, char **argv) {
  // Before the first CUDA call: the runtime reads it once.
  setenv("ATTN_CUDA_DRIVER", ATTN_FAKE_CUDA_DRIVER, 1);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
