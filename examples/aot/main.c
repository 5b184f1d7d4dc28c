/*===- main.c - ahead-of-time attnc kernel called from plain C ------------===*
 *
 * Build the kernel once with the compiler:
 *
 *   attnc examples/causal.attn --target=cpu -o causal_kernel.o --header causal_kernel.h
 *
 * then compile this file against the generated header and link the object
 * with the runtime only (no MLIR or LLVM at run time):
 *
 *   cc -std=c99 -I. -Iruntime/include main.c causal_kernel.o -lattn_runtime -lm
 *
 * The program runs causal attention on deterministic pseudo-random inputs of
 * awkward sizes (GQA, Dqk != Dv, N not a power of two), checks o and lse
 * against a naive causal softmax attention computed here in double, and
 * checks that a wrong shape is rejected with ATTN_ERROR_SHAPE. It prints
 * PASS or FAIL and exits non-zero on failure.
 *
 *===----------------------------------------------------------------------===*/

#include "causal_kernel.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 1, HQ = 4, HKV = 2, N = 100, M = 100, DQK = 64, DV = 48 };

/* A DLTensor over a host float32 buffer, compact row-major (strides NULL). */
static DLTensor f32Tensor(float *data, int32_t ndim, int64_t *shape) {
  DLTensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = kDLCPU;
  t.device.device_id = 0;
  t.ndim = ndim;
  t.dtype.code = kDLFloat;
  t.dtype.bits = 32;
  t.dtype.lanes = 1;
  t.shape = shape;
  t.strides = NULL;
  t.byte_offset = 0;
  return t;
}

/* xorshift64*: deterministic uniform floats in [-1, 1). */
static uint64_t rngState = 0x9E3779B97F4A7C15ull;
static float nextUniform(void) {
  rngState ^= rngState >> 12;
  rngState ^= rngState << 25;
  rngState ^= rngState >> 27;
  uint64_t r = rngState * 0x2545F4914F6CDD1Dull;
  return (float)((double)(r >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static float *randomArray(size_t count) {
  float *p = (float *)malloc(count * sizeof(float));
  size_t i;
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  for (i = 0; i < count; ++i)
    p[i] = nextUniform();
  return p;
}

/* Naive causal softmax attention (bottom-right aligned: key j is visible to
   query i when j <= i + M - N), accumulated in double. Fully masked rows give
   o = 0 and lse = -inf. */
static void reference(const float *q, const float *k, const float *v,
                      double *o, double *lse) {
  const int group = HQ / HKV;
  const double scale = 1.0 / sqrt((double)DQK);
  double *s = (double *)malloc(M * sizeof(double));
  int b, h, i, j, d;
  for (b = 0; b < B; ++b)
    for (h = 0; h < HQ; ++h) {
      const int hk = h / group;
      for (i = 0; i < N; ++i) {
        const float *qi = q + (((size_t)b * HQ + h) * N + i) * DQK;
        double *oi = o + (((size_t)b * HQ + h) * N + i) * DV;
        double mx = -INFINITY, sum = 0.0;
        const int last = i + M - N; /* last visible key */
        for (d = 0; d < DV; ++d)
          oi[d] = 0.0;
        for (j = 0; j < M && j <= last; ++j) {
          const float *kj = k + (((size_t)b * HKV + hk) * M + j) * DQK;
          double dot = 0.0;
          for (d = 0; d < DQK; ++d)
            dot += (double)qi[d] * (double)kj[d];
          s[j] = scale * dot;
          if (s[j] > mx)
            mx = s[j];
        }
        if (last < 0) {
          lse[((size_t)b * HQ + h) * N + i] = -INFINITY;
          continue;
        }
        for (j = 0; j < M && j <= last; ++j) {
          const float *vj = v + (((size_t)b * HKV + hk) * M + j) * DV;
          const double p = exp(s[j] - mx);
          sum += p;
          for (d = 0; d < DV; ++d)
            oi[d] += p * (double)vj[d];
        }
        for (d = 0; d < DV; ++d)
          oi[d] /= sum;
        lse[((size_t)b * HQ + h) * N + i] = mx + log(sum);
      }
    }
  free(s);
}

int main(void) {
  int64_t qShape[4] = {B, HQ, N, DQK}, kShape[4] = {B, HKV, M, DQK};
  int64_t vShape[4] = {B, HKV, M, DV}, oShape[4] = {B, HQ, N, DV};
  int64_t lseShape[3] = {B, HQ, N};
  int64_t badShape[4] = {B, HKV, M, DQK + 1}; /* k with a wrong Dqk */
  const size_t qCount = (size_t)B * HQ * N * DQK, kCount = (size_t)B * HKV * M * DQK;
  const size_t vCount = (size_t)B * HKV * M * DV, oCount = (size_t)B * HQ * N * DV;
  const size_t lseCount = (size_t)B * HQ * N;
  float *q = randomArray(qCount), *k = randomArray(kCount), *v = randomArray(vCount);
  float *o = (float *)malloc(oCount * sizeof(float));
  float *lse = (float *)malloc(lseCount * sizeof(float));
  double *oRef = (double *)malloc(oCount * sizeof(double));
  double *lseRef = (double *)malloc(lseCount * sizeof(double));
  float *kBad = (float *)calloc((size_t)B * HKV * M * (DQK + 1), sizeof(float));
  DLTensor tq = f32Tensor(q, 4, qShape), tk = f32Tensor(k, 4, kShape);
  DLTensor tv = f32Tensor(v, 4, vShape), to = f32Tensor(o, 4, oShape);
  DLTensor tlse = f32Tensor(lse, 3, lseShape), tkBad = f32Tensor(kBad, 4, badShape);
  double maxErrO = 0.0, maxErrLse = 0.0;
  const double tol = 1e-4;
  attn_status_t status;
  size_t i;
  int ok = 1;

  if (!o || !lse || !oRef || !lseRef || !kBad) {
    fprintf(stderr, "out of memory\n");
    return 2;
  }

  /* 1. Run the compiled kernel and compare with the naive reference. */
  status = attn_run_causal(&tq, &tk, &tv, &to, &tlse, NULL);
  if (status != ATTN_OK) {
    printf("attn_run_causal failed: %s: %s\nFAIL\n", attn_status_string(status),
           attn_last_error());
    return 1;
  }
  reference(q, k, v, oRef, lseRef);
  for (i = 0; i < oCount; ++i) {
    const double e = fabs((double)o[i] - oRef[i]);
    if (!(e <= maxErrO)) /* also catches NaN */
      maxErrO = e;
  }
  for (i = 0; i < lseCount; ++i) {
    double e;
    if (isinf(lseRef[i]) && isinf(lse[i]) && (lseRef[i] < 0) == (lse[i] < 0))
      continue;
    e = fabs((double)lse[i] - lseRef[i]);
    if (!(e <= maxErrLse))
      maxErrLse = e;
  }
  printf("causal B=%d Hq=%d Hkv=%d N=%d M=%d Dqk=%d Dv=%d: max |o - ref| = %.3g, "
         "max |lse - ref| = %.3g (tolerance %.0e)\n",
         B, HQ, HKV, N, M, DQK, DV, maxErrO, maxErrLse, tol);
  if (!(maxErrO <= tol) || !(maxErrLse <= tol))
    ok = 0;

  /* 2. A wrong shape is rejected with a message, and o is left untouched. */
  for (i = 0; i < oCount; ++i)
    o[i] = 12345.0f;
  status = attn_run_causal(&tq, &tkBad, &tv, &to, NULL, NULL);
  printf("wrong k shape [%d, %d, %d, %d]: %s: %s\n", B, HKV, M, DQK + 1,
         attn_status_string(status), attn_last_error());
  if (status != ATTN_ERROR_SHAPE || attn_last_error()[0] == '\0') {
    printf("expected ATTN_ERROR_SHAPE with a message\n");
    ok = 0;
  }
  for (i = 0; i < oCount; ++i)
    if (o[i] != 12345.0f) {
      printf("o was written by a rejected call\n");
      ok = 0;
      break;
    }

  printf("%s\n", ok ? "PASS" : "FAIL");
  free(q);
  free(k);
  free(v);
  free(o);
  free(lse);
  free(oRef);
  free(lseRef);
  free(kBad);
  return ok ? 0 : 1;
}
