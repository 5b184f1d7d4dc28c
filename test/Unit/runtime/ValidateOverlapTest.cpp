//===- ValidateOverlapTest.cpp - output self-overlap at the boundary ----===//
//===//
//
// runtime/src/Validate.cpp (checkNoSelfOverlap) rejects an output (o, lse)
// whose elements could alias: with the dims of size > 1 sorted by stride,
// each stride must be strictly greater than the largest offset the smaller
// dims reach, reach = sum (size - 1) * stride over those dims. These tests
// pin both sides of that boundary for o and lse, in C order, with padded
// rows and with transposed layouts (the CUDA entry point shares the check):
// stride == reach is rejected (ATTN_ERROR_LAYOUT, "overlap", the kernel
// never runs) and stride == reach + 1 is accepted (the kernel runs).
// Why: an off-by-one in that comparison (`<` for `<=`) let a row stride that
// exactly reaches the next row's last element through, and no test noticed
// (the existing layout tests use strides far from the boundary).
//
//===----------------------------------------------------------------------===//

#include "attn/runtime.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

namespace {

std::atomic<int> calls{0};
void countingKernel(void **, int64_t, int64_t) { calls.fetch_add(1); }

constexpr DLDataType kF32 = {kDLFloat, 32, 1};

/// A host tensor backed by a buffer big enough for any stride used here
/// (validation reads no element; the counting kernel writes none).
struct HostTensor {
  std::vector<int64_t> shape, strides;
  std::vector<float> storage = std::vector<float>(4096);
  DLTensor dl{};

  explicit HostTensor(std::vector<int64_t> s) : shape(std::move(s)) {
    dl.data = storage.data();
    dl.device = {kDLCPU, 0};
    dl.ndim = static_cast<int32_t>(shape.size());
    dl.dtype = kF32;
    dl.shape = shape.data();
  }
  void setStrides(std::vector<int64_t> s) {
    strides = std::move(s);
    dl.strides = strides.data();
  }
};

const char *const kQDims[] = {"B", "Hq", "N", "Dqk"};
const char *const kKDims[] = {"B", "Hkv", "M", "Dqk"};
const char *const kVDims[] = {"B", "Hkv", "M", "Dv"};

/// B=2 Hq=3 Hkv=1 N=5 M=4 Dqk=4 Dv=6: o is [2, 3, 5, 6], lse [2, 3, 5].
class OverlapBoundary : public ::testing::Test {
protected:
  std::vector<attn_input_desc_t> descs{{"q", ATTN_F32, 4, kQDims, nullptr},
                                       {"k", ATTN_F32, 4, kKDims, nullptr},
                                       {"v", ATTN_F32, 4, kVDims, nullptr}};
  attn_kernel_desc_t kernel{};
  HostTensor q{{2, 3, 5, 4}}, k{{2, 1, 4, 4}}, v{{2, 1, 4, 6}};
  HostTensor o{{2, 3, 5, 6}}, lse{{2, 3, 5}};
  bool withLse = true;

  void SetUp() override {
    kernel.abi_version = ATTN_ABI_VERSION;
    kernel.name = "overlap";
    kernel.tile_q = 16;
    kernel.num_inputs = 3;
    kernel.inputs = descs.data();
    kernel.has_lse = 1;
    kernel.cpu_fn = countingKernel;
  }

  attn_status_t call() {
    calls = 0;
    const DLTensor *in[] = {&q.dl, &k.dl, &v.dl};
    attn_run_options_t options{1};
    return attn_cpu_run(&kernel, in, &o.dl, withLse ? &lse.dl : nullptr,
                        &options);
  }

  void expectAccepted(const char *what) {
    attn_status_t st = call();
    EXPECT_EQ(st, ATTN_OK) << what << ": " << attn_last_error();
    EXPECT_GT(calls.load(), 0) << what;
  }

  void expectOverlap(const char *tensor, const char *what) {
    attn_status_t st = call();
    std::string msg = attn_last_error();
    EXPECT_EQ(st, ATTN_ERROR_LAYOUT) << what << ": " << msg;
    EXPECT_NE(msg.find(std::string(tensor) + ": strides"), std::string::npos)
        << what << ": " << msg;
    EXPECT_NE(msg.find("overlap"), std::string::npos) << what << ": " << msg;
    EXPECT_EQ(calls.load(), 0) << what;
  }
};

TEST_F(OverlapBoundary, CompactIsAccepted) {
  o.setStrides({90, 30, 6, 1});
  lse.setStrides({15, 5, 1});
  expectAccepted("C-order o and lse");
}

TEST_F(OverlapBoundary, RowStrideAtTheReachOfARow) {
  // A row of o reaches offset Dv - 1 = 5: a row stride of 5 makes the last
  // element of a row the first of the next; 6 (= reach + 1) is compact.
  o.setStrides({3 * 5 * 6, 5 * 6, 5, 1});
  expectOverlap("o", "row stride == reach (5)");
  o.setStrides({3 * 5 * 6, 5 * 6, 6, 1});
  expectAccepted("row stride == reach + 1 (6)");
}

TEST_F(OverlapBoundary, HeadStrideAtTheReachOfPaddedRows) {
  // Rows padded to 8: the rows of one head reach (6 - 1) + (5 - 1) * 8 = 37.
  o.setStrides({1000, 37, 8, 1});
  expectOverlap("o", "head stride == reach (37)");
  o.setStrides({1000, 36, 8, 1});
  expectOverlap("o", "head stride == reach - 1 (36)");
  o.setStrides({1000, 38, 8, 1});
  expectAccepted("head stride == reach + 1 (38)");
  // The batch stride: three heads reach 37 + 2 * 38 = 113.
  o.setStrides({113, 38, 8, 1});
  expectOverlap("o", "batch stride == reach (113)");
  o.setStrides({114, 38, 8, 1});
  expectAccepted("batch stride == reach + 1 (114)");
}

TEST_F(OverlapBoundary, TransposedLayout) {
  // N innermost ([B, Hq, Dv, N] in memory): N reaches 4, so Dv's stride must
  // be at least 5; the sort by stride, not the dim order, decides.
  o.setStrides({1000, 100, 1, 4});
  expectOverlap("o", "Dv stride == reach of N (4)");
  o.setStrides({1000, 100, 1, 5});
  expectAccepted("Dv stride == reach of N + 1 (5)");
  // Heads innermost: Hq (3) reaches 2 with stride 1; N's stride 2 overlaps.
  o.setStrides({2000, 1, 2, 200});
  expectOverlap("o", "N stride == reach of Hq (2)");
  o.setStrides({2000, 1, 3, 200});
  expectAccepted("N stride == reach of Hq + 1 (3)");
}

TEST_F(OverlapBoundary, LseRowsAndHeads) {
  // lse [2, 3, 5]: N reaches 4.
  lse.setStrides({100, 4, 1});
  expectOverlap("lse", "lse head stride == reach (4)");
  lse.setStrides({100, 5, 1});
  expectAccepted("lse head stride == reach + 1 (5)");
  // Three heads of stride 5 reach 4 + 2 * 5 = 14.
  lse.setStrides({14, 5, 1});
  expectOverlap("lse", "lse batch stride == reach (14)");
  lse.setStrides({15, 5, 1});
  expectAccepted("lse batch stride == reach + 1 (15)");
  // Without lse only o is checked.
  withLse = false;
  lse.setStrides({14, 5, 1});
  expectAccepted("overlapping lse not passed");
}

TEST_F(OverlapBoundary, SizeOneDimsDoNotCount) {
  // With N = 1 and Dv = 1 only the heads remain: any non-zero stride is
  // distinct, even the smallest, and a stride equal to another's does not
  // matter when that dim has size 1.
  HostTensor q1{{2, 3, 1, 4}}, o1{{2, 3, 1, 1}};
  HostTensor v1{{2, 1, 4, 1}};
  o1.setStrides({3, 1, 1, 1});
  const DLTensor *in[] = {&q1.dl, &k.dl, &v1.dl};
  attn_run_options_t options{1};
  calls = 0;
  EXPECT_EQ(attn_cpu_run(&kernel, in, &o1.dl, nullptr, &options), ATTN_OK)
      << attn_last_error();
  EXPECT_GT(calls.load(), 0);
  o1.setStrides({2, 1, 1, 1}); // B stride == reach of Hq (2)
  calls = 0;
  EXPECT_EQ(attn_cpu_run(&kernel, in, &o1.dl, nullptr, &options),
            ATTN_ERROR_LAYOUT);
  EXPECT_EQ(calls.load(), 0);
}

} // namespace
