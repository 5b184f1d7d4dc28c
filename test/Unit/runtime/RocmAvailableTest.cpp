//===- RocmAvailableTest.cpp - the HIP runtime from Debian, no AMD GPU ----===//
//
// attn_rocm_available() against the real HIP runtime: Debian's
// libamdhip64-5 (scripts/setup.sh installs it). No AMD GPU is reachable from
// this project, so loading it must end in a clean "no device" status and a
// one-line reason, not a crash or a hang, and the same on a second call (the
// runtime loads HIP once per process). A missing or foreign library gets its
// own message (death tests: each in a fresh process, with ATTN_HIP_LIBRARY
// set there). A valid launch on kDLROCM tensors (fake addresses, never
// dereferenced: HIP stops before them) must fail the same clean way. Its
// own executable, for the same reason.
//
//===----------------------------------------------------------------------===//

#include "BackwardTestUtil.h"
#include "CudaTestUtil.h"
#include "attn/runtime.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace {

/// In a fresh process: attn_rocm_available() with ATTN_HIP_LIBRARY = `lib`
/// must return 0 with a one-line message containing `substr`.
bool unavailableWith(const char *lib, const char *substr) {
  setenv("ATTN_HIP_LIBRARY", lib, 1);
  if (attn_rocm_available() != 0)
    return false;
  std::string msg = attn_last_error();
  return msg.find(substr) != std::string::npos &&
         msg.find('\n') == std::string::npos;
}

TEST(RocmNoHip, MissingLibraryIsNamed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::exit(unavailableWith("/nonexistent/libamdhip64.so",
                                        "HIP runtime not available: ")
                            ? 0
                            : 1),
              ::testing::ExitedWithCode(0), "");
}

TEST(RocmNoHip, LibraryWithoutHipIsRefused) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      std::exit(unavailableWith("libm.so.6", "has no symbol hipInit") ? 0 : 1),
      ::testing::ExitedWithCode(0), "");
}

TEST(RocmAvailable, DebianHipLoadsAndReportsNoDeviceCleanly) {
  void *hip = dlopen("libamdhip64.so.5", RTLD_NOW | RTLD_LOCAL);
  if (!hip)
    hip = dlopen("libamdhip64.so", RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(hip, nullptr) << "no HIP runtime: scripts/setup.sh installs "
                             "Debian's libamdhip64-5";
  int32_t available = attn_rocm_available();
  if (available)
    GTEST_SKIP() << "this machine has an AMD GPU";
  std::string msg = attn_last_error();
  // It loaded (no "not available"): hipInit or hipGetDeviceCount said why.
  EXPECT_EQ(msg.find("not available"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HIP error"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  // Loaded once: the same answer again.
  EXPECT_EQ(attn_rocm_available(), 0);
  EXPECT_EQ(std::string(attn_last_error()), msg);
}

/// Whether \p st is a clean refusal from HIP: DRIVER (it cannot initialize
/// without a GPU, or cannot load the test's image) or DEVICE, with a
/// one-line message.
::testing::AssertionResult cleanHipRefusal(attn_status_t st) {
  std::string msg = attn_last_error();
  if (st != ATTN_ERROR_DRIVER && st != ATTN_ERROR_DEVICE)
    return ::testing::AssertionFailure()
           << attn_status_string(st) << ": " << msg;
  if (msg.empty() || msg.find('\n') != std::string::npos ||
      msg.find("HIP") == std::string::npos)
    return ::testing::AssertionFailure() << "message: '" << msg << "'";
  return ::testing::AssertionSuccess() << msg;
}

TEST(RocmAvailable, LaunchesOnDebianHipFailCleanly) {
  using namespace attn_test;
  const std::vector<Variant> variants = {{"attn_fwd_d64", 64, 64, 256, 32768}};
  Kernel k(variants);
  Call call;
  call.setDevice({kDLROCM, 0});
  const DLTensor *ins[] = {call.q.get(), call.k.get(), call.v.get(),
                           call.doc.get()};
  EXPECT_TRUE(cleanHipRefusal(
      attn_rocm_run(&k.desc, ins, call.o.get(), call.lse.get(), nullptr)));
  // Twice: HIP is loaded once, and the answer does not change.
  std::string first = attn_last_error();
  EXPECT_TRUE(cleanHipRefusal(
      attn_rocm_run(&k.desc, ins, call.o.get(), call.lse.get(), nullptr)));
  EXPECT_EQ(std::string(attn_last_error()), first);

  BwdKernel bwd({{"attn_test_bwd_d64", 64, 64, 256, 32768}});
  BwdCall back(bf16(), attn_rocm_run_backward, {kDLROCM, 0});
  EXPECT_TRUE(cleanHipRefusal(back.run(&bwd.desc)));
}

} // namespace
