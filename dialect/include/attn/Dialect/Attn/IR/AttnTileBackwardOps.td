//===- AttnTileBackwardOps.td - the backward tile program --*- tablegen -*-===//
//
// What attn-tile-attention-backward rewrites attn.attention into: the
// FlashAttention-2 backward pass as the program of one kv tile. It reuses
// the forward's tile ops where the math is the same (load_q, qk, score,
// mask recompute S exactly as the forward did) and adds the gradient steps.
// Backends lower each op with a pattern of their own, as for the forward.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_DIALECT_ATTN_IR_ATTNTILEBACKWARDOPS_TD
#define ATTN_DIALECT_ATTN_IR_ATTNTILEBACKWARDOPS_TD

include "attn/Dialect/Attn/IR/AttnDialect.td"
include "mlir/IR/OpAsmInterface.td"

def Attn_GradType : Attn_Type<"Grad", "grad"> {
  let summary = "the dK and dV accumulators of a kv tile";
  let description = [{
    `dK` (`rows x Dqk`) and `dV` (`rows x Dv`), f32, summed over every q
    tile and query head of the group that sees the kv tile.

    ```mlir
    !attn.grad<64x?x?>
    ```
  }];
  let parameters = (ins "int64_t":$rows, "int64_t":$dqk, "int64_t":$dv);
  let hasCustomAssemblyFormat = 1;
}

/// An op of the kv tile's backward program (parent:
/// attn.tiled_attention_backward).
class Attn_BwdOp<string mnemonic, list<Trait> traits = []>
    : Attn_Op<"tile.bwd." # mnemonic,
              !listconcat(traits, [HasParent<"TiledAttentionBackwardOp">])>;
/// An op of one (query head, q tile) step (parent: attn.tile.q_loop).
class Attn_BwdQTileOp<string mnemonic, list<Trait> traits = []>
    : Attn_Op<"tile.bwd." # mnemonic,
              !listconcat(traits, [HasParent<"QLoopOp">])>;

//===----------------------------------------------------------------------===//
// attn.tiled_attention_backward
//===----------------------------------------------------------------------===//

def Attn_TiledAttentionBackwardOp : Attn_Op<"tiled_attention_backward", [
    HasParent<"SpecOp">, IsolatedFromAbove,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "the gradients of an attention as the program of one kv tile";
  let description = [{
    What `attn-tile-attention-backward` makes of `attn.attention`: given
    `q, k, v`, the forward's `o` and `lse` (softmax) and the output gradient
    `do` (and optionally `dlse`), computes `dq`, `dk`, `dv` of
    `L = sum(o ∘ do) + sum(lse ∘ dlse)` (docs/language.md §15). `body` is
    the work of one kv tile (batch `b`, KV head `hk`, first row `k0`): it
    recomputes `P` for every q tile of every query head of the group that
    the mask lets see the tile, accumulates `dK`, `dV` of the tile, adds the
    tile's share of `dq` to the q rows, and stores `dK`, `dV`. Several kv
    tiles add to the same `dq` rows: a backend runs them one after the
    other per `(b, hk)`, or adds atomically.

    Softmax needs `D_i = rowsum(do_i ∘ o_i) - dlse_i` per query row before
    any kv tile; `attn.tile.bwd.ds` reads it and the backend computes it
    once per row. The forward's row statistics are not saved for the
    row-normalized relu, which backends recompute the same way.

    ```mlir
    attn.tiled_attention_backward normalizer = <softmax> schedule = #attn.schedule<tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "interval"> scale {
    } bias {
    } body {
    ^bb0(%b: index, %hk: index, %k0: index):
      %init = attn.tile.bwd.init : !attn.grad<64x?x?>
      %grad = attn.tile.q_loop %b, %hk, %k0 iter_args(%init) : !attn.grad<64x?x?> mask {
      ^bb0(%bb: i64, %hh: i64, %i: i64, %j: i64):
        %c = arith.cmpi sle, %j, %i : i64
        attn.yield %c : i1
      } do {
      ^bb0(%h: index, %q0: index, %partial: i1, %g: !attn.grad<64x?x?>):
        %q = attn.tile.load_q %b, %h, %q0 : !attn.tile<64x?xf32>
        %x = attn.tile.qk %q, %b, %h, %k0 : !attn.tile<64x?xf32> -> !attn.tile<64x64xf32>
        %s = attn.tile.mask %x, %partial, %b, %h, %q0, %k0 : !attn.tile<64x64xf32>
        %p = attn.tile.bwd.weights %s, %b, %h, %q0 : !attn.tile<64x64xf32>
        %dp = attn.tile.bwd.dp %b, %h, %q0, %k0 : !attn.tile<64x64xf32>
        %ds = attn.tile.bwd.ds %p, %dp, %s, %b, %h, %q0 : !attn.tile<64x64xf32>
        %g1 = attn.tile.bwd.dv %p, %g, %b, %h, %q0 : !attn.tile<64x64xf32>, !attn.grad<64x?x?>
        %g2 = attn.tile.bwd.dk %ds, %q, %g1 : !attn.tile<64x64xf32>, !attn.tile<64x?xf32>, !attn.grad<64x?x?>
        attn.tile.bwd.dq %ds, %b, %h, %q0, %k0 : !attn.tile<64x64xf32>
        attn.yield %g2 : !attn.grad<64x?x?>
      }
      attn.tile.bwd.store %grad, %b, %hk, %k0 : !attn.grad<64x?x?>
      attn.yield
    }
    ```
  }];
  let arguments = (ins Attn_NormalizerKindAttr:$normalizer,
                       DefaultValuedAttr<I64Attr, "1">:$relu_power,
                       UnitAttr:$row_normalize,
                       Attn_ScheduleAttr:$schedule);
  let regions = (region AnyRegion:$scale, AnyRegion:$bias,
                        SizedRegion<1>:$body);
  let assemblyFormat = [{
    `normalizer` `=` $normalizer `schedule` `=` $schedule attr-dict-with-keyword
    `scale` $scale `bias` $bias `body` $body
  }];
  let hasVerifier = 1;
  let hasRegionVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::Block &getBodyBlock() { return getBody().front(); }
    /// The q loop of the body.
    QLoopOp getQLoop();
    /// The aux inputs that get a gradient: the f32 inputs the chain rule
    /// (attn.tile.bwd.score) reads, in the spec's declaration order (the
    /// kernels' d<aux> argument order).
    ::llvm::SmallVector<InputOp> getGradientInputs();
  }];
}

//===----------------------------------------------------------------------===//
// Ops of one kv tile
//===----------------------------------------------------------------------===//

def Attn_TileBwdInitOp : Attn_BwdOp<"init", [Pure, DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "zero dK and dV accumulators";
  let results = (outs Attn_GradType:$result);
  let assemblyFormat = "attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Attn_QLoopOp : Attn_Op<"tile.q_loop", [
    HasParent<"TiledAttentionBackwardOp">,
    AllTypesMatch<["init", "result"]>,
    DeclareOpInterfaceMethods<OpAsmOpInterface,
                              ["getAsmBlockArgumentNames", "getAsmResultNames"]>]> {
  let summary = "the (query head, q tile) pairs that see one kv tile";
  let description = [{
    Runs `do` for every query head `h` of the KV head's group (`hk * G ..
    hk * G + G`) and every q tile `q0 = 0, tile_q, ...` below `N` that the
    mask leaves non-empty against this kv tile, carrying dK and dV. The
    `mask` region (`(b, h, i, j) -> i1`, the spec's) classifies each pair by
    interval analysis as empty (skipped), full or partial, exactly as the
    forward's `attn.tile.kv_loop` does; `do` gets `%partial`, true for
    partial pairs and, on targets that pad tiles, for a tail tile past `N`
    or `M`.
  }];
  let arguments = (ins Index:$b, Index:$hk, Index:$k0, Attn_GradType:$init);
  let results = (outs Attn_GradType:$result);
  let regions = (region AnyRegion:$mask, SizedRegion<1>:$body);
  let assemblyFormat = [{
    $b `,` $hk `,` $k0 `iter_args` `(` $init `)` attr-dict `:` type($init)
    `mask` $mask `do` $body
  }];
  let hasRegionVerifier = 1;
}

def Attn_TileBwdStoreOp : Attn_BwdOp<"store"> {
  let summary = "write dk and dv of a kv tile";
  let description = [{
    Writes the accumulated `dK`, `dV` to rows `k0 .. k0 + tile_kv` (below
    `M`) of `dk[b, hk]` and `dv[b, hk]`.
  }];
  let arguments = (ins Attn_GradType:$grad, Index:$b, Index:$hk, Index:$k0);
  let assemblyFormat = "$grad `,` $b `,` $hk `,` $k0 attr-dict `:` type($grad)";
}

//===----------------------------------------------------------------------===//
// Ops of one (query head, q tile) step
//===----------------------------------------------------------------------===//

def Attn_TileBwdWeightsOp : Attn_BwdQTileOp<"weights", [Pure, DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>,
    AllTypesMatch<["scores", "result"]>]> {
  let summary = "recompute the normalizer's weights P of the forward";
  let description = [{
    `P = exp(S - lse)` from the forward's saved `lse[b, h]` (rows with no
    visible key have `lse = -inf` and get `P = 0`); `sigmoid(S + bias)`;
    `relu(S)^relu_power` (divided by the row sum for `row_normalize`); or
    `S`. Hidden scores (`-inf`) give 0.
  }];
  let arguments = (ins Attn_TileType:$scores, Index:$b, Index:$h, Index:$q0);
  let results = (outs Attn_TileType:$result);
  let assemblyFormat = [{
    $scores `,` $b `,` $h `,` $q0 attr-dict `:` type($scores)
  }];
  let hasVerifier = 1;
}

def Attn_TileBwdDPOp : Attn_BwdQTileOp<"dp", [Pure, DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "dP = dO V^T for one (q tile, kv tile) pair";
  let description = [{
    `dP[i, j] = do[b, h, q0 + i] · v[b, h / G, k0 + j]`.
  }];
  let arguments = (ins Index:$b, Index:$h, Index:$q0, Index:$k0);
  let results = (outs Attn_TileType:$result);
  let assemblyFormat = [{
    $b `,` $h `,` $q0 `,` $k0 attr-dict `:` type($result)
  }];
  let hasVerifier = 1;
}

def Attn_TileBwdDSOp : Attn_BwdQTileOp<"ds", [Pure, DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>,
    AllTypesMatch<["weights", "dp", "scores", "result"]>]> {
  let summary = "dS: the gradient of the scores through the normalizer";
  let description = [{
    softmax: `dS = P ∘ (dP - D)` with `D_i = rowsum(do_i ∘ o_i) - dlse_i`;
    sigmoid: `dP ∘ P ∘ (1 - P)`; relu: `dP' ∘ p relu(S)^(p-1) [S > 0]` with
    `dP' = dP`, or `(dP - D) / l` for `row_normalize` (`D` as for softmax
    without `dlse`, `l` the row sum; 0 where `l = 0`); none: `dP`. Hidden
    elements get 0.
  }];
  let arguments = (ins Attn_TileType:$weights, Attn_TileType:$dp,
                       Attn_TileType:$scores, Index:$b, Index:$h, Index:$q0);
  let results = (outs Attn_TileType:$result);
  let assemblyFormat = [{
    $weights `,` $dp `,` $scores `,` $b `,` $h `,` $q0 attr-dict `:`
    type($weights)
  }];
  let hasVerifier = 1;
}

def Attn_TileBwdScoreOp : Attn_BwdQTileOp<"score", [
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>,
    AllTypesMatch<["ds", "raw", "result"]>]> {
  let summary = "the chain rule through the spec's score modification";
  let description = [{
    `dX[i, j] = dS[i, j] ∂score/∂x (X[i, j], b, h, q0 + i, k0 + j)` with
    the spec's `score` region `(x: f64, b, h, i, j: i64) -> f64`, `X` the
    raw scaled scores of `attn.tile.qk`. The derivative is the region's,
    taken by the backend symbolically (PyTorch's conventions at kinks,
    docs/language.md §15); the f32 inputs the region reads get
    `dS ∂score/∂input` added to their gradients.
  }];
  let arguments = (ins Attn_TileType:$ds, Attn_TileType:$raw, Index:$b,
                       Index:$h, Index:$q0, Index:$k0);
  let results = (outs Attn_TileType:$result);
  let regions = (region SizedRegion<1>:$score);
  let assemblyFormat = [{
    $ds `,` $raw `,` $b `,` $h `,` $q0 `,` $k0 attr-dict `:` type($ds) $score
  }];
  let hasRegionVerifier = 1;
}

def Attn_TileBwdDVOp : Attn_BwdQTileOp<"dv", [Pure, DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>,
    AllTypesMatch<["grad", "result"]>]> {
  let summary = "dV += P^T dO";
  let description = [{
    Adds `P[i, j] do[b, h, q0 + i]` to row `j` of the tile's `dV`.
  }];
  let arguments = (ins Attn_TileType:$weights, Attn_GradType:$grad, Index:$b,
                       Index:$h, Index:$q0);
  let results = (outs Attn_GradType:$result);
  let assemblyFormat = [{
    $weights `,` $grad `,` $b `,` $h `,` $q0 attr-dict `:` type($weights) `,`
    type($grad)
  }];
  let hasVerifier = 1;
}

def Attn_TileBwdDKOp : Attn_BwdQTileOp<"dk", [Pure, DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>,
    AllTypesMatch<["grad", "result"]>]> {
  let summary = "dK += scale dX^T Q";
  let description = [{
    Adds `scale dX[i, j] q[b, h, q0 + i]` to row `j` of the tile's `dK`.
  }];
  let arguments = (ins Attn_TileType:$dx, Attn_TileType:$q,
                       Attn_GradType:$grad);
  let results = (outs Attn_GradType:$result);
  let assemblyFormat = [{
    $dx `,` $q `,` $grad attr-dict `:` type($dx) `,` type($q) `,` type($grad)
  }];
  let hasVerifier = 1;
}

def Attn_TileBwdDQOp : Attn_BwdQTileOp<"dq"> {
  let summary = "dq += scale dX K for one (q tile, kv tile) pair";
  let description = [{
    Adds `scale Σ_j dX[i, j] k[b, h / G, k0 + j]` to `dq[b, h, q0 + i]`:
    the only write several kv tiles share (see
    `attn.tiled_attention_backward`).
  }];
  let arguments = (ins Attn_TileType:$dx, Index:$b, Index:$h, Index:$q0,
                       Index:$k0);
  let assemblyFormat = [{
    $dx `,` $b `,` $h `,` $q0 `,` $k0 attr-dict `:` type($dx)
  }];
  let hasVerifier = 1;
}

#endif // ATTN_DIALECT_ATTN_IR_ATTNTILEBACKWARDOPS_TD
