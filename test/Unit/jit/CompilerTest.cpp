//===- CompilerTest.cpp - tests of the JIT API (attn::Compiler) -----------===//
//
// Each test uses its own temporary kernel cache, so tests are independent of
// each other, of ~/.cache/attnc and of the order ctest runs them in.
//
//===----------------------------------------------------------------------===//

#include "attn/JIT/Compiler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <regex>
#include <thread>

namespace fs = std::filesystem;
using namespace attn;

namespace {

const char *const kExamplesDir = ATTN_EXAMPLES_DIR;

/// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
public:
  TempDir() {
    std::string tmpl =
        (fs::temp_directory_path() / "attn-jit-test-XXXXXX").string();
    char *p = mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string &path() const { return path_; }
  /// Number of entries (files and directories) anywhere below the directory.
  size_t countEntries() const {
    size_t n = 0;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(path_, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
      ++n;
    return n;
  }

private:
  std::string path_;
};

/// Host tensors for q, k, v, o, lse of one problem size, compact row-major.
struct Problem {
  int64_t B, Hq, Hkv, N, M, Dqk, Dv;
  std::vector<float> q, k, v, o, lse;
  std::vector<int64_t> qShape, kShape, vShape, oShape, lseShape;
  DLTensor tq{}, tk{}, tv{}, to{}, tlse{};

  Problem(int64_t B, int64_t Hq, int64_t Hkv, int64_t N, int64_t M, int64_t Dqk,
          int64_t Dv, unsigned seed = 1)
      : B(B), Hq(Hq), Hkv(Hkv), N(N), M(M), Dqk(Dqk), Dv(Dv),
        q(B * Hq * N * Dqk), k(B * Hkv * M * Dqk), v(B * Hkv * M * Dv),
        o(B * Hq * N * Dv), lse(B * Hq * N), qShape{B, Hq, N, Dqk},
        kShape{B, Hkv, M, Dqk}, vShape{B, Hkv, M, Dv}, oShape{B, Hq, N, Dv},
        lseShape{B, Hq, N} {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.f, 1.f);
    for (auto *x : {&q, &k, &v})
      for (float &e : *x)
        e = dist(rng);
    tq = tensor(q.data(), qShape);
    tk = tensor(k.data(), kShape);
    tv = tensor(v.data(), vShape);
    to = tensor(o.data(), oShape);
    tlse = tensor(lse.data(), lseShape);
  }
  Problem(const Problem &) = delete;

  static DLTensor tensor(float *data, std::vector<int64_t> &shape) {
    DLTensor t;
    std::memset(&t, 0, sizeof t);
    t.data = data;
    t.device = {kDLCPU, 0};
    t.ndim = static_cast<int32_t>(shape.size());
    t.dtype = {kDLFloat, 32, 1};
    t.shape = shape.data();
    return t;
  }

  attn_status_t run(const Kernel &kernel, bool withLse = true) {
    const DLTensor *inputs[] = {&tq, &tk, &tv};
    return kernel.run(inputs, &to, withLse ? &tlse : nullptr);
  }

  /// Max |o - naive| for softmax attention with `visible(i, j)` as the mask.
  double maxError(const std::function<bool(int64_t, int64_t)> &visible) const {
    const int64_t group = Hq / Hkv;
    const double scale = 1.0 / std::sqrt(double(Dqk));
    double err = 0;
    std::vector<double> s(M), acc(Dv);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < Hq; ++h)
        for (int64_t i = 0; i < N; ++i) {
          const int64_t hk = h / group;
          double mx = -INFINITY, sum = 0;
          for (int64_t j = 0; j < M; ++j) {
            if (!visible(i, j))
              continue;
            double dot = 0;
            for (int64_t d = 0; d < Dqk; ++d)
              dot += double(q[((b * Hq + h) * N + i) * Dqk + d]) *
                     double(k[((b * Hkv + hk) * M + j) * Dqk + d]);
            s[j] = scale * dot;
            mx = std::max(mx, s[j]);
          }
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t j = 0; j < M && mx > -INFINITY; ++j) {
            if (!visible(i, j))
              continue;
            double p = std::exp(s[j] - mx);
            sum += p;
            for (int64_t d = 0; d < Dv; ++d)
              acc[d] += p * double(v[((b * Hkv + hk) * M + j) * Dv + d]);
          }
          for (int64_t d = 0; d < Dv; ++d) {
            double ref = sum > 0 ? acc[d] / sum : 0.0;
            double e =
                std::fabs(double(o[((b * Hq + h) * N + i) * Dv + d]) - ref);
            if (!(e <= err))
              err = e; // NaN propagates as a failure
          }
        }
    return err;
  }
};

std::string examplePath(const char *name) {
  return std::string(kExamplesDir) + "/" + name;
}

CompileOptions optionsIn(const TempDir &dir) {
  CompileOptions options;
  options.cacheDir = dir.path();
  return options;
}

const char *const kCausalText = "# a causal spec given as text\n"
                                "attention text_causal {\n"
                                "  mask = causal\n"
                                "}\n";

} // namespace

TEST(JITCompiler, CompileFromText) {
  TempDir cache;
  std::string error;
  auto kernel = Compiler().compile(kCausalText, optionsIn(cache), error);
  ASSERT_TRUE(kernel) << error;
  EXPECT_FALSE(kernel->cacheHit());
  EXPECT_STREQ(kernel->desc().name, "text_causal");
  EXPECT_TRUE(kernel->hasLse());
  Problem p(1, 4, 2, 37, 53, 16, 24);
  ASSERT_EQ(p.run(*kernel), ATTN_OK) << attn_last_error();
  const int64_t shift = p.M - p.N;
  EXPECT_LT(p.maxError([&](int64_t i, int64_t j) { return j <= i + shift; }),
            1e-4);
}

TEST(JITCompiler, CompileFromPath) {
  TempDir cache;
  std::string error;
  auto kernel =
      Compiler().compile(examplePath("causal.attn"), optionsIn(cache), error);
  ASSERT_TRUE(kernel) << error;
  EXPECT_STREQ(kernel->desc().name, "causal");
  EXPECT_EQ(fs::path(kernel->libraryPath()).parent_path(),
            fs::path(cache.path()));
  Problem p(2, 3, 1, 70, 70, 32, 8);
  ASSERT_EQ(p.run(*kernel), ATTN_OK) << attn_last_error();
  EXPECT_LT(p.maxError([](int64_t i, int64_t j) { return j <= i; }), 1e-4);
}

TEST(JITCompiler, ParamsChangeTheCacheKey) {
  TempDir cache;
  std::string error;
  Compiler compiler;
  CompileOptions o8 = optionsIn(cache), o16 = optionsIn(cache);
  o8.params = {{"window", "8"}};
  o16.params = {{"window", "16"}};
  auto k8 = compiler.compile(examplePath("sliding_window.attn"), o8, error);
  ASSERT_TRUE(k8) << error;
  auto k16 = compiler.compile(examplePath("sliding_window.attn"), o16, error);
  ASSERT_TRUE(k16) << error;
  EXPECT_FALSE(k16->cacheHit()) << "window=16 reused the window=8 kernel";
  EXPECT_NE(k8->libraryPath(), k16->libraryPath());

  Problem p8(1, 2, 2, 45, 45, 16, 16), p16(1, 2, 2, 45, 45, 16, 16);
  ASSERT_EQ(p8.run(*k8), ATTN_OK) << attn_last_error();
  ASSERT_EQ(p16.run(*k16), ATTN_OK) << attn_last_error();
  EXPECT_NE(p8.o, p16.o);
  EXPECT_LT(
      p8.maxError([](int64_t i, int64_t j) { return j <= i && i - j < 8; }),
      1e-4);
  EXPECT_LT(
      p16.maxError([](int64_t i, int64_t j) { return j <= i && i - j < 16; }),
      1e-4);

  // The same params again hit the cache.
  auto again = compiler.compile(examplePath("sliding_window.attn"), o8, error);
  ASSERT_TRUE(again) << error;
  EXPECT_TRUE(again->cacheHit());
  EXPECT_EQ(again->libraryPath(), k8->libraryPath());
}

TEST(JITCompiler, NoCacheLeavesNoFiles) {
  TempDir cache, tmp;
  // The uncached compile works in a temporary directory: point it at one we
  // can inspect.
  std::string oldTmp = getenv("TMPDIR") ? getenv("TMPDIR") : "";
  bool hadTmp = getenv("TMPDIR") != nullptr;
  setenv("TMPDIR", tmp.path().c_str(), 1);
  CompileOptions options = optionsIn(cache);
  options.useCache = false;
  std::string error;
  auto kernel = Compiler().compile(examplePath("causal.attn"), options, error);
  if (hadTmp)
    setenv("TMPDIR", oldTmp.c_str(), 1);
  else
    unsetenv("TMPDIR");
  ASSERT_TRUE(kernel) << error;
  EXPECT_FALSE(kernel->cacheHit());
  EXPECT_EQ(cache.countEntries(), 0u);
  EXPECT_EQ(tmp.countEntries(), 0u);
  EXPECT_FALSE(fs::exists(kernel->libraryPath()));
  // The loaded kernel still runs after its file is gone.
  Problem p(1, 2, 1, 20, 20, 8, 8);
  ASSERT_EQ(p.run(*kernel), ATTN_OK) << attn_last_error();
  EXPECT_LT(p.maxError([](int64_t i, int64_t j) { return j <= i; }), 1e-4);
}

TEST(JITCompiler, SpecErrorReportsLocation) {
  TempDir cache;
  std::string error;
  // From text: the buffer has no file name ("<spec>").
  auto kernel = Compiler().compile(
      "attention broken {\n  mask = q_idx <= \n}\n", optionsIn(cache), error);
  EXPECT_FALSE(kernel);
  EXPECT_TRUE(std::regex_search(error, std::regex(R"(^[^:\n]+:3:1: error: )")))
      << error;
  // From a file: the message starts with its path, line and column.
  std::string path = cache.path() + "/broken.attn";
  std::ofstream(path) << "attention broken {\n  mask = kv_idx <= nonsense\n}\n";
  error.clear();
  kernel = Compiler().compile(path, optionsIn(cache), error);
  EXPECT_FALSE(kernel);
  EXPECT_EQ(error.rfind(path + ":2:20: error: unknown name 'nonsense'", 0), 0u)
      << error;
  EXPECT_EQ(cache.countEntries(), 1u) << "only broken.attn itself";
  // A missing file.
  error.clear();
  EXPECT_FALSE(Compiler().compile(cache.path() + "/missing.attn",
                                  optionsIn(cache), error));
  EXPECT_NE(error.find("missing.attn"), std::string::npos) << error;
}

TEST(JITCompiler, UnknownTarget) {
  TempDir cache;
  // Each bad target and the part of it the message must name.
  const std::pair<const char *, const char *> cases[] = {
      {"tpu", "'tpu'"},
      {"cuda:sm_90x", "'sm_90x'"},
      {"cpu:not-a-cpu", "'not-a-cpu'"}};
  for (auto [target, named] : cases) {
    CompileOptions options = optionsIn(cache);
    options.target = target;
    std::string error;
    EXPECT_FALSE(Compiler().compile(kCausalText, options, error)) << target;
    EXPECT_NE(error.find(named), std::string::npos) << target << ": " << error;
  }
  EXPECT_EQ(cache.countEntries(), 0u);
}

TEST(JITCompiler, ShapeMismatchLeavesOutputUntouched) {
  TempDir cache;
  std::string error;
  auto kernel =
      Compiler().compile(examplePath("causal.attn"), optionsIn(cache), error);
  ASSERT_TRUE(kernel) << error;
  Problem p(1, 4, 2, 30, 30, 16, 12);
  std::fill(p.o.begin(), p.o.end(), 42.0f);
  std::fill(p.lse.begin(), p.lse.end(), 42.0f);
  std::vector<int64_t> badK{1, 2, 30, 17}; // Dqk 17 != q's 16
  p.tk.shape = badK.data();
  std::vector<float> bigK(1 * 2 * 30 * 17);
  p.tk.data = bigK.data();
  EXPECT_EQ(p.run(*kernel), ATTN_ERROR_SHAPE);
  std::string message = attn_last_error();
  EXPECT_NE(message.find("Dqk"), std::string::npos) << message;
  for (float x : p.o)
    ASSERT_EQ(x, 42.0f);
  for (float x : p.lse)
    ASSERT_EQ(x, 42.0f);
  // Hq not a multiple of Hkv.
  p.tk.shape = p.kShape.data();
  p.tk.data = p.k.data();
  std::vector<int64_t> badV{1, 3, 30, 12};
  std::vector<float> v3(1 * 3 * 30 * 12);
  p.tv.shape = badV.data();
  p.tv.data = v3.data();
  EXPECT_EQ(p.run(*kernel), ATTN_ERROR_SHAPE);
  for (float x : p.o)
    ASSERT_EQ(x, 42.0f);
}

TEST(JITCompiler, StridedQueryMatchesCompact) {
  TempDir cache;
  std::string error;
  CompileOptions options = optionsIn(cache);
  options.params = {{"window", "20"}};
  auto kernel =
      Compiler().compile(examplePath("sliding_window.attn"), options, error);
  ASSERT_TRUE(kernel) << error;
  Problem compact(2, 4, 2, 41, 57, 24, 16, /*seed=*/5);
  ASSERT_EQ(compact.run(*kernel), ATTN_OK) << attn_last_error();

  // The same q stored as [B, N, Hq, D] (the layout a QKV projection gives),
  // viewed as [B, Hq, N, D] through strides.
  Problem strided(2, 4, 2, 41, 57, 24, 16, /*seed=*/5);
  const int64_t B = 2, Hq = 4, N = 41, D = 24;
  std::vector<float> bnhd(B * N * Hq * D);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < N; ++i)
        for (int64_t d = 0; d < D; ++d)
          bnhd[((b * N + i) * Hq + h) * D + d] =
              compact.q[((b * Hq + h) * N + i) * D + d];
  std::vector<int64_t> strides{N * Hq * D, D, Hq * D, 1};
  strided.tq.data = bnhd.data();
  strided.tq.strides = strides.data();
  ASSERT_EQ(strided.run(*kernel), ATTN_OK) << attn_last_error();
  double diff = 0;
  for (size_t i = 0; i < compact.o.size(); ++i)
    diff = std::max(diff, double(std::fabs(compact.o[i] - strided.o[i])));
  EXPECT_LE(diff, 1e-6);
  for (size_t i = 0; i < compact.lse.size(); ++i)
    if (!std::isinf(compact.lse[i]))
      EXPECT_NEAR(compact.lse[i], strided.lse[i], 1e-6) << i;
  const int64_t shift = 57 - 41;
  EXPECT_LT(compact.maxError([&](int64_t i, int64_t j) {
    return j <= i + shift && i + shift - j < 20;
  }),
            1e-4);
}

TEST(JITCompiler, CompileAndCacheHitTimes) {
  TempDir cache;
  std::string error;
  Compiler compiler;
  CompileOptions options = optionsIn(cache);
  auto t0 = std::chrono::steady_clock::now();
  auto cold = compiler.compile(examplePath("causal.attn"), options, error);
  double coldSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  ASSERT_TRUE(cold) << error;
  ASSERT_FALSE(cold->cacheHit());
  // Unload it so the hit below really loads the library from disk.
  std::string path = cold->libraryPath();
  cold.reset();

  t0 = std::chrono::steady_clock::now();
  auto hit = compiler.compile(examplePath("causal.attn"), options, error);
  double hitSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  ASSERT_TRUE(hit) << error;
  EXPECT_TRUE(hit->cacheHit());
  EXPECT_EQ(hit->libraryPath(), path);

  std::printf("[ timing ] cold compile %.1f ms, cache-hit load %.2f ms "
              "(kernel reports %.2f ms)\n",
              coldSeconds * 1e3, hitSeconds * 1e3, hit->compileSeconds() * 1e3);
  testing::Test::RecordProperty("cold_compile_ms",
                                std::to_string(coldSeconds * 1e3));
  testing::Test::RecordProperty("cache_hit_ms",
                                std::to_string(hitSeconds * 1e3));
  // The times are reported, not asserted: a loaded CI machine makes any
  // bound flaky (speed is measured by bench/, not by unit tests).
  Problem p(1, 2, 2, 33, 33, 16, 16);
  ASSERT_EQ(p.run(*hit), ATTN_OK) << attn_last_error();
  EXPECT_LT(p.maxError([](int64_t i, int64_t j) { return j <= i; }), 1e-4);
}

TEST(JITCompiler, ConcurrentCompilesOfOneSpec) {
  TempDir cache;
  CompileOptions options = optionsIn(cache);
  options.params = {{"window", "24"}};
  constexpr int kThreads = 3;
  std::unique_ptr<Kernel> kernels[kThreads];
  std::string errors[kThreads];
  std::thread threads[kThreads];
  for (int t = 0; t < kThreads; ++t)
    threads[t] = std::thread([&, t] {
      kernels[t] = Compiler().compile(examplePath("sliding_window.attn"),
                                      options, errors[t]);
    });
  for (auto &t : threads)
    t.join();
  int compiled = 0;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(kernels[t]) << "thread " << t << ": " << errors[t];
    EXPECT_EQ(kernels[t]->libraryPath(), kernels[0]->libraryPath());
    compiled += !kernels[t]->cacheHit();
    Problem p(1, 2, 1, 50, 50, 16, 16, /*seed=*/t);
    ASSERT_EQ(p.run(*kernels[t]), ATTN_OK) << attn_last_error();
    EXPECT_LT(
        p.maxError([](int64_t i, int64_t j) { return j <= i && i - j < 24; }),
        1e-4);
  }
  // One compiled it (under the key's lock); the others loaded its entry.
  EXPECT_EQ(compiled, 1);
  // Only the entry (library, metadata, manifest) is left: no
  // temporaries, no lock file.
  std::vector<std::string> names;
  for (auto &e : fs::directory_iterator(cache.path()))
    names.push_back(fs::path(e.path().filename()).extension().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{".meta", ".sha256", ".so"}));

  // A later compile in this process hits the cache.
  std::string error;
  auto later =
      Compiler().compile(examplePath("sliding_window.attn"), options, error);
  ASSERT_TRUE(later) << error;
  EXPECT_TRUE(later->cacheHit());
}
