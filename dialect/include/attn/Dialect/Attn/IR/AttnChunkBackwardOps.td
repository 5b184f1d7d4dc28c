//===- AttnChunkBackwardOps.td - linear attention's gradients -*- tablegen -*-===//
//
// What attn-tile-attention-backward rewrites attn.linear_attention into: the
// gradients of one (b, h) as two scans over the same chunks. The forward
// scan is the forward's own chunk ops (features, values, log_gates, delta,
// update) plus a checkpoint of the state at every chunk boundary; the
// reverse scan restores each chunk's starting state, recomputes the chunk's
// features with the forward's ops and runs the chunk's gradient, carrying
// the adjoint of the state from the last chunk to the first. As for the
// forward, the chunk length is the target's schedule, so the ops mean the
// same for any length (the CPU runs the recurrence inside a chunk).
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_DIALECT_ATTN_IR_ATTNCHUNKBACKWARDOPS_TD
#define ATTN_DIALECT_ATTN_IR_ATTNCHUNKBACKWARDOPS_TD

include "attn/Dialect/Attn/IR/AttnDialect.td"
include "mlir/IR/OpAsmInterface.td"

//===----------------------------------------------------------------------===//
// attn.tiled_linear_attention_backward
//===----------------------------------------------------------------------===//

def Attn_TiledLinearAttentionBackwardOp
    : Attn_Op<"tiled_linear_attention_backward", [
        HasParent<"SpecOp">, IsolatedFromAbove,
        DeclareOpInterfaceMethods<OpAsmOpInterface,
                                  ["getAsmBlockArgumentNames"]>]> {
  let summary = "the gradients of a linear attention as the program of one "
                "(b, h)";
  let description = [{
    What `attn-tile-attention-backward` makes of `attn.linear_attention`
    (the same attributes and regions, the same math): given `q, k, v`, the
    aux inputs and the output gradient `do`, `body` computes the gradients
    of `L = sum(o ∘ do)` (docs/language.md §15) that batch `b` and query
    head `h` contribute: its rows of `dq`, its share of the rows of `dk`,
    `dv` (summed over the group's query heads, which is GQA's reduction)
    and of the gradients of the aux inputs the `gate`, `beta` and `bonus`
    regions read. Heads of one KV group add to the same `dk`, `dv` rows: a
    backend runs them one after the other, or adds atomically.

    ```mlir
    attn.tiled_linear_attention_backward feature_map = <identity>,
        <identity> scale {
    } gate { ... } beta {
    } bonus {
    } body {
    ^bb0(%b: index, %h: index):
      %state = attn.chunk.init_state %b, %h
      %state_0 = attn.chunk.loop %b, %h iter_args(%state) do {
      ^bb0(%t0: index, %st: !attn.state<?x?>):
        attn.chunk.bwd.save %st, %b, %h, %t0
        %fk = attn.chunk.features %b, %h, %t0 key
        %v = attn.chunk.values %b, %h, %t0
        %g = attn.chunk.log_gates %b, %h, %t0
        %st_1 = attn.chunk.update %st, %fk, %v, %g
        attn.yield %st_1 : !attn.state<?x?>
      }
      %dst = attn.chunk.bwd.init %b, %h
      %dst_1 = attn.chunk.bwd.reverse_loop %b, %h iter_args(%dst) do {
      ^bb0(%t0: index, %dst_2: !attn.state<?x?>):
        %st = attn.chunk.bwd.restore %b, %h, %t0
        %fk = attn.chunk.features %b, %h, %t0 key
        %fq = attn.chunk.features %b, %h, %t0 query
        %v = attn.chunk.values %b, %h, %t0
        %g = attn.chunk.log_gates %b, %h, %t0
        %dst_3 = attn.chunk.bwd.grad %st, %dst_2, %fq, %fk, %v, %g, %b, %h, %t0
        attn.yield %dst_3 : !attn.state<?x?>
      }
      attn.chunk.bwd.finish %dst_1, %b, %h
      attn.yield
    }
    ```

    A non-causal attention's body is the forward's key scan, then
    `attn.chunk.bwd.readout_all` (every query's gradient; the adjoint of
    the final state) and `attn.chunk.bwd.keys_all` (every key's).
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
    /// The forward scan of the body.
    ChunkLoopOp getChunkLoop();
    /// The aux inputs with a gradient (in declaration order): the f32
    /// inputs the gate, beta and bonus regions read.
    ::llvm::SmallVector<InputOp> getGradientInputs();
  }];
}

/// An op of the (b, h) gradient program (parent:
/// attn.tiled_linear_attention_backward).
class Attn_LinBwdOp<string mnemonic, list<Trait> traits = []>
    : Attn_Op<"chunk.bwd." # mnemonic,
              !listconcat(traits,
                          [HasParent<"TiledLinearAttentionBackwardOp">])>;

def Attn_ChunkBwdSaveOp : Attn_Op<"chunk.bwd.save", [HasParent<"ChunkLoopOp">]> {
  let summary = "keep the state at a chunk boundary (a checkpoint)";
  let description = [{
    Saves the state before chunk `t0` of the forward scan, for
    `attn.chunk.bwd.restore` in the reverse scan.
  }];
  let arguments = (ins Attn_ChunkState:$state, Index:$b, Index:$h, Index:$t0);
  let assemblyFormat = "$state `,` $b `,` $h `,` $t0 attr-dict";
  let hasVerifier = 1;
}

def Attn_ChunkBwdInitOp : Attn_LinBwdOp<"init", [
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "the adjoint of the final state: zero";
  let description = [{
    The loss reads the state only through the outputs, so the adjoint of
    the state after the last step (`dS`, `dz`) starts at zero, as does the
    per-(b, h) adjoint of the bonus `u`.
  }];
  let arguments = (ins Index:$b, Index:$h);
  let results = (outs Attn_ChunkState:$result);
  let assemblyFormat = "$b `,` $h attr-dict";
}

def Attn_ChunkBwdReverseLoopOp : Attn_LinBwdOp<"reverse_loop", [
    AllTypesMatch<["init", "result"]>,
    DeclareOpInterfaceMethods<OpAsmOpInterface,
                              ["getAsmBlockArgumentNames", "getAsmResultNames"]>]> {
  let summary = "the chunks from last to first, carrying the state's adjoint";
  let description = [{
    Runs `do` for the chunks `t0 = ..., 2C, C, 0` of the N steps, C the
    target's chunk length (the forward scan's), carrying the adjoint of the
    state after the chunk in and the adjoint of the state before it out.
  }];
  let arguments = (ins Index:$b, Index:$h, Attn_ChunkState:$init);
  let results = (outs Attn_ChunkState:$result);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    $b `,` $h `iter_args` `(` $init `)` attr-dict `do` $body
  }];
  let hasRegionVerifier = 1;
}

def Attn_ChunkBwdRestoreOp : Attn_Op<"chunk.bwd.restore", [
    HasParent<"ChunkBwdReverseLoopOp">,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "the state before a chunk, from its checkpoint";
  let arguments = (ins Index:$b, Index:$h, Index:$t0);
  let results = (outs Attn_ChunkState:$result);
  let assemblyFormat = "$b `,` $h `,` $t0 attr-dict";
}

def Attn_ChunkBwdGradOp : Attn_Op<"chunk.bwd.grad", [
    HasParent<"ChunkBwdReverseLoopOp">,
    AllTypesMatch<["state", "state_grad", "result"]>,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "the gradients of a chunk's steps";
  let description = [{
    Given the state before chunk `t0` (`state`), the adjoint of the state
    after it (`state_grad`) and the chunk's features, values and log gates
    (the forward's ops, recomputed), runs the chunk's steps backwards:
    reads `do` of the chunk's rows, writes the chunk's `dq` rows, adds to
    its `dk`, `dv` rows, to the gradients of the aux inputs the `gate` and
    `beta` regions read and to the bonus's adjoint, and returns the adjoint
    of the state before the chunk. Covers the delta rule, the exclusive
    readout with its bonus, and the normalized readout.
  }];
  let arguments = (ins Attn_ChunkState:$state, Attn_ChunkState:$state_grad,
                       Attn_ChunkTile:$query_features,
                       Attn_ChunkTile:$key_features, Attn_ChunkTile:$values,
                       Attn_ChunkTile:$log_gates, Index:$b, Index:$h,
                       Index:$t0);
  let results = (outs Attn_ChunkState:$result);
  let assemblyFormat = [{
    $state `,` $state_grad `,` $query_features `,` $key_features `,` $values
    `,` $log_gates `,` $b `,` $h `,` $t0 attr-dict
  }];
}

def Attn_ChunkBwdFinishOp : Attn_LinBwdOp<"finish"> {
  let summary = "the (b, h)'s last gradients: the bonus's";
  let description = [{
    Adds the bonus's adjoint, accumulated over every step of `(b, h)`,
    through the `bonus` region to the gradients of the aux inputs it reads
    (nothing without a bonus).
  }];
  let arguments = (ins Attn_ChunkState:$state_grad, Index:$b, Index:$h);
  let assemblyFormat = "$state_grad `,` $b `,` $h attr-dict";
}

def Attn_ChunkBwdReadoutAllOp : Attn_LinBwdOp<"readout_all", [
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "non-causal: every query's gradient";
  let description = [{
    The reverse of `attn.chunk.readout_all`: writes `dq` of all N queries
    of `(b, h)` and returns the adjoint of the final state (summed over the
    queries).
  }];
  let arguments = (ins Attn_ChunkState:$state, Index:$b, Index:$h);
  let results = (outs Attn_ChunkState:$result);
  let assemblyFormat = "$state `,` $b `,` $h attr-dict";
}

def Attn_ChunkBwdKeysAllOp : Attn_LinBwdOp<"keys_all"> {
  let summary = "non-causal: every key's gradient";
  let description = [{
    From the adjoint of the final state, adds to `dk` and `dv` of all M
    keys.
  }];
  let arguments = (ins Attn_ChunkState:$state_grad, Index:$b, Index:$h);
  let assemblyFormat = "$state_grad `,` $b `,` $h attr-dict";
}

#endif // ATTN_DIALECT_ATTN_IR_ATTNCHUNKBACKWARDOPS_TD
