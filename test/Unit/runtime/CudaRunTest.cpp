//===- CudaRunTest.cpp - tests for attn_cuda_run with a fake driver -------===//
//
// Runs with ATTN_CUDA_DRIVER naming the fake driver (FakeCudaDriver.cpp), so
// the whole path runs on a machine without a GPU: every validation error's
// code and message (and that the driver saw nothing), the kernel parameters
// exactly as launched, grid/block/shared memory/stream, variant selection,
// the module and function caches, the shared-memory opt-in, contexts, and
// driver errors coming back as ATTN_ERROR_DRIVER.
//
//===----------------------------------------------------------------------===//

#include "CudaTestUtil.h"
#include "FakeCudaAccess.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <string>
#include <thread>
#include <vector>

#ifndef ATTN_FAKE_CUDA_DRIVER
#error "ATTN_FAKE_CUDA_DRIVER must name the fake driver library"
#endif

using namespace attn_test;

/// Expects \p sub in \p str, printing both otherwise.
#define EXPECT_CONTAINS(str, sub)                                              \
  EXPECT_NE(std::string(str).find(sub), std::string::npos)                     \
      << "expected \"" << (sub) << "\" in \"" << (str) << "\""

namespace {

/// Each test starts with no current context on this thread, no injected
/// failure and two devices.
class CudaRun : public ::testing::Test {
protected:
  void SetUp() override { resetFake(); }
};

//===----------------------------------------------------------------------===//
// Validation: each error's code and message, and the driver untouched
//===----------------------------------------------------------------------===//

class CudaValidation : public CudaRun {
protected:
  void SetUp() override {
    CudaRun::SetUp();
    loadsBefore = state().module_load_calls;
    launchesBefore = state().launch_calls;
    retainsBefore = state().primary_retain_calls;
  }
  void TearDown() override {
    EXPECT_EQ(state().module_load_calls, loadsBefore);
    EXPECT_EQ(state().launch_calls, launchesBefore);
    EXPECT_EQ(state().primary_retain_calls, retainsBefore);
  }
  /// Runs \p call and expects \p code with a message containing each of
  /// \p parts.
  void expectError(Call &call, const attn_cuda_kernel_desc_t *k,
                   attn_status_t code, std::vector<std::string> parts) {
    attn_status_t st = call.run(k);
    EXPECT_EQ(st, code) << attn_status_string(st) << ": " << lastError();
    for (const std::string &p : parts)
      EXPECT_CONTAINS(lastError(), (p));
    EXPECT_EQ(lastError().find('\n'), std::string::npos);
  }
  int loadsBefore = 0, launchesBefore = 0, retainsBefore = 0;
};

TEST_F(CudaValidation, NullKernelAndPointers) {
  Call call;
  expectError(call, nullptr, ATTN_ERROR_INVALID_ARGUMENT,
              {"kernel: descriptor is NULL"});
  Kernel k(standardVariants());
  const DLTensor *ins[] = {call.q.get(), call.k.get(), call.v.get(),
                           call.doc.get()};
  EXPECT_EQ(attn_cuda_run(&k.desc, nullptr, call.o.get(), nullptr, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_CONTAINS(lastError(), ("inputs: array is NULL"));
  EXPECT_EQ(attn_cuda_run(&k.desc, ins, nullptr, nullptr, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_CONTAINS(lastError(), ("o: tensor is NULL"));
  const DLTensor *withNull[] = {call.q.get(), call.k.get(), nullptr,
                                call.doc.get()};
  EXPECT_EQ(attn_cuda_run(&k.desc, withNull, call.o.get(), nullptr, nullptr),
            ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_CONTAINS(lastError(), ("v: tensor is NULL (inputs[2])"));
  call.q.t.data = nullptr;
  expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT, {"q: data is NULL"});
}

TEST_F(CudaValidation, KernelDescriptor) {
  Call call;
  {
    Kernel k(standardVariants());
    k.desc.abi_version = ATTN_ABI_VERSION + 1;
    expectError(call, &k.desc, ATTN_ERROR_UNSUPPORTED,
                {"kernel 'test_kernel'", "ABI version"});
  }
  {
    Kernel k(standardVariants());
    k.desc.image = nullptr;
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT, {"image is NULL"});
  }
  {
    Kernel k(standardVariants());
    k.desc.image_size = 0;
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT,
                {"image_size is 0"});
  }
  {
    Kernel k(standardVariants());
    k.desc.num_variants = 0;
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT, {"no variants"});
    k.desc.num_variants = 3;
    k.desc.variants = nullptr;
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT,
                {"variants is NULL"});
  }
  {
    Kernel k(standardVariants());
    k.variants[1].function = nullptr;
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT,
                {"variants[1] has no function"});
  }
  for (int field = 0; field < 5; ++field) {
    Kernel k(standardVariants());
    attn_cuda_kernel_variant_t &v = k.variants[2];
    switch (field) {
    case 0:
      v.max_head_dim = 0;
      break;
    case 1:
      v.block_q = 0;
      break;
    case 2:
      v.num_threads = 0;
      break;
    case 3:
      v.num_threads = 2048;
      break;
    case 4:
      v.shared_mem_bytes = -1;
      break;
    }
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT,
                {"variants[2] 'attn_fwd_d256'"});
  }
  {
    Kernel k({{"a", 128, 64, 128, 0}, {"b", 64, 64, 128, 0}});
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT,
                {"variants[1] 'b'", "sorted by max_head_dim"});
  }
  {
    // Shared with the CPU run: q, k, v first with their canonical dims.
    Kernel k(standardVariants());
    std::swap(k.inputs[0], k.inputs[1]);
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT,
                {"inputs[0] 'k'", "expected q"});
  }
  {
    Kernel k(standardVariants());
    k.inputs[3].name = "q";
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT,
                {"inputs[3] 'q'", "used twice"});
  }
}

TEST_F(CudaValidation, QKVMustBeHalfPrecision) {
  Call call(f32());
  Kernel k(standardVariants(), ATTN_F32);
  expectError(call, &k.desc, ATTN_ERROR_UNSUPPORTED,
              {"CUDA kernels take bf16 or f16 q, k, v", "q is declared f32"});
  Kernel kv(standardVariants());
  kv.inputs[2].type = ATTN_F32;
  expectError(call, &kv.desc, ATTN_ERROR_UNSUPPORTED,
              {"CUDA kernels take bf16 or f16 q, k, v", "v is declared f32"});
  // An f16 kernel takes f16 tensors only (its launch: HalfPrecisionInputs).
  Call half(f16());
  Kernel kh(standardVariants(), ATTN_F16);
  half.q.t.dtype = bf16();
  expectError(half, &kh.desc, ATTN_ERROR_DTYPE,
              {"q: dtype is bfloat16, expected float16 (declared f16)"});
}

TEST_F(CudaValidation, LseWithoutSoftmax) {
  Call call;
  Kernel k(standardVariants());
  k.desc.has_lse = 0;
  expectError(call, &k.desc, ATTN_ERROR_UNSUPPORTED,
              {"lse: kernel 'test_kernel' cannot write lse"});
}

TEST_F(CudaValidation, Devices) {
  Kernel k(standardVariants());
  struct Case {
    Tensor Call::*tensor;
    DLDevice device;
    std::vector<std::string> parts;
  };
  std::vector<Case> cases = {
      {&Call::q,
       {kDLCPU, 0},
       {"q: tensor is on kDLCPU", "kDLCUDA or kDLCUDAManaged"}},
      {&Call::k, {kDLCUDAHost, 0}, {"k: tensor is on kDLCUDAHost"}},
      {&Call::v, {kDLROCM, 0}, {"v: tensor is on kDLROCM"}},
      {&Call::doc, {kDLCPU, 0}, {"doc: tensor is on kDLCPU"}},
      {&Call::o, {kDLCPU, 0}, {"o: tensor is on kDLCPU"}},
      {&Call::lse, {kDLCUDAHost, 0}, {"lse: tensor is on kDLCUDAHost"}},
      {&Call::k,
       {kDLCUDA, 1},
       {"k: tensor is on CUDA device 1, expected device 0 (the device of q)"}},
      {&Call::doc, {kDLCUDAManaged, 1}, {"doc: tensor is on CUDA device 1"}},
      {&Call::o, {kDLCUDA, 1}, {"o: tensor is on CUDA device 1"}},
      {&Call::lse, {kDLCUDA, 3}, {"lse: tensor is on CUDA device 3"}},
      {&Call::q, {kDLCUDA, -1}, {"q: device_id is -1"}},
  };
  for (const Case &c : cases) {
    Call call;
    (call.*c.tensor).t.device = c.device;
    expectError(call, &k.desc, ATTN_ERROR_DEVICE, c.parts);
  }
}

TEST_F(CudaValidation, DTypes) {
  Kernel k(standardVariants());
  {
    Call call;
    call.k.t.dtype = f16();
    expectError(call, &k.desc, ATTN_ERROR_DTYPE,
                {"k: dtype is float16, expected bfloat16 (declared bf16)"});
  }
  {
    Call call;
    call.doc.t.dtype = f32();
    expectError(call, &k.desc, ATTN_ERROR_DTYPE,
                {"doc: dtype is float32, expected int32"});
  }
  {
    Call call;
    call.o.t.dtype = bf16();
    expectError(call, &k.desc, ATTN_ERROR_DTYPE,
                {"o: dtype is bfloat16, expected float32"});
  }
  {
    Call call;
    call.lse.t.dtype = {kDLFloat, 32, 2};
    expectError(call, &k.desc, ATTN_ERROR_DTYPE,
                {"lse: dtype is float32x2, expected float32"});
  }
}

TEST_F(CudaValidation, Shapes) {
  Kernel k(standardVariants());
  {
    Call call;
    call.k.shape[3] = 72;
    expectError(call, &k.desc, ATTN_ERROR_SHAPE, {"Dqk", "'k' dim 3"});
  }
  {
    Call call;
    call.k.shape[1] = 3;
    call.v.shape[1] = 3;
    expectError(call, &k.desc, ATTN_ERROR_SHAPE, {"k: dim 1 (Hkv) is 3"});
  }
  {
    Call call;
    call.doc.shape[1] = 99;
    expectError(call, &k.desc, ATTN_ERROR_SHAPE, {"'N'", "'doc' dim 1"});
  }
  {
    Call call;
    call.o.shape[2] = 99;
    expectError(call, &k.desc, ATTN_ERROR_SHAPE,
                {"o: dim 2 (N) is 99, expected 100"});
  }
  {
    Call call;
    call.lse.shape.pop_back();
    call.lse.t.ndim = 2;
    expectError(call, &k.desc, ATTN_ERROR_SHAPE,
                {"lse: ndim is 2, expected 3"});
  }
  {
    Call call;
    call.q.t.ndim = 3;
    call.q.shape.pop_back();
    expectError(call, &k.desc, ATTN_ERROR_SHAPE, {"q: ndim is 3, expected 4"});
  }
  {
    // grid.y = B * Hq.
    Call call;
    call.B = 2;
    call.Hq = 40000;
    call.Hkv = 1;
    call.N = 1;
    call.M = 1;
    call.reshape();
    expectError(call, &k.desc, ATTN_ERROR_SHAPE,
                {"B * Hq = 80000 is more than 65535"});
  }
}

TEST_F(CudaValidation, QKVChunkLayout) {
  Kernel k(standardVariants());
  {
    Call call;
    call.q.strides = {call.Hq * call.N * 128, call.N * 128, 128, 2};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT,
                {"q: dim 3 (Dqk) has stride 2", "innermost stride to be 1"});
  }
  {
    // A head dim that is not a multiple of 8, stored compact.
    Call call;
    call.Dqk = 60;
    call.reshape();
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT,
                {"q: dim 2 (N) has stride 60, not a multiple of 8 elements",
                 "16-byte"});
  }
  {
    Call call;
    call.v.strides = {16000, 8000, 52, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT,
                {"v: dim 2 (M) has stride 52"});
  }
  {
    Call call;
    call.k.strides = {call.Hkv * call.M * 64 + 4, call.M * 64, 64, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"k: dim 0 (B) has stride"});
  }
  {
    Call call;
    call.k.t.byte_offset = 8;
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT,
                {"k: data + byte_offset (8) is not 16-byte aligned"});
  }
  {
    Call call;
    call.v.t.data = reinterpret_cast<void *>(Call::kV + 2);
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT,
                {"v: data + byte_offset (0) is not 16-byte aligned"});
  }
  {
    // Shared with the CPU run: element alignment, negative strides.
    Call call;
    call.q.t.byte_offset = 1;
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT,
                {"q: data + byte_offset (1) is not aligned to the 2-byte"});
  }
  {
    Call call;
    call.k.strides = {call.Hkv * call.M * 64, call.M * 64, -64, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"k: dim 2 has stride -64"});
  }
}

TEST_F(CudaValidation, OutputsMustNotOverlapThemselves) {
  Kernel k(standardVariants());
  {
    Call call;
    call.o.strides = {0, call.N * call.Dv, call.Dv, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT,
                {"o: dim 0 (B) has stride 0"});
  }
  {
    Call call;
    call.o.strides = {call.Hq * call.N * call.Dv, call.N * call.Dv, 8, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"o: strides", "overlap"});
  }
  {
    Call call;
    call.lse.strides = {call.Hq * call.N, 0, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT,
                {"lse: dim 1 (Hq) has stride 0"});
  }
}

TEST_F(CudaValidation, HeadDimTooLarge) {
  Kernel k(standardVariants());
  Call call;
  call.Dqk = 264;
  call.reshape();
  expectError(call, &k.desc, ATTN_ERROR_UNSUPPORTED,
              {"kernel 'test_kernel'", "Dqk = 264, Dv = 48",
               "largest supported head dim is 256"});
  call.Dqk = 64;
  call.Dv = 512;
  call.reshape();
  expectError(call, &k.desc, ATTN_ERROR_UNSUPPORTED,
              {"Dqk = 64, Dv = 512", "256"});
}

//===----------------------------------------------------------------------===//
// Launches through the fake driver
//===----------------------------------------------------------------------===//

/// The launch's parameters [begin, begin + n).
std::vector<int64_t> params(int begin, int n) {
  const FakeCudaLaunch &l = lastLaunch();
  return std::vector<int64_t>(l.params + begin, l.params + begin + n);
}

TEST_F(CudaRun, PacksEveryDescriptorField) {
  Kernel k(standardVariants());
  Call call; // B=2 Hq=4 Hkv=2 N=100 M=77 Dqk=64 Dv=48
  // q: padded rows (72), sliced by byte_offset 32 (16 elements).
  call.q.strides = {4 * 100 * 72, 100 * 72, 72, 1};
  call.q.t.byte_offset = 32;
  // k: compact (strides NULL). v: broadcast over B, heads interleaved.
  call.v.strides = {0, 48, 2 * 48, 1};
  // o: compact. lse: [B, N, Hq] storage.
  call.lse.strides = {100 * 4, 1, 4};
  // doc: i32 with a byte offset of 3 elements, padded rows.
  call.doc.strides = {128, 1};
  call.doc.t.byte_offset = 12;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_STREQ(attn_last_error(), "");

  const FakeCudaLaunch &l = lastLaunch();
  ASSERT_EQ(l.num_params, 60);
  using V = std::vector<int64_t>;
  const int64_t q = Call::kQ, kk = Call::kK, v = Call::kV, o = Call::kO,
                lse = Call::kLse, doc = Call::kDoc;
  // { allocated, aligned (= data + byte_offset), offset 0, sizes, strides }
  EXPECT_EQ(params(0, 11),
            (V{q, q + 32, 0, 2, 4, 100, 64, 28800, 7200, 72, 1}));
  EXPECT_EQ(params(11, 11),
            (V{kk, kk, 0, 2, 2, 77, 64, 2 * 77 * 64, 77 * 64, 64, 1}));
  EXPECT_EQ(params(22, 11), (V{v, v, 0, 2, 2, 77, 48, 0, 48, 96, 1}));
  EXPECT_EQ(params(33, 11),
            (V{o, o, 0, 2, 4, 100, 48, 4 * 100 * 48, 100 * 48, 48, 1}));
  EXPECT_EQ(params(44, 9), (V{lse, lse, 0, 2, 4, 100, 400, 1, 4}));
  EXPECT_EQ(params(53, 7), (V{doc, doc + 12, 0, 2, 100, 128, 1}));
}

TEST_F(CudaRun, NullLsePassesNullPointersAndCompactStrides) {
  Kernel k(standardVariants());
  Call call;
  call.withLse = false;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  using V = std::vector<int64_t>;
  EXPECT_EQ(params(44, 9), (V{0, 0, 0, 2, 4, 100, 400, 100, 1}));
  // The aux input still follows it.
  EXPECT_EQ(params(53, 7),
            (V{int64_t(Call::kDoc), int64_t(Call::kDoc), 0, 2, 100, 100, 1}));
}

TEST_F(CudaRun, LaunchGeometryAndStream) {
  Kernel k(standardVariants());
  Call call;
  void *stream = reinterpret_cast<void *>(0xabc0);
  ASSERT_EQ(call.run(&k.desc, stream), ATTN_OK) << lastError();
  const FakeCudaLaunch &l = lastLaunch();
  EXPECT_STREQ(l.function, "attn_fwd_d64");
  EXPECT_EQ(l.image, k.desc.image);
  EXPECT_EQ(l.grid[0], 2u); // ceil(100 / 64)
  EXPECT_EQ(l.grid[1], 8u); // B * Hq
  EXPECT_EQ(l.grid[2], 1u);
  EXPECT_EQ(l.block[0], 128u);
  EXPECT_EQ(l.block[1], 1u);
  EXPECT_EQ(l.block[2], 1u);
  EXPECT_EQ(l.shared_mem_bytes, 32768u);
  EXPECT_EQ(l.stream, stream);
  EXPECT_TRUE(l.extra_is_null);
  EXPECT_EQ(l.context, fake().primary(0));

  // NULL stream: the legacy default stream, passed through as NULL.
  call.N = 1;
  call.reshape();
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(lastLaunch().stream, nullptr);
  EXPECT_EQ(lastLaunch().grid[0], 1u);

  // The largest grid.y.
  call.B = 1;
  call.Hq = 65535;
  call.Hkv = 5;
  call.N = 129;
  call.M = 1;
  call.reshape();
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(lastLaunch().grid[0], 3u);
  EXPECT_EQ(lastLaunch().grid[1], 65535u);
}

TEST_F(CudaRun, SelectsTheSmallestVariantThatFits) {
  Kernel k(standardVariants());
  struct Case {
    int64_t dqk, dv;
    const char *function;
    unsigned gridX, threads, shared;
  };
  for (const Case &c : {Case{64, 48, "attn_fwd_d64", 2, 128, 32768},
                        Case{8, 64, "attn_fwd_d64", 2, 128, 32768},
                        Case{72, 64, "attn_fwd_d128", 2, 128, 65536},
                        Case{128, 128, "attn_fwd_d128", 2, 128, 65536},
                        Case{64, 136, "attn_fwd_d256", 4, 256, 100000},
                        Case{256, 256, "attn_fwd_d256", 4, 256, 100000}}) {
    Call call;
    call.Dqk = c.dqk;
    call.Dv = c.dv;
    call.reshape();
    ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
    EXPECT_STREQ(lastLaunch().function, c.function)
        << "Dqk=" << c.dqk << " Dv=" << c.dv;
    EXPECT_EQ(lastLaunch().grid[0], c.gridX);
    EXPECT_EQ(lastLaunch().block[0], c.threads);
    EXPECT_EQ(lastLaunch().shared_mem_bytes, c.shared);
    EXPECT_EQ(params(3, 4), (std::vector<int64_t>{2, 4, 100, c.dqk}));
  }
}

TEST_F(CudaRun, CachesModulesAndFunctions) {
  Kernel k(standardVariants());
  FakeCudaState &s = state();
  int loads = s.module_load_calls, gets = s.get_function_calls;
  Call call;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.module_load_calls, loads + 1);
  EXPECT_EQ(s.last_loaded_image, k.desc.image);
  EXPECT_EQ(s.get_function_calls, gets + 1);
  EXPECT_STREQ(s.last_requested_function, "attn_fwd_d64");
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.module_load_calls, loads + 1);
  EXPECT_EQ(s.get_function_calls, gets + 1);
  // Another variant of the same image: same module, one more function.
  call.Dqk = 128;
  call.reshape();
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.module_load_calls, loads + 1);
  EXPECT_EQ(s.get_function_calls, gets + 2);
  EXPECT_STREQ(s.last_requested_function, "attn_fwd_d128");
  // Another image: another module.
  Kernel other(standardVariants());
  ASSERT_EQ(call.run(&other.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.module_load_calls, loads + 2);
  EXPECT_EQ(s.last_loaded_image, other.desc.image);
  EXPECT_EQ(lastLaunch().image, other.desc.image);
}

TEST_F(CudaRun, OptsInToMoreThan48KiBOfSharedMemoryOncePerFunction) {
  Kernel k(standardVariants());
  FakeCudaState &s = state();
  int sets = s.set_attribute_calls;
  Call call;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError(); // 32 KiB
  EXPECT_EQ(s.set_attribute_calls, sets);
  call.Dqk = 128;
  call.reshape();
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError(); // 64 KiB
  EXPECT_EQ(s.set_attribute_calls, sets + 1);
  EXPECT_EQ(s.last_attribute, 8); // MAX_DYNAMIC_SHARED_SIZE_BYTES
  EXPECT_EQ(s.last_attribute_value, 65536);
  EXPECT_STREQ(s.last_attribute_function, "attn_fwd_d128");
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.set_attribute_calls, sets + 1);
  call.Dv = 256;
  call.reshape();
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError(); // 100000 bytes
  EXPECT_EQ(s.set_attribute_calls, sets + 2);
  EXPECT_EQ(s.last_attribute_value, 100000);
  EXPECT_STREQ(s.last_attribute_function, "attn_fwd_d256");

  // Exactly 48 KiB needs no opt-in.
  Kernel edge({{"edge", 64, 64, 128, 48 * 1024}});
  Call small;
  ASSERT_EQ(small.run(&edge.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.set_attribute_calls, sets + 2);
}

TEST_F(CudaRun, DriverErrorsBecomeDriverStatus) {
  Kernel k(standardVariants());
  Call call;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();

  failNext("cuLaunchKernel", 700);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(),
                  ("cuLaunchKernel failed: an illegal memory access was "
                   "encountered (CUDA error 700)"));
  EXPECT_CONTAINS(lastError(), ("attn_fwd_d64"));
  // The next call works again.
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_STREQ(attn_last_error(), "");

  // A code the driver has no string for.
  failNext("cuLaunchKernel", 9999);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(),
                  ("cuLaunchKernel failed: unknown error (CUDA error 9999)"));

  failNext("cuCtxGetCurrent", 3);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(),
                  ("cuCtxGetCurrent failed: initialization error"));
}

TEST_F(CudaRun, ModuleLoadFailureIsNotCached) {
  Kernel k(standardVariants());
  FakeCudaState &s = state();
  int loads = s.module_load_calls;
  Call call;
  failNext("cuModuleLoadData", 200);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(),
                  ("cuModuleLoadData failed: device kernel image is "
                   "invalid (CUDA error 200) (kernel 'test_kernel')"));
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.module_load_calls, loads + 2);
}

TEST_F(CudaRun, MissingFunctionAndFailedOptIn) {
  // An image without the variants' functions.
  Kernel missing(standardVariants());
  static const std::string unrelated = "something_else=60\n";
  missing.desc.image = unrelated.c_str();
  missing.desc.image_size = unrelated.size() + 1;
  Call call;
  EXPECT_EQ(call.run(&missing.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(), ("cuModuleGetFunction failed: named "
                                "symbol not found (CUDA error 500)"));
  EXPECT_CONTAINS(lastError(), ("'attn_fwd_d64'"));
  // Still missing: the failure is not cached as a function.
  EXPECT_EQ(call.run(&missing.desc), ATTN_ERROR_DRIVER);

  // cuFuncSetAttribute failing, then retried by the next call.
  Kernel big({{"big", 64, 64, 128, 200000}});
  FakeCudaState &s = state();
  int sets = s.set_attribute_calls;
  failNext("cuFuncSetAttribute", 1);
  EXPECT_EQ(call.run(&big.desc), ATTN_ERROR_DRIVER);
  EXPECT_CONTAINS(lastError(), ("cuFuncSetAttribute failed: invalid argument"));
  EXPECT_CONTAINS(lastError(), ("200000 bytes"));
  ASSERT_EQ(call.run(&big.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.set_attribute_calls, sets + 2);
}

TEST_F(CudaRun, ContextsFollowTheTensorsDevice) {
  Kernel k(standardVariants());
  FakeCudaState &s = state();
  // No current context: device 1's primary context is retained (once per
  // process) and made current.
  Call call;
  call.setDevice({kDLCUDA, 1});
  int retains = s.primary_retain_calls;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_LE(s.primary_retain_calls, retains + 1);
  EXPECT_EQ(lastLaunch().context, fake().primary(1));
  retains = s.primary_retain_calls;
  // Now current: no further retain or set.
  int sets = s.ctx_set_current_calls;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.ctx_set_current_calls, sets);
  // Cleared again: the cached context is made current, not retained again.
  fake().setCurrent(nullptr);
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.primary_retain_calls, retains);
  EXPECT_EQ(s.ctx_set_current_calls, sets + 1);

  // A caller's current context is used as is.
  fake().setCurrent(fake().primary(0));
  Call zero;
  ASSERT_EQ(zero.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(lastLaunch().context, fake().primary(0));
  EXPECT_EQ(s.ctx_set_current_calls, sets + 1);
  // ... unless it is on another device than the tensors.
  int launches = s.launch_calls;
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DEVICE);
  EXPECT_CONTAINS(lastError(), ("tensors are on CUDA device 1"));
  EXPECT_CONTAINS(lastError(), ("current CUDA context is on device 0"));
  EXPECT_EQ(s.launch_calls, launches);

  // A device the driver does not have.
  fake().setCurrent(nullptr);
  Call far;
  far.setDevice({kDLCUDA, 5});
  EXPECT_EQ(far.run(&k.desc), ATTN_ERROR_DEVICE);
  EXPECT_CONTAINS(lastError(), ("CUDA device 5"));
  EXPECT_CONTAINS(lastError(), ("reports 2 device(s)"));

  // Managed memory is device memory.
  Call managed;
  managed.setDevice({kDLCUDAManaged, 0});
  managed.o.t.device = {kDLCUDA, 0};
  ASSERT_EQ(managed.run(&k.desc), ATTN_OK) << lastError();
}

TEST_F(CudaRun, HalfPrecisionInputs) {
  Kernel k(standardVariants(), ATTN_F16);
  Call call(f16());
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_STREQ(lastLaunch().function, "attn_fwd_d64");
}

/// Global scratch is the gradients' kernels' (attn_cuda_run_backward): a
/// forward variant that declares it is refused before the driver launches
/// anything.
TEST_F(CudaRun, ForwardVariantsTakeNoScratch) {
  Kernel k({{"attn_fwd_d64", 64, 64, 128, 32768, 6144, 0}});
  Call call;
  int launches = state().launch_calls;
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_UNSUPPORTED);
  EXPECT_NE(lastError().find("scratch"), std::string::npos) << lastError();
  EXPECT_EQ(state().launch_calls, launches);
}

TEST_F(CudaRun, Available) {
  state().device_count = 2;
  EXPECT_EQ(attn_cuda_available(), 1);
  EXPECT_STREQ(attn_last_error(), "");
  state().device_count = 0;
  EXPECT_EQ(attn_cuda_available(), 0);
  EXPECT_CONTAINS(lastError(), ("no CUDA device"));
  state().device_count = 1;
  failNext("cuDeviceGetCount", 3);
  EXPECT_EQ(attn_cuda_available(), 0);
  EXPECT_CONTAINS(lastError(),
                  ("cuDeviceGetCount failed: initialization error"));
  EXPECT_EQ(attn_cuda_available(), 1);
  EXPECT_STREQ(attn_last_error(), "");
}

TEST_F(CudaRun, DriverInitializedOnce) {
  Kernel k(standardVariants());
  Call call;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(attn_cuda_available(), 1);
  EXPECT_EQ(state().init_calls, 1);
}

TEST_F(CudaRun, ConcurrentLaunches) {
  Kernel k(standardVariants());
  FakeCudaState &s = state();
  int loads = s.module_load_calls;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        Call call;
        call.Dqk = (t + i) % 2 ? 64 : 128;
        call.reshape();
        if (call.run(&k.desc) != ATTN_OK)
          ++failures;
      }
    });
  for (std::thread &t : threads)
    t.join();
  EXPECT_EQ(failures.load(), 0);
  // Every thread ends up in device 0's primary context: one module.
  EXPECT_EQ(s.module_load_calls, loads + 1);
}

TEST(CudaStatus, DriverStatusString) {
  EXPECT_STREQ(attn_status_string(ATTN_ERROR_DRIVER), "ATTN_ERROR_DRIVER");
  EXPECT_EQ(static_cast<int>(ATTN_ERROR_DRIVER), 8);
}

extern "C" int attn_test_cuda_c_header(void);

TEST(CudaStatus, HeaderCompilesAsC) { EXPECT_EQ(attn_test_cuda_c_header(), 1); }

} // namespace

int main(int argc, char **argv) {
  // Before the first CUDA call: the runtime reads it once.
  setenv("ATTN_CUDA_DRIVER", ATTN_FAKE_CUDA_DRIVER, 1);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
