// The backward tile program round-trips through the printer and parser
// (the op descriptions' example, with a score and the relu normalizer).
// RUN: attn-opt %s | attn-opt | FileCheck %s

// CHECK-LABEL: attn.spec @rt
// CHECK: attn.tiled_attention_backward normalizer = <relu> schedule = <tile_q = 32, tile_kv = 64, vector_width = 16, block_skip = "interval"> attributes {relu_power = 3 : i64} scale {
// CHECK: ^bb0(%b: index, %hk: index, %k0: index):
// CHECK: %init = attn.tile.bwd.init : <64x?x?>
// CHECK: %grad = attn.tile.q_loop %b, %hk, %k0 iter_args(%init) : <64x?x?> mask {
// CHECK: ^bb0(%h: index, %q0: index, %partial: i1, %grad_0: !attn.grad<64x?x?>):
// CHECK: %p = attn.tile.bwd.weights %{{.*}}, %b, %h, %q0 : <32x64xf32>
// CHECK: %dp = attn.tile.bwd.dp %b, %h, %q0, %k0 : <32x64xf32>
// CHECK: %ds = attn.tile.bwd.ds %p, %dp, %{{.*}}, %b, %h, %q0 : <32x64xf32>
// CHECK: %dx = attn.tile.bwd.score %ds, %{{.*}}, %b, %h, %q0, %k0 : <32x64xf32> {
// CHECK: attn.tile.bwd.dv %p, %grad_0, %b, %h, %q0 : <32x64xf32>, <64x?x?>
// CHECK: attn.tile.bwd.dk %dx, %q, %{{.*}} : <32x64xf32>, <32x?xf32>, <64x?x?>
// CHECK: attn.tile.bwd.dq %dx, %b, %h, %q0, %k0 : <32x64xf32>
// CHECK: attn.tile.bwd.store %grad, %b, %hk, %k0 : <64x?x?>
attn.spec @rt {
  attn.tiled_attention_backward normalizer = <relu> schedule = <tile_q = 32, tile_kv = 64, vector_width = 16, block_skip = "interval"> attributes {relu_power = 3 : i64} scale {
  } bias {
  } body {
  ^bb0(%b: index, %hk: index, %k0: index):
    %init = attn.tile.bwd.init : <64x?x?>
    %grad = attn.tile.q_loop %b, %hk, %k0 iter_args(%init) : <64x?x?> mask {
    ^bb0(%bb: i64, %hh: i64, %i: i64, %j: i64):
      %c = arith.cmpi sle, %j, %i : i64
      attn.yield %c : i1
    } do {
    ^bb0(%h: index, %q0: index, %partial: i1, %g: !attn.grad<64x?x?>):
      %q = attn.tile.load_q %b, %h, %q0 : <32x?xf32>
      %x = attn.tile.qk %q, %b, %h, %k0 : <32x?xf32> -> <32x64xf32>
      %s = attn.tile.score %x, %b, %h, %q0, %k0 : <32x64xf32> {
      ^bb0(%v: f64, %bb: i64, %hh: i64, %i: i64, %j: i64):
        %t = math.tanh %v : f64
        attn.yield %t : f64
      }
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <32x64xf32>
      %p = attn.tile.bwd.weights %m, %b, %h, %q0 : <32x64xf32>
      %dp = attn.tile.bwd.dp %b, %h, %q0, %k0 : <32x64xf32>
      %ds = attn.tile.bwd.ds %p, %dp, %m, %b, %h, %q0 : <32x64xf32>
      %dx = attn.tile.bwd.score %ds, %x, %b, %h, %q0, %k0 : <32x64xf32> {
      ^bb0(%v: f64, %bb: i64, %hh: i64, %i: i64, %j: i64):
        %t = math.tanh %v : f64
        attn.yield %t : f64
      }
      %g1 = attn.tile.bwd.dv %p, %g, %b, %h, %q0 : <32x64xf32>, <64x?x?>
      %g2 = attn.tile.bwd.dk %dx, %q, %g1 : <32x64xf32>, <32x?xf32>, <64x?x?>
      attn.tile.bwd.dq %dx, %b, %h, %q0, %k0 : <32x64xf32>
      attn.yield %g2 : !attn.grad<64x?x?>
    }
    attn.tile.bwd.store %grad, %b, %hk, %k0 : <64x?x?>
    attn.yield
  }
}
