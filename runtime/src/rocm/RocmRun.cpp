//===- RocmRun.cpp - the ROCm half of the runtime
//--------------------------===//
//
// attn_rocm_available(): whether the HIP runtime loads and reports an AMD
// GPU. The ROCm kernels' launch entry follows once the backend compiles
// them (docs/architecture.md, "ROCm").
//
//===----------------------------------------------------------------------===//

#include "../RuntimeInternal.h"
#include "HipDriver.h"
#include "attn/runtime.h"

using namespace attn::runtime;
using namespace attn::runtime::rocm;

extern "C" int32_t attn_rocm_available(void) {
  clearLastError();
  std::string err;
  const Driver *drv = loadDriver(err);
  if (!drv) {
    fail(ATTN_ERROR_DRIVER, err);
    return 0;
  }
  int count = 0;
  if (hipError_t r = drv->hipGetDeviceCount(&count)) {
    fail(ATTN_ERROR_DRIVER, drv->errorText("hipGetDeviceCount", r));
    return 0;
  }
  if (count < 1) {
    fail(ATTN_ERROR_DRIVER,
         "no ROCm device: hipGetDeviceCount reports " + std::to_string(count));
    return 0;
  }
  return 1;
}
