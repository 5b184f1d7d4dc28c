//===- RocmRun.cpp - the ROCm half of the runtime
//--------------------------===//
//
// attn_rocm_available(): whether the HIP runtime loads and reports an AMD
// GPU. The ROCm kernels' launch entry follows once the backend compiles
// them (docs/architecture.md, "ROCm").
//
//===----------------------------------------------------------------------===//

#include "../gpu/GpuRun.h"
#include "HipDriver.h"

using namespace attn::runtime;
using namespace attn::runtime::rocm;

extern "C" int32_t attn_rocm_available(void) {
  std::string err;
  int count = 0;
  if (const Driver *drv = loadDriver(err))
    if (hipError_t r = drv->hipGetDeviceCount(&count))
      err = drv->errorText("hipGetDeviceCount", r);
  return gpu::answerAvailable("ROCm", "hipGetDeviceCount", err, count);
}
