//===- RunSpec.h - `attnc run` --------------------------------*- C++ -*-===//

#ifndef ATTN_FRONTEND_RUNSPEC_H
#define ATTN_FRONTEND_RUNSPEC_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "llvm/Support/raw_ostream.h"
#include <string>
#include <vector>

namespace mlir::attn {

struct RunOptions {
  std::vector<std::string> inputs;  ///< "name=file.npy"
  std::vector<std::string> outputs; ///< "o=file.npy", "lse=file.npy"
  std::string shape;                ///< "B=1,Hq=4,..."
  uint64_t seed = 0;
  bool reference = false;
  std::string specPath;
};

/// Binds inputs (from files, or random), evaluates the spec and writes the
/// requested outputs. Prints a summary to `os`. Returns "" or a one-line
/// error message.
std::string runSpec(SpecOp spec, const RunOptions &options,
                    llvm::raw_ostream &os);

} // namespace mlir::attn

#endif // ATTN_FRONTEND_RUNSPEC_H
