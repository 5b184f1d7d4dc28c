/*===- RocmHeaderC.c - the ROCm part of attn/runtime.h compiles as C -----===*
 *
 * Compiled as C99 so that the ROCm declarations stay C-clean; RocmRunTest.cpp
 * calls this.
 *
 *===----------------------------------------------------------------------===*/

#include "attn/runtime.h"

#include <string.h>

/* Returns 1 when the C view of the ROCm API behaves: its types are the
   CUDA ones, and malformed calls are refused before HIP. */
int attn_test_rocm_c_header(void) {
  attn_rocm_kernel_variant_t variant;
  attn_rocm_kernel_desc_t desc;
  attn_rocm_backward_desc_t backward;
  const attn_cuda_kernel_desc_t *same = &desc;
  memset(&variant, 0, sizeof(variant));
  memset(&desc, 0, sizeof(desc));
  memset(&backward, 0, sizeof(backward));
  variant.function = "f";
  variant.shared_mem_bytes = 65536;
  desc.abi_version = ATTN_ABI_VERSION;
  desc.name = "c";
  desc.image = NULL; /* malformed: no image */
  desc.num_variants = 1;
  desc.variants = &variant;
  backward.abi_version = ATTN_ABI_VERSION;
  if (attn_rocm_run(same, NULL, NULL, NULL, NULL) !=
      ATTN_ERROR_INVALID_ARGUMENT)
    return 0;
  if (strstr(attn_last_error(), "not compiled for ROCm") == NULL)
    return 0;
  if (attn_rocm_run_backward(&backward, NULL, NULL, NULL, NULL, NULL, NULL,
                             NULL, NULL, NULL,
                             NULL) != ATTN_ERROR_INVALID_ARGUMENT)
    return 0;
  return 1;
}
