// attn-tile-attention-backward: the backward pass as the program of one kv
// tile. The scores are recomputed by the forward's ops (load_q, qk, score,
// mask); the spec's mask moves to the q loop, the score region is applied
// twice (recompute, and the chain rule of bwd.score).
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention-backward))' | FileCheck %s
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention-backward{tile-q=32 tile-kv=48}))' | FileCheck %s --check-prefix=OPT
// The default tile_kv follows the vector width, along kv rows (AVX2: 8):
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention-backward{vector-width=8}))' | FileCheck %s --check-prefix=VW8
// tile_kv must be a multiple of the vector width:
// RUN: not attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention-backward{tile-kv=24}))' 2>&1 | FileCheck %s --check-prefix=ERR
// RUN: not attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention-backward{tile-q=1024}))' 2>&1 | FileCheck %s --check-prefix=BIG
// The pass is idempotent; after attn-tile-attention it has nothing to tile:
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention-backward),attn.spec(attn-tile-attention-backward))' | FileCheck %s
// RUN: not attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention),attn.spec(attn-tile-attention-backward))' 2>&1 | FileCheck %s --check-prefix=AFTER

// CHECK-LABEL: attn.spec @dense
// CHECK: attn.tiled_attention_backward normalizer = <softmax> schedule = <tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "none"> scale {
// CHECK: ^bb0(%[[B:.*]]: index, %[[HK:.*]]: index, %[[K0:.*]]: index):
// CHECK-NEXT: %[[INIT:.*]] = attn.tile.bwd.init : <64x?x?>
// CHECK-NEXT: %[[GRAD:.*]] = attn.tile.q_loop %[[B]], %[[HK]], %[[K0]] iter_args(%[[INIT]]) : <64x?x?> mask {
// CHECK-NEXT: } do {
// CHECK-NEXT: ^bb0(%[[H:.*]]: index, %[[Q0:.*]]: index, %[[PARTIAL:.*]]: i1, %[[G:.*]]: !attn.grad<64x?x?>):
// CHECK-NEXT: %[[Q:.*]] = attn.tile.load_q %[[B]], %[[H]], %[[Q0]] : <64x?xf32>
// CHECK-NEXT: %[[X:.*]] = attn.tile.qk %[[Q]], %[[B]], %[[H]], %[[K0]] : <64x?xf32> -> <64x64xf32>
// CHECK-NEXT: %[[S:.*]] = attn.tile.mask %[[X]], %[[PARTIAL]], %[[B]], %[[H]], %[[Q0]], %[[K0]] : <64x64xf32>
// CHECK-NEXT: %[[P:.*]] = attn.tile.bwd.weights %[[S]], %[[B]], %[[H]], %[[Q0]] : <64x64xf32>
// CHECK-NEXT: %[[DP:.*]] = attn.tile.bwd.dp %[[B]], %[[H]], %[[Q0]], %[[K0]] : <64x64xf32>
// CHECK-NEXT: %[[DS:.*]] = attn.tile.bwd.ds %[[P]], %[[DP]], %[[S]], %[[B]], %[[H]], %[[Q0]] : <64x64xf32>
// CHECK-NEXT: %[[G1:.*]] = attn.tile.bwd.dv %[[P]], %[[G]], %[[B]], %[[H]], %[[Q0]] : <64x64xf32>, <64x?x?>
// CHECK-NEXT: %[[G2:.*]] = attn.tile.bwd.dk %[[DS]], %[[Q]], %[[G1]] : <64x64xf32>, <64x?xf32>, <64x?x?>
// CHECK-NEXT: attn.tile.bwd.dq %[[DS]], %[[B]], %[[H]], %[[Q0]], %[[K0]] : <64x64xf32>
// CHECK-NEXT: attn.yield %[[G2]] : !attn.grad<64x?x?>
// CHECK-NEXT: }
// CHECK-NEXT: attn.tile.bwd.store %[[GRAD]], %[[B]], %[[HK]], %[[K0]] : <64x?x?>
// CHECK-NEXT: attn.yield
// OPT-LABEL: attn.spec @dense
// OPT: schedule = <tile_q = 32, tile_kv = 48, vector_width = 16, block_skip = "none">
// OPT: attn.tile.qk {{.*}} : <32x?xf32> -> <32x48xf32>
// VW8: schedule = <tile_q = 64, tile_kv = 32, vector_width = 8, block_skip = "none">
// ERR: error: tile_kv (24) must be a positive multiple of the vector width (16) and tile_q (64) positive
// BIG: error: tile_q (1024) and tile_kv (64) must be at most 512 rows
// AFTER: error: attn-tile-attention-backward needs an 'attn.attention' (run it instead of attn-tile-attention, not after it)
attn.spec @dense {
  attn.attention normalizer = <softmax> scale {
  } mask {
  } score {
  } bias {
  }
}

// A mask and a score that reads a learnable table: the mask goes to the q
// loop (classified by interval analysis, a lookup adds a scan), the score
// to tile.score and to bwd.score.
// CHECK-LABEL: attn.spec @rpb
// CHECK: block_skip = "interval"
// CHECK: attn.tile.q_loop {{.*}} mask {
// CHECK: arith.cmpi sle
// CHECK: } do {
// CHECK: %[[X:.*]] = attn.tile.qk
// CHECK: %[[S:.*]] = attn.tile.score %[[X]], {{.*}} {
// CHECK: attn.load @rpb
// CHECK: %[[M:.*]] = attn.tile.mask %[[S]],
// CHECK: %[[P:.*]] = attn.tile.bwd.weights %[[M]],
// CHECK: %[[DS:.*]] = attn.tile.bwd.ds %[[P]], %{{.*}}, %[[M]],
// CHECK: %[[DX:.*]] = attn.tile.bwd.score %[[DS]], %[[X]], {{.*}} {
// CHECK: attn.load @rpb
// CHECK: attn.tile.bwd.dk %[[DX]],
// CHECK: attn.tile.bwd.dq %[[DX]],
attn.spec @rpb {
  attn.input @rpb : f32 ["Hq", 9]
  attn.attention normalizer = <softmax> scale {
  } mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    %c = arith.cmpi sle, %j, %i : i64
    attn.yield %c : i1
  } score {
  ^bb0(%x: f64, %b: i64, %h: i64, %i: i64, %j: i64):
    %c0 = arith.constant 0 : i64
    %t = attn.load @rpb[%h, %c0] : f32
    %te = arith.extf %t : f32 to f64
    %s = arith.addf %x, %te : f64
    attn.yield %s : f64
  } bias {
  }
}

// The element-wise normalizers keep their attributes.
// CHECK-LABEL: attn.spec @relu
// CHECK: attn.tiled_attention_backward normalizer = <relu> schedule = {{.*}} attributes {relu_power = 2 : i64, row_normalize}
attn.spec @relu {
  attn.attention normalizer = <relu> attributes {relu_power = 2 : i64, row_normalize} scale {
  } mask {
  } score {
  } bias {
  }
}
