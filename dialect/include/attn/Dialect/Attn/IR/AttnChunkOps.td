//===- AttnChunkOps.td - the tile-level IR of linear attention -*- tablegen -*-===//
//
// What attn-tile-attention rewrites attn.linear_attention into: the work of
// one (b, h) as a scan over chunks of time steps carrying the state S (and
// z), with the chunk's features, gates, intra-chunk scores, readout and
// state update as ops. The chunk length is the target's schedule (the CPU
// conversion's linear-chunk; 1 is the recurrence), so chunk tiles have `?`
// rows; the ops' meaning does not depend on it.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_DIALECT_ATTN_IR_ATTNCHUNKOPS_TD
#define ATTN_DIALECT_ATTN_IR_ATTNCHUNKOPS_TD

include "attn/Dialect/Attn/IR/AttnDialect.td"
include "mlir/IR/OpAsmInterface.td"

def Attn_StateType : Attn_Type<"State", "state"> {
  let summary = "the recurrent state of linear attention";
  let description = [{
    `S` (`Dphi x Dv`, f32) and, for a normalized readout, `z` (`Dphi`).

    ```mlir
    !attn.state<?x?>
    ```
  }];
  let parameters = (ins "int64_t":$rows, "int64_t":$cols);
  let hasCustomAssemblyFormat = 1;
}

/// The tiles and the state of the chunk ops: rows and columns are the
/// target's (the chunk length, the feature and value dims), so their types
/// are always `!attn.tile<?x?xf32>` and `!attn.state<?x?>` and the printed
/// ops leave them out.
def Attn_ChunkTile : Type<
    CPred<"::mlir::isa<::mlir::attn::TileType>($_self) && "
          "::llvm::all_of(::mlir::cast<::mlir::attn::TileType>($_self)"
          ".getShape(), ::mlir::ShapedType::isDynamic) && "
          "::mlir::cast<::mlir::attn::TileType>($_self).getElementType()"
          ".isF32()">,
    "a chunk tile (!attn.tile<?x?xf32>)", "::mlir::attn::TileType">,
    BuildableType<"::mlir::attn::TileType::get($_builder.getContext(), "
                  "{::mlir::ShapedType::kDynamic, ::mlir::ShapedType::kDynamic}, "
                  "$_builder.getF32Type())">;
def Attn_ChunkState : Type<
    CPred<"::mlir::isa<::mlir::attn::StateType>($_self)">,
    "a linear-attention state", "::mlir::attn::StateType">,
    BuildableType<"::mlir::attn::StateType::get($_builder.getContext(), "
                  "::mlir::ShapedType::kDynamic, ::mlir::ShapedType::kDynamic)">;

//===----------------------------------------------------------------------===//
// attn.tiled_linear_attention
//===----------------------------------------------------------------------===//

def Attn_TiledLinearAttentionOp : Attn_Op<"tiled_linear_attention", [
    HasParent<"SpecOp">, IsolatedFromAbove,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "a linear attention as the program of one (b, h)";
  let description = [{
    What `attn-tile-attention` makes of `attn.linear_attention` (same
    attributes and regions, the same math): `body` is the work of batch `b`
    and query head `h`, a scan over chunks of time steps.

    ```mlir
    attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
    } gate { ... } beta {
    } bonus {
    } body {
    ^bb0(%b: index, %h: index):
      %state = attn.chunk.init_state %b, %h
      %state_0 = attn.chunk.loop %b, %h iter_args(%state) do {
      ^bb0(%t0: index, %st: !attn.state<?x?>):
        %fk = attn.chunk.features %b, %h, %t0 key
        %fq = attn.chunk.features %b, %h, %t0 query
        %v = attn.chunk.values %b, %h, %t0
        %g = attn.chunk.log_gates %b, %h, %t0
        %a = attn.chunk.intra %fq, %fk, %g
        %o = attn.chunk.readout %fq, %a, %v, %st, %g
        attn.chunk.store %o, %b, %h, %t0
        %st_1 = attn.chunk.update %st, %fk, %v, %g
        attn.yield %st_1 : !attn.state<?x?>
      }
      attn.chunk.store_state %state_0, %b, %h
      attn.yield
    }
    ```
  }];
  let arguments = (ins Attn_FeatureMapKindAttr:$feature_map_q,
                       Attn_FeatureMapKindAttr:$feature_map_k,
                       UnitAttr:$normalize,
                       UnitAttr:$noncausal,
                       UnitAttr:$exclusive,
                       OptionalAttr<FlatSymbolRefAttr>:$projection);
  let regions = (region AnyRegion:$scale, AnyRegion:$gate, AnyRegion:$beta,
                        AnyRegion:$bonus, SizedRegion<1>:$body);
  let assemblyFormat = [{
    `feature_map` `=` $feature_map_q `,` $feature_map_k attr-dict-with-keyword
    `scale` $scale `gate` $gate `beta` $beta `bonus` $bonus `body` $body
  }];
  let hasVerifier = 1;
  let hasRegionVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::Block &getBodyBlock() { return getBody().front(); }
    /// True when the gate depends on the key-dim index d.
    bool hasVectorGate();
    /// The chunk loop of the body.
    ChunkLoopOp getChunkLoop();
  }];
}

/// An op of the (b, h) program (parent: attn.tiled_linear_attention, or
/// its gradients' program attn.tiled_linear_attention_backward, whose
/// forward scan is these ops).
class Attn_LinOp<string mnemonic, list<Trait> traits = []>
    : Attn_Op<"chunk." # mnemonic,
              !listconcat(traits, [ParentOneOf<["TiledLinearAttentionOp",
                  "TiledLinearAttentionBackwardOp"]>])>;
/// An op of one chunk (parent: attn.chunk.loop, or the gradients' reverse
/// scan attn.chunk.bwd.reverse_loop, which recomputes the chunk's inputs).
class Attn_ChunkOp<string mnemonic, list<Trait> traits = []>
    : Attn_Op<"chunk." # mnemonic,
              !listconcat(traits, [ParentOneOf<["ChunkLoopOp",
                  "ChunkBwdReverseLoopOp"]>])>;

def Attn_ChunkInitStateOp : Attn_LinOp<"init_state", [
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "the state a (b, h) starts from";
  let description = [{
    Zero, or the carried state when the spec has the `state` (and
    `zstate`) inputs of `attn-add-linear-state` (decode).
  }];
  let arguments = (ins Index:$b, Index:$h);
  let results = (outs Attn_ChunkState:$result);
  let assemblyFormat = "$b `,` $h attr-dict";
}

def Attn_ChunkLoopOp : Attn_LinOp<"loop", [
    AllTypesMatch<["init", "result"]>,
    DeclareOpInterfaceMethods<OpAsmOpInterface,
                              ["getAsmBlockArgumentNames", "getAsmResultNames"]>]> {
  let summary = "the chunks of time steps in order, carrying the state";
  let description = [{
    Runs `do` for the chunks `t0 = 0, C, 2C, ...` of the N steps (the M
    keys of a non-causal attention), C the target's chunk length.
  }];
  let arguments = (ins Index:$b, Index:$h, Attn_ChunkState:$init);
  let results = (outs Attn_ChunkState:$result);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    $b `,` $h `iter_args` `(` $init `)` attr-dict `do` $body
  }];
  let hasRegionVerifier = 1;
}

def Attn_ChunkFeaturesOp : Attn_ChunkOp<"features", [Pure,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "the feature map of a chunk's queries or keys";
  let description = [{
    `phi(q[b, h, t0 + i, :])` (`query`) or `phi(k[b, h / G, t0 + i, :])`
    (`key`) with the attention's feature map: a `C x Dphi` tile.
  }];
  let arguments = (ins Index:$b, Index:$h, Index:$t0, UnitAttr:$query);
  let results = (outs Attn_ChunkTile:$result);
  let assemblyFormat = [{
    $b `,` $h `,` $t0 (`query` $query^) : (`key`)? attr-dict
  }];
}

def Attn_ChunkValuesOp : Attn_ChunkOp<"values", [Pure,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "the value rows of a chunk";
  let arguments = (ins Index:$b, Index:$h, Index:$t0);
  let results = (outs Attn_ChunkTile:$result);
  let assemblyFormat = "$b `,` $h `,` $t0 attr-dict";
}

def Attn_ChunkLogGatesOp : Attn_ChunkOp<"log_gates", [Pure,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "cumulative log forget gates within a chunk";
  let description = [{
    `L[i, d] = sum_{s <= i} gate(b, h, t0 + s, d)` with the attention's
    `gate` region (one column for a scalar gate; all zero without one): the
    decay between steps a >= b of the chunk is `exp(L[a] - L[b])`.
  }];
  let arguments = (ins Index:$b, Index:$h, Index:$t0);
  let results = (outs Attn_ChunkTile:$result);
  let assemblyFormat = "$b `,` $h `,` $t0 attr-dict";
}

def Attn_ChunkIntraOp : Attn_ChunkOp<"intra", [Pure,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "the intra-chunk scores: causal, decayed phi(q) phi(k)^T";
  let description = [{
    `A[i, s] = phi_q[i] . (phi_k[s] exp(L[i] - L[s]))` for `s <= i` (`s < i`
    for the exclusive readout, whose diagonal is the bonus term
    `phi_q[i] . (u phi_k[i])`), 0 above the diagonal.
  }];
  let arguments = (ins Attn_ChunkTile:$query_features,
                       Attn_ChunkTile:$key_features, Attn_ChunkTile:$log_gates);
  let results = (outs Attn_ChunkTile:$result);
  let assemblyFormat = [{
    $query_features `,` $key_features `,` $log_gates attr-dict
  }];
}

def Attn_ChunkDeltaOp : Attn_ChunkOp<"delta", [Pure,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "the delta rule's corrected values";
  let description = [{
    Step by step through the chunk, `u = beta (v - S^T (g phi_k))` with the
    attention's `beta(b, h, t)` region: the values `readout` and `update`
    take instead of `v`.
  }];
  let arguments = (ins Attn_ChunkState:$state, Attn_ChunkTile:$key_features,
                       Attn_ChunkTile:$values, Attn_ChunkTile:$log_gates,
                       Index:$b, Index:$h, Index:$t0);
  let results = (outs Attn_ChunkTile:$result);
  let assemblyFormat = [{
    $state `,` $key_features `,` $values `,` $log_gates `,` $b `,` $h `,` $t0
    attr-dict
  }];
}

def Attn_ChunkReadoutOp : Attn_ChunkOp<"readout", [Pure,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "the chunk's outputs: intra-chunk plus the carried state";
  let description = [{
    `O = A V + (phi_q exp(L)) S` (the state before the chunk), then
    `o = scale O`, or with `normalize` `O / (rowsum A + (phi_q exp(L)) . z)`
    (0 where that is 0).
  }];
  let arguments = (ins Attn_ChunkTile:$query_features, Attn_ChunkTile:$scores,
                       Attn_ChunkTile:$values, Attn_ChunkState:$state,
                       Attn_ChunkTile:$log_gates);
  let results = (outs Attn_ChunkTile:$result);
  let assemblyFormat = [{
    $query_features `,` $scores `,` $values `,` $state `,` $log_gates
    attr-dict
  }];
}

def Attn_ChunkUpdateOp : Attn_ChunkOp<"update", [Pure,
    AllTypesMatch<["state", "result"]>,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "the state after the chunk";
  let description = [{
    `S = exp(L[last]) S + (phi_k exp(L[last] - L))^T V` and
    `z = exp(L[last]) z + sum_s phi_k[s] exp(L[last] - L[s])`.
  }];
  let arguments = (ins Attn_ChunkState:$state, Attn_ChunkTile:$key_features,
                       Attn_ChunkTile:$values, Attn_ChunkTile:$log_gates);
  let results = (outs Attn_ChunkState:$result);
  let assemblyFormat = [{
    $state `,` $key_features `,` $values `,` $log_gates attr-dict
  }];
}

def Attn_ChunkStoreOp : Attn_ChunkOp<"store"> {
  let summary = "write a chunk's output rows to o";
  let arguments = (ins Attn_ChunkTile:$output, Index:$b, Index:$h, Index:$t0);
  let assemblyFormat = [{
    $output `,` $b `,` $h `,` $t0 attr-dict
  }];
}

def Attn_ChunkStoreStateOp : Attn_LinOp<"store_state"> {
  let summary = "write the final state back (decode)";
  let description = [{
    Writes S (and z) to the spec's carried-state inputs; nothing when the
    spec has none.
  }];
  let arguments = (ins Attn_ChunkState:$state, Index:$b, Index:$h);
  let assemblyFormat = "$state `,` $b `,` $h attr-dict";
}

def Attn_ChunkReadoutAllOp : Attn_LinOp<"readout_all"> {
  let summary = "non-causal: every query reads the final state";
  let description = [{
    `o[b, h, i] = scale phi_q(q_i)^T S`, or normalized by `phi_q(q_i) . z`,
    for all N queries.
  }];
  let arguments = (ins Attn_ChunkState:$state, Index:$b, Index:$h);
  let assemblyFormat = "$state `,` $b `,` $h attr-dict";
}

#endif // ATTN_DIALECT_ATTN_IR_ATTNCHUNKOPS_TD
