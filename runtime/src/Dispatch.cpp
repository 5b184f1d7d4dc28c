//===- Dispatch.cpp - attn_run: one entry that picks the backend ----------===//
//
// The device-dispatching entry beside the per-backend ones: the tensors'
// DLPack device selects which of a kernel's compiled targets runs. Each
// backend validates its own call; this file only finds the entry. A new
// backend adds its device type here and its run function beside the others.
//
//===----------------------------------------------------------------------===//

#include "RuntimeInternal.h"

#include <string>

namespace {

/// The device type whose code runs on memory of `type`: pinned host memory
/// is host memory, managed CUDA memory is CUDA memory, kDLROCM is its own.
int32_t codeDeviceFor(int32_t type) {
  switch (type) {
  case kDLCPU:
  case kDLCUDAHost:
  case kDLROCMHost:
    return kDLCPU;
  case kDLCUDA:
  case kDLCUDAManaged:
    return kDLCUDA;
  default:
    return type;
  }
}

} // namespace

extern "C" const char *attn_device_type_name(int32_t type) {
  switch (type) {
  case kDLCPU:
    return "cpu";
  case kDLCUDA:
    return "cuda";
  case kDLCUDAHost:
    return "cuda_host";
  case kDLCUDAManaged:
    return "cuda_managed";
  case kDLROCM:
    return "rocm";
  case kDLROCMHost:
    return "rocm_host";
  default:
    return "unknown";
  }
}

extern "C" attn_status_t attn_run(const attn_kernel_t *kernel,
                                  const DLTensor *const *inputs, DLTensor *o,
                                  DLTensor *lse,
                                  const attn_run_options_t *options,
                                  void *stream) {
  using attn::runtime::fail;
  attn::runtime::clearLastError();
  if (!kernel)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "kernel is NULL");
  const char *name = kernel->name ? kernel->name : "?";
  if (kernel->abi_version != ATTN_ABI_VERSION)
    return fail(
        ATTN_ERROR_UNSUPPORTED,
        std::string("kernel '") + name + "' was built for ABI version " +
            std::to_string(kernel->abi_version) + ", this runtime is version " +
            std::to_string(ATTN_ABI_VERSION));
  if (kernel->num_targets < 0 || (kernel->num_targets > 0 && !kernel->targets))
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                std::string("kernel '") + name + "': malformed target list");
  if (!inputs || !inputs[0])
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "inputs or q is NULL");
  const int32_t want = codeDeviceFor(inputs[0]->device.device_type);
  const attn_kernel_target_t *found = nullptr;
  std::string have;
  for (int32_t i = 0; i < kernel->num_targets; ++i) {
    const attn_kernel_target_t &t = kernel->targets[i];
    if (!t.desc)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  std::string("kernel '") + name + "': target " +
                      std::to_string(i) + " has a NULL descriptor");
    for (int32_t j = 0; j < i; ++j)
      if (kernel->targets[j].device_type == t.device_type)
        return fail(ATTN_ERROR_INVALID_ARGUMENT,
                    std::string("kernel '") + name + "': two targets for " +
                        attn_device_type_name(t.device_type));
    have += std::string(have.empty() ? "" : ", ") +
            attn_device_type_name(t.device_type);
    if (t.device_type == want)
      found = &t;
  }
  if (!found)
    return fail(
        ATTN_ERROR_DEVICE,
        std::string("kernel '") + name + "' has no code for q's device (" +
            attn_device_type_name(inputs[0]->device.device_type) +
            "); it was compiled for: " + (have.empty() ? "nothing" : have));
  switch (want) {
  case kDLCPU:
    return attn_cpu_run(static_cast<const attn_kernel_desc_t *>(found->desc),
                        inputs, o, lse, options);
  case kDLCUDA:
    return attn_cuda_run(
        static_cast<const attn_cuda_kernel_desc_t *>(found->desc), inputs, o,
        lse, stream);
  case kDLROCM:
    return attn_rocm_run(
        static_cast<const attn_rocm_kernel_desc_t *>(found->desc), inputs, o,
        lse, stream);
  default:
    return fail(ATTN_ERROR_DEVICE,
                std::string("this runtime cannot run code for ") +
                    attn_device_type_name(want));
  }
}
