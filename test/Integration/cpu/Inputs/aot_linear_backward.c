/* The AOT door of the linear family's gradients: a C program linking the
 * forward and backward objects attnc wrote for examples/gla.attn (and the
 * runtime only). It checks the backward's gradient of the per-feature log
 * gate g, and of one element each of q, k and v, against central
 * differences of L = sum(o * dout) computed with the forward object; GQA
 * 2:1, so dk and dv sum over both query heads. */
#include "gla_backward.h"
#include "gla_forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 1, HQ = 2, HKV = 1, N = 23, DQK = 8, DV = 5 };

static DLTensor tensor(float *data, int64_t *shape, int ndim) {
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

static float q[B * HQ * N * DQK], k[B * HKV * N * DQK], v[B * HKV * N * DV];
static float g[B * HQ * N * DQK], o[B * HQ * N * DV], dout[B * HQ * N * DV];
static float dq[B * HQ * N * DQK], dk[B * HKV * N * DQK];
static float dv[B * HKV * N * DV], dg[B * HQ * N * DQK];
static int64_t sq[] = {B, HQ, N, DQK}, sk[] = {B, HKV, N, DQK},
               sv[] = {B, HKV, N, DV}, so[] = {B, HQ, N, DV};

static double loss(const DLTensor *in[4], DLTensor *to) {
  double l = 0;
  int i;
  if (attn_run_gla(in[0], in[1], in[2], in[3], to, NULL, NULL) != ATTN_OK) {
    fprintf(stderr, "forward: %s\n", attn_last_error());
    exit(1);
  }
  for (i = 0; i < B * HQ * N * DV; ++i)
    l += (double)o[i] * dout[i];
  return l;
}

int main(void) {
  DLTensor tq = tensor(q, sq, 4), tk = tensor(k, sk, 4), tv = tensor(v, sv, 4);
  DLTensor tg = tensor(g, sq, 4), to = tensor(o, so, 4),
           tdo = tensor(dout, so, 4);
  DLTensor tdq = tensor(dq, sq, 4), tdk = tensor(dk, sk, 4),
           tdv = tensor(dv, sv, 4), tdg = tensor(dg, sq, 4);
  const DLTensor *in[4];
  int i, failures = 0, n = B * HQ * N * DQK;
  unsigned seed = 1;
  in[0] = &tq, in[1] = &tk, in[2] = &tv, in[3] = &tg;
#define RND()                                                                  \
  ((float)((seed = seed * 1103515245u + 12345u) >> 9) / 8388608.0f - 1.0f)
  for (i = 0; i < n; ++i)
    q[i] = RND();
  for (i = 0; i < B * HKV * N * DQK; ++i)
    k[i] = RND();
  for (i = 0; i < B * HKV * N * DV; ++i)
    v[i] = RND();
  for (i = 0; i < n; ++i)
    g[i] = -0.5f + 0.25f * RND(); /* decays */
  for (i = 0; i < B * HQ * N * DV; ++i)
    dout[i] = RND();

  if (attn_run_gla(&tq, &tk, &tv, &tg, &to, NULL, NULL) != ATTN_OK ||
      attn_backward_gla(&tq, &tk, &tv, &tg, &to, NULL, &tdo, NULL, &tdq, &tdk,
                        &tdv, &tdg, NULL) != ATTN_OK) {
    fprintf(stderr, "run: %s\n", attn_last_error());
    return 1;
  }
  /* Central differences of L in float32 (h = 1e-2): agreement to ~1e-3.
   * Every element of g, then q[5], k[3], v[2]. */
  for (i = 0; i < n + 3; ++i) {
    float *x = i < n ? &g[i] : i == n ? &q[5] : i == n + 1 ? &k[3] : &v[2];
    double an = i < n ? dg[i] : i == n ? dq[5] : i == n + 1 ? dk[3] : dv[2];
    float saved = *x, h = 1e-2f;
    double up, down, fd;
    *x = saved + h;
    up = loss(in, &to);
    *x = saved - h;
    down = loss(in, &to);
    *x = saved;
    fd = (up - down) / (2 * h);
    if (fabs(fd - an) > 2e-3 * (1 + fabs(fd))) {
      printf("FAIL element %d: backward %g, finite difference %g\n", i, an, fd);
      ++failures;
    }
  }
  printf("gradients vs finite differences: %s\n", failures ? "FAIL" : "OK");
  /* A dlse for a kernel without lse: refused, nothing written. */
  dq[0] = 12345.0f;
  if (attn_backward_gla(&tq, &tk, &tv, &tg, &to, NULL, &tdo, &tdo, &tdq, &tdk,
                        &tdv, &tdg, NULL) != ATTN_ERROR_INVALID_ARGUMENT ||
      dq[0] != 12345.0f) {
    printf("FAIL: a dlse was not refused cleanly\n");
    ++failures;
  }
  printf("dlse: %s\n", attn_last_error());
  return failures ? 1 : 0;
}
