/*===- main.c - an attnc AOT kernel in a CMake project of its own ----------===*
 *
 * Runs the kernel attnc_add_kernel built from window.attn (window = 9) on
 * awkward shapes -- GQA, Dqk != Dv, M != N, prefill (N = 37, M = 53: the
 * window cuts every tile, the first rows see fewer keys) and decode (N = 1
 * and N = 3 against M = 300: the runtime's decode schedule) -- and checks o
 * and lse against a double-precision reference written here. Then a wrong
 * shape must be refused with ATTN_ERROR_SHAPE and nothing written. Prints
 * PASS and exits 0, or FAIL and exits 1.
 *
 *===----------------------------------------------------------------------===*/

#include "window_kernel.h"

#include "attn/version.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WINDOW = 9 };

static uint64_t state = 0x9E3779B97F4A7C15ull;
static float uniform(void) {
  uint64_t r;
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  r = state * 0x2545F4914F6CDD1Dull;
  return (float)((double)(r >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static float *array(size_t n, int random) {
  float *p = (float *)calloc(n ? n : 1, sizeof(float));
  size_t i;
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  for (i = 0; random && i < n; ++i)
    p[i] = uniform();
  return p;
}

static DLTensor tensor(float *data, int32_t ndim, int64_t *shape) {
  DLTensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = kDLCPU;
  t.ndim = ndim;
  t.dtype.code = kDLFloat;
  t.dtype.bits = 32;
  t.dtype.lanes = 1;
  t.shape = shape;
  return t;
}

/* One call at (B, Hq, Hkv, N, M, Dqk, Dv) against the reference; returns
   the number of mismatches. */
static int check(int64_t B, int64_t Hq, int64_t Hkv, int64_t N, int64_t M,
                 int64_t Dqk, int64_t Dv) {
  int64_t qs[4] = {B, Hq, N, Dqk}, ks[4] = {B, Hkv, M, Dqk},
          vs[4] = {B, Hkv, M, Dv}, os[4] = {B, Hq, N, Dv}, ls[3] = {B, Hq, N};
  float *q = array((size_t)(B * Hq * N * Dqk), 1);
  float *k = array((size_t)(B * Hkv * M * Dqk), 1);
  float *v = array((size_t)(B * Hkv * M * Dv), 1);
  float *o = array((size_t)(B * Hq * N * Dv), 0);
  float *lse = array((size_t)(B * Hq * N), 0);
  double *s = (double *)malloc((size_t)M * sizeof(double));
  DLTensor tq = tensor(q, 4, qs), tk = tensor(k, 4, ks), tv = tensor(v, 4, vs);
  DLTensor to = tensor(o, 4, os), tl = tensor(lse, 3, ls);
  attn_status_t st = attn_run_consumer_window(&tq, &tk, &tv, &to, &tl, NULL);
  int64_t b, h, i, j, d, bad = 0;
  double scale = 1.0 / sqrt((double)Dqk), worst = 0;
  if (st != ATTN_OK) {
    printf("FAIL: %s: %s\n", attn_status_string(st), attn_last_error());
    return 1;
  }
  for (b = 0; b < B; ++b)
    for (h = 0; h < Hq; ++h)
      for (i = 0; i < N; ++i) {
        int64_t hk = h / (Hq / Hkv), pos = i + M - N;
        double m = -INFINITY, l = 0, ref;
        for (j = 0; j < M; ++j) {
          s[j] = -INFINITY;
          if (j <= pos && pos - j < WINDOW) {
            double x = 0;
            for (d = 0; d < Dqk; ++d)
              x += (double)q[((b * Hq + h) * N + i) * Dqk + d] *
                   k[((b * Hkv + hk) * M + j) * Dqk + d];
            s[j] = x * scale;
            m = s[j] > m ? s[j] : m;
          }
        }
        for (j = 0; j < M; ++j)
          l += s[j] == -INFINITY ? 0 : exp(s[j] - m);
        ref = l > 0 ? m + log(l) : -INFINITY;
        if (!(lse[(b * Hq + h) * N + i] == ref ||
              fabs(lse[(b * Hq + h) * N + i] - ref) < 1e-4 * (1 + fabs(ref))))
          ++bad;
        for (d = 0; d < Dv; ++d) {
          double acc = 0, err;
          for (j = 0; j < M; ++j)
            if (s[j] != -INFINITY)
              acc += exp(s[j] - m) / l * v[((b * Hkv + hk) * M + j) * Dv + d];
          err = fabs(o[((b * Hq + h) * N + i) * Dv + d] - acc);
          worst = err > worst ? err : worst;
          if (!(err < 1e-4))
            ++bad;
        }
      }
  printf("B=%ld Hq=%ld Hkv=%ld N=%ld M=%ld Dqk=%ld Dv=%ld: max |o - ref| "
         "%.2e, %ld mismatches\n",
         (long)B, (long)Hq, (long)Hkv, (long)N, (long)M, (long)Dqk, (long)Dv,
         worst, (long)bad);
  free(q), free(k), free(v), free(o), free(lse), free(s);
  return bad != 0;
}

int main(void) {
  int failures = 0;
  failures += check(2, 6, 2, 37, 53, 24, 40); /* prefill */
  failures += check(1, 8, 2, 1, 300, 32, 20); /* decode, GQA 4 */
  failures += check(2, 4, 4, 3, 300, 16, 24); /* decode, 3 queries */
  {
    /* q's Dqk disagrees with k's: refused, o untouched. */
    int64_t qs[4] = {1, 2, 5, 8}, ks[4] = {1, 2, 5, 9}, os[4] = {1, 2, 5, 4};
    float *q = array(80, 1), *k = array(90, 1), *v = array(40, 1),
          *o = array(40, 0);
    int64_t vs[4] = {1, 2, 5, 4};
    DLTensor tq = tensor(q, 4, qs), tk = tensor(k, 4, ks),
             tv = tensor(v, 4, vs), to = tensor(o, 4, os);
    int i, untouched = 1;
    o[0] = 42.0f;
    if (attn_run_consumer_window(&tq, &tk, &tv, &to, NULL, NULL) !=
        ATTN_ERROR_SHAPE) {
      printf("FAIL: a wrong shape was not refused\n");
      ++failures;
    }
    for (i = 0; i < 40; ++i)
      untouched &= o[i] == (i == 0 ? 42.0f : 0.0f);
    if (!untouched) {
      printf("FAIL: a refused call wrote to o\n");
      ++failures;
    }
    printf("wrong shape: %s\n", attn_last_error());
    free(q), free(k), free(v), free(o);
  }
  printf("runtime %s, kernel ABI %u\n", attn_runtime_version(),
         attn_runtime_abi_version());
  printf(failures ? "FAIL\n" : "PASS\n");
  return failures != 0;
}
