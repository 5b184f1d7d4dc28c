//===- RunCompiled.h - `attnc run` through a compiled kernel ----*- C++ -*-===//

#ifndef ATTN_FRONTEND_RUNCOMPILED_H
#define ATTN_FRONTEND_RUNCOMPILED_H

#include "attn/Frontend/RunSpec.h"

namespace mlir::attn {

/// Gathers inputs like runSpec, JIT-compiles the spec at opts.specPath with
/// opts.params, runs it opts.repeat times and, when opts.check, compares with
/// the float64 reference. Returns "" or a one-line error message.
std::string runCompiledSpec(SpecOp spec, const RunOptions &opts,
                            llvm::raw_ostream &os);

} // namespace mlir::attn

#endif
