//===- AttnTileOps.td - the tile-level IR of attention -----*- tablegen -*-===//
//
// What attn-tile-attention rewrites attn.attention into: the flash
// algorithm as a few ops over tiles (a q tile, an S/P tile of q x kv rows,
// an accumulator with the normalizer's row state). The backends lower each
// op with one pattern of their own (lowering/lib/Conversion/*/Tile*.cpp);
// the algorithm is visible here, the instruction mix is theirs.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_DIALECT_ATTN_IR_ATTNTILEOPS_TD
#define ATTN_DIALECT_ATTN_IR_ATTNTILEOPS_TD

include "attn/Dialect/Attn/IR/AttnDialect.td"
include "mlir/IR/OpAsmInterface.td"
include "mlir/IR/RegionKindInterface.td"

//===----------------------------------------------------------------------===//
// Types
//===----------------------------------------------------------------------===//

class Attn_Type<string name, string typeMnemonic>
    : TypeDef<Attn_Dialect, name> {
  let mnemonic = typeMnemonic;
}

def Attn_TileType : Attn_Type<"Tile", "tile"> {
  let summary = "a 2-d tile of a q block, or of scores / weights";
  let description = [{
    A `rows x cols` tile held by one work item (registers, SIMD lanes or
    shared memory: the backend decides). `?` is a size known at run time
    (the head dims).

    ```mlir
    !attn.tile<64x?xbf16>   // a q tile: tile_q rows of Dqk
    !attn.tile<64x64xf32>   // S or P: tile_q x tile_kv
    ```
  }];
  let parameters = (ins ArrayRefParameter<"int64_t">:$shape,
                        "::mlir::Type":$elementType);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    int64_t getRows() const { return getShape()[0]; }
    int64_t getCols() const { return getShape()[1]; }
  }];
}

def Attn_AccType : Attn_Type<"Acc", "acc"> {
  let summary = "an output accumulator with its normalizer's row state";
  let description = [{
    The running `O` of a q tile (`rows x Dv`, f32) and, per row, what the
    normalizer carries between kv tiles: the running max `m` and sum `l` of
    softmax, the row sum `l` of normalized relu, nothing for the others.

    ```mlir
    !attn.acc<64x?>
    ```
  }];
  let parameters = (ins "int64_t":$rows, "int64_t":$cols);
  let hasCustomAssemblyFormat = 1;
}

/// An op of the q tile's program (parent: attn.tiled_attention).
class Attn_TileOp<string mnemonic, list<Trait> traits = []>
    : Attn_Op<"tile." # mnemonic,
              !listconcat(traits, [HasParent<"TiledAttentionOp">])>;
/// An op of one kv tile's step (parent: attn.tile.kv_loop).
class Attn_KVTileOp<string mnemonic, list<Trait> traits = []>
    : Attn_Op<"tile." # mnemonic,
              !listconcat(traits, [HasParent<"KVLoopOp">])>;
/// An op that recomputes scores, shared by the forward's kv steps and the
/// backward's q steps (parent: attn.tile.kv_loop or attn.tile.q_loop).
class Attn_ScoreTileOp<string mnemonic, list<Trait> traits = []>
    : Attn_Op<"tile." # mnemonic,
              !listconcat(traits, [ParentOneOf<["KVLoopOp", "QLoopOp"]>])>;

//===----------------------------------------------------------------------===//
// attn.tiled_attention
//===----------------------------------------------------------------------===//

def Attn_TiledAttentionOp : Attn_Op<"tiled_attention", [
    HasParent<"SpecOp">, IsolatedFromAbove,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>]> {
  let summary = "an attention as the program one q tile runs";
  let description = [{
    What `attn-tile-attention` makes of `attn.attention`: `body` is the work
    of one q tile (batch `b`, query head `h`, first row `q0`); the kernel
    runs it for every q tile. The schedule sizes the tiles; `scale` and
    `bias` are the spec's scalar regions (empty: `Dqk^-1/2` and 0), read
    once per kernel.

    ```mlir
    attn.tiled_attention normalizer = <softmax> schedule = #attn.schedule<tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "interval"> scale {
    } bias {
    } body {
    ^bb0(%b: index, %h: index, %q0: index):
      %q = attn.tile.load_q %b, %h, %q0 : !attn.tile<64x?xf32>
      %init = attn.tile.init : !attn.acc<64x?>
      %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : !attn.acc<64x?> mask {
      ^bb0(%bb: i64, %hh: i64, %i: i64, %j: i64):
        %c = arith.cmpi sle, %j, %i : i64
        attn.yield %c : i1
      } do {
      ^bb0(%k0: index, %partial: i1, %a: !attn.acc<64x?>):
        %s = attn.tile.qk %q, %b, %h, %k0 : !attn.tile<64x?xf32> -> !attn.tile<64x64xf32>
        %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : !attn.tile<64x64xf32>
        %p, %a1 = attn.tile.online_softmax %m, %a : !attn.tile<64x64xf32>, !attn.acc<64x?>
        %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : !attn.tile<64x64xf32>, !attn.acc<64x?>
        attn.yield %a2 : !attn.acc<64x?>
      }
      attn.tile.store %acc, %b, %h, %q0 : !attn.acc<64x?>
      attn.yield
    }
    ```
  }];
  let arguments = (ins Attn_NormalizerKindAttr:$normalizer,
                       UnitAttr:$lse,
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
    /// The kv loop of the body.
    KVLoopOp getKVLoop();
  }];
}

//===----------------------------------------------------------------------===//
// Ops of one q tile
//===----------------------------------------------------------------------===//

def Attn_TileLoadQOp : Attn_Op<"tile.load_q", [Pure, DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>,
    ParentOneOf<["TiledAttentionOp", "QLoopOp"]>]> {
  let summary = "the q tile of a work item";
  let description = [{
    Rows `q0 .. q0 + tile_q` of `q[b, h]` (rows past `N` read as padding
    whose results are discarded). Backends may fold the scale in here.
  }];
  let arguments = (ins Index:$b, Index:$h, Index:$q0);
  let results = (outs Attn_TileType:$result);
  let assemblyFormat = "$b `,` $h `,` $q0 attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Attn_TileInitOp : Attn_TileOp<"init", [Pure, DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "a zero accumulator and the normalizer's initial row state";
  let description = [{
    `O = 0`; softmax starts `m = -inf`, `l = 0`; normalized relu `l = 0`.
  }];
  let results = (outs Attn_AccType:$result);
  let assemblyFormat = "attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Attn_KVLoopOp : Attn_TileOp<"kv_loop", [
    AllTypesMatch<["init", "result"]>,
    DeclareOpInterfaceMethods<OpAsmOpInterface,
                              ["getAsmBlockArgumentNames", "getAsmResultNames"]>]> {
  let summary = "the kv tiles one q tile visits, with their tile class";
  let description = [{
    Runs `do` over the kv tiles `k0 = 0, tile_kv, ...` below `M` that the
    mask leaves non-empty, carrying the accumulator. The `mask` region
    (`(b, h, i, j) -> i1`, the spec's) classifies each (q tile, kv tile)
    pair by interval analysis as empty (skipped), full or partial; `do`
    gets `%partial`, true for partial tiles and, on targets that pad tiles
    to `tile_kv` rows, for a tail tile past `M`. Without a mask every tile
    but such a tail is full.
  }];
  let arguments = (ins Index:$b, Index:$h, Index:$q0, Attn_AccType:$init);
  let results = (outs Attn_AccType:$result);
  let regions = (region AnyRegion:$mask, SizedRegion<1>:$body);
  let assemblyFormat = [{
    $b `,` $h `,` $q0 `iter_args` `(` $init `)` attr-dict `:` type($init)
    `mask` $mask `do` $body
  }];
  let hasRegionVerifier = 1;
}

def Attn_TileQKOp : Attn_ScoreTileOp<"qk", [Pure, DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>]> {
  let summary = "S = scale * Q K^T for one kv tile";
  let description = [{
    Scores of the q tile against kv rows `k0 .. k0 + tile_kv` of
    `k[b, h / G]` (rows past `M` are padding; `attn.tile.mask` hides them).
  }];
  let arguments = (ins Attn_TileType:$q, Index:$b, Index:$h, Index:$k0);
  let results = (outs Attn_TileType:$result);
  let assemblyFormat = [{
    $q `,` $b `,` $h `,` $k0 attr-dict `:` type($q) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Attn_TileScoreOp : Attn_ScoreTileOp<"score", [
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>,
    AllTypesMatch<["scores", "result"]>]> {
  let summary = "the spec's score modification, element by element";
  let description = [{
    `S[i, j] = score(S[i, j], b, h, q0 + i, k0 + j)` with the spec's `score`
    region `(x: f64, b, h, i, j: i64) -> f64`.
  }];
  let arguments = (ins Attn_TileType:$scores, Index:$b, Index:$h, Index:$q0,
                       Index:$k0);
  let results = (outs Attn_TileType:$result);
  let regions = (region SizedRegion<1>:$score);
  let assemblyFormat = [{
    $scores `,` $b `,` $h `,` $q0 `,` $k0 attr-dict `:` type($scores) $score
  }];
  let hasRegionVerifier = 1;
}

def Attn_TileMaskOp : Attn_ScoreTileOp<"mask", [Pure, DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>,
    AllTypesMatch<["scores", "result"]>]> {
  let summary = "hide the elements the mask rejects";
  let description = [{
    On a partial tile, evaluates the enclosing `attn.tile.kv_loop`'s (or
    `attn.tile.q_loop`'s) mask (if it has one) per element and sets hidden scores, and the padding rows
    of a tail tile past `M`, to `-inf`; every normalizer maps `-inf` to a
    weight of 0. A full tile passes through.
  }];
  let arguments = (ins Attn_TileType:$scores, I1:$partial, Index:$b,
                       Index:$h, Index:$q0, Index:$k0);
  let results = (outs Attn_TileType:$result);
  let assemblyFormat = [{
    $scores `,` $partial `,` $b `,` $h `,` $q0 `,` $k0 attr-dict `:`
    type($scores)
  }];
  let hasVerifier = 1;
}

def Attn_TileOnlineSoftmaxOp : Attn_KVTileOp<"online_softmax", [Pure, DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>,
    AllTypesMatch<["scores", "weights"]>, AllTypesMatch<["acc", "result"]>]> {
  let summary = "the online-softmax step: new row max, P, rescaled O and l";
  let description = [{
    `m' = max(m, rowmax S)`, `P = exp(S - m')`, `alpha = exp(m - m')`,
    `l = alpha l + rowsum P`, `O = alpha O` (a row with no visible key yet
    keeps `m = -inf` and subtracts 0). Returns `P` and the accumulator.
  }];
  let arguments = (ins Attn_TileType:$scores, Attn_AccType:$acc);
  let results = (outs Attn_TileType:$weights, Attn_AccType:$result);
  let assemblyFormat = [{
    $scores `,` $acc attr-dict `:` type($scores) `,` type($acc)
  }];
  let hasVerifier = 1;
}

def Attn_TileNormalizeOp : Attn_KVTileOp<"normalize", [Pure, DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>,
    AllTypesMatch<["scores", "weights"]>, AllTypesMatch<["acc", "result"]>]> {
  let summary = "an element-wise normalizer: sigmoid, relu or none";
  let description = [{
    `P = sigmoid(S + bias)`, `relu(S)^relu_power` (adding the row sums to
    `l` when `row_normalize`), or `S`; `-inf` (hidden) gives 0.
  }];
  let arguments = (ins Attn_TileType:$scores, Attn_AccType:$acc);
  let results = (outs Attn_TileType:$weights, Attn_AccType:$result);
  let assemblyFormat = [{
    $scores `,` $acc attr-dict `:` type($scores) `,` type($acc)
  }];
  let hasVerifier = 1;
}

def Attn_TilePVOp : Attn_KVTileOp<"pv", [Pure, DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmResultNames"]>,
    AllTypesMatch<["acc", "result"]>]> {
  let summary = "O += P V for one kv tile";
  let description = [{
    Accumulates the weights against rows `k0 .. k0 + tile_kv` of
    `v[b, h / G]`.
  }];
  let arguments = (ins Attn_TileType:$weights, Attn_AccType:$acc, Index:$b,
                       Index:$h, Index:$k0);
  let results = (outs Attn_AccType:$result);
  let assemblyFormat = [{
    $weights `,` $acc `,` $b `,` $h `,` $k0 attr-dict `:` type($weights) `,`
    type($acc)
  }];
  let hasVerifier = 1;
}

def Attn_TileStoreOp : Attn_TileOp<"store"> {
  let summary = "finalize and write o (and lse) of a q tile";
  let description = [{
    `o = O / l` for softmax and normalized relu (0 where `l = 0`: rows with
    no visible key), `o = O` otherwise; softmax also writes
    `lse = m + log l` (-inf for empty rows) when the caller asks for it.
  }];
  let arguments = (ins Attn_AccType:$acc, Index:$b, Index:$h, Index:$q0);
  let assemblyFormat = "$acc `,` $b `,` $h `,` $q0 attr-dict `:` type($acc)";
}

#endif // ATTN_DIALECT_ATTN_IR_ATTNTILEOPS_TD
