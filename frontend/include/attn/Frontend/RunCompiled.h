//===- RunCompiled.h - `attnc run` through a compiled kernel ----*- C++ -*-===//

#ifndef ATTN_FRONTEND_RUNCOMPILED_H
#define ATTN_FRONTEND_RUNCOMPILED_H

#include "attn/Frontend/RunSpec.h"

namespace mlir::attn {

/// Gathers inputs like runSpec, JIT-compiles the spec at opts.specPath with
/// opts.params, runs it opts.repeat times and, when opts.check, compares with
/// the float64 reference (NaN and infinities agree only with the same value
/// in the same place). The output paths and the memory the run needs (inputs
/// and their kernel-typed copies, o and lse, the reference) are checked
/// before anything is compiled or allocated. Returns "" or a one-line error
/// message.
std::string runCompiledSpec(SpecOp spec, const RunOptions &opts,
                            llvm::raw_ostream &os);

/// `attnc run --backward`: the compiled forward and backward kernels on the
/// same inputs (`--input do=FILE.npy`, `dlse=...`, else a random do), both
/// timed, every gradient checked against evaluateReferenceBackward unless
/// !opts.check; with opts.reference, the reference's gradients alone.
/// Outputs o, lse, dq, dk, dv and d<aux>. Returns "" or a one-line error.
std::string runBackwardSpec(SpecOp spec, const RunOptions &opts,
                            llvm::raw_ostream &os);

/// `attnc run --seqlens n0:m0,n1:m1,...`: a ragged batch (q packed with
/// cu_seqlens_q; k and v packed with cu_seqlens_k or, with opts.pageSize, a
/// shuffled page pool with a block table and kv_lens) through the compiled
/// kernel's attn_cpu_run_batch, timed, and each sequence checked against the
/// float64 reference on its own rows unless !opts.check. Inputs are made or
/// read as the padded batch [B, H, longest run, D] (--shape sets only heads
/// and head dims). Outputs o [total_q, Hq, Dv] and lse [Hq, total_q].
/// Returns "" or a one-line error.
std::string runBatchSpec(SpecOp spec, const RunOptions &opts,
                         llvm::raw_ostream &os);

} // namespace mlir::attn

#endif
