//===- AttnDialect.td - attn dialect definition ------------*- tablegen -*-===//
//
// The attn dialect describes one attention variant: its parameters, its
// declared inputs with symbolic shapes, and the attention itself as a set of
// small regions (scale, mask predicate, score modification, normalizer bias).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_DIALECT_ATTN_IR_ATTNDIALECT_TD
#define ATTN_DIALECT_ATTN_IR_ATTNDIALECT_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Attn_Dialect : Dialect {
  let name = "attn";
  let cppNamespace = "::mlir::attn";
  let summary = "High-level attention variants: mask, score, normalizer";
  let description = [{
    The `attn` dialect is what an `.attn` spec becomes after parsing. An
    `attn.spec` symbol holds `attn.param` and `attn.input` declarations and a
    single `attn.attention` op whose regions are ordinary `arith`/`math` code
    over 64-bit integer indices and 32-bit floats. The regions are the
    semantics: the float64 reference evaluator interprets them directly, and
    the tiling passes inline them into the kernels.
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect"];
  let useDefaultAttributePrinterParser = 1;
  let useDefaultTypePrinterParser = 1;
}

class Attn_Op<string mnemonic, list<Trait> traits = []>
    : Op<Attn_Dialect, mnemonic, traits>;

def Attn_NormalizerKind : I32EnumAttr<"NormalizerKind",
    "how attention weights are normalized", [
      I32EnumAttrCase<"softmax", 0>,
      I32EnumAttrCase<"sigmoid", 1>,
      I32EnumAttrCase<"relu", 2>,
      I32EnumAttrCase<"none", 3>
    ]> {
  let cppNamespace = "::mlir::attn";
  let genSpecializedAttr = 0;
}

def Attn_NormalizerKindAttr : EnumAttr<Attn_Dialect, Attn_NormalizerKind,
                                       "normalizer"> {
  let summary = "normalizer kind";
  let assemblyFormat = "`<` $value `>`";
}

def Attn_FeatureMapKind : I32EnumAttr<"FeatureMapKind",
    "feature map of linear attention", [
      I32EnumAttrCase<"identity", 0>,
      I32EnumAttrCase<"elu_plus_one", 1>,
      I32EnumAttrCase<"relu", 2>,
      I32EnumAttrCase<"relu2", 3>,
      I32EnumAttrCase<"sigmoid", 4>,
      I32EnumAttrCase<"silu", 5>,
      I32EnumAttrCase<"exp", 6>,
      I32EnumAttrCase<"l2norm", 7>,
      I32EnumAttrCase<"pos_neg", 8>,
      I32EnumAttrCase<"taylor2", 9>,
      I32EnumAttrCase<"random", 10>
    ]> {
  let cppNamespace = "::mlir::attn";
  let genSpecializedAttr = 0;
}

def Attn_FeatureMapKindAttr : EnumAttr<Attn_Dialect, Attn_FeatureMapKind,
                                       "feature_map"> {
  let summary = "feature map kind";
  let assemblyFormat = "`<` $value `>`";
}

def Attn_ScheduleAttr : AttrDef<Attn_Dialect, "Schedule"> {
  let mnemonic = "schedule";
  let summary = "how an attention is tiled for a backend";
  let description = [{
    The schedule of the tiled form: a query tile of `tile_q` rows (a multiple
    of `vector_width`, since the CPU kernel keeps queries in SIMD lanes) and a
    key/value tile of `tile_kv` rows. `block_skip` says how tiles are
    classified as empty / full / partial: `none` (no mask: every tile is
    full), `interval` (the mask is evaluated over index intervals per tile,
    closed form), `interval+scan` (as `interval`, and lookups into aux
    tensors take the min/max of the looked-up range at run time).

    ```mlir
    #attn.schedule<tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "interval">
    ```
  }];
  let parameters = (ins "int64_t":$tile_q, "int64_t":$tile_kv,
                        "int64_t":$vector_width,
                        StringRefParameter<"tile classification">:$block_skip);
  let assemblyFormat = "`<` struct(params) `>`";
}

#endif // ATTN_DIALECT_ATTN_IR_ATTNDIALECT_TD
