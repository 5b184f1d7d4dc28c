//===- Pipelines.h - the one attn pass pipeline builder ---------*- C++ -*-===//
//
// attnc, attn-opt (as named pipelines) and the JIT all build their pass
// pipelines here, so every tool runs the same lowering and can stop at the
// same stages.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_PIPELINES_PIPELINES_H
#define ATTN_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassManager.h"
#include <string>

namespace mlir::attn {

/// Where a pipeline stops.
enum class Stage {
  Attn,  ///< bound and verified attn dialect
  Tiled, ///< attn with an #attn.schedule
  CPU,   ///< scf/vector/memref kernel functions
  LLVM,  ///< LLVM dialect with the runtime entry points
};

struct CPUPipelineOptions {
  int64_t tileQ = 0;  ///< 0: heuristic
  int64_t tileKV = 0; ///< 0: heuristic
  int64_t vectorWidth = 16;
  /// Linear attention: steps per chunk (0: the recurrent form).
  int64_t linearChunk = 64;
  /// Linear attention: carry the state in and out (attn-add-linear-state).
  bool linearState = false;
};

/// Adds the passes that take a module of attn.spec ops from stage `start`
/// to stage `stop`.
void buildAttnCPUPipeline(OpPassManager &pm, const CPUPipelineOptions &options,
                          Stage stop = Stage::LLVM, Stage start = Stage::Attn);

/// Registers the attn passes and the named pipeline `attn-lower-to-cpu`.
void registerAttnPipelines();

} // namespace mlir::attn

#endif
