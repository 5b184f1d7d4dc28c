//===- CUDACompileTest.cpp - the JIT door for CUDA kernels ----------------===//
//
// attn::Compiler::compile with a cuda target needs the CUDA toolkit (ptxas,
// fatbinary) at compile time only; without it these tests skip with the
// reason. Running the kernels needs a GPU: here run() must reject host
// tensors with ATTN_ERROR_DEVICE (attn_run finds no code for host memory),
// and so must the CUDA entry itself, which checks the descriptor and the
// argument order against the runtime's validation without a driver.
//
//===----------------------------------------------------------------------===//

#include "attn/JIT/Compiler.h"
#include "attn/Target/GpuBackend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using namespace attn;

namespace {

const char *const kExamplesDir = ATTN_EXAMPLES_DIR;

/// The CUDA descriptor of a kernel compiled for a cuda target.
const attn_cuda_kernel_desc_t &cudaDesc(const Kernel &k) {
  EXPECT_EQ(k.desc().num_targets, 1);
  EXPECT_EQ(k.desc().targets[0].device_type, kDLCUDA);
  return *static_cast<const attn_cuda_kernel_desc_t *>(
      k.desc().targets[0].desc);
}

std::string toolkitOrEmpty() {
  std::string root = "/usr/local/cuda";
  if (const char *t = std::getenv("ATTN_CUDA_TOOLKIT"); t && *t)
    root = t;
  return access((root + "/bin/ptxas").c_str(), X_OK) == 0 ? root : "";
}

class CUDACompile : public ::testing::Test {
protected:
  void SetUp() override {
    if (toolkitOrEmpty().empty())
      GTEST_SKIP() << "no CUDA toolkit (ptxas) at /usr/local/cuda or "
                      "$ATTN_CUDA_TOOLKIT";
    std::string tmpl =
        (fs::temp_directory_path() / "attn-cuda-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    cache = tmpl;
    options.cacheDir = cache;
    options.target = "cuda:sm_80";
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

TEST_F(CUDACompile, DescriptorMatchesTheSpec) {
  std::string err;
  auto k = Compiler().compile(example("document"), options, err);
  ASSERT_TRUE(k) << err;
  const attn_cuda_kernel_desc_t &d = cudaDesc(*k);
  EXPECT_EQ(d.abi_version, ATTN_ABI_VERSION);
  EXPECT_STREQ(d.name, "document");
  EXPECT_EQ(d.has_lse, 1);
  ASSERT_EQ(d.num_inputs, 4);
  EXPECT_STREQ(d.inputs[0].name, "q");
  EXPECT_EQ(d.inputs[0].type, ATTN_BF16);
  EXPECT_EQ(d.inputs[2].type, ATTN_BF16);
  EXPECT_STREQ(d.inputs[3].name, "doc");
  EXPECT_EQ(d.inputs[3].type, ATTN_I32);
  ASSERT_EQ(d.num_variants, 2);
  EXPECT_STREQ(d.variants[0].function, "attn_document_d64");
  EXPECT_EQ(d.variants[0].max_head_dim, 64);
  EXPECT_STREQ(d.variants[1].function, "attn_document_d128");
  EXPECT_EQ(d.variants[1].max_head_dim, 128);
  EXPECT_EQ(d.variants[1].block_q, 64);
  EXPECT_EQ(d.variants[1].num_threads, 128);
  EXPECT_EQ(d.variants[1].shared_mem_bytes, 81920);
  // The split-KV decode schedule: a decode variant per head dim (16 rows
  // of a GQA group, one warp) and the merge kernel.
  EXPECT_EQ(d.decode_max_n, 16);
  ASSERT_EQ(d.num_decode_variants, 2);
  EXPECT_STREQ(d.decode_variants[0].function, "attn_document_decode_d64");
  EXPECT_EQ(d.decode_variants[0].max_head_dim, 64);
  EXPECT_EQ(d.decode_variants[0].block_q, 16);
  EXPECT_EQ(d.decode_variants[0].num_threads, 32);
  EXPECT_STREQ(d.decode_variants[1].function, "attn_document_decode_d128");
  EXPECT_EQ(d.decode_variants[1].max_head_dim, 128);
  ASSERT_NE(d.merge_variant, nullptr);
  EXPECT_STREQ(d.merge_variant->function, "attn_document_merge");
  EXPECT_EQ(d.merge_variant->block_q, 4);
  EXPECT_EQ(d.merge_variant->num_threads, 128);
  ASSERT_NE(d.image, nullptr);
  EXPECT_GT(d.image_size, 1000u);
  // The ptxas report names both kernels, without spills.
  EXPECT_NE(k->report().find("attn_document_d64"), std::string::npos);
  EXPECT_NE(k->report().find("attn_document_d128"), std::string::npos);
  EXPECT_FALSE(k->cacheHit());
}

TEST(GpuVariantLine, KeepsTheRoleAndRefusesOtherLines) {
  using mlir::attn::GpuVariant;
  GpuVariant dec{"attn_x_decode_d128", 128, 16, 32, 36864, 0, 0, "decode"};
  GpuVariant back;
  ASSERT_TRUE(
      mlir::attn::parseGpuVariantLine(mlir::attn::gpuVariantLine(dec), back));
  EXPECT_EQ(back.function, dec.function);
  EXPECT_EQ(back.maxHeadDim, 128);
  EXPECT_EQ(back.blockQ, 16);
  EXPECT_EQ(back.numThreads, 32);
  EXPECT_EQ(back.sharedBytes, 36864);
  EXPECT_EQ(back.role, "decode");
  GpuVariant fwd{"attn_x_d64", 64, 64, 128, 40960, 0, 0, ""};
  EXPECT_EQ(mlir::attn::gpuVariantLine(fwd),
            "variant attn_x_d64 64 64 128 40960 0 0 -");
  ASSERT_TRUE(mlir::attn::parseGpuVariantLine(
      "variant attn_x_merge 128 4 128 0 0 0 merge", back));
  EXPECT_EQ(back.role, "merge");
  // ABI 5's seven fields, and an unknown role.
  EXPECT_FALSE(mlir::attn::parseGpuVariantLine(
      "variant attn_x_d64 64 64 128 40960 0 0", back));
  EXPECT_FALSE(mlir::attn::parseGpuVariantLine(
      "variant attn_x_d64 64 64 128 40960 0 0 prefill", back));
}

TEST_F(CUDACompile, NoDecodeScheduleWithoutSoftmax) {
  // A sigmoid spec has no lse to merge split partials by: prefill only.
  std::string err;
  auto k = Compiler().compile(example("sigmoid"), options, err);
  ASSERT_TRUE(k) << err;
  const attn_cuda_kernel_desc_t &d = cudaDesc(*k);
  EXPECT_EQ(d.num_variants, 2);
  EXPECT_EQ(d.decode_max_n, 0);
  EXPECT_EQ(d.num_decode_variants, 0);
  EXPECT_EQ(d.decode_variants, nullptr);
  EXPECT_EQ(d.merge_variant, nullptr);
}

TEST_F(CUDACompile, SecondCompileHitsTheCacheWithTheSameImage) {
  std::string err;
  auto a = Compiler().compile(example("causal"), options, err);
  ASSERT_TRUE(a) << err;
  auto b = Compiler().compile(example("causal"), options, err);
  ASSERT_TRUE(b) << err;
  EXPECT_FALSE(a->cacheHit());
  EXPECT_TRUE(b->cacheHit());
  EXPECT_EQ(cudaDesc(*a).image_size, cudaDesc(*b).image_size);
  EXPECT_EQ(0, std::memcmp(cudaDesc(*a).image, cudaDesc(*b).image,
                           cudaDesc(*a).image_size));
  EXPECT_EQ(a->report(), b->report());
  // The cached variant lines keep each kernel's role.
  const attn_cuda_kernel_desc_t &cached = cudaDesc(*b);
  EXPECT_EQ(cached.num_variants, 2);
  EXPECT_EQ(cached.decode_max_n, 16);
  ASSERT_EQ(cached.num_decode_variants, 2);
  EXPECT_STREQ(cached.decode_variants[1].function, "attn_causal_decode_d128");
  ASSERT_NE(cached.merge_variant, nullptr);
  EXPECT_STREQ(cached.merge_variant->function, "attn_causal_merge");
  // A different dtype is a different kernel.
  options.dtype = "f16";
  auto c = Compiler().compile(example("causal"), options, err);
  ASSERT_TRUE(c) << err;
  EXPECT_FALSE(c->cacheHit());
  EXPECT_EQ(cudaDesc(*c).inputs[0].type, ATTN_F16);
}

// The fatbin and its sidecar live in the same trusted store as CPU kernels:
// a truncated fatbin is removed and recompiled, never handed to the driver.
TEST_F(CUDACompile, TruncatedFatbinIsRecompiled) {
  std::vector<std::string> warnings;
  options.onWarning = [&](const std::string &w) { warnings.push_back(w); };
  std::string err;
  auto a = Compiler().compile(example("causal"), options, err);
  ASSERT_TRUE(a) << err;
  std::vector<std::string> names;
  for (auto &e : fs::directory_iterator(cache))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 3u);
  std::string stem = cache + "/" + fs::path(names[0]).stem().string();
  EXPECT_EQ(names[0], fs::path(stem).filename().string() + ".fatbin");
  EXPECT_EQ(names[1], fs::path(stem).filename().string() + ".meta");
  EXPECT_EQ(names[2], fs::path(stem).filename().string() + ".sha256");
  uintmax_t size = fs::file_size(stem + ".fatbin");
  fs::resize_file(stem + ".fatbin", size / 2);
  auto b = Compiler().compile(example("causal"), options, err);
  ASSERT_TRUE(b) << err;
  EXPECT_FALSE(b->cacheHit());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find(stem + ".fatbin has " + std::to_string(size / 2) +
                             " bytes, its manifest records " +
                             std::to_string(size)),
            std::string::npos)
      << warnings[0];
  EXPECT_EQ(fs::file_size(stem + ".fatbin"), size);
  auto c = Compiler().compile(example("causal"), options, err);
  ASSERT_TRUE(c) << err;
  EXPECT_TRUE(c->cacheHit());
  EXPECT_EQ(cudaDesc(*c).image_size, size);
  EXPECT_EQ(warnings.size(), 1u);
}

TEST_F(CUDACompile, CacheWritableByOthersIsRefused) {
  std::vector<std::string> warnings;
  options.onWarning = [&](const std::string &w) { warnings.push_back(w); };
  fs::permissions(cache, fs::perms::all);
  std::string err;
  auto k = Compiler().compile(example("causal"), options, err);
  ASSERT_TRUE(k) << err;
  EXPECT_FALSE(k->cacheHit());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], "kernel cache directory " + cache +
                             " is writable by others (mode 0777); compiling "
                             "without the cache");
  EXPECT_TRUE(fs::is_empty(cache));
}

TEST_F(CUDACompile, HostTensorsAreRejectedBeforeAnyLaunch) {
  std::string err;
  auto k = Compiler().compile(example("causal"), options, err);
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
  EXPECT_NE(std::string(attn_last_error()).find("compiled for: cuda"),
            std::string::npos)
      << attn_last_error();
  EXPECT_EQ(attn_cuda_run(&cudaDesc(*k), inputs, &to, nullptr, nullptr),
            ATTN_ERROR_DEVICE);
  EXPECT_NE(std::string(attn_last_error()).find("q"), std::string::npos)
      << attn_last_error();
}

// The gradients' kernel: attn_<name>_bwd_d<D> variants whose block_q is
// the kv rows per CTA, the aux input with a gradient, no forward entry;
// host tensors are refused by attn_cuda_run_backward's validation before
// the driver is touched.
TEST_F(CUDACompile, BackwardKernelHasItsOwnDescriptor) {
  std::string spec = cache + "/rpb.attn";
  {
    std::FILE *f = std::fopen(spec.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("attention rpb {\n  input rpb : f32[Hq, 17]\n"
               "  let rel = max(-8, min(q_idx - kv_idx, 8))\n"
               "  mask = causal\n  score = score + rpb[h, rel + 8]\n}\n",
               f);
    std::fclose(f);
  }
  options.backward = true;
  std::string err;
  auto k = Compiler().compile(spec, options, err);
  ASSERT_TRUE(k) << err;
  EXPECT_TRUE(k->isBackward());
  EXPECT_EQ(k->gradientInputs(), std::vector<std::string>{"rpb"});
  ASSERT_EQ(k->desc().num_targets, 1);
  EXPECT_EQ(k->desc().targets[0].desc, nullptr);
  const attn_cuda_backward_desc_t *d = k->gpuBackwardDesc();
  ASSERT_NE(d, nullptr);
  EXPECT_STREQ(d->name, "rpb");
  EXPECT_EQ(d->needs_lse, 1);
  ASSERT_EQ(d->num_inputs, 4);
  ASSERT_EQ(d->num_grads, 1);
  EXPECT_EQ(d->grad_inputs[0], 3);
  ASSERT_EQ(d->num_variants, 2);
  EXPECT_STREQ(d->variants[0].function, "attn_rpb_bwd_d64");
  EXPECT_EQ(d->variants[0].max_head_dim, 64);
  EXPECT_EQ(d->variants[0].block_q, 64); // kv rows per CTA
  EXPECT_EQ(d->variants[0].num_threads, 128);
  EXPECT_STREQ(d->variants[1].function, "attn_rpb_bwd_d128");

  alignas(16) static uint16_t q[64], kv[64];
  alignas(16) static float o[64], lse[4], dq[64], dk[64], dv[64], rpb[17],
      drpb[17];
  int64_t shape[4] = {1, 1, 4, 16}, lseShape[3] = {1, 1, 4},
          rpbShape[2] = {1, 17};
  auto tensor = [&](void *data, DLDataType t, int ndim, int64_t *sh) {
    DLTensor x{};
    x.data = data;
    x.device = {kDLCPU, 0};
    x.ndim = ndim;
    x.dtype = t;
    x.shape = sh;
    return x;
  };
  DLDataType bf16{kDLBfloat, 16, 1}, f32{kDLFloat, 32, 1};
  DLTensor tq = tensor(q, bf16, 4, shape), tk = tensor(kv, bf16, 4, shape),
           tv = tensor(kv, bf16, 4, shape), to = tensor(o, f32, 4, shape),
           tl = tensor(lse, f32, 3, lseShape), tdo = tensor(q, bf16, 4, shape),
           tdq = tensor(dq, f32, 4, shape), tdk = tensor(dk, f32, 4, shape),
           tdv = tensor(dv, f32, 4, shape), tr = tensor(rpb, f32, 2, rpbShape),
           tdr = tensor(drpb, f32, 2, rpbShape);
  const DLTensor *inputs[] = {&tq, &tk, &tv, &tr};
  DLTensor *daux[] = {&tdr};
  EXPECT_EQ(
      k->backward(inputs, &to, &tl, &tdo, nullptr, &tdq, &tdk, &tdv, daux),
      ATTN_ERROR_DEVICE);
  EXPECT_NE(std::string(attn_last_error()).find("q"), std::string::npos)
      << attn_last_error();
}

/// The linear family's gradients: a CTA per (b, hk) over the whole
/// sequence, with the global scratch the runtime allocates declared in the
/// variants (and kept by the kernel cache's sidecar: the second compile is
/// a cache hit with the same descriptor).
TEST_F(CUDACompile, LinearBackwardDeclaresItsScratch) {
  options.backward = true;
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass);
    std::string err;
    auto k = Compiler().compile(example("gla"), options, err);
    ASSERT_TRUE(k) << err;
    EXPECT_EQ(k->gradientInputs(), std::vector<std::string>{"g"});
    const attn_cuda_backward_desc_t *d = k->gpuBackwardDesc();
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->needs_lse, 0);
    ASSERT_EQ(d->num_variants, 2);
    EXPECT_STREQ(d->variants[0].function, "attn_gla_bwd_d64");
    EXPECT_EQ(d->variants[0].block_q, 1 << 30); // all keys in one CTA
    EXPECT_EQ(d->variants[0].num_threads, 96);  // D + 32
    // dphiMax x threads, and the per-row vectors.
    EXPECT_EQ(d->variants[0].scratch_state_floats, 64 * 96);
    EXPECT_EQ(d->variants[0].scratch_fixed_floats, (8 + 4 * 3) * 64 + 64 + 8);
    EXPECT_EQ(d->variants[1].scratch_state_floats, 128 * 160);
  }
}

TEST_F(CUDACompile, ErrorsComeBackAsText) {
  std::string err;
  EXPECT_FALSE(
      Compiler().compile("attention bad { mask = nope }", options, err));
  EXPECT_NE(err.find("error:"), std::string::npos) << err;
  options.target = "cuda:sm_70";
  EXPECT_FALSE(Compiler().compile(example("causal"), options, err));
  EXPECT_NE(err.find("sm_80 or newer"), std::string::npos) << err;
  options.target = "cuda";
  options.dtype = "f32";
  EXPECT_FALSE(Compiler().compile(example("causal"), options, err));
  EXPECT_NE(err.find("bf16 or f16"), std::string::npos) << err;
}

} // namespace
