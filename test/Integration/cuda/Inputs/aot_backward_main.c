/*===- aot_backward_main.c - a C program linking the CUDA backward's object ===*
 *
 * Built by aot-backward.test against the headers attnc wrote for a spec
 * with a learnable bias table (rpb.h, the forward; rpb_bwd.h, the
 * gradients, --target=cuda --backward) and libattn_runtime alone: both
 * objects link into one program. It prints the backward descriptor the
 * header defines, then calls attn_cuda_backward_rpb():
 *   - with host tensors: ATTN_ERROR_DEVICE on every machine;
 *   - with tensors claimed to be in CUDA memory (never dereferenced): a
 *     dout of the wrong type and a dq with gaps are rejected by validation
 *     before the driver is touched.
 *
 *===----------------------------------------------------------------------===*/

#include "rpb.h"
#include "rpb_bwd.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { B = 1, HQ = 2, HKV = 1, N = 40, M = 40, D = 64 };

static int64_t qShape[4] = {B, HQ, N, D};
static int64_t kShape[4] = {B, HKV, M, D};
static int64_t lseShape[3] = {B, HQ, N};
static int64_t rpbShape[2] = {HQ, 17};
static int64_t gappedStrides[4] = {HQ * N * 2 * D, N * 2 * D, 2 * D, 1};

static DLTensor tensor(void *data, int32_t ndim, int64_t *shape, uint8_t code,
                       uint8_t bits, DLDeviceType device) {
  DLTensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = device;
  t.device.device_id = 0;
  t.ndim = ndim;
  t.dtype.code = code;
  t.dtype.bits = bits;
  t.dtype.lanes = 1;
  t.shape = shape;
  return t;
}

static void report(const char *what, attn_status_t st) {
  printf("%s: %s: %s\n", what, attn_status_string(st), attn_last_error());
}

int main(void) {
  const attn_cuda_backward_desc_t *d = &attn_rpb_backward_cuda_kernel;
  int i;
  printf("backward %s abi %u inputs %d needs_lse %d grads %d (input %d) "
         "variants %d\n",
         d->name, d->abi_version, d->num_inputs, d->needs_lse, d->num_grads,
         d->grad_inputs[0], d->num_variants);
  for (i = 0; i < d->num_variants; ++i)
    printf("variant %s max_head_dim %d block_q %d threads %d\n",
           d->variants[i].function, d->variants[i].max_head_dim,
           d->variants[i].block_q, d->variants[i].num_threads);
  printf("forward %s variants %d\n", attn_rpb_cuda_kernel.name,
         attn_rpb_cuda_kernel.num_variants);

  /* Host memory: refused (the kernels need device tensors). */
  {
    static uint16_t q[B * HQ * N * D], kv[B * HKV * M * D];
    static float o[B * HQ * N * D], lse[B * HQ * N], dq[B * HQ * N * D],
        dk[B * HKV * M * D], dv[B * HKV * M * D], rpb[HQ * 17], drpb[HQ * 17];
    DLTensor tq = tensor(q, 4, qShape, kDLBfloat, 16, kDLCPU),
             tk = tensor(kv, 4, kShape, kDLBfloat, 16, kDLCPU),
             tv = tensor(kv, 4, kShape, kDLBfloat, 16, kDLCPU),
             to = tensor(o, 4, qShape, kDLFloat, 32, kDLCPU),
             tl = tensor(lse, 3, lseShape, kDLFloat, 32, kDLCPU),
             tdo = tensor(q, 4, qShape, kDLBfloat, 16, kDLCPU),
             tdq = tensor(dq, 4, qShape, kDLFloat, 32, kDLCPU),
             tdk = tensor(dk, 4, kShape, kDLFloat, 32, kDLCPU),
             tdv = tensor(dv, 4, kShape, kDLFloat, 32, kDLCPU),
             tr = tensor(rpb, 2, rpbShape, kDLFloat, 32, kDLCPU),
             tdr = tensor(drpb, 2, rpbShape, kDLFloat, 32, kDLCPU);
    report("host tensors",
           attn_cuda_backward_rpb(&tq, &tk, &tv, &tr, &to, &tl, &tdo, NULL,
                                  &tdq, &tdk, &tdv, &tdr, NULL));
  }

  /* "Device" tensors at distinct fake addresses, never dereferenced. */
  {
    uintptr_t base = (uintptr_t)1 << 40, step = (uintptr_t)1 << 28;
    DLTensor tq = tensor((void *)(base + 0 * step), 4, qShape, kDLBfloat, 16,
                         kDLCUDA),
             tk = tensor((void *)(base + 1 * step), 4, kShape, kDLBfloat, 16,
                         kDLCUDA),
             tv = tensor((void *)(base + 2 * step), 4, kShape, kDLBfloat, 16,
                         kDLCUDA),
             to = tensor((void *)(base + 3 * step), 4, qShape, kDLFloat, 32,
                         kDLCUDA),
             tl = tensor((void *)(base + 4 * step), 3, lseShape, kDLFloat, 32,
                         kDLCUDA),
             tdo = tensor((void *)(base + 5 * step), 4, qShape, kDLFloat, 32,
                          kDLCUDA),
             tdq = tensor((void *)(base + 6 * step), 4, qShape, kDLFloat, 32,
                          kDLCUDA),
             tdk = tensor((void *)(base + 7 * step), 4, kShape, kDLFloat, 32,
                          kDLCUDA),
             tdv = tensor((void *)(base + 8 * step), 4, kShape, kDLFloat, 32,
                          kDLCUDA),
             tr = tensor((void *)(base + 9 * step), 2, rpbShape, kDLFloat, 32,
                         kDLCUDA),
             tdr = tensor((void *)(base + 10 * step), 2, rpbShape, kDLFloat, 32,
                          kDLCUDA);
    report("f32 dout",
           attn_cuda_backward_rpb(&tq, &tk, &tv, &tr, &to, &tl, &tdo, NULL,
                                  &tdq, &tdk, &tdv, &tdr, NULL));
    tdo.dtype.code = kDLBfloat;
    tdo.dtype.bits = 16;
    tdq.strides = gappedStrides;
    report("dq with gaps",
           attn_cuda_backward_rpb(&tq, &tk, &tv, &tr, &to, &tl, &tdo, NULL,
                                  &tdq, &tdk, &tdv, &tdr, NULL));
  }
  return 0;
}
