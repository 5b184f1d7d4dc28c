//===- RunSpec.h - `attnc run` --------------------------------*- C++ -*-===//
//
// The pieces of `attnc run` shared with `attnc show-mask` and the compiled
// path: planning the inputs (files read, dims bound, shapes of the random
// ones), the memory check against --max-memory that comes before the random
// inputs and the outputs are allocated, and the output files, checked before
// anything is computed and published together at the end.
//
//===----------------------------------------------------------------------===//

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
  /// `attnc run --backward`: forward and backward, the gradients checked
  /// against the reference's; outputs dq, dk, dv, d<aux> as well.
  bool backward = false;
  std::string specPath;
  /// For the compiled path: param bindings ("name=value"), target, timing.
  std::vector<std::string> params;
  std::string target = "cpu";
  int64_t tileQ = 0, tileKV = 0;
  int64_t linearChunk = 64;
  /// CompileOptions::decodeKernels (attnc --no-decode-kernels).
  bool decodeKernels = true;
  int repeat = 5;
  int threads = 0;
  bool check = true;
  /// --max-memory: what inputs, outputs and the reference may use, in bytes
  /// (0: ::attn::defaultMemoryBudget()).
  uint64_t maxMemory = 0;
  /// `attnc run --seqlens n:m,...`: a batch of sequences of these query and
  /// key counts through attn_cpu_run_batch (runBatchSpec); with pageSize > 0
  /// (--page-size) the keys in a paged cache, else packed.
  std::string seqlens;
  int64_t pageSize = 0;
};

/// Binds inputs (from files, or random), evaluates the spec and writes the
/// requested outputs. Prints a summary to `os`. Returns "" or a one-line
/// error message.
std::string runSpec(SpecOp spec, const RunOptions &options,
                    llvm::raw_ostream &os);

//===----------------------------------------------------------------------===//
// Memory
//===----------------------------------------------------------------------===//

/// What a command will hold at its peak, by part, in bytes (saturating at
/// UINT64_MAX, so that overflowing sizes compare as too large).
struct MemoryNeed {
  uint64_t inputs = 0;
  uint64_t outputs = 0;
  uint64_t reference = 0;
  /// Anything else, named in messages by `otherName` ("the tile map").
  uint64_t other = 0;
  const char *otherName = nullptr;
  uint64_t total() const;
};

/// The budget a command gets: `maxMemory`, or the default when 0.
uint64_t memoryBudget(uint64_t maxMemory);

/// "" when `need` fits in `maxMemory` (0: the default budget), else one line
/// such as "inputs, outputs and the reference need 96.0 GiB (inputs 32.0
/// GiB, ...), more than --max-memory=11.7 GiB".
std::string checkMemory(const MemoryNeed &need, uint64_t maxMemory);

/// Parses a --max-memory value ("8G", "512M", "1.5GiB", "1048576").
/// Returns "" or a one-line message.
std::string parseMaxMemory(const std::string &text, uint64_t &bytes);

//===----------------------------------------------------------------------===//
// Inputs
//===----------------------------------------------------------------------===//

/// The inputs of a run before the random ones are made, so that the memory
/// they and the rest of the run need can be checked first.
struct InputPlan {
  /// The inputs read from files (random ones are added by
  /// makeRandomInputs).
  std::map<std::string, ::attn::HostArray> inputs;
  std::set<std::string> fromFile;
  /// The shape of every input of the spec, read or to be made (not yet
  /// checked for consistency: bindShapes does that).
  std::map<std::string, std::vector<int64_t>> shapes;
  /// What all the inputs hold once made (float32 or int32 for random ones).
  uint64_t bytes = 0;
};

/// The input gathering of `attnc run` (shared with `attnc show-mask`): reads
/// `given` ("name=file.npy", each within what `maxMemory` leaves) and checks
/// each against the signature, binds dims from them, then `shape`
/// ("B=1,N=..."), then the defaults, and computes the shapes of the inputs
/// still to be made. Returns "" or a one-line error message.
std::string planInputs(SpecOp spec, const std::vector<std::string> &given,
                       const std::string &shape, uint64_t maxMemory,
                       InputPlan &plan);

/// Makes seeded random inputs for the planned ones not read from files (f32
/// normal, or log gates / betas where linear attention reads them; i32 small
/// sorted ids). Returns "" or a one-line message (a failed allocation).
std::string makeRandomInputs(SpecOp spec, uint64_t seed, InputPlan &plan);

//===----------------------------------------------------------------------===//
// Outputs
//===----------------------------------------------------------------------===//

/// The --output files of a run: parsed and checked (and their temporary
/// files made) before anything is computed, written together at the end:
/// all of them appear or, if a write fails, none does.
struct RunOutputs {
  std::vector<std::string> names; ///< "o", "lse", in the order given
  std::vector<std::string> paths;
  ::attn::NpyOutputFiles files;
  /// The temporary files, removed if the process dies of a signal (Ctrl-C
  /// during a long run) while they exist.
  std::vector<std::string> temporaries;
  ~RunOutputs();
};

/// Parses `--output NAME=FILE.npy` arguments (o, and lse for softmax specs;
/// with `backward` also dq, dk, dv and d<aux> for each differentiable aux
/// input), checks that each file can be written and is not given twice, and
/// makes their temporary files. Returns "" or a one-line error message.
std::string prepareOutputs(SpecOp spec, const std::vector<std::string> &given,
                           RunOutputs &outputs, bool backward = false);

/// The first steps of every `attnc run`, before anything is computed: checks
/// the --output files (prepareOutputs), then reads and plans the inputs
/// (planInputs). Returns "" or a one-line error message.
std::string prepareRun(SpecOp spec, const RunOptions &opts, RunOutputs &outputs,
                       InputPlan &plan);

/// Writes `arrays[name]` for every output and publishes them; prints
/// "wrote NAME (`what`) to PATH" lines to `os`. Returns "" or a message.
std::string
writeOutputs(RunOutputs &outputs,
             const std::map<std::string, const ::attn::HostArray *> &arrays,
             const char *what, llvm::raw_ostream &os);

} // namespace mlir::attn

#endif // ATTN_FRONTEND_RUNSPEC_H
