//===- Passes.td - attn lowering passes --------------------*- tablegen -*-===//

#ifndef ATTN_CONVERSION_PASSES_TD
#define ATTN_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def ConvertAttnToCPU : Pass<"convert-attn-to-cpu", "ModuleOp"> {
  let summary = "Lower tiled attn specs to vectorized CPU kernels";
  let description = [{
    Replaces each `attn.spec` (whose attention carries an `#attn.schedule`)
    with a `func.func @attn_<name>_tiles` over strided memrefs
    `(q, k, v, o, lse, aux..., begin, end)` that computes work items
    `[begin, end)`, item = `(b * Hq + h) * ceil(N / tile_q) + q_tile`.

    Queries of a tile live in SIMD lanes: Q is transposed once per tile, so
    `S = Q Kᵀ` and `O += P V` are broadcast-FMA micro-kernels (keys and
    values are read as scalars, any stride), and the online softmax, score
    and mask regions are elementwise vector code. Each (q-tile, kv-tile) is
    classified by evaluating the mask over index intervals: empty tiles are
    skipped, full tiles skip the mask, partial tiles evaluate it per lane.

    ```mlir
    func.func @attn_causal_tiles(%q: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>, ...,
                                 %begin: i64, %end: i64) attributes {llvm.emit_c_interface}
    ```
  }];
  let options = [
    Option<"vectorWidth", "vector-width", "int64_t", "16",
           "f32 lanes for linear-attention kernels (softmax kernels take it "
           "from their #attn.schedule)">,
    Option<"linearChunk", "linear-chunk", "int64_t", "64",
           "time steps per chunk of the chunked linear-attention form; 0 "
           "selects the step-by-step recurrence">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect"
  ];
}

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

def AttnAddLinearState : Pass<"attn-add-linear-state", "ModuleOp"> {
  let summary = "Give linear-attention kernels a carried state (decode)";
  let description = [{
    Adds to each causal `attn.linear_attention` spec the inputs
    `state : f32 [B, Hq, Dphi, Dv]` (and `zstate : f32 [B, Hq, Dphi]` when
    normalized). The CPU kernel then starts from that state instead of zero
    and writes the final state back into the same tensors, so a sequence can
    be processed in pieces (prefill, then one step at a time). `Dphi` must be
    a symbol the runtime can check: `Dqk` for the feature maps that keep the
    dimension, or the projection's row symbol for random features.

    ```mlir
    attn.input @state : f32 ["B", "Hq", "Dqk", "Dv"]
    ```
  }];
}

def AttnEmitPackedEntry : Pass<"attn-emit-packed-entry", "ModuleOp"> {
  let summary = "Add the runtime's packed entry point to lowered kernels";
  let description = [{
    After lowering to the LLVM dialect, adds for each
    `_mlir_ciface_attn_<name>_tiles` an `llvm.func @attn_<name>(%args:
    !llvm.ptr, %begin: i64, %end: i64)` that loads the descriptor pointers
    from `args` and calls it: the fixed C signature
    `void attn_<name>(void **args, int64_t begin, int64_t end)` the runtime
    calls, whatever the number of aux inputs.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

#endif // ATTN_CONVERSION_PASSES_TD
