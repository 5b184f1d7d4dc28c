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

#endif // ATTN_DIALECT_ATTN_IR_ATTNDIALECT_TD
