//===- jit_main.cpp - compile and run a spec from C++ with attn::Compiler -===//
//
//   jit_sliding_window [--spec PATH] [--expect-compile | --expect-cache-hit]
//
// Compiles examples/sliding_window.attn with `window = 32` through the JIT
// API, runs it on random inputs of awkward sizes (GQA, M > N, Dqk != Dv)
// given as DLPack tensors, checks o and lse against a naive implementation
// below, and prints the compile time and whether the kernel came from the
// disk cache ($ATTN_CACHE_DIR, else ~/.cache/attnc). With --expect-compile
// or --expect-cache-hit the program also fails unless the kernel was compiled
// or, respectively, loaded from the cache: run it twice with the same fresh
// ATTN_CACHE_DIR and the second process reuses what the first compiled.
//
//===----------------------------------------------------------------------===//

#include "attn/JIT/Compiler.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#ifndef ATTN_EXAMPLES_DIR
#define ATTN_EXAMPLES_DIR "examples"
#endif

namespace {

constexpr int64_t B = 2, Hq = 4, Hkv = 1, N = 77, M = 130, Dqk = 32, Dv = 40;
constexpr int64_t Window = 32;

DLTensor f32Tensor(float *data, std::vector<int64_t> &shape) {
  DLTensor t;
  std::memset(&t, 0, sizeof t);
  t.data = data;
  t.device = {kDLCPU, 0};
  t.ndim = static_cast<int32_t>(shape.size());
  t.dtype = {kDLFloat, 32, 1};
  t.shape = shape.data();
  return t;
}

/// Naive sliding-window softmax attention in double: query i sits at
/// pos = i + M - N and sees keys j with j <= pos && pos - j < window.
void reference(const std::vector<float> &q, const std::vector<float> &k,
               const std::vector<float> &v, std::vector<double> &o,
               std::vector<double> &lse) {
  const int64_t group = Hq / Hkv;
  const double scale = 1.0 / std::sqrt(static_cast<double>(Dqk));
  std::vector<double> s(M);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t hk = h / group;
      for (int64_t i = 0; i < N; ++i) {
        const float *qi = &q[((b * Hq + h) * N + i) * Dqk];
        double *oi = &o[((b * Hq + h) * N + i) * Dv];
        const int64_t pos = i + M - N;
        double mx = -INFINITY, sum = 0;
        std::fill(oi, oi + Dv, 0.0);
        for (int64_t j = 0; j < M; ++j) {
          if (!(j <= pos && pos - j < Window))
            continue;
          const float *kj = &k[((b * Hkv + hk) * M + j) * Dqk];
          double dot = 0;
          for (int64_t d = 0; d < Dqk; ++d)
            dot += double(qi[d]) * double(kj[d]);
          s[j] = scale * dot;
          mx = std::max(mx, s[j]);
        }
        if (mx == -INFINITY) {
          lse[(b * Hq + h) * N + i] = -INFINITY;
          continue;
        }
        for (int64_t j = 0; j < M; ++j) {
          if (!(j <= pos && pos - j < Window))
            continue;
          const float *vj = &v[((b * Hkv + hk) * M + j) * Dv];
          double p = std::exp(s[j] - mx);
          sum += p;
          for (int64_t d = 0; d < Dv; ++d)
            oi[d] += p * double(vj[d]);
        }
        for (int64_t d = 0; d < Dv; ++d)
          oi[d] /= sum;
        lse[(b * Hq + h) * N + i] = mx + std::log(sum);
      }
    }
}

} // namespace

int main(int argc, char **argv) {
  std::string spec = ATTN_EXAMPLES_DIR "/sliding_window.attn";
  enum { Any, ExpectCompile, ExpectHit } expect = Any;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--expect-compile")
      expect = ExpectCompile;
    else if (a == "--expect-cache-hit")
      expect = ExpectHit;
    else if (a == "--spec" && i + 1 < argc)
      spec = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: %s [--spec PATH] [--expect-compile | "
                   "--expect-cache-hit]\n",
                   argv[0]);
      return 2;
    }
  }

  // 1. Compile (or load from the disk cache).
  attn::Compiler compiler;
  attn::CompileOptions options;
  options.params = {{"window", std::to_string(Window)}};
  std::string error;
  std::unique_ptr<attn::Kernel> kernel = compiler.compile(spec, options, error);
  if (!kernel) {
    std::fprintf(stderr, "compile failed: %s\nFAIL\n", error.c_str());
    return 1;
  }
  std::printf("%s %s (window=%lld) in %.1f ms: %s\n  cache dir %s\n"
              "  library   %s\n",
              kernel->cacheHit() ? "loaded" : "compiled", spec.c_str(),
              static_cast<long long>(Window), kernel->compileSeconds() * 1e3,
              kernel->cacheHit() ? "cache hit" : "cache miss",
              attn::Compiler::cacheDirectory(options).c_str(),
              kernel->libraryPath().c_str());

  // 2. Random inputs as DLTensors, run.
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  auto randomVec = [&](size_t n) {
    std::vector<float> x(n);
    for (float &e : x)
      e = dist(rng);
    return x;
  };
  std::vector<float> q = randomVec(B * Hq * N * Dqk), k = randomVec(B * Hkv * M * Dqk),
                     v = randomVec(B * Hkv * M * Dv), o(B * Hq * N * Dv),
                     lse(B * Hq * N);
  std::vector<int64_t> qShape{B, Hq, N, Dqk}, kShape{B, Hkv, M, Dqk},
      vShape{B, Hkv, M, Dv}, oShape{B, Hq, N, Dv}, lseShape{B, Hq, N};
  DLTensor tq = f32Tensor(q.data(), qShape), tk = f32Tensor(k.data(), kShape),
           tv = f32Tensor(v.data(), vShape), to = f32Tensor(o.data(), oShape),
           tlse = f32Tensor(lse.data(), lseShape);
  const DLTensor *inputs[] = {&tq, &tk, &tv};
  attn_status_t status = kernel->run(inputs, &to, &tlse);
  if (status != ATTN_OK) {
    std::fprintf(stderr, "run failed: %s: %s\nFAIL\n",
                 attn_status_string(status), attn_last_error());
    return 1;
  }

  // 3. Check against the naive implementation.
  std::vector<double> oRef(o.size()), lseRef(lse.size());
  reference(q, k, v, oRef, lseRef);
  double errO = 0, errLse = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    double e = std::fabs(double(o[i]) - oRef[i]);
    if (!(e <= errO))
      errO = e;
  }
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(lseRef[i]) && lse[i] == lseRef[i])
      continue;
    double e = std::fabs(double(lse[i]) - lseRef[i]);
    if (!(e <= errLse))
      errLse = e;
  }
  const double tol = 1e-4;
  bool ok = errO <= tol && errLse <= tol;
  std::printf("sliding_window B=%lld Hq=%lld Hkv=%lld N=%lld M=%lld Dqk=%lld "
              "Dv=%lld: max |o - ref| = %.3g, max |lse - ref| = %.3g "
              "(tolerance %.0e)\n",
              (long long)B, (long long)Hq, (long long)Hkv, (long long)N,
              (long long)M, (long long)Dqk, (long long)Dv, errO, errLse, tol);
  if (expect == ExpectCompile && kernel->cacheHit()) {
    std::printf("expected a compile (cache miss) but the kernel came from the "
                "cache\n");
    ok = false;
  }
  if (expect == ExpectHit && !kernel->cacheHit()) {
    std::printf("expected a cache hit but the kernel was compiled\n");
    ok = false;
  }
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
