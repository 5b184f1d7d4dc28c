// attn-tile-attention: attaches #attn.schedule with the default tiles
// (tile_q = 4 x vector width, tile_kv = 64) and the block-skip mode derived
// from the mask: "none" without a mask, "interval" for index-only masks,
// "interval+scan" when the mask reads an aux tensor.
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention))' | FileCheck %s
// Options override the tiles (also of an existing schedule, field by field):
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention{tile-q=32 tile-kv=7}))' | FileCheck %s --check-prefix=OPT
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention{tile-q=128}))' | FileCheck %s --check-prefix=TQ
// The default tile_q follows the vector width (AVX2: 8 lanes):
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention{vector-width=8}))' | FileCheck %s --check-prefix=VW8
// tile_q must be a multiple of the vector width:
// RUN: not attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention{tile-q=24}))' 2>&1 | FileCheck %s --check-prefix=ERR
// RUN: not attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention{tile-kv=-1}))' 2>&1 | FileCheck %s --check-prefix=ERRKV
// With 8 lanes, 24 is fine:
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention{tile-q=24 vector-width=8}))' | FileCheck %s --check-prefix=Q24
// The pass is idempotent:
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention),attn.spec(attn-tile-attention))' | FileCheck %s

// CHECK-LABEL: attn.spec @dense
// CHECK: attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "none">}
// OPT-LABEL: attn.spec @dense
// OPT: #attn.schedule<tile_q = 32, tile_kv = 7, vector_width = 16, block_skip = "none">
// TQ-LABEL: attn.spec @dense
// TQ: #attn.schedule<tile_q = 128, tile_kv = 64, vector_width = 16, block_skip = "none">
// VW8-LABEL: attn.spec @dense
// VW8: #attn.schedule<tile_q = 32, tile_kv = 64, vector_width = 8, block_skip = "none">
// Q24-LABEL: attn.spec @dense
// Q24: #attn.schedule<tile_q = 24, tile_kv = 64, vector_width = 8, block_skip = "none">
// ERRKV: error: tile_q (64) must be a positive multiple of the vector width (16) and tile_kv (-1) must be positive
// ERR: error: tile_q (24) must be a positive multiple of the vector width (16) and tile_kv (64) must be positive
attn.spec @dense {
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}

// CHECK-LABEL: attn.spec @causal
// CHECK: #attn.schedule<tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "interval">
// OPT-LABEL: attn.spec @causal
// OPT: #attn.schedule<tile_q = 32, tile_kv = 7, vector_width = 16, block_skip = "interval">
attn.spec @causal {
  attn.attention normalizer = <softmax> scale {} mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    %m = arith.cmpi sle, %j, %i : i64
    attn.yield %m : i1
  } score {} bias {}
}

// A score lookup does not matter for block skipping; a mask lookup does.
// CHECK-LABEL: attn.spec @doc
// CHECK: #attn.schedule<tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "interval+scan">
// VW8-LABEL: attn.spec @doc
// VW8: block_skip = "interval+scan"
attn.spec @doc {
  attn.input @doc : i32 ["B", "N"]
  attn.attention normalizer = <softmax> scale {} mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    %di = attn.load @doc[%b, %i] : i32
    %dj = attn.load @doc[%b, %j] : i32
    %m = arith.cmpi eq, %di, %dj : i32
    attn.yield %m : i1
  } score {} bias {}
}

// CHECK-LABEL: attn.spec @score_lookup
// CHECK: #attn.schedule<tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "none">
attn.spec @score_lookup {
  attn.input @tbl : f32 ["Hq", "M"]
  attn.attention normalizer = <softmax> scale {} mask {} score {
  ^bb0(%x: f64, %b: i64, %h: i64, %i: i64, %j: i64):
    %t = attn.load @tbl[%h, %j] : f32
    %e = arith.extf %t : f32 to f64
    %s = arith.addf %x, %e : f64
    attn.yield %s : f64
  } bias {}
}

// An existing schedule is kept without options; given options replace only
// their own field.
// CHECK-LABEL: attn.spec @scheduled
// CHECK: #attn.schedule<tile_q = 48, tile_kv = 100, vector_width = 16, block_skip = "interval">
// OPT-LABEL: attn.spec @scheduled
// OPT: #attn.schedule<tile_q = 32, tile_kv = 7, vector_width = 16, block_skip = "interval">
// TQ-LABEL: attn.spec @scheduled
// TQ: #attn.schedule<tile_q = 128, tile_kv = 100, vector_width = 16, block_skip = "interval">
attn.spec @scheduled {
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 48, tile_kv = 100, vector_width = 16, block_skip = "interval">} scale {} mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    %m = arith.cmpi sle, %j, %i : i64
    attn.yield %m : i1
  } score {} bias {}
}
