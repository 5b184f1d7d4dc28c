//===- RunSpec.h - `attnc run` --------------------------------*- C++ -*-===//

#ifndef ATTN_FRONTEND_RUNSPEC_H
#define ATTN_FRONTEND_RUNSPEC_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "attn/npy.h"
#include "llvm/Support/raw_ostream.h"
#include <map>
#include <set>
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
  /// For the compiled path: param bindings ("name=value"), target, timing.
  std::vector<std::string> params;
  std::string target = "cpu";
  int64_t tileQ = 0, tileKV = 0;
  int64_t linearChunk = 64;
  int repeat = 5;
  int threads = 0;
  bool check = true;
};

/// Binds inputs (from files, or random), evaluates the spec and writes the
/// requested outputs. Prints a summary to `os`. Returns "" or a one-line
/// error message.
std::string runSpec(SpecOp spec, const RunOptions &options,
                    llvm::raw_ostream &os);

/// Parses `--output NAME=FILE.npy` arguments (o, and lse for softmax specs)
/// into `outputs`. Returns "" or a one-line error message.
std::string parseOutputs(SpecOp spec, const std::vector<std::string> &given,
                         std::map<std::string, std::string> &outputs);

/// The input gathering of `attnc run` (shared with `attnc show-mask`): reads
/// `given` ("name=file.npy") and checks each against the signature, binds
/// dims from them, then `shape` ("B=1,N=..."), then the defaults, and makes
/// seeded random inputs for the rest (f32 normal; i32 small sorted ids).
/// `fromFile`, when given, receives the names read from files. Returns "" or
/// a one-line error message.
std::string gatherInputs(SpecOp spec, const std::vector<std::string> &given,
                         const std::string &shape, uint64_t seed,
                         std::map<std::string, ::attn::HostArray> &inputs,
                         std::set<std::string> *fromFile = nullptr);

} // namespace mlir::attn

#endif // ATTN_FRONTEND_RUNSPEC_H
