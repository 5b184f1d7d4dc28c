/*===- RuntimeHeaderC.c - attn/runtime.h compiles as C --------------------===*
 *
 * Compiled as C so that the header stays C-clean; RuntimeTest.cpp calls this.
 *
 *===----------------------------------------------------------------------===*/

#include "attn/runtime.h"
#include "attn/version.h"

#include <string.h>

static void noopKernel(void **args, int64_t begin, int64_t end) {
  (void)args;
  (void)begin;
  (void)end;
}

/* Returns 1 when the C view of the API behaves. */
int attn_test_c_header(void) {
  attn_kernel_desc_t desc;
  attn_run_options_t options = {1};
  memset(&desc, 0, sizeof(desc));
  desc.abi_version = ATTN_ABI_VERSION;
  desc.cpu_fn = noopKernel;
  desc.tile_q = 1;
  desc.num_inputs = 3;
  /* inputs is NULL: a malformed descriptor. */
  if (attn_cpu_run(&desc, NULL, NULL, NULL, &options) !=
      ATTN_ERROR_INVALID_ARGUMENT)
    return 0;
  if (attn_last_error()[0] == '\0')
    return 0;
  if (strcmp(attn_status_string(ATTN_ERROR_LAYOUT), "ATTN_ERROR_LAYOUT") != 0)
    return 0;
  if (strcmp(attn_status_string(ATTN_ERROR_OUT_OF_MEMORY),
             "ATTN_ERROR_OUT_OF_MEMORY") != 0 ||
      ATTN_MAX_HEAD_DIM < 576 || ATTN_KERNEL_OUT_OF_MEMORY == ATTN_KERNEL_OK)
    return 0;
  /* The runtime reports the version and ABI its headers declare. */
  if (strcmp(attn_runtime_version(), ATTN_VERSION_STRING) != 0 ||
      attn_runtime_abi_version() != ATTN_ABI_VERSION)
    return 0;
  return attn_cpu_num_threads() >= 1;
}
