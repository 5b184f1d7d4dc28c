// The CPU patterns of the linear family's gradients' program: one work item
// per (b, hk) runs its group's heads in order; checkpoints every
// ceil(sqrt(N)) steps; the recurrence backwards inside a chunk, vector code
// along Dv with one horizontal sum per feature row and dot product.
// RUN: attn-opt %s --split-input-file --pass-pipeline='builtin.module(attn.spec(attn-tile-attention-backward),convert-attn-to-cpu,canonicalize,cse)' | FileCheck %s

// The forward's arguments (q, k, v, o, lse, g), then do, dlse, dq, dk, dv
// and dg:
// CHECK-LABEL: func.func @attn_gla_backward_tiles(
// CHECK-SAME: %[[Q:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[K:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[V:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[O:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[LSE:[a-z0-9]+]]: memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[G:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DO:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DLSE:[a-z0-9]+]]: memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DQ:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DK:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DV:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[DG:[a-z0-9]+]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %{{.*}}: i64, %{{.*}}: i64) -> i32
// The chunk length, ceil(sqrt(N)):
// CHECK: math.sqrt %{{.*}} : f64
// CHECK: math.ceil
// Checkpoints and one chunk's states in heap scratch:
// CHECK: memref.alloc({{.*}}) {alignment = 64 : i64} : memref<?x?xf32>
// The per-feature gate's gradient: the item owns g[b, h, ...], so a plain
// add, never an atomic; nothing reads dlse.
// A feature row's dot products, reduced once after its vectors:
// CHECK-NOT: memref.atomic_rmw
// CHECK: vector.reduction <add>
// CHECK-NOT: memref.atomic_rmw
// CHECK: %[[CUR:.*]] = memref.load %[[DG]]
// CHECK-NEXT: %[[NEW:.*]] = arith.addf %[[CUR]]
// CHECK-NEXT: memref.store %[[NEW]], %[[DG]]
// CHECK-NOT: memref.atomic_rmw
// CHECK-NOT: %[[DLSE]]{{[^0-9]}}
// CHECK: return
attn.spec @gla {
  attn.input @g : f32 ["B", "Hq", "N", "Dqk"]
  attn.linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  ^bb0(%b: i64, %h: i64, %t: i64, %d: i64):
    %x = attn.load @g[%b, %h, %t, %d] : f32
    %y = arith.extf %x : f32 to f64
    attn.yield %y : f64
  } beta {
  } bonus {
  }
}

// -----

// RWKV's bonus u[h, d] is shared by the batch's items: its gradient adds
// atomically.
// CHECK-LABEL: func.func @attn_rwkv_backward_tiles(
// CHECK: memref.atomic_rmw addf
attn.spec @rwkv {
  attn.input @u : f32 ["Hq", "Dqk"]
  attn.linear_attention feature_map = <identity>, <identity> attributes {exclusive} scale {
  } gate {
  } beta {
  } bonus {
  ^bb0(%h: i64, %d: i64):
    %x = attn.load @u[%h, %d] : f32
    %y = arith.extf %x : f32 to f64
    attn.yield %y : f64
  }
}
