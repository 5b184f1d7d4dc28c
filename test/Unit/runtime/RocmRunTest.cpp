//===- RocmRunTest.cpp - the ROCm entries with a fake HIP runtime ---------===//
//
// Runs with ATTN_HIP_LIBRARY naming the fake HIP runtime (FakeHipDriver.cpp),
// as CudaRunTest.cpp and CudaBackwardTest.cpp do for CUDA: the ROCm device
// kind and HIP's limits (each error's code and message, HIP untouched), the
// forward's launch (grid, block, LDS, stream, every parameter), variant
// choice, module caching per device, the calling thread's current device
// switched for the call and put back on every path, HIP errors as
// ATTN_ERROR_DRIVER; the backward's zeroed gradients, its scratch around the
// launch, and attn_run dispatching kDLROCM tensors to the ROCm code. The
// checks and parameters shared with CUDA (gpu/GpuRun.cpp) are covered in
// depth by the CUDA tests; these cover what HIP changes. Its own
// executable: the runtime loads HIP once per process.
//
//===----------------------------------------------------------------------===//

#include "BackwardTestUtil.h"
#include "CudaTestUtil.h"
#include "FakeHipDriver.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <string>
#include <thread>
#include <vector>

#ifndef ATTN_FAKE_HIP_LIBRARY
#error "ATTN_FAKE_HIP_LIBRARY must name the fake HIP library"
#endif

using namespace attn_test;

/// Expects \p sub in \p str, printing both otherwise.
#define EXPECT_CONTAINS(str, sub)                                              \
  EXPECT_NE(std::string(str).find(sub), std::string::npos)                     \
      << "expected \"" << (sub) << "\" in \"" << (str) << "\""

namespace {

//===----------------------------------------------------------------------===//
// The fake, as the runtime loaded it
//===----------------------------------------------------------------------===//

struct FakeHip {
  FakeHipState *(*state)(void);
  int (*current)(void);
  void (*setCurrent)(int);
};

const FakeHip &fake() {
  static const FakeHip f = [] {
    // The same file the runtime opens, so the same loaded copy.
    void *h = dlopen(ATTN_FAKE_HIP_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      std::fprintf(stderr, "cannot load the fake HIP: %s\n", dlerror());
      std::abort();
    }
    FakeHip r;
    r.state =
        reinterpret_cast<FakeHipState *(*)(void)>(dlsym(h, "fake_hip_state"));
    r.current =
        reinterpret_cast<int (*)(void)>(dlsym(h, "fake_hip_current_device"));
    r.setCurrent = reinterpret_cast<void (*)(int)>(
        dlsym(h, "fake_hip_set_current_device"));
    if (!r.state || !r.current || !r.setCurrent)
      std::abort();
    return r;
  }();
  return f;
}

FakeHipState &state() { return *fake().state(); }
const FakeHipLaunch &lastLaunch() { return state().last_launch; }
std::string lastError() { return attn_last_error(); }

/// The next call of HIP entry point \p function (after \p skip calls of it
/// that pass) fails with \p code.
void failNext(const char *function, int code, int skip = 0) {
  std::snprintf(state().fail_function, sizeof(state().fail_function), "%s",
                function);
  state().fail_code = code;
  state().fail_skip = skip;
}

using Words = std::vector<int64_t>;

/// The launch's parameters [begin, begin + n).
Words params(int begin, int n) {
  const FakeHipLaunch &l = lastLaunch();
  return Words(l.params + begin, l.params + begin + n);
}

//===----------------------------------------------------------------------===//
// Kernels and calls on kDLROCM
//===----------------------------------------------------------------------===//

/// ROCm forward variants: 256-thread workgroups (four waves of 64), at most
/// 64 KiB of LDS; block_q differs so that grid.x shows which one ran.
std::vector<Variant> rocmVariants() {
  return {{"attn_fwd_d64", 64, 64, 256, 32768},
          {"attn_fwd_d128", 128, 32, 256, 65536},
          {"attn_fwd_d256", 256, 16, 512, 65536}};
}

std::vector<Variant> rocmBackwardVariants() {
  return {{"attn_test_bwd_d64", 64, 64, 256, 32768},
          {"attn_test_bwd_d128", 128, 32, 256, 65536},
          {"attn_test_bwd_d256", 256, 16, 512, 65536}};
}

/// CudaTestUtil.h's valid forward call (B=2, Hq=4, Hkv=2, N=100, M=77,
/// Dqk=64, Dv=48) on ROCm device `home`, through attn_rocm_run.
struct RocmCall : Call {
  DLDevice home;

  explicit RocmCall(DLDevice home_ = {kDLROCM, 0}, DLDataType type = bf16())
      : Call(type), home(home_) {
    setDevice(home);
  }
  void reshape(DLDataType type = bf16()) {
    Call::reshape(type);
    setDevice(home);
  }
  attn_status_t run(const attn_rocm_kernel_desc_t *kernel,
                    void *stream = nullptr) {
    const DLTensor *ins[] = {q.get(), k.get(), v.get(), doc.get()};
    DLTensor *lsePtr = lse.get();
    return attn_rocm_run(kernel, ins, o.get(), withLse ? lsePtr : nullptr,
                         stream);
  }
};

/// A RocmCall of one shape, Dqk = Dv = d.
RocmCall shapedCall(int64_t B, int64_t Hq, int64_t Hkv, int64_t N, int64_t M,
                    int64_t d) {
  RocmCall call;
  call.B = B;
  call.Hq = Hq;
  call.Hkv = Hkv;
  call.N = N;
  call.M = M;
  call.Dqk = d;
  call.Dv = d;
  call.reshape();
  return call;
}

/// BackwardTestUtil.h's valid backward call on ROCm device `home`.
struct RocmBwdCall : BwdCall {
  explicit RocmBwdCall(DLDevice home_ = {kDLROCM, 0})
      : BwdCall(bf16(), attn_rocm_run_backward, home_) {}
};

/// Each test starts on device 0 with no injected failure, two devices and
/// no launch or memset counted (this executable is the only user of the
/// counters it resets).
class RocmRun : public ::testing::Test {
protected:
  void SetUp() override {
    fake().setCurrent(0);
    FakeHipState &s = state();
    s.fail_code = 0;
    s.fail_function[0] = '\0';
    s.fail_skip = 0;
    s.device_count = 2;
    s.launch_calls = 0;
    s.memset_calls = 0;
    std::memset(s.memsets, 0, sizeof(s.memsets));
  }
};

//===----------------------------------------------------------------------===//
// Validation: what ROCm changes, with HIP untouched
//===----------------------------------------------------------------------===//

class RocmValidation : public RocmRun {
protected:
  void SetUp() override {
    RocmRun::SetUp();
    before = counters();
  }
  void TearDown() override {
    EXPECT_EQ(counters(), before) << "a failed call reached HIP";
    EXPECT_EQ(fake().current(), 0);
  }
  static std::vector<int> counters() {
    const FakeHipState &s = state();
    return {s.init_calls,         s.get_device_calls,  s.set_device_calls,
            s.device_count_calls, s.module_load_calls, s.get_function_calls,
            s.launch_calls,       s.memset_calls,      s.alloc_calls};
  }
  /// Runs \p call and expects \p code with a one-line message containing
  /// each of \p parts.
  void expectError(RocmCall &call, const attn_rocm_kernel_desc_t *k,
                   attn_status_t code, const std::vector<std::string> &parts) {
    attn_status_t st = call.run(k);
    EXPECT_EQ(st, code) << attn_status_string(st) << ": " << lastError();
    for (const std::string &p : parts)
      EXPECT_CONTAINS(lastError(), p);
    EXPECT_EQ(lastError().find('\n'), std::string::npos);
  }
  std::vector<int> before;
};

TEST_F(RocmValidation, TensorsMustBeOnOneRocmDevice) {
  Kernel k(rocmVariants());
  {
    // CUDA tensors are not ROCm's: the message names kDLROCM.
    RocmCall call({kDLCUDA, 0});
    expectError(call, &k.desc, ATTN_ERROR_DEVICE,
                {"q: tensor is on kDLCUDA, expected ROCm device memory "
                 "(kDLROCM)"});
  }
  struct Case {
    Tensor Call::*tensor;
    DLDevice device;
    std::string message;
  };
  const Case cases[] = {
      {&Call::q,
       {kDLCPU, 0},
       "q: tensor is on kDLCPU, expected ROCm device memory (kDLROCM)"},
      {&Call::k, {kDLCUDAManaged, 0}, "k: tensor is on kDLCUDAManaged"},
      // Pinned host memory is host memory (attn_run runs the CPU code).
      {&Call::o, {kDLROCMHost, 0}, "o: tensor is on kDLROCMHost"},
      {&Call::lse, {kDLCUDA, 0}, "lse: tensor is on kDLCUDA"},
      {&Call::doc,
       {kDLROCM, 1},
       "doc: tensor is on ROCm device 1, expected device 0 (the device of "
       "q); all tensors must be on one device"},
      {&Call::q, {kDLROCM, -1}, "q: device_id is -1, expected >= 0"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.message);
    RocmCall call;
    (call.*c.tensor).t.device = c.device;
    expectError(call, &k.desc, ATTN_ERROR_DEVICE, {c.message});
  }
}

TEST_F(RocmValidation, MessagesNameRocm) {
  Kernel k(rocmVariants());
  RocmCall call;
  k.desc.image = nullptr;
  expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT,
              {"image is NULL (not compiled for ROCm)"});
  Kernel f32Kernel(rocmVariants(), ATTN_F32);
  expectError(call, &f32Kernel.desc, ATTN_ERROR_UNSUPPORTED,
              {"ROCm kernels take bf16 or f16 q, k, v"});
  Kernel scratch({{"attn_fwd_d64", 64, 64, 256, 32768, 6144, 0}});
  expectError(call, &scratch.desc, ATTN_ERROR_UNSUPPORTED,
              {"attn_rocm_run_backward"});
}

/// AMD GPUs have 64 KiB of LDS per workgroup: a variant asking for more is
/// refused before HIP (CUDA's opt-in past 48 KiB does not apply).
TEST_F(RocmValidation, LdsPast64KiBIsRefused) {
  Kernel k({{"attn_fwd_d64", 64, 64, 256, 65537}});
  RocmCall call;
  expectError(call, &k.desc, ATTN_ERROR_UNSUPPORTED,
              {"kernel 'test_kernel': variant 'attn_fwd_d64' asks for 65537 "
               "bytes of shared memory (shared_mem_bytes), more than the "
               "65536 a ROCm block can have (AMD GPUs have 64 KiB of LDS per "
               "workgroup)"});
  // Only the variant chosen matters: d64 fits, d128 does not.
  Kernel mixed({{"attn_fwd_d64", 64, 64, 256, 65536},
                {"attn_fwd_d128", 128, 64, 256, 98304}});
  call.Dqk = 128;
  call.reshape();
  expectError(call, &mixed.desc, ATTN_ERROR_UNSUPPORTED,
              {"'attn_fwd_d128' asks for 98304 bytes"});
}

/// hipModuleLaunchKernel takes the grid in blocks but computes the global
/// size (blocks * threads) in 32 bits, in x and in y.
TEST_F(RocmValidation, GridLimitsAreHips) {
  Kernel k({{"attn_fwd_d8", 8, 1, 128, 0}});
  {
    // 2^25 blocks of 128 threads: 2^32 threads.
    RocmCall call = shapedCall(1, 1, 1, int64_t(1) << 25, 1, 8);
    expectError(call, &k.desc, ATTN_ERROR_SHAPE,
                {"q: ceil(N / block_q) = 33554432 blocks of 128 threads are "
                 "more than 4294967295 threads (the ROCm grid's x dimension "
                 "counts threads in 32 bits)"});
  }
  {
    // B * Hq = 2^32 blocks in y.
    RocmCall call = shapedCall(65536, 65536, 1, 1, 1, 8);
    expectError(call, &k.desc, ATTN_ERROR_SHAPE,
                {"q: B * Hq = 4294967296 is more than 4294967295 (the ROCm "
                 "grid's y dimension)"});
  }
}

/// The softmax kernels read each (b, kv head) slice of k and v through one
/// buffer resource, whose range is 32 bits: 2^28 rows of 8 bf16 are 4 GiB,
/// one byte too many (one row fewer launches: RocmRun.ABufferRangeFits).
TEST_F(RocmValidation, KAndVSlicesFitABufferRange) {
  Kernel k({{"attn_fwd_d8", 8, 1, 128, 0}});
  RocmCall call = shapedCall(1, 1, 1, 1, int64_t(1) << 28, 8);
  expectError(call, &k.desc, ATTN_ERROR_SHAPE,
              {"k: a (batch, head) slice spans 268435456 rows of stride 8 "
               "elements, more than the 4294967295 bytes a ROCm buffer "
               "resource can address (32-bit range); split the sequence"});
}

/// Invalid calls in a fresh process (a death test re-runs this binary for
/// the one test): none loads HIP.
bool invalidCallsLeaveHipUnloaded() {
  bool ok = true;
  Kernel k(rocmVariants());
  auto expect = [&](attn_status_t got, attn_status_t want, const char *what) {
    if (got != want) {
      std::fprintf(stderr, "%s: %s (%s)\n", what, attn_status_string(got),
                   attn_last_error());
      ok = false;
    }
  };
  RocmCall cuda({kDLCUDA, 0});
  expect(cuda.run(&k.desc), ATTN_ERROR_DEVICE, "CUDA tensors");
  Kernel lds({{"attn_fwd_d64", 64, 64, 256, 70000}});
  RocmCall call;
  expect(call.run(&lds.desc), ATTN_ERROR_UNSUPPORTED, "70000 bytes of LDS");
  expect(call.run(nullptr), ATTN_ERROR_INVALID_ARGUMENT, "no kernel");
  BwdKernel bwd(rocmBackwardVariants());
  RocmBwdCall back;
  back.dq.strides = {4 * 100 * 72, 100 * 72, 72, 1};
  expect(back.run(&bwd.desc), ATTN_ERROR_LAYOUT, "padded dq");
  const FakeHipState &s = state();
  if (s.init_calls || s.get_device_calls || s.module_load_calls ||
      s.launch_calls || s.memset_calls || s.alloc_calls) {
    std::fprintf(stderr, "HIP touched: %d hipInit, %d launches\n", s.init_calls,
                 s.launch_calls);
    ok = false;
  }
  return ok;
}

TEST(RocmFreshProcess, InvalidCallsDoNotLoadHip) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::exit(invalidCallsLeaveHipUnloaded() ? 0 : 1),
              ::testing::ExitedWithCode(0), "");
}

//===----------------------------------------------------------------------===//
// The forward's launch
//===----------------------------------------------------------------------===//

TEST_F(RocmRun, LaunchGeometryLdsAndStream) {
  Kernel k(rocmVariants());
  RocmCall call;
  void *stream = reinterpret_cast<void *>(0xabc0);
  ASSERT_EQ(call.run(&k.desc, stream), ATTN_OK) << lastError();
  EXPECT_STREQ(attn_last_error(), "");
  const FakeHipLaunch &l = lastLaunch();
  EXPECT_STREQ(l.function, "attn_fwd_d64");
  EXPECT_EQ(l.image, k.desc.image);
  EXPECT_EQ(l.grid[0], 2u); // ceil(N = 100 / 64)
  EXPECT_EQ(l.grid[1], 8u); // B * Hq
  EXPECT_EQ(l.grid[2], 1u);
  EXPECT_EQ(l.block[0], 256u);
  EXPECT_EQ(l.block[1], 1u);
  EXPECT_EQ(l.block[2], 1u);
  EXPECT_EQ(l.shared_mem_bytes, 32768u);
  EXPECT_EQ(l.stream, stream);
  EXPECT_TRUE(l.extra_is_null);
  EXPECT_EQ(l.device, 0);
  EXPECT_EQ(l.module_device, 0);

  // NULL: the null stream, passed through.
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(lastLaunch().stream, nullptr);

  // HIP's grid.y is not CUDA's 65535.
  RocmCall wide;
  wide.B = 2;
  wide.Hq = 40000;
  wide.Hkv = 1;
  wide.N = 1;
  wide.M = 1;
  wide.reshape();
  ASSERT_EQ(wide.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(lastLaunch().grid[1], 80000u);
  EXPECT_EQ(lastLaunch().grid[0], 1u);

  // Exactly 64 KiB of LDS and just under 2^32 threads in x launch.
  Kernel edge({{"attn_fwd_d8", 8, 1, 128, 65536}});
  RocmCall tall;
  tall.B = 1;
  tall.Hq = 1;
  tall.Hkv = 1;
  tall.N = (int64_t(1) << 25) - 1;
  tall.M = 1;
  tall.Dqk = 8;
  tall.Dv = 8;
  tall.reshape();
  ASSERT_EQ(tall.run(&edge.desc), ATTN_OK) << lastError();
  EXPECT_EQ(lastLaunch().grid[0], (1u << 25) - 1);
  EXPECT_EQ(lastLaunch().shared_mem_bytes, 65536u);
}

/// 2^28 - 1 rows of 8 bf16: the largest k and v slices a buffer range
/// holds (RocmValidation.KAndVSlicesFitABufferRange).
TEST_F(RocmRun, ABufferRangeFits) {
  Kernel k({{"attn_fwd_d8", 8, 1, 128, 0}});
  RocmCall call = shapedCall(1, 1, 1, 1, (int64_t(1) << 28) - 1, 8);
  EXPECT_EQ(call.run(&k.desc), ATTN_OK) << attn_last_error();
  EXPECT_EQ(state().launch_calls, 1);
}

TEST_F(RocmRun, PacksEveryDescriptorField) {
  Kernel k(rocmVariants());
  RocmCall call; // B=2 Hq=4 Hkv=2 N=100 M=77 Dqk=64 Dv=48
  // q: padded rows (72), sliced by byte_offset 32 (16 elements).
  call.q.strides = {4 * 100 * 72, 100 * 72, 72, 1};
  call.q.t.byte_offset = 32;
  // v: broadcast over B, heads interleaved. lse: [B, N, Hq] storage.
  call.v.strides = {0, 48, 2 * 48, 1};
  call.lse.strides = {100 * 4, 1, 4};
  // doc: padded rows, 3 elements in.
  call.doc.strides = {128, 1};
  call.doc.t.byte_offset = 12;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();

  ASSERT_EQ(lastLaunch().num_params, 60);
  const int64_t q = Call::kQ, kk = Call::kK, v = Call::kV, o = Call::kO,
                lse = Call::kLse, doc = Call::kDoc;
  // { allocated, aligned (= data + byte_offset), offset 0, sizes, strides }
  EXPECT_EQ(params(0, 11),
            (Words{q, q + 32, 0, 2, 4, 100, 64, 28800, 7200, 72, 1}));
  EXPECT_EQ(params(11, 11),
            (Words{kk, kk, 0, 2, 2, 77, 64, 2 * 77 * 64, 77 * 64, 64, 1}));
  EXPECT_EQ(params(22, 11), (Words{v, v, 0, 2, 2, 77, 48, 0, 48, 96, 1}));
  EXPECT_EQ(params(33, 11),
            (Words{o, o, 0, 2, 4, 100, 48, 4 * 100 * 48, 100 * 48, 48, 1}));
  EXPECT_EQ(params(44, 9), (Words{lse, lse, 0, 2, 4, 100, 400, 1, 4}));
  EXPECT_EQ(params(53, 7), (Words{doc, doc + 12, 0, 2, 100, 128, 1}));

  // No lse: NULL pointers, compact strides.
  call.withLse = false;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(params(44, 9), (Words{0, 0, 0, 2, 4, 100, 400, 100, 1}));
}

TEST_F(RocmRun, SelectsTheSmallestVariantThatFits) {
  Kernel k(rocmVariants());
  struct Case {
    int64_t dqk, dv;
    const char *function;
    unsigned gridX, threads, lds;
  };
  const Case cases[] = {{64, 48, "attn_fwd_d64", 2, 256, 32768},
                        {8, 64, "attn_fwd_d64", 2, 256, 32768},
                        {72, 64, "attn_fwd_d128", 4, 256, 65536},
                        {128, 128, "attn_fwd_d128", 4, 256, 65536},
                        {64, 136, "attn_fwd_d256", 7, 512, 65536},
                        {256, 256, "attn_fwd_d256", 7, 512, 65536}};
  for (const Case &c : cases) {
    SCOPED_TRACE(::testing::Message() << "Dqk=" << c.dqk << " Dv=" << c.dv);
    RocmCall call;
    call.Dqk = c.dqk;
    call.Dv = c.dv;
    call.reshape();
    ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
    EXPECT_STREQ(lastLaunch().function, c.function);
    EXPECT_EQ(lastLaunch().grid[0], c.gridX);
    EXPECT_EQ(lastLaunch().block[0], c.threads);
    EXPECT_EQ(lastLaunch().shared_mem_bytes, c.lds);
    EXPECT_EQ(params(3, 4), (Words{2, 4, 100, c.dqk}));
  }
  RocmCall tooWide;
  tooWide.Dqk = 264;
  tooWide.reshape();
  EXPECT_EQ(tooWide.run(&k.desc), ATTN_ERROR_UNSUPPORTED);
  EXPECT_CONTAINS(lastError(), "largest supported head dim is 256");
}

TEST_F(RocmRun, CachesModulesPerDeviceAndFunctionsPerModule) {
  Kernel k(rocmVariants());
  FakeHipState &s = state();
  int loads = s.module_load_calls, gets = s.get_function_calls;
  RocmCall call;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.module_load_calls, loads + 1);
  EXPECT_EQ(s.last_loaded_image, k.desc.image);
  EXPECT_EQ(s.get_function_calls, gets + 1);
  // Another variant: the same module, one more function.
  call.Dqk = 128;
  call.reshape();
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.module_load_calls, loads + 1);
  EXPECT_EQ(s.get_function_calls, gets + 2);
  EXPECT_STREQ(s.last_requested_function, "attn_fwd_d128");
  // Device 1: the image is loaded again, there.
  RocmCall one({kDLROCM, 1});
  ASSERT_EQ(one.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.module_load_calls, loads + 2);
  EXPECT_EQ(s.last_loaded_device, 1);
  EXPECT_EQ(lastLaunch().module_device, 1);
  ASSERT_EQ(one.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.module_load_calls, loads + 2);
  // Another image: another module.
  Kernel other(rocmVariants());
  ASSERT_EQ(call.run(&other.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.module_load_calls, loads + 3);
  EXPECT_EQ(lastLaunch().image, other.desc.image);
}

//===----------------------------------------------------------------------===//
// The calling thread's current device
//===----------------------------------------------------------------------===//

TEST_F(RocmRun, TheTensorsDeviceIsMadeCurrentAndTheCallersRestored) {
  Kernel k(rocmVariants());
  FakeHipState &s = state();
  // Current 1, tensors on 0: launched on 0, then 1 is current again.
  fake().setCurrent(1);
  RocmCall call;
  int sets = s.set_device_calls;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(lastLaunch().device, 0);
  EXPECT_EQ(lastLaunch().module_device, 0);
  EXPECT_EQ(fake().current(), 1);
  EXPECT_EQ(s.set_device_calls, sets + 2);
  // Already current: no hipSetDevice at all.
  fake().setCurrent(0);
  sets = s.set_device_calls;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.set_device_calls, sets);
  EXPECT_EQ(fake().current(), 0);
  // Current 0, tensors on 1.
  RocmCall one({kDLROCM, 1});
  ASSERT_EQ(one.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(lastLaunch().device, 1);
  EXPECT_EQ(fake().current(), 0);
}

TEST_F(RocmRun, TheCallersDeviceIsRestoredOnErrorPaths) {
  Kernel k(rocmVariants());
  FakeHipState &s = state();
  RocmCall call;
  fake().setCurrent(1);
  // A failed launch.
  failNext("hipModuleLaunchKernel", 700);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(), "hipModuleLaunchKernel failed");
  EXPECT_EQ(lastLaunch().device, 0);
  EXPECT_EQ(fake().current(), 1);
  // A failed module load (a new image: nothing cached for it).
  Kernel fresh(rocmVariants());
  failNext("hipModuleLoadData", 200);
  EXPECT_EQ(call.run(&fresh.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(), "hipModuleLoadData failed: device kernel image "
                               "is invalid (HIP error 200) (kernel "
                               "'test_kernel')");
  EXPECT_EQ(fake().current(), 1);
  // The failure is not cached.
  int loads = s.module_load_calls;
  ASSERT_EQ(call.run(&fresh.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.module_load_calls, loads + 1);
  EXPECT_EQ(fake().current(), 1);
  // A function missing from the image.
  Kernel missing(rocmVariants());
  static const std::string unrelated = "something_else=60\n";
  missing.desc.image = unrelated.c_str();
  missing.desc.image_size = unrelated.size() + 1;
  EXPECT_EQ(call.run(&missing.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(), "hipModuleGetFunction failed: named symbol "
                               "not found (HIP error 500) ('attn_fwd_d64' of "
                               "kernel 'test_kernel')");
  EXPECT_EQ(fake().current(), 1);
  // Switching itself fails: the caller's device was never left.
  int sets = s.set_device_calls;
  failNext("hipSetDevice", 101);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(), "hipSetDevice failed: invalid device ordinal "
                               "(HIP error 101) (device 0)");
  EXPECT_EQ(s.set_device_calls, sets + 1);
  EXPECT_EQ(fake().current(), 1);
}

TEST_F(RocmRun, AFailedRestoreIsReported) {
  Kernel k(rocmVariants());
  RocmCall call;
  fake().setCurrent(1);
  // The switch passes, putting device 1 back fails: the kernel is queued,
  // but the caller must know its thread is on another device.
  failNext("hipSetDevice", 101, 1);
  int launches = state().launch_calls;
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(), "hipSetDevice failed: invalid device ordinal "
                               "(HIP error 101) (restoring the calling "
                               "thread's device 1 after the launch was "
                               "queued)");
  EXPECT_EQ(state().launch_calls, launches + 1);
  EXPECT_EQ(fake().current(), 0);
}

TEST_F(RocmRun, DeviceIdPastTheCount) {
  Kernel k(rocmVariants());
  FakeHipState &s = state();
  int launches = s.launch_calls, sets = s.set_device_calls;
  RocmCall far({kDLROCM, 5});
  EXPECT_EQ(far.run(&k.desc), ATTN_ERROR_DEVICE);
  EXPECT_CONTAINS(lastError(), "q: tensor is on ROCm device 5, but the HIP "
                               "runtime reports 2 device(s)");
  EXPECT_EQ(s.launch_calls, launches);
  EXPECT_EQ(s.set_device_calls, sets);
  EXPECT_EQ(fake().current(), 0);
  // HIP reporting no count at all.
  failNext("hipGetDeviceCount", 3);
  EXPECT_EQ(far.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(), "hipGetDeviceCount failed: initialization "
                               "error (HIP error 3)");
}

TEST_F(RocmRun, HipErrorsBecomeDriverStatus) {
  Kernel k(rocmVariants());
  RocmCall call;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  failNext("hipModuleLaunchKernel", 700);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(),
                  "hipModuleLaunchKernel failed: an illegal memory access was "
                  "encountered (HIP error 700) ('attn_fwd_d64' of kernel "
                  "'test_kernel')");
  EXPECT_EQ(lastError().find('\n'), std::string::npos);
  // The next call works again.
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_STREQ(attn_last_error(), "");
  failNext("hipGetDevice", 3);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(), "hipGetDevice failed: initialization error");
}

TEST_F(RocmRun, AvailableAndInitializedOnce) {
  Kernel k(rocmVariants());
  RocmCall call;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(attn_rocm_available(), 1);
  EXPECT_STREQ(attn_last_error(), "");
  state().device_count = 0;
  EXPECT_EQ(attn_rocm_available(), 0);
  EXPECT_CONTAINS(lastError(), "no ROCm device: hipGetDeviceCount reports 0");
  EXPECT_EQ(state().init_calls, 1);
}

TEST_F(RocmRun, ConcurrentCallsKeepEachThreadsDevice) {
  Kernel k(rocmVariants());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      fake().setCurrent(t % 2);
      for (int i = 0; i < 25; ++i) {
        RocmCall call({kDLROCM, (t + i) % 2});
        call.Dqk = i % 3 ? 64 : 128;
        call.reshape();
        if (call.run(&k.desc) != ATTN_OK || fake().current() != t % 2)
          ++failures;
      }
    });
  for (std::thread &t : threads)
    t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(state().launch_calls, 200);
}

//===----------------------------------------------------------------------===//
// The backward
//===----------------------------------------------------------------------===//

TEST_F(RocmRun, BackwardZeroesGradientsBeforeTheLaunchOnItsStream) {
  BwdKernel k(rocmBackwardVariants());
  RocmBwdCall call;
  call.dq.t.byte_offset = 64;
  call.dslope.t.byte_offset = 4;
  fake().setCurrent(1);
  void *stream = reinterpret_cast<void *>(0xabc0);
  ASSERT_EQ(call.run(&k.desc, stream), ATTN_OK) << lastError();
  const FakeHipState &s = state();
  ASSERT_EQ(s.memset_calls, 3);
  ASSERT_EQ(s.launch_calls, 1);
  struct Want {
    uintptr_t dst;
    uint64_t count;
  };
  const Want want[] = {{BwdCall::kDq + 64, 2 * 4 * 100 * 64},
                       {BwdCall::kDtable, 4 * 32},
                       {BwdCall::kDslope + 4, 4}};
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    const FakeHipMemset &m = s.memsets[i];
    EXPECT_EQ(reinterpret_cast<uintptr_t>(m.dst), want[i].dst);
    EXPECT_EQ(m.value, 0);
    EXPECT_EQ(m.count, want[i].count);
    EXPECT_EQ(m.stream, stream);
    EXPECT_EQ(m.device, 0); // the tensors', not the caller's
    EXPECT_LT(m.sequence, lastLaunch().sequence);
    if (i > 0)
      EXPECT_LT(s.memsets[i - 1].sequence, m.sequence);
  }
  const FakeHipLaunch &l = lastLaunch();
  EXPECT_STREQ(l.function, "attn_test_bwd_d64");
  EXPECT_EQ(l.stream, stream);
  EXPECT_EQ(l.device, 0);
  EXPECT_EQ(l.grid[0], 2u); // ceil(M = 77 / 64)
  EXPECT_EQ(l.grid[1], 4u); // B * Hkv
  EXPECT_EQ(l.block[0], 256u);
  EXPECT_EQ(l.shared_mem_bytes, 32768u);
  ASSERT_EQ(l.num_params, PEnd);
  EXPECT_EQ(params(PDq, 11),
            compactDesc(BwdCall::kDq, {2, 4, 100, 64}, /*byteOffset=*/64));
  EXPECT_EQ(params(PDslope, 5), compactDesc(BwdCall::kDslope, {4}, 4));
  EXPECT_EQ(fake().current(), 1);

  // A failed memset: nothing is launched, the caller's device is back.
  state().memset_calls = 0;
  int launches = s.launch_calls;
  failNext("hipMemsetD32Async", 1);
  EXPECT_EQ(call.run(&k.desc, stream), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(), "hipMemsetD32Async failed: invalid argument "
                               "(HIP error 1) (zeroing dq of kernel "
                               "'test_bwd')");
  EXPECT_EQ(s.memset_calls, 1);
  EXPECT_EQ(s.launch_calls, launches);
  EXPECT_EQ(fake().current(), 1);
}

/// The linear family's kernels take global scratch: hipMallocAsync on the
/// caller's stream before the launch, the last parameter, hipFreeAsync
/// after it.
TEST_F(RocmRun, BackwardScratchAroundTheLaunch) {
  BwdKernel k({{"attn_test_bwd_d64", 64, 1 << 30, 96, 12, 6144, 1352}});
  RocmBwdCall call; // B=2 Hkv=2 N=100: r = 10, 10 checkpoints
  void *stream = reinterpret_cast<void *>(0xabc0);
  FakeHipState &s = state();
  int allocs = s.alloc_calls, frees = s.free_calls;
  ASSERT_EQ(call.run(&k.desc, stream), ATTN_OK) << lastError();
  const uint64_t bytes = ((10 + 10 + 2) * 6144 + 1352) * 4 * (1 * 2 * 2);
  EXPECT_EQ(s.alloc_calls, allocs + 1);
  EXPECT_EQ(s.free_calls, frees + 1);
  EXPECT_EQ(s.live_allocs, 0);
  EXPECT_EQ(s.last_alloc_bytes, bytes);
  EXPECT_EQ(s.last_alloc_stream, stream);
  EXPECT_EQ(s.last_alloc_device, 0);
  EXPECT_EQ(s.last_free_stream, stream);
  EXPECT_EQ(s.last_free_ptr, s.last_alloc_ptr);
  const FakeHipLaunch &l = lastLaunch();
  EXPECT_LT(s.last_alloc_sequence, l.sequence);
  EXPECT_LT(l.sequence, s.last_free_sequence);
  ASSERT_EQ(l.num_params, k.numParams());
  const auto p = int64_t(reinterpret_cast<uintptr_t>(s.last_alloc_ptr));
  EXPECT_EQ(params(PEnd, 5), (Words{p, p, 0, int64_t(bytes), 1}));
}

TEST_F(RocmRun, BackwardScratchFailures) {
  BwdKernel k({{"attn_test_bwd_d64", 64, 1 << 30, 96, 12, 6144, 1352}});
  RocmBwdCall call;
  FakeHipState &s = state();
  fake().setCurrent(1);
  // hipErrorOutOfMemory: OUT_OF_MEMORY, nothing launched or left allocated.
  int launches = s.launch_calls;
  failNext("hipMallocAsync", 2);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_OUT_OF_MEMORY);
  EXPECT_CONTAINS(lastError(), "hipMallocAsync failed: out of memory (HIP "
                               "error 2)");
  EXPECT_CONTAINS(lastError(), "scratch");
  EXPECT_EQ(s.launch_calls, launches);
  EXPECT_EQ(s.live_allocs, 0);
  EXPECT_EQ(fake().current(), 1);
  // Another allocation failure is a HIP error.
  failNext("hipMallocAsync", 1);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_EQ(s.launch_calls, launches);
  // A failed launch still frees it.
  int frees = s.free_calls;
  failNext("hipModuleLaunchKernel", 700);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(), "hipModuleLaunchKernel failed");
  EXPECT_EQ(s.free_calls, frees + 1);
  EXPECT_EQ(s.live_allocs, 0);
  EXPECT_LT(lastLaunch().sequence, s.last_free_sequence);
  EXPECT_EQ(fake().current(), 1);
  // A failed free is reported.
  failNext("hipFreeAsync", 1);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(), "hipFreeAsync failed");
  s.live_allocs = 0; // the fake kept the one whose free failed
}

TEST_F(RocmRun, BackwardLimitsAreRocms) {
  BwdKernel k(rocmBackwardVariants());
  FakeHipState &s = state();
  int launches = s.launch_calls;
  // CUDA tensors.
  RocmBwdCall cuda({kDLCUDA, 0});
  EXPECT_EQ(cuda.run(&k.desc), ATTN_ERROR_DEVICE);
  EXPECT_CONTAINS(lastError(), "expected ROCm device memory (kDLROCM)");
  // More than 64 KiB of LDS.
  BwdKernel big({{"attn_test_bwd_d64", 64, 64, 256, 65540}});
  RocmBwdCall call;
  EXPECT_EQ(call.run(&big.desc), ATTN_ERROR_UNSUPPORTED);
  EXPECT_CONTAINS(lastError(), "64 KiB of LDS");
  EXPECT_EQ(s.launch_calls, launches);
  // B * Hkv past CUDA's 65535 is fine on ROCm.
  RocmBwdCall wide;
  wide.B = 2;
  wide.Hq = 40000;
  wide.Hkv = 40000;
  wide.N = 1;
  wide.M = 1;
  wide.Dqk = 8;
  wide.Dv = 8;
  wide.reshape();
  ASSERT_EQ(wide.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(lastLaunch().grid[1], 80000u);
}

//===----------------------------------------------------------------------===//
// attn_run
//===----------------------------------------------------------------------===//

TEST_F(RocmRun, AttnRunGivesRocmTensorsToTheRocmCode) {
  Kernel k(rocmVariants());
  // A CPU target without code: a call that reached it would be refused.
  attn_kernel_desc_t cpu{};
  cpu.abi_version = ATTN_ABI_VERSION;
  cpu.name = "test_kernel";
  attn_kernel_target_t targets[] = {{kDLCPU, &cpu}, {kDLROCM, &k.desc}};
  attn_kernel_t any{ATTN_ABI_VERSION, "test_kernel", 2, targets};
  RocmCall call;
  auto run = [&](void *stream) {
    const DLTensor *ins[] = {call.q.get(), call.k.get(), call.v.get(),
                             call.doc.get()};
    return attn_run(&any, ins, call.o.get(), call.lse.get(), nullptr, stream);
  };
  fake().setCurrent(1);
  void *stream = reinterpret_cast<void *>(0xabc0);
  int launches = state().launch_calls;
  ASSERT_EQ(run(stream), ATTN_OK) << lastError();
  EXPECT_EQ(state().launch_calls, launches + 1);
  EXPECT_EQ(lastLaunch().image, k.desc.image);
  EXPECT_EQ(lastLaunch().stream, stream);
  EXPECT_EQ(lastLaunch().device, 0);
  EXPECT_EQ(fake().current(), 1);
  // Pinned ROCm host memory is host memory: the CPU target's.
  call.setDevice({kDLROCMHost, 0});
  EXPECT_EQ(run(stream), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_CONTAINS(lastError(), "cpu_fn is NULL");
  EXPECT_EQ(state().launch_calls, launches + 1);
  // No ROCm code.
  call.setDevice({kDLROCM, 0});
  any.num_targets = 1;
  EXPECT_EQ(run(stream), ATTN_ERROR_DEVICE);
  EXPECT_CONTAINS(lastError(), "has no code for q's device (rocm); it was "
                               "compiled for: cpu");
}

extern "C" int attn_test_rocm_c_header(void);

TEST(RocmHeader, CompilesAsC) { EXPECT_EQ(attn_test_rocm_c_header(), 1); }

} // namespace

int main(int argc, char **argv) {
  // Before the first ROCm call: the runtime reads it once.
  setenv("ATTN_HIP_LIBRARY", ATTN_FAKE_HIP_LIBRARY, 1);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
