//===- AttnOps.td - attn dialect operations ----------------*- tablegen -*-===//

#ifndef ATTN_DIALECT_ATTN_IR_ATTNOPS_TD
#define ATTN_DIALECT_ATTN_IR_ATTNOPS_TD

include "attn/Dialect/Attn/IR/AttnDialect.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/IR/RegionKindInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"

//===----------------------------------------------------------------------===//
// attn.spec
//===----------------------------------------------------------------------===//

def Attn_SpecOp : Attn_Op<"spec", [Symbol, SymbolTable, IsolatedFromAbove,
                                   NoTerminator, SingleBlock,
                                   NoRegionArguments]> {
  let summary = "one attention variant: params, inputs and the attention";
  let description = [{
    A spec is the unit `attnc` compiles. Its body declares parameters
    (`attn.param`), inputs with symbolic shapes (`attn.input`) and exactly one
    `attn.attention` or `attn.linear_attention`. `q`, `k` and `v` are implicit with the canonical shapes
    `[B, Hq, N, Dqk]`, `[B, Hkv, M, Dqk]` and `[B, Hkv, M, Dv]`; declaring
    them only fixes their element type.

    Example:
    ```mlir
    attn.spec @causal {
      attn.attention normalizer = <softmax> scale {
      } mask {
      ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
        %c = arith.cmpi sle, %j, %i : i64
        attn.yield %c : i1
      } score {
      } bias {
      }
    }
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$sym_name attr-dict-with-keyword $body";
  let hasVerifier = 1;
  let skipDefaultBuilders = 1;
  let builders = [OpBuilder<(ins "::llvm::StringRef":$name)>];
  let extraClassDeclaration = [{
    /// The softmax-family attention op, or null for a linear spec.
    AttentionOp getAttention();
    /// The linear attention op, or null for a softmax-family spec.
    LinearAttentionOp getLinearAttention();
    /// The tiled form attn-tile-attention made of the attention, or null.
    TiledAttentionOp getTiledAttention();
    /// The tiled form of a linear attention, or null.
    TiledLinearAttentionOp getTiledLinearAttention();
    /// The backward program attn-tile-attention-backward made, or null.
    TiledAttentionBackwardOp getTiledAttentionBackward();
    /// The gradients' program of a linear attention, or null.
    TiledLinearAttentionBackwardOp getTiledLinearAttentionBackward();
    ::mlir::Block &getBodyBlock() { return getBody().front(); }
  }];
}

//===----------------------------------------------------------------------===//
// attn.param
//===----------------------------------------------------------------------===//

def Attn_ParamOp : Attn_Op<"param", [Symbol, HasParent<"SpecOp">,
                                     IsolatedFromAbove]> {
  let summary = "a named scalar parameter with a default value";
  let description = [{
    Declares a compile-time parameter of type `i64` or `f64`. The region
    computes the default from literals, shape dims (`attn.dim`) and earlier
    params; `--param name=value` replaces it.

    ```mlir
    attn.param @window : i64 {
      %c = arith.constant 256 : i64
      attn.yield %c : i64
    }
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, TypeAttr:$type);
  let regions = (region SizedRegion<1>:$default_value);
  let assemblyFormat = "$sym_name `:` $type attr-dict-with-keyword $default_value";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// attn.input
//===----------------------------------------------------------------------===//

def Attn_InputOp : Attn_Op<"input", [Symbol, HasParent<"SpecOp">]> {
  let summary = "a declared input tensor with a symbolic shape";
  let description = [{
    Declares an input tensor. Each dim is a symbol (a string; the canonical
    ones are `B`, `Hq`, `Hkv`, `N`, `M`, `Dqk`, `Dv`, others are bound from
    the tensor given at run time) or a fixed size (an integer).

    ```mlir
    attn.input @doc : i32 ["B", "N"]
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, TypeAttr:$element_type,
                       ArrayAttr:$dims);
  let assemblyFormat = "$sym_name `:` $element_type $dims attr-dict";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// attn.attention
//===----------------------------------------------------------------------===//

def Attn_AttentionOp : Attn_Op<"attention", [HasParent<"SpecOp">,
                                             IsolatedFromAbove]> {
  let summary = "scaled dot-product attention with mask, score and normalizer";
  let description = [{
    Computes, for every batch `b`, query head `h`, query `i` and key `j`
    (with `hk = h floordiv (Hq/Hkv)`):

    ```
    x_ij  = scale * dot(q[b,h,i,:], k[b,hk,j,:])
    s_ij  = score(x_ij, b, h, i, j)          (identity if the region is empty)
    m_ij  = mask(b, h, i, j)                 (true if the region is empty)
    o[b,h,i,:] = sum_j P_ij v[b,hk,j,:]
    ```

    where `P` depends on `normalizer`: `softmax` normalizes `exp(s)` over the
    visible keys (a row with no visible key gives 0, and `lse` adds the
    log-sum-exp output, -inf for such rows); `sigmoid` is
    `m * sigmoid(s + bias)`; `relu` is `m * relu(s)^relu_power`, divided by
    the row sum when `row_normalize` is set (0 when the sum is 0); `none` is
    `m * s`.

    Regions: `scale` yields an `f64` (empty: `Dqk^-1/2`); `mask` takes
    `(b, h, i, j)` as `i64` and yields `i1`; `score` takes `(x: f64, b, h, i,
    j)` and yields `f64`; `bias` yields the sigmoid bias as `f64` (empty: 0).

    Floats in the regions are `f64` on purpose: the regions state the math
    exactly (a literal `0.1` stays 0.1 for the reference evaluator); each
    backend evaluates them at its own precision (fp32 on CPU and GPU).
  }];
  let arguments = (ins Attn_NormalizerKindAttr:$normalizer,
                       UnitAttr:$lse,
                       DefaultValuedAttr<I64Attr, "1">:$relu_power,
                       UnitAttr:$row_normalize,
                       OptionalAttr<Attn_ScheduleAttr>:$schedule);
  let regions = (region AnyRegion:$scale, AnyRegion:$mask, AnyRegion:$score,
                        AnyRegion:$bias);
  let assemblyFormat = [{
    `normalizer` `=` $normalizer attr-dict-with-keyword
    `scale` $scale `mask` $mask `score` $score `bias` $bias
  }];
  let hasVerifier = 1;
  let hasRegionVerifier = 1;
}

//===----------------------------------------------------------------------===//
// attn.linear_attention
//===----------------------------------------------------------------------===//

def Attn_LinearAttentionOp : Attn_Op<"linear_attention",
    [HasParent<"SpecOp">, IsolatedFromAbove]> {
  let summary = "linear attention as a gated recurrence over a matrix state";
  let description = [{
    For every batch `b` and query head `h` (key/value head `hk = h / G`),
    with `φq`, `φk` the feature maps, `Dphi` the feature dimension and
    `S ∈ R^{Dphi × Dv}`, `z ∈ R^{Dphi}` starting at 0, step t = 0 .. N-1:

    ```
    g      = exp(gate(b, h, t, d)) for each feature d     (1 if no gate)
    o_t    = scale * φq(q_t)ᵀ (S + diag(u) φk(k_t) v_tᵀ)   (exclusive readout,
             u = bonus(h, d), before this step's update)
    S      = diag(g) S;  z = g ⊙ z
    S      = S + β_t φk(k_t) (v_t − Sᵀ φk(k_t))ᵀ           (delta rule: beta region)
      or     S + φk(k_t) v_tᵀ                              (otherwise)
    z      = z + φk(k_t)
    o_t    = scale * φq(q_t)ᵀ S                            (inclusive readout)
    o_t    = φq(q_t)ᵀ S / (φq(q_t) · z)                    (normalize; 0 if the
                                                            denominator is 0)
    ```

    Non-causal (`noncausal`): every o_t reads the state after all M steps.
    Regions: `scale` yields f64 (empty: `Dqk^-1/2`); `gate(b, h, t, d)` the
    log-space forget gate (≤ 0), a per-key-dim gate when it uses `d`;
    `beta(b, h, t)` the delta-rule β; `bonus(h, d)` the exclusive-readout u.
    The `random` feature map reads its projection from the aux input named
    by `projection` (shape [R, Dqk]).
  }];
  let arguments = (ins Attn_FeatureMapKindAttr:$feature_map_q,
                       Attn_FeatureMapKindAttr:$feature_map_k,
                       UnitAttr:$normalize,
                       UnitAttr:$noncausal,
                       UnitAttr:$exclusive,
                       OptionalAttr<FlatSymbolRefAttr>:$projection);
  let regions = (region AnyRegion:$scale, AnyRegion:$gate, AnyRegion:$beta,
                        AnyRegion:$bonus);
  let assemblyFormat = [{
    `feature_map` `=` $feature_map_q `,` $feature_map_k attr-dict-with-keyword
    `scale` $scale `gate` $gate `beta` $beta `bonus` $bonus
  }];
  let hasVerifier = 1;
  let hasRegionVerifier = 1;
  let extraClassDeclaration = [{
    /// True when the gate depends on the key-dim index d.
    bool hasVectorGate();
  }];
}

//===----------------------------------------------------------------------===//
// Region ops
//===----------------------------------------------------------------------===//

def Attn_YieldOp : Attn_Op<"yield", [Pure, Terminator, ReturnLike]> {
  let summary = "returns the value of an attn region";
  let description = [{
    Terminates the regions of `attn.attention`, `attn.linear_attention`,
    `attn.param`, `attn.tiled_attention` (no value) and `attn.tile.kv_loop`
    (the accumulator).

    ```mlir
    attn.yield %p : i1
    ```
  }];
  let arguments = (ins Variadic<AnyType>:$values);
  let assemblyFormat = "($values^ `:` type($values))? attr-dict";
}

def Attn_DimOp : Attn_Op<"dim", [Pure]> {
  let summary = "the run-time size bound to a symbolic dim";
  let description = [{
    Reads a shape symbol: a canonical one (`B`, `Hq`, `Hkv`, `N`, `M`, `Dqk`,
    `Dv`, or `G` = `Hq/Hkv`) or one introduced by an `attn.input`.

    ```mlir
    %n = attn.dim "N" : i64
    ```
  }];
  let arguments = (ins StrAttr:$name);
  let results = (outs I64:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Attn_GetParamOp : Attn_Op<"get_param", [Pure,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "reads a parameter's bound value";
  let description = [{
    ```mlir
    %w = attn.get_param @window : i64
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$param);
  let results = (outs AnyTypeOf<[I64, F64]>:$result);
  let assemblyFormat = "$param attr-dict `:` type($result)";
}

def Attn_LoadOp : Attn_Op<"load", [Pure,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "reads one element of an auxiliary input tensor";
  let description = [{
    Indices are `i64`, one per declared dim. An index outside the tensor is
    a run-time error, reported by the evaluator, never an out-of-bounds read.

    ```mlir
    %d = attn.load @doc[%b, %i] : i32
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$input, Variadic<I64>:$indices);
  let results = (outs AnyTypeOf<[I32, F32]>:$result);
  let assemblyFormat = "$input `[` $indices `]` attr-dict `:` type($result)";
}

include "attn/Dialect/Attn/IR/AttnTileOps.td"
include "attn/Dialect/Attn/IR/AttnTileBackwardOps.td"
include "attn/Dialect/Attn/IR/AttnChunkOps.td"
include "attn/Dialect/Attn/IR/AttnChunkBackwardOps.td"

#endif // ATTN_DIALECT_ATTN_IR_ATTNOPS_TD
