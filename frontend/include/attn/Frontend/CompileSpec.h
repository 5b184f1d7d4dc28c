//===- CompileSpec.h - spec module to CPU kernel artifacts ------*- C++ -*-===//
//
// The compile step shared by attnc (AOT, --emit) and the JIT: run the one
// pipeline on a loaded spec and produce an object file plus what the runtime
// needs to know about it.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_FRONTEND_COMPILESPEC_H
#define ATTN_FRONTEND_COMPILESPEC_H

#include "attn/Dialect/Attn/IR/AttnOps.h"
#include "attn/Pipelines/Pipelines.h"
#include "attn/Signature.h"
#include "attn/Target/CPUTarget.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::attn {

struct KernelInfo {
  std::string name;   ///< spec name
  std::string symbol; ///< "attn_<name>", the packed entry point
  int64_t tileQ = 0;
  bool hasLse = false;
  ::attn::Signature signature;
};

/// Lowers `module` (one bound attn.spec) in place to `stop`. Fills `info`
/// once the schedule is known. Errors are reported through diagnostics.
/// `schedule` gives tile sizes and the linear chunk (0s: heuristics); its
/// vector width is replaced by the target's.
LogicalResult lowerSpec(ModuleOp module, const CPUTarget &target,
                        const CPUPipelineOptions &schedule, Stage stop,
                        KernelInfo &info);

/// Lowers to LLVM and emits an object with the entry point and its embedded
/// signature string (symbol "<symbol>_signature").
LogicalResult compileToObject(ModuleOp module, const CPUTarget &target,
                              const CPUPipelineOptions &schedule,
                              KernelInfo &info,
                              llvm::SmallVectorImpl<char> &object,
                              std::string &error);

/// The C header an AOT object comes with: the kernel descriptor and a typed
/// entry point `attn_status_t attn_run_<name>(...)`.
std::string generateHeader(const KernelInfo &info);

/// The `attn_input_desc_t <symbol>_inputs[]` array (and the dims arrays it
/// points to) describing `signature`, as C for a generated header.
void writeInputDescs(llvm::raw_ostream &os, llvm::StringRef symbol,
                     const ::attn::Signature &signature);
/// The C parameter name of input `index` (`in`) in a generated entry point.
/// q, k and v keep their names; every other input is `aux_<name>`, so no
/// input name (`double`, `class`, `NULL`, `o`, `options`, `inputs`, a type
/// or macro of the runtime's headers) can break the header or clash with the
/// entry point's other parameters and locals. Spec names are ASCII
/// identifiers, so the result is a C and C++ identifier, never a keyword.
std::string headerParamName(const ::attn::InputSig &in, size_t index);
/// The " *   param: type [dims]" lines of a generated header's comment for
/// the inputs (under their parameter names), o and lse.
void writeSignatureComment(llvm::raw_ostream &os,
                           const ::attn::Signature &signature, bool hasLse);
/// "const DLTensor *q, ..., const DLTensor *aux_doc, ": an entry point's
/// input parameters.
void writeEntryParams(llvm::raw_ostream &os,
                      const ::attn::Signature &signature);
/// The entry point's `const DLTensor *inputs[] = {q, k, v, aux_doc};` line.
void writeInputsArray(llvm::raw_ostream &os,
                      const ::attn::Signature &signature);
/// "ATTN_F32", "ATTN_BF16", ...
const char *elemTypeEnum(::attn::ElemType t);

} // namespace mlir::attn

#endif
