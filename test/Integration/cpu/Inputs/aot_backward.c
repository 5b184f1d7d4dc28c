/* The AOT door of the gradients: a C program linking the forward and the
 * backward objects attnc wrote for Inputs/rpb-table.attn (and the runtime
 * only). It checks the backward's gradient of the bias table, and of one
 * query element, against central differences of the loss
 * L = sum(o * dout) computed with the forward object, and that a dout of
 * the wrong shape is refused with nothing written. */
#include "rpb_backward.h"
#include "rpb_forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 1, HQ = 2, HKV = 1, N = 23, M = 23, DQK = 8, DV = 5, T = 17 };

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

static float q[B * HQ * N * DQK], k[B * HKV * M * DQK], v[B * HKV * M * DV];
static float rpb[HQ * T], o[B * HQ * N * DV], lse[B * HQ * N];
static float dout[B * HQ * N * DV], dq[B * HQ * N * DQK];
static float dk[B * HKV * M * DQK], dv[B * HKV * M * DV], drpb[HQ * T];
static int64_t sq[] = {B, HQ, N, DQK}, sk[] = {B, HKV, M, DQK},
               sv[] = {B, HKV, M, DV}, st[] = {HQ, T}, so[] = {B, HQ, N, DV},
               sl[] = {B, HQ, N}, sbad[] = {B, HQ, N, DV + 1};

static double loss(const DLTensor *in[4], DLTensor *to) {
  double l = 0;
  int i;
  if (attn_run_rpb(in[0], in[1], in[2], in[3], to, NULL, NULL) != ATTN_OK) {
    fprintf(stderr, "forward: %s\n", attn_last_error());
    exit(1);
  }
  for (i = 0; i < B * HQ * N * DV; ++i)
    l += (double)o[i] * dout[i];
  return l;
}

int main(void) {
  DLTensor tq = tensor(q, sq, 4), tk = tensor(k, sk, 4), tv = tensor(v, sv, 4);
  DLTensor tt = tensor(rpb, st, 2), to = tensor(o, so, 4),
           tl = tensor(lse, sl, 3), tdo = tensor(dout, so, 4);
  DLTensor tdq = tensor(dq, sq, 4), tdk = tensor(dk, sk, 4),
           tdv = tensor(dv, sv, 4), tdt = tensor(drpb, st, 2);
  DLTensor bad = tensor(dout, sbad, 4);
  const DLTensor *in[4];
  int i, failures = 0;
  unsigned seed = 1;
  in[0] = &tq, in[1] = &tk, in[2] = &tv, in[3] = &tt;
#define RND() ((float)((seed = seed * 1103515245u + 12345u) >> 9) / 8388608.0f - 1.0f)
  for (i = 0; i < B * HQ * N * DQK; ++i) q[i] = RND();
  for (i = 0; i < B * HKV * M * DQK; ++i) k[i] = RND();
  for (i = 0; i < B * HKV * M * DV; ++i) v[i] = RND();
  for (i = 0; i < HQ * T; ++i) rpb[i] = RND();
  for (i = 0; i < B * HQ * N * DV; ++i) dout[i] = RND();

  if (attn_run_rpb(&tq, &tk, &tv, &tt, &to, &tl, NULL) != ATTN_OK ||
      attn_backward_rpb(&tq, &tk, &tv, &tt, &to, &tl, &tdo, NULL, &tdq, &tdk,
                        &tdv, &tdt, NULL) != ATTN_OK) {
    fprintf(stderr, "run: %s\n", attn_last_error());
    return 1;
  }
  /* Central differences of L in float32 (h = 1e-2): agreement to ~1e-3. */
  for (i = 0; i < HQ * T + 1; ++i) {
    float *x = i < HQ * T ? &rpb[i] : &q[5];
    float saved = *x, h = 1e-2f;
    double up, down, fd, an = i < HQ * T ? drpb[i] : dq[5];
    *x = saved + h;
    up = loss(in, &to);
    *x = saved - h;
    down = loss(in, &to);
    *x = saved;
    fd = (up - down) / (2 * h);
    if (fabs(fd - an) > 2e-3 * (1 + fabs(fd))) {
      printf("FAIL %s[%d]: backward %g, finite difference %g\n",
             i < HQ * T ? "drpb" : "dq", i, an, fd);
      ++failures;
    }
  }
  printf("gradients vs finite differences: %s\n", failures ? "FAIL" : "OK");
  /* A dout of the wrong shape: a status and nothing written. */
  dq[0] = 12345.0f;
  if (attn_backward_rpb(&tq, &tk, &tv, &tt, &to, &tl, &bad, NULL, &tdq, &tdk,
                        &tdv, &tdt, NULL) != ATTN_ERROR_SHAPE ||
      dq[0] != 12345.0f) {
    printf("FAIL: a wrong dout was not refused cleanly\n");
    ++failures;
  }
  printf("bad dout: %s\n", attn_last_error());
  return failures ? 1 : 0;
}
