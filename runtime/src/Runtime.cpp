//===- Runtime.cpp - status codes and the thread-local last error ---------===//

#include "RuntimeInternal.h"
#include "attn/version.h"

#include <cstring>

namespace {
/// The message behind attn_last_error(); one per thread.
thread_local std::string lastError;
} // namespace

void attn::runtime::clearLastError() { lastError.clear(); }

attn_status_t attn::runtime::fail(attn_status_t code, std::string message) {
  for (char &c : message)
    if (c == '\n' || c == '\r')
      c = ' ';
  lastError = std::move(message);
  return code;
}

extern "C" const char *attn_runtime_version(void) {
  return ATTN_VERSION_STRING;
}

extern "C" uint32_t attn_runtime_abi_version(void) { return ATTN_ABI_VERSION; }

extern "C" const char *attn_status_string(attn_status_t status) {
  // A caller may pass any integer: switch on the underlying int32, never on
  // an enum value outside the enumerators (UB that UBSan reports).
  int32_t code;
  static_assert(sizeof(code) == sizeof(status), "attn_status_t is 32-bit");
  std::memcpy(&code, &status, sizeof(code));
  switch (code) {
  case ATTN_OK:
    return "ATTN_OK";
  case ATTN_ERROR_INVALID_ARGUMENT:
    return "ATTN_ERROR_INVALID_ARGUMENT";
  case ATTN_ERROR_SHAPE:
    return "ATTN_ERROR_SHAPE";
  case ATTN_ERROR_DTYPE:
    return "ATTN_ERROR_DTYPE";
  case ATTN_ERROR_DEVICE:
    return "ATTN_ERROR_DEVICE";
  case ATTN_ERROR_LAYOUT:
    return "ATTN_ERROR_LAYOUT";
  case ATTN_ERROR_UNSUPPORTED:
    return "ATTN_ERROR_UNSUPPORTED";
  case ATTN_ERROR_INTERNAL:
    return "ATTN_ERROR_INTERNAL";
  case ATTN_ERROR_DRIVER:
    return "ATTN_ERROR_DRIVER";
  case ATTN_ERROR_OUT_OF_MEMORY:
    return "ATTN_ERROR_OUT_OF_MEMORY";
  }
  return "ATTN_ERROR_UNKNOWN";
}

extern "C" const char *attn_last_error(void) { return lastError.c_str(); }
