// The CPU patterns of the backward tile program: one work item per (b, hk)
// runs its kv tiles in order (they add to the same dq rows), keys in 16
// SIMD lanes.
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention-backward{tile-q=16 tile-kv=32}),convert-attn-to-cpu,canonicalize,cse)' | FileCheck %s

// The forward's arguments (q, k, v, o, lse, aux), then do, dlse, dq, dk, dv
// and the gradient of the f32 table the score reads:
// CHECK-LABEL: func.func @attn_rpb_backward_tiles(
// CHECK-SAME: %[[Q:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[RPB:[a-z0-9]+]]: memref<?x?xf32, strided<[?, ?], offset: ?>>,
// CHECK-SAME: %[[DO:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DLSE:[a-z0-9]+]]: memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DQ:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DK:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DV:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DRPB:[a-z0-9]+]]: memref<?x?xf32, strided<[?, ?], offset: ?>>,
// CHECK-SAME: %{{.*}}: i64, %{{.*}}: i64) -> i32
// The transposed kv tiles and their gradients live in heap scratch:
// CHECK: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?x32xf32>
// Per item, before any kv tile: the q and do rows packed (q scaled), and
// D = rowsum(do * o) - dlse per row:
// CHECK: memref.load %[[Q]]
// CHECK: memref.load %[[DO]]
// CHECK: scf.if
// CHECK: memref.load %[[DLSE]]
// The fused step of a block of rows: P from the saved lse, dS = P (dP - D),
// the score's chain rule scatter-adding into drpb with atomics:
// CHECK: math.exp
// CHECK: memref.atomic_rmw addf {{.*}} %[[DRPB]]
// CHECK: vector.fma
// The tile's dk and dv:
// CHECK: memref.store {{.*}}, %[[DK]]
// CHECK: memref.store {{.*}}, %[[DV]]
// The item's dq, scaled, once all its kv tiles are done:
// CHECK: memref.store {{.*}}, %[[DQ]]
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
