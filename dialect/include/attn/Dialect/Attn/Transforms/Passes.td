//===- Passes.td - attn dialect passes ---------------------*- tablegen -*-===//

#ifndef ATTN_DIALECT_ATTN_TRANSFORMS_PASSES_TD
#define ATTN_DIALECT_ATTN_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def AttnBindParams : Pass<"attn-bind-params", "SpecOp"> {
  let summary = "Replace parameter defaults with given values";
  let description = [{
    Overrides the default value region of each named `attn.param` with a
    constant. Values are given as `name=value` pairs; an unknown name, or a
    value that does not parse as the parameter's type, is an error.

    ```mlir
    // attn-opt --pass-pipeline='builtin.module(attn.spec(attn-bind-params{values=window=8}))'
    attn.param @window : i64 {
      %c = arith.constant 8 : i64
      attn.yield %c : i64
    }
    ```
  }];
  let options = [
    ListOption<"values", "values", "std::string",
               "name=value pairs overriding parameter defaults">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

def AttnTileAttention : Pass<"attn-tile-attention", "SpecOp"> {
  let summary = "Rewrite each attention into its tiled form (tile ops)";
  let description = [{
    Chooses the schedule (the query and key/value tile sizes, the SIMD width
    the CPU kernel vectorizes queries over, and how tiles are classified for
    block skipping, from the shape of the mask: no mask, an index-only
    predicate, or one with aux lookups) and rewrites `attn.attention` into
    `attn.tiled_attention`: the program of one q tile as tile ops, which the
    backends lower op by op. Zero-valued options mean "use the heuristic"
    (tile_q = 4 x vector width, tile_kv = 64); a schedule already on the
    attention is kept unless options are given. tile_q and tile_kv are at
    most 512 rows (larger tiles only cost compile time and scratch memory);
    a larger one is an error. A spec already tiled is left as it is.

    ```mlir
    attn.tiled_attention normalizer = <softmax> schedule =
        #attn.schedule<tile_q = 64, tile_kv = 64, vector_width = 16,
                       block_skip = "interval"> scale {} bias {} body {
    ^bb0(%b: index, %h: index, %q0: index):
      %q = attn.tile.load_q %b, %h, %q0 : !attn.tile<64x?xf32>
      ...
    }
    ```
  }];
  let options = [
    Option<"tileQ", "tile-q", "int64_t", "0", "query tile rows (multiple of the vector width)">,
    Option<"tileKV", "tile-kv", "int64_t", "0", "key/value tile rows">,
    Option<"vectorWidth", "vector-width", "int64_t", "16",
           "f32 lanes per SIMD register (16 for AVX-512, 8 for AVX2)">
  ];
}

def AttnTileAttentionBackward : Pass<"attn-tile-attention-backward", "SpecOp"> {
  let summary = "Rewrite an attention into the tiled program of its gradients";
  let description = [{
    Rewrites `attn.attention` into `attn.tiled_attention_backward`, the
    FlashAttention-2 backward pass as the program of one kv tile: it
    recomputes the scores with the forward's tile ops (`load_q`, `qk`,
    `score`, `mask`) for every (query head, q tile) pair the mask lets see
    the tile, and adds the gradient steps (`bwd.weights`, `dp`, `ds`, the
    score's chain rule `bwd.score`, `dv`, `dk`, `dq`). The spec's mask moves
    to the q loop, which classifies pairs as the forward's kv loop does;
    the score region is applied twice (recompute and chain rule).

    The schedule's vector width runs along kv rows here (the CPU kernel
    keeps keys in SIMD lanes so dK and dV accumulate without reductions):
    tile_kv must be a multiple of it; defaults tile_kv = 4 x vector width,
    tile_q = 64. Both at most 512 rows.

    Rewrites `attn.linear_attention` into
    `attn.tiled_linear_attention_backward`: the forward's chunk scan with a
    checkpoint of the state at each chunk boundary (`attn.chunk.bwd.save`),
    then a reverse scan (`attn.chunk.bwd.reverse_loop`) that restores each
    chunk's state, recomputes its features with the forward's ops and runs
    its gradient (`attn.chunk.bwd.grad`); non-causal: the key scan, then
    `attn.chunk.bwd.readout_all` and `keys_all`. The chunk length is the
    target's; the tile options do not apply. A spec with the carried state
    of `attn-add-linear-state` (decode) has no backward (an error).
  }];
  let options = [
    Option<"tileQ", "tile-q", "int64_t", "0", "query tile rows">,
    Option<"tileKV", "tile-kv", "int64_t", "0", "key/value tile rows (multiple of the vector width)">,
    Option<"vectorWidth", "vector-width", "int64_t", "16",
           "f32 lanes per SIMD register (16 for AVX-512, 8 for AVX2)">
  ];
}

def AttnSetElementType : Pass<"attn-set-element-type", "SpecOp"> {
  let summary = "Give q, k and v an element type where the spec leaves it implicit";
  let description = [{
    A spec that does not declare `q`, `k` or `v` takes them as f32. This pass
    declares each undeclared one with `type` (bf16, f16 or f32), so the same
    spec compiles for bf16 inputs (`attnc --dtype=bf16`) and for the CUDA
    target, whose tensor-core kernels take bf16 or f16. Declared inputs keep
    their type.

    ```mlir
    attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
    ```
  }];
  let options = [
    Option<"type", "type", "std::string", "\"bf16\"",
           "element type of the undeclared q, k, v: bf16, f16 or f32">
  ];
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

#endif // ATTN_DIALECT_ATTN_TRANSFORMS_PASSES_TD
