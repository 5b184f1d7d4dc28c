//===- ROCmCompileTest.cpp - the JIT door for ROCm kernels ----------------===//
//
// attn::Compiler::compile with a rocm target needs ld.lld-22 at compile time
// (scripts/setup.sh installs it); the code objects come from LLVM's AMDGPU
// backend in process. No AMD GPU is reachable here: run() must reject host
// tensors, and a gradients' kernel must reach attn_rocm_run_backward (which
// stops at a HIP runtime that is not there) through the one Kernel API.
//
//===----------------------------------------------------------------------===//

#include "attn/JIT/Compiler.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace attn;

namespace {

const char *const kExamplesDir = ATTN_EXAMPLES_DIR;

const attn_rocm_kernel_desc_t &rocmDesc(const Kernel &k) {
  EXPECT_EQ(k.desc().num_targets, 1);
  EXPECT_EQ(k.desc().targets[0].device_type, kDLROCM);
  return *static_cast<const attn_rocm_kernel_desc_t *>(
      k.desc().targets[0].desc);
}

class ROCmCompile : public ::testing::Test {
protected:
  void SetUp() override {
    std::string tmpl =
        (fs::temp_directory_path() / "attn-rocm-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    cache = tmpl;
    options.cacheDir = cache;
    options.target = "rocm:gfx90a,gfx942";
  }
  void TearDown() override {
    if (!cache.empty())
      fs::remove_all(cache);
  }
  std::string example(const char *name) {
    return std::string(kExamplesDir) + "/" + name + ".attn";
  }
  std::string cache;
  CompileOptions options;
};

TEST_F(ROCmCompile, DescriptorMatchesTheSpec) {
  std::string err;
  auto k = Compiler().compile(example("gla"), options, err);
  ASSERT_TRUE(k) << err;
  EXPECT_EQ(k->deviceType(), kDLROCM);
  const attn_rocm_kernel_desc_t &d = rocmDesc(*k);
  EXPECT_STREQ(d.name, "gla");
  EXPECT_EQ(d.has_lse, 0);
  ASSERT_EQ(d.num_inputs, 4);
  EXPECT_EQ(d.inputs[0].type, ATTN_BF16);
  EXPECT_STREQ(d.inputs[3].name, "g");
  ASSERT_EQ(d.num_variants, 2);
  EXPECT_STREQ(d.variants[0].function, "attn_gla_d64");
  EXPECT_STREQ(d.variants[1].function, "attn_gla_d128");
  // Every variant fits AMD's 64 KiB of LDS per work-group.
  for (int i = 0; i < 2; ++i)
    EXPECT_LE(d.variants[i].shared_mem_bytes, 65536);
  // An offload bundle with a code object per chip.
  ASSERT_GT(d.image_size, 24u);
  EXPECT_EQ(std::memcmp(d.image, "__CLANG_OFFLOAD_BUNDLE__", 24), 0);
  std::string bundle(static_cast<const char *>(d.image), d.image_size);
  EXPECT_NE(bundle.find("hipv4-amdgcn-amd-amdhsa--gfx90a"), std::string::npos);
  EXPECT_NE(bundle.find("hipv4-amdgcn-amd-amdhsa--gfx942"), std::string::npos);
  // The report: both kernels on both chips.
  for (const char *s : {"gfx90a", "gfx942", "attn_gla_d64", "attn_gla_d128"})
    EXPECT_NE(k->report().find(s), std::string::npos) << k->report();
}

// The cache key fingerprints the toolchain: the same spec and chips with
// another ld.lld is another kernel.
TEST_F(ROCmCompile, CacheKeyCoversTheToolchain) {
  std::string err;
  auto a = Compiler().compile(example("retnet"), options, err);
  ASSERT_TRUE(a) << err;
  auto b = Compiler().compile(example("retnet"), options, err);
  ASSERT_TRUE(b) << err;
  EXPECT_FALSE(a->cacheHit());
  EXPECT_TRUE(b->cacheHit());
  EXPECT_EQ(rocmDesc(*a).image_size, rocmDesc(*b).image_size);
  EXPECT_EQ(std::memcmp(rocmDesc(*a).image, rocmDesc(*b).image,
                        rocmDesc(*a).image_size),
            0);
  EXPECT_NE(b->libraryPath().find(".hipfb"), std::string::npos)
      << b->libraryPath();
  std::string lld = cache + "/ld.lld";
  fs::create_symlink(ATTN_LLVM_TOOLS_DIR "/ld.lld", lld);
  ASSERT_EQ(setenv("ATTN_LLD", lld.c_str(), 1), 0);
  auto c = Compiler().compile(example("retnet"), options, err);
  unsetenv("ATTN_LLD");
  ASSERT_TRUE(c) << err;
  EXPECT_FALSE(c->cacheHit());
}

TEST_F(ROCmCompile, HostTensorsAreRejectedBeforeAnyLaunch) {
  std::string err;
  auto k = Compiler().compile(example("retnet"), options, err);
  ASSERT_TRUE(k) << err;
  alignas(16) static uint16_t q[64], kv[64];
  alignas(16) static float o[64];
  int64_t shape[4] = {1, 1, 4, 16};
  auto tensor = [&](void *data, DLDataType t) {
    DLTensor x{};
    x.data = data;
    x.device = {kDLCPU, 0};
    x.ndim = 4;
    x.dtype = t;
    x.shape = shape;
    return x;
  };
  DLTensor tq = tensor(q, {kDLBfloat, 16, 1}),
           tk = tensor(kv, {kDLBfloat, 16, 1}),
           tv = tensor(kv, {kDLBfloat, 16, 1}),
           to = tensor(o, {kDLFloat, 32, 1});
  const DLTensor *inputs[] = {&tq, &tk, &tv};
  EXPECT_EQ(k->run(inputs, &to), ATTN_ERROR_DEVICE);
  EXPECT_NE(std::string(attn_last_error()).find("compiled for: rocm"),
            std::string::npos)
      << attn_last_error();
  EXPECT_EQ(attn_rocm_run(&rocmDesc(*k), inputs, &to, nullptr, nullptr),
            ATTN_ERROR_DEVICE);
}

// Kernel::backward reaches attn_rocm_run_backward through the binding: with
// well-formed ROCm tensors (fake addresses, never dereferenced) it passes
// validation and stops at the HIP runtime, here a library that is not
// there (each test runs in its own process, so this choice is local).
TEST_F(ROCmCompile, BackwardGoesThroughTheROCmEntry) {
  ASSERT_EQ(setenv("ATTN_HIP_LIBRARY", "/nonexistent/libamdhip64.so", 1), 0);
  options.backward = true;
  std::string err;
  auto k = Compiler().compile(example("retnet"), options, err);
  ASSERT_TRUE(k) << err;
  EXPECT_TRUE(k->isBackward());
  const attn_rocm_backward_desc_t *d = k->gpuBackwardDesc();
  ASSERT_NE(d, nullptr);
  ASSERT_EQ(d->num_variants, 2);
  EXPECT_STREQ(d->variants[0].function, "attn_retnet_bwd_d64");
  EXPECT_GT(d->variants[0].scratch_state_floats, 0);
  int64_t shape[4] = {1, 2, 40, 64};
  uintptr_t addr = 0x100000;
  auto tensor = [&](DLDataType t) {
    DLTensor x{};
    x.data = reinterpret_cast<void *>(addr);
    addr += 0x100000;
    x.device = {kDLROCM, 0};
    x.ndim = 4;
    x.dtype = t;
    x.shape = shape;
    return x;
  };
  DLDataType bf16{kDLBfloat, 16, 1}, f32{kDLFloat, 32, 1};
  DLTensor tq = tensor(bf16), tk = tensor(bf16), tv = tensor(bf16),
           to = tensor(f32), tdo = tensor(bf16), tdq = tensor(f32),
           tdk = tensor(f32), tdv = tensor(f32);
  const DLTensor *inputs[] = {&tq, &tk, &tv};
  EXPECT_EQ(k->backward(inputs, &to, nullptr, &tdo, nullptr, &tdq, &tdk, &tdv),
            ATTN_ERROR_DRIVER);
  EXPECT_NE(std::string(attn_last_error()).find("HIP runtime not available"),
            std::string::npos)
      << attn_last_error();
}

TEST_F(ROCmCompile, UnsupportedChipsAndSpecsAreClearErrors) {
  std::string err;
  options.target = "rocm:gfx803";
  EXPECT_FALSE(Compiler().compile(example("gla"), options, err));
  EXPECT_NE(err.find("unsupported ROCm chip 'gfx803' (supported: gfx90a, "
                     "gfx942"),
            std::string::npos)
      << err;
  options.target = "rocm:gfx942";
  options.backward = true;
  options.tileQ = 96;
  err.clear();
  EXPECT_FALSE(Compiler().compile(example("causal"), options, err));
  EXPECT_NE(
      err.find("the ROCm backward kernel needs tile_q = 32 or 64, got 96"),
      std::string::npos)
      << err;
}

// The softmax family's gradients on MFMA: one work-group per 64 keys (two
// waves), 32 query rows per step, the launch contract in the descriptor.
TEST_F(ROCmCompile, SoftmaxGradientsOnMatrixCores) {
  options.backward = true;
  std::string err;
  auto k = Compiler().compile(example("causal"), options, err);
  ASSERT_TRUE(k) << err;
  const attn_rocm_backward_desc_t *d = k->gpuBackwardDesc();
  ASSERT_NE(d, nullptr);
  ASSERT_EQ(d->num_variants, 2);
  EXPECT_STREQ(d->variants[1].function, "attn_causal_bwd_d128");
  EXPECT_EQ(d->variants[1].block_q, 64); // kv rows per work-group
  EXPECT_EQ(d->variants[1].num_threads, 128);
  EXPECT_EQ(d->variants[1].scratch_state_floats, 0);
  EXPECT_LE(d->variants[1].shared_mem_bytes, 65536);
}

// The softmax family's forward on MFMA: 4 waves of 32 query rows by
// default, K and V tiles in LDS, an lse.
TEST_F(ROCmCompile, SoftmaxForwardOnMatrixCores) {
  std::string err;
  auto k = Compiler().compile(example("causal"), options, err);
  ASSERT_TRUE(k) << err;
  const attn_rocm_kernel_desc_t &d = rocmDesc(*k);
  EXPECT_EQ(d.has_lse, 1);
  ASSERT_EQ(d.num_variants, 2);
  EXPECT_STREQ(d.variants[0].function, "attn_causal_d64");
  EXPECT_EQ(d.variants[0].block_q, 128);
  EXPECT_EQ(d.variants[0].num_threads, 256);
  EXPECT_EQ(d.variants[1].shared_mem_bytes, 2 * 32 * 128 * 2);
}

} // namespace
