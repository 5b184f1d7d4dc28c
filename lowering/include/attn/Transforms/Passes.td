//===- Passes.td - lowering transforms of upstream dialects -*- tablegen -*-===//
//
// Transforms of the kernels once they are upstream IR (math, LLVM): the
// attn -> attn transforms live with the dialect (dialect/.../Transforms),
// the attn -> kernel conversions in attn/Conversion/Passes.td.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TRANSFORMS_PASSES_TD
#define ATTN_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def AttnApproximateMath : Pass<"attn-approximate-math"> {
  let summary = "Replace math functions by polynomial approximations";
  let description = [{
    Applies MLIR's polynomial approximations (exp, log, tanh, ...) and
    expansions (powf, exp2, ...) so vector math stays in SIMD registers
    instead of being scalarized into libm calls.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::vector::VectorDialect"];
}

def AttnEmitPackedEntry : Pass<"attn-emit-packed-entry", "ModuleOp"> {
  let summary = "Add the runtime's packed entry point to lowered kernels";
  let description = [{
    After lowering to the LLVM dialect, adds for each
    `_mlir_ciface_attn_<name>_tiles` an `llvm.func @attn_<name>(%args:
    !llvm.ptr, %begin: i64, %end: i64)` that loads the descriptor pointers
    from `args` and calls it: the fixed C signature
    `void attn_<name>(void **args, int64_t begin, int64_t end)` the runtime
    calls, whatever the number of aux inputs. When the kernel returns a
    nonzero status, the entry stores it (atomically, monotonic) to the
    `int32_t` status word `args[numDescriptors]` points to (ABI version 2
    in attn/runtime.h); a zero status stores nothing.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

#endif // ATTN_TRANSFORMS_PASSES_TD
