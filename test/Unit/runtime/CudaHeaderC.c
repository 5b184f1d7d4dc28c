/*===- CudaHeaderC.c - the CUDA part of attn/runtime.h compiles as C -----===*
 *
 * Compiled as C99 so that the new declarations stay C-clean; CudaRunTest.cpp
 * calls this.
 *
 *===----------------------------------------------------------------------===*/

#include "attn/runtime.h"

#include <string.h>

/* Returns 1 when the C view of the CUDA API behaves. */
int attn_test_cuda_c_header(void) {
  static const char *const qDims[4] = {"B", "Hq", "N", "Dqk"};
  attn_input_desc_t inputs[1];
  attn_cuda_kernel_variant_t variant;
  attn_cuda_kernel_desc_t desc;
  attn_status_t status = ATTN_ERROR_DRIVER;
  memset(&desc, 0, sizeof(desc));
  memset(&variant, 0, sizeof(variant));
  inputs[0].name = "q";
  inputs[0].type = ATTN_BF16;
  inputs[0].rank = 4;
  inputs[0].dims = qDims;
  inputs[0].fixed_sizes = NULL;
  variant.function = "f";
  variant.max_head_dim = 64;
  variant.block_q = 64;
  variant.num_threads = 128;
  variant.shared_mem_bytes = 0;
  desc.abi_version = ATTN_ABI_VERSION;
  desc.name = "c";
  desc.image = "";
  desc.image_size = 1;
  desc.num_variants = 1;
  desc.variants = &variant;
  desc.num_inputs = 1; /* malformed: q, k, v needed */
  desc.inputs = inputs;
  desc.has_lse = 1;
  if (attn_cuda_run(&desc, NULL, NULL, NULL, NULL) !=
      ATTN_ERROR_INVALID_ARGUMENT)
    return 0;
  if (attn_last_error()[0] == '\0')
    return 0;
  if (attn_cuda_run(NULL, NULL, NULL, NULL, NULL) !=
      ATTN_ERROR_INVALID_ARGUMENT)
    return 0;
  if (strcmp(attn_status_string(status), "ATTN_ERROR_DRIVER") != 0)
    return 0;
  return 1;
}
