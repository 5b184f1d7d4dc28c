// The CPU patterns of the tile ops, on a hand-written tile program (queries
// in 16 SIMD lanes, tiles in heap scratch). Each op's code, in order:
// RUN: attn-opt %s --convert-attn-to-cpu --canonicalize --cse | FileCheck %s

// CHECK-LABEL: func.func @attn_softcap_causal_tiles(
// The scale region, once per call:
// CHECK: arith.constant 1.250000e-01 : f32
// The item loop:
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c1 {
// tile.load_q: the q tile transposed into Qt, scaled, zero past N:
// CHECK: scf.for %[[I:.*]] = %c0 to %c32 step %c1 {
// CHECK: scf.if
// CHECK: memref.load %arg0
// CHECK: arith.mulf
// CHECK: memref.store {{.*}} : memref<?x32xf32>
// tile.init: m = -inf, l = 0, Ot = 0:
// CHECK: vector.store %cst_{{[0-9]+}}, %[[M:.*]][%c0] : memref<32xf32>, vector<16xf32>
// tile.kv_loop: every kv tile, the mask's intervals on i64, the step under
// "not empty":
// CHECK: scf.for %{{.*}} = %c0 to %{{.*}} step %c1 {
// CHECK: arith.cmpi sle, {{.*}} : i64
// CHECK: scf.if
// tile.qk: the broadcast-FMA micro-kernel over Dqk, 8 kv rows x 2 lane blocks:
// CHECK: scf.for {{.*}} -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>) {
// CHECK-COUNT-16: vector.fma
// tile.score and tile.mask, fused into one row loop per tile class: the
// partial version evaluates the mask per lane and hides with -inf ...
// CHECK: scf.if %{{.*}} -> (vector<16xf32>, vector<16xf32>) {
// CHECK: math.tanh {{.*}} : vector<16xf32>
// CHECK: arith.cmpi sle, {{.*}} : vector<16xi64>
// CHECK: arith.select {{.*}} : vector<16xi1>, vector<16xf32>
// CHECK: arith.maximumf
// ... the full version only scores:
// CHECK: } else {
// CHECK: math.tanh {{.*}} : vector<16xf32>
// CHECK-NOT: arith.select
// CHECK: arith.maximumf
// tile.online_softmax: the new max, alpha = exp(m - m'), P = exp(S - m'),
// l = alpha l + rowsum P:
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK: scf.for
// CHECK: math.exp
// CHECK: vector.fma
// tile.pv: O = alpha O + P V, FMAs on Ot:
// CHECK: scf.for
// CHECK: vector.fma
// tile.store: 1 / l (0 for empty rows), lse = m + log l, o and lse written:
// CHECK: arith.divf
// CHECK: math.log
// CHECK: memref.store {{.*}}, %arg3[
// CHECK: memref.store {{.*}}, %arg4[
attn.spec @softcap_causal {
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 32, tile_kv = 16, vector_width = 16, block_skip = "interval"> scale {
    %c = arith.constant 0.125 : f64
    attn.yield %c : f64
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <32x?xf32>
    %init = attn.tile.init : <32x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <32x?> mask {
    ^bb0(%bb: i64, %hh: i64, %i: i64, %j: i64):
      %c = arith.cmpi sle, %j, %i : i64
      attn.yield %c : i1
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<32x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <32x?xf32> -> <32x16xf32>
      %t = attn.tile.score %s, %b, %h, %q0, %k0 : <32x16xf32> {
      ^bb0(%x: f64, %bb: i64, %hh: i64, %i: i64, %j: i64):
        %cap = arith.constant 30.0 : f64
        %d = arith.divf %x, %cap : f64
        %th = math.tanh %d : f64
        %y = arith.mulf %cap, %th : f64
        attn.yield %y : f64
      }
      %m = attn.tile.mask %t, %partial, %b, %h, %q0, %k0 : <32x16xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <32x16xf32>, <32x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <32x16xf32>, <32x?>
      attn.yield %a2 : !attn.acc<32x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <32x?>
    attn.yield
  }
}

// tile.normalize (relu squared, row sums): P written in pass 1 with the row
// sum as its statistic; no exp, no lse.
// CHECK-LABEL: func.func @attn_relu_rows_tiles(
// CHECK-NOT: math.exp
// CHECK: arith.maximumf {{.*}} : vector<16xf32>
// CHECK-NEXT: arith.mulf {{.*}} : vector<16xf32>
// CHECK-NOT: math.exp
// CHECK-NOT: math.log
// CHECK: return
attn.spec @relu_rows {
  attn.tiled_attention normalizer = <relu> schedule = <tile_q = 16, tile_kv = 7, vector_width = 16, block_skip = "none"> attributes {relu_power = 2 : i64, row_normalize} scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    %init = attn.tile.init : <16x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<16x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <16x?xf32> -> <16x7xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <16x7xf32>
      %p, %a1 = attn.tile.normalize %m, %a : <16x7xf32>, <16x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <16x7xf32>, <16x?>
      attn.yield %a2 : !attn.acc<16x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <16x?>
    attn.yield
  }
}
