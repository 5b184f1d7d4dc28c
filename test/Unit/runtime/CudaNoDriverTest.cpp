//===- CudaNoDriverTest.cpp - attn_cuda_run without a CUDA driver ---------===//
//
// ATTN_CUDA_DRIVER names a file that does not exist, as on a machine without
// CUDA: a valid call fails with ATTN_ERROR_DRIVER naming the library, every
// later call the same way, attn_cuda_available() is 0, and invalid calls still
// get their own codes (validation comes before the driver). Links the shared
// libattn_runtime, so this also checks that it exports the CUDA entry points.
// A separate executable: the driver is loaded once per process.
//
//===----------------------------------------------------------------------===//

#include "CudaTestUtil.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

using namespace attn_test;

namespace {

const char *const kMissing = "/nonexistent/attn-test/libcuda-missing.so.1";

bool contains(const std::string &s, const std::string &sub) {
  return s.find(sub) != std::string::npos;
}

TEST(CudaNoDriver, RunFailsWithDriverStatusNamingTheLibrary) {
  Kernel k(standardVariants());
  Call call;
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
    std::string err = attn_last_error();
    EXPECT_TRUE(contains(err, "CUDA driver not available")) << err;
    EXPECT_TRUE(contains(err, kMissing)) << err;
  }
  EXPECT_STREQ(attn_status_string(ATTN_ERROR_DRIVER), "ATTN_ERROR_DRIVER");
}

TEST(CudaNoDriver, NotAvailable) {
  EXPECT_EQ(attn_cuda_available(), 0);
  std::string err = attn_last_error();
  EXPECT_TRUE(contains(err, "CUDA driver not available")) << err;
  EXPECT_TRUE(contains(err, kMissing)) << err;
}

TEST(CudaNoDriver, ValidationComesFirst) {
  Kernel k(standardVariants());
  Call call;
  call.k.t.device = {kDLCPU, 0};
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DEVICE);
  EXPECT_TRUE(contains(attn_last_error(), "k: tensor is on kDLCPU"))
      << attn_last_error();
  Call big;
  big.Dqk = 512;
  big.reshape();
  EXPECT_EQ(big.run(&k.desc), ATTN_ERROR_UNSUPPORTED);
}

} // namespace

int main(int argc, char **argv) {
  setenv("ATTN_CUDA_DRIVER", kMissing, 1);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
