/*===- aot_rocm_main.c - a C program linking attnc's ROCm AOT objects -----===*
 *
 * Built by aot.test against the headers attnc wrote for examples/gla.attn
 * (--target=rocm, forward and --backward) and libattn_runtime alone. It
 * prints the descriptors the headers define, then calls the entries:
 *   - with host tensors: ATTN_ERROR_DEVICE on every machine;
 *   - attn_rocm_available(): 0 and the runtime's reason where HIP reports
 *     no AMD GPU (this project's machines), then well-formed tensors
 *     claimed to be in ROCm memory (never dereferenced) pass validation and
 *     stop at HIP with a one-line DRIVER error. With a GPU it prints
 *     "rocm available: 1" and launches nothing.
 *
 *===----------------------------------------------------------------------===*/

#include "gla.h"
#include "gla_bwd.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 1, HQ = 4, HKV = 2, N = 100, D = 64 };

static int64_t qShape[4] = {B, HQ, N, D};
static int64_t kShape[4] = {B, HKV, N, D};
static int64_t gShape[4] = {B, HQ, N, D};
static int64_t oShape[4] = {B, HQ, N, D};

static DLTensor tensor(void *data, int64_t *shape, uint8_t code, uint8_t bits,
                       DLDeviceType device) {
  DLTensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = device;
  t.ndim = 4;
  t.dtype.code = code;
  t.dtype.bits = bits;
  t.dtype.lanes = 1;
  t.shape = shape;
  return t;
}

static void report(const char *what, attn_status_t st) {
  printf("%s: %s: %s\n", what, attn_status_string(st), attn_last_error());
}

static void describe(const char *what, const attn_rocm_kernel_variant_t *v,
                     int32_t n, const void *image) {
  char magic[25];
  int32_t i;
  memcpy(magic, image, 24);
  magic[24] = 0;
  printf("%s variants %d image %s\n", what, (int)n, magic);
  for (i = 0; i < n; ++i)
    printf("variant %s max_head_dim %d threads %d lds %d scratch %d\n",
           v[i].function, (int)v[i].max_head_dim, (int)v[i].num_threads,
           (int)v[i].shared_mem_bytes, (int)(v[i].scratch_state_floats > 0));
}

int main(void) {
  /* Fake, 256-byte aligned device addresses: never dereferenced. */
  uintptr_t base = 0x100000;
  const attn_rocm_kernel_desc_t *kd = &attn_gla_rocm_kernel;
  const attn_rocm_backward_desc_t *bd = &attn_gla_backward_rocm_kernel;
  DLTensor q, k, v, g, o, dout, dq, dk, dv, dg;
  int available;
  describe("forward", kd->variants, kd->num_variants, kd->image);
  describe("backward", bd->variants, bd->num_variants, bd->image);

  q = tensor(malloc(B * HQ * N * D * 2), qShape, kDLBfloat, 16, kDLCPU);
  k = tensor(malloc(B * HKV * N * D * 2), kShape, kDLBfloat, 16, kDLCPU);
  v = tensor(malloc(B * HKV * N * D * 2), kShape, kDLBfloat, 16, kDLCPU);
  g = tensor(malloc(B * HQ * N * D * 4), gShape, kDLFloat, 32, kDLCPU);
  o = tensor(malloc(B * HQ * N * D * 4), oShape, kDLFloat, 32, kDLCPU);
  report("host tensors", attn_rocm_run_gla(&q, &k, &v, &g, &o, NULL, NULL));
  free(q.data);
  free(k.data);
  free(v.data);
  free(g.data);
  free(o.data);

  available = attn_rocm_available();
  printf("rocm available: %d\n", available);
  if (available)
    return 0;
  printf("why: %s\n", attn_last_error());
  q = tensor((void *)(base + 0x000000), qShape, kDLBfloat, 16, kDLROCM);
  k = tensor((void *)(base + 0x100000), kShape, kDLBfloat, 16, kDLROCM);
  v = tensor((void *)(base + 0x200000), kShape, kDLBfloat, 16, kDLROCM);
  g = tensor((void *)(base + 0x300000), gShape, kDLFloat, 32, kDLROCM);
  o = tensor((void *)(base + 0x400000), oShape, kDLFloat, 32, kDLROCM);
  report("forward", attn_rocm_run_gla(&q, &k, &v, &g, &o, NULL, NULL));
  dout = tensor((void *)(base + 0x500000), qShape, kDLBfloat, 16, kDLROCM);
  dq = tensor((void *)(base + 0x600000), qShape, kDLFloat, 32, kDLROCM);
  dk = tensor((void *)(base + 0x700000), kShape, kDLFloat, 32, kDLROCM);
  dv = tensor((void *)(base + 0x800000), kShape, kDLFloat, 32, kDLROCM);
  dg = tensor((void *)(base + 0x900000), gShape, kDLFloat, 32, kDLROCM);
  report("backward", attn_rocm_backward_gla(&q, &k, &v, &g, &o, NULL, &dout,
                                            NULL, &dq, &dk, &dv, &dg, NULL));
  return 0;
}
