/*===- aot_main.c - a C program linking attnc's CUDA AOT object -----------===*
 *
 * Built by aot-link.test against the header attnc wrote for
 * examples/causal.attn (--target=cuda) and libattn_runtime alone. It prints
 * the descriptor the header defines, then calls the header's
 * attn_cuda_run_causal():
 *   - with host tensors: ATTN_ERROR_DEVICE on every machine;
 *   - with wrong tensors claimed to be in CUDA memory (k labelled f16, q
 *     misaligned, a wrong M): rejected by validation, before the driver is
 *     touched, so nothing is launched on any machine;
 *   - attn_cuda_available(): on a machine without a GPU 0 and the runtime's
 *     reason, and then well-formed tensors claimed to be in CUDA memory
 *     (never dereferenced) pass validation and stop at the driver.
 *     With a GPU it prints "cuda available: 1" and launches nothing.
 *
 *===----------------------------------------------------------------------===*/

#include "causal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 1, HQ = 4, HKV = 2, N = 100, M = 100, D = 64 };

static int64_t qShape[4] = {B, HQ, N, D};
static int64_t kShape[4] = {B, HKV, M, D};
static int64_t kBadShape[4] = {B, HKV, M + 1, D};
static int64_t oShape[4] = {B, HQ, N, D};
static int64_t lseShape[3] = {B, HQ, N};

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
  t.strides = NULL;
  t.byte_offset = 0;
  return t;
}

/* 256-byte aligned, zeroed; raw[] keeps what free() needs. */
static void *raw[8];
static int numRaw = 0;
static void *alloc16(size_t bytes) {
  unsigned char *p = (unsigned char *)calloc(bytes + 256, 1);
  if (!p || numRaw == 8) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  raw[numRaw++] = p;
  return p + (256 - (uintptr_t)p % 256);
}

static void report(const char *what, attn_status_t st) {
  printf("%s: %s: %s\n", what, attn_status_string(st), attn_last_error());
}

int main(void) {
  const attn_cuda_kernel_desc_t *kd = &attn_causal_cuda_kernel;
  uint32_t magic = 0;
  int32_t i;
  memcpy(&magic, kd->image, sizeof magic);
  printf("kernel %s abi %u inputs %d has_lse %d variants %d magic %08x\n",
         kd->name, (unsigned)kd->abi_version, (int)kd->num_inputs,
         (int)kd->has_lse, (int)kd->num_variants, (unsigned)magic);
  for (i = 0; i < kd->num_inputs; ++i)
    printf("input %s type %d rank %d\n", kd->inputs[i].name,
           (int)kd->inputs[i].type, (int)kd->inputs[i].rank);
  for (i = 0; i < kd->num_variants; ++i)
    printf("variant %s max_head_dim %d block_q %d threads %d smem %d\n",
           kd->variants[i].function, (int)kd->variants[i].max_head_dim,
           (int)kd->variants[i].block_q, (int)kd->variants[i].num_threads,
           (int)kd->variants[i].shared_mem_bytes);
  printf("decode_max_n %d\n", (int)kd->decode_max_n);
  for (i = 0; i < kd->num_decode_variants; ++i)
    printf("decode variant %s max_head_dim %d block_q %d threads %d\n",
           kd->decode_variants[i].function,
           (int)kd->decode_variants[i].max_head_dim,
           (int)kd->decode_variants[i].block_q,
           (int)kd->decode_variants[i].num_threads);
  if (kd->merge_variant)
    printf("merge variant %s block_q %d threads %d\n",
           kd->merge_variant->function, (int)kd->merge_variant->block_q,
           (int)kd->merge_variant->num_threads);

  uint16_t *qb = alloc16(sizeof(uint16_t) * B * HQ * N * D);
  uint16_t *kb = alloc16(sizeof(uint16_t) * B * HKV * M * D);
  uint16_t *vb = alloc16(sizeof(uint16_t) * B * HKV * M * D);
  float *ob = alloc16(sizeof(float) * B * HQ * N * D);
  float *lb = alloc16(sizeof(float) * B * HQ * N);

  /* Host memory: rejected on every machine. */
  DLTensor q = tensor(qb, 4, qShape, kDLBfloat, 16, kDLCPU);
  DLTensor k = tensor(kb, 4, kShape, kDLBfloat, 16, kDLCPU);
  DLTensor v = tensor(vb, 4, kShape, kDLBfloat, 16, kDLCPU);
  DLTensor o = tensor(ob, 4, oShape, kDLFloat, 32, kDLCPU);
  DLTensor lse = tensor(lb, 3, lseShape, kDLFloat, 32, kDLCPU);
  report("host tensors", attn_cuda_run_causal(&q, &k, &v, &o, &lse, NULL));

  /* Claimed CUDA memory, but wrong: validation rejects each before the
     driver is loaded, so this is safe with or without a GPU. */
  q.device.device_type = k.device.device_type = v.device.device_type = kDLCUDA;
  o.device.device_type = lse.device.device_type = kDLCUDA;
  k.dtype.code = kDLFloat;
  report("k labelled f16", attn_cuda_run_causal(&q, &k, &v, &o, &lse, NULL));
  k.dtype.code = kDLBfloat;
  q.byte_offset = 2;
  report("q misaligned", attn_cuda_run_causal(&q, &k, &v, &o, &lse, NULL));
  q.byte_offset = 0;
  v.shape = kBadShape;
  report("v with M + 1 rows", attn_cuda_run_causal(&q, &k, &v, &o, &lse, NULL));
  v.shape = kShape;

  if (!attn_cuda_available()) {
    printf("cuda available: 0: %s\n", attn_last_error());
    /* Well-formed: everything validates, then the driver is missing. */
    report("device tensors, no GPU",
           attn_cuda_run_causal(&q, &k, &v, &o, &lse, NULL));
    report("device tensors, no GPU, no lse",
           attn_cuda_run_causal(&q, &k, &v, &o, NULL, NULL));
  } else {
    printf("cuda available: 1\n");
  }
  while (numRaw > 0)
    free(raw[--numRaw]);
  return 0;
}
