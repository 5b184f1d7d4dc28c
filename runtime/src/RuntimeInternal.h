//===- RuntimeInternal.h - shared helpers of the runtime ------*- C++ -*-===//
//
// Private to runtime/src: the thread-local last-error slot behind
// attn_last_error(). Plain C++17, no MLIR/LLVM.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_RUNTIME_RUNTIMEINTERNAL_H
#define ATTN_RUNTIME_RUNTIMEINTERNAL_H

#include "attn/runtime.h"

#include <string>

namespace attn::runtime {

/// Clears this thread's last error (every entry point starts with this).
void clearLastError();

/// Sets this thread's last error to \p message (newlines become spaces) and
/// returns \p code, so that failures read `return fail(CODE, "...")`.
attn_status_t fail(attn_status_t code, std::string message);

} // namespace attn::runtime

#endif // ATTN_RUNTIME_RUNTIMEINTERNAL_H
