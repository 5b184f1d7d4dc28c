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
// CHECK: attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "none"> scale {
// The program of one q tile; without a mask every tile is visited and
// tile.mask only hides a padded tail:
// CHECK: ^bb0(%[[B:.*]]: index, %[[H:.*]]: index, %[[Q0:.*]]: index):
// CHECK-NEXT: %[[Q:.*]] = attn.tile.load_q %[[B]], %[[H]], %[[Q0]] : <64x?xf32>
// CHECK-NEXT: %[[INIT:.*]] = attn.tile.init : <64x?>
// CHECK-NEXT: %[[ACC:.*]] = attn.tile.kv_loop %[[B]], %[[H]], %[[Q0]] iter_args(%[[INIT]]) : <64x?> mask {
// CHECK-NEXT: } do {
// CHECK-NEXT: ^bb0(%[[K0:.*]]: index, %[[PARTIAL:.*]]: i1, %[[A:.*]]: !attn.acc<64x?>):
// CHECK-NEXT: %[[S:.*]] = attn.tile.qk %[[Q]], %[[B]], %[[H]], %[[K0]] : <64x?xf32> -> <64x64xf32>
// CHECK-NEXT: %[[SM:.*]] = attn.tile.mask %[[S]], %[[PARTIAL]], %[[B]], %[[H]], %[[Q0]], %[[K0]] : <64x64xf32>
// CHECK-NEXT: %[[P:.*]], %[[A1:.*]] = attn.tile.online_softmax %[[SM]], %[[A]] : <64x64xf32>, <64x?>
// CHECK-NEXT: %[[A2:.*]] = attn.tile.pv %[[P]], %[[A1]], %[[B]], %[[H]], %[[K0]] : <64x64xf32>, <64x?>
// CHECK-NEXT: attn.yield %[[A2]] : !attn.acc<64x?>
// CHECK-NEXT: }
// CHECK-NEXT: attn.tile.store %[[ACC]], %[[B]], %[[H]], %[[Q0]] : <64x?>
// CHECK-NEXT: attn.yield
// OPT-LABEL: attn.spec @dense
// OPT: schedule = <tile_q = 32, tile_kv = 7, vector_width = 16, block_skip = "none">
// The tile types follow the options:
// OPT: attn.tile.qk {{.*}} : <32x?xf32> -> <32x7xf32>
// TQ-LABEL: attn.spec @dense
// TQ: schedule = <tile_q = 128, tile_kv = 64, vector_width = 16, block_skip = "none">
// VW8-LABEL: attn.spec @dense
// VW8: schedule = <tile_q = 32, tile_kv = 64, vector_width = 8, block_skip = "none">
// Q24-LABEL: attn.spec @dense
// Q24: schedule = <tile_q = 24, tile_kv = 64, vector_width = 8, block_skip = "none">
// ERRKV: error: tile_q (64) must be a positive multiple of the vector width (16) and tile_kv (-1) must be positive
// ERR: error: tile_q (24) must be a positive multiple of the vector width (16) and tile_kv (64) must be positive
attn.spec @dense {
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}

// CHECK-LABEL: attn.spec @causal
// CHECK: schedule = <tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "interval">
// The mask moves to the kv loop, which classifies tiles with it:
// CHECK: attn.tile.kv_loop {{.*}} mask {
// CHECK-NEXT: ^bb0({{.*}}: i64, {{.*}}: i64, {{.*}}: i64, {{.*}}: i64):
// CHECK-NEXT: arith.cmpi sle
// OPT-LABEL: attn.spec @causal
// OPT: schedule = <tile_q = 32, tile_kv = 7, vector_width = 16, block_skip = "interval">
attn.spec @causal {
  attn.attention normalizer = <softmax> scale {} mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    %m = arith.cmpi sle, %j, %i : i64
    attn.yield %m : i1
  } score {} bias {}
}

// A score lookup does not matter for block skipping; a mask lookup does.
// CHECK-LABEL: attn.spec @doc
// CHECK: schedule = <tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "interval+scan">
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
// CHECK: schedule = <tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "none">
// The score region moves to tile.score, between qk and mask:
// CHECK: %[[S:.*]] = attn.tile.qk
// CHECK-NEXT: %[[S2:.*]] = attn.tile.score %[[S]], {{.*}} : <64x64xf32> {
// CHECK: attn.load @tbl
// CHECK: attn.tile.mask %[[S2]]
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
// CHECK: schedule = <tile_q = 48, tile_kv = 100, vector_width = 16, block_skip = "interval">
// OPT-LABEL: attn.spec @scheduled
// OPT: schedule = <tile_q = 32, tile_kv = 7, vector_width = 16, block_skip = "interval">
// TQ-LABEL: attn.spec @scheduled
// TQ: schedule = <tile_q = 128, tile_kv = 100, vector_width = 16, block_skip = "interval">
attn.spec @scheduled {
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 48, tile_kv = 100, vector_width = 16, block_skip = "interval">} scale {} mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    %m = arith.cmpi sle, %j, %i : i64
    attn.yield %m : i1
  } score {} bias {}
}

// A linear attention becomes the chunk program of one (b, h): its regions
// and attributes move to attn.tiled_linear_attention; the delta rule adds
// attn.chunk.delta, whose values feed the readout and the update.
// CHECK-LABEL: attn.spec @delta
// CHECK: attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
// CHECK: } beta {
// CHECK: arith.constant 5.000000e-01 : f64
// CHECK: } body {
// CHECK: %[[U:.*]] = attn.chunk.delta
// CHECK: attn.chunk.readout {{.*}}, %[[U]],
// CHECK: attn.chunk.update {{.*}}, %[[U]],
// CHECK-NOT: attn.chunk.readout_all
attn.spec @delta {
  attn.linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  ^bb0(%b: i64, %h: i64, %t: i64):
    %c = arith.constant 0.5 : f64
    attn.yield %c : f64
  } bonus {
  }
}

// Non-causal: no query side in the scan; the queries read the final state.
// CHECK-LABEL: attn.spec @noncausal
// CHECK: attributes {noncausal}
// CHECK-NOT: query
// CHECK: attn.chunk.store_state
// CHECK-NEXT: attn.chunk.readout_all
attn.spec @noncausal {
  attn.linear_attention feature_map = <elu_plus_one>, <elu_plus_one> attributes {noncausal} scale {
  } gate {
  } beta {
  } bonus {
  }
}
