// The tile-level IR parses, verifies and prints back (round trip), and the
// printed form parses again to the same text.
// RUN: attn-opt %s | FileCheck %s
// RUN: attn-opt %s | attn-opt | FileCheck %s
// Generic form round trip:
// RUN: attn-opt %s --mlir-print-op-generic | attn-opt | FileCheck %s

// CHECK-LABEL: attn.spec @softcap_causal
// CHECK: attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 32, tile_kv = 16, vector_width = 16, block_skip = "interval"> scale {
// CHECK: arith.constant 1.250000e-01 : f64
// CHECK: } bias {
// CHECK-NEXT: } body {
// CHECK-NEXT: ^bb0(%b: index, %h: index, %q0: index):
// CHECK-NEXT: %q = attn.tile.load_q %b, %h, %q0 : <32x?xbf16>
// CHECK-NEXT: %acc = attn.tile.init : <32x?>
// CHECK-NEXT: %acc_0 = attn.tile.kv_loop %b, %h, %q0 iter_args(%acc) : <32x?> mask {
// CHECK: arith.cmpi sle
// CHECK: } do {
// CHECK-NEXT: ^bb0(%k0: index, %partial: i1, %acc_1: !attn.acc<32x?>):
// CHECK-NEXT: %s = attn.tile.qk %q, %b, %h, %k0 : <32x?xbf16> -> <32x16xf32>
// CHECK-NEXT: %s_2 = attn.tile.score %s, %b, %h, %q0, %k0 : <32x16xf32> {
// CHECK: math.tanh
// CHECK: %s_3 = attn.tile.mask %s_2, %partial, %b, %h, %q0, %k0 : <32x16xf32>
// CHECK-NEXT: %p, %acc_4 = attn.tile.online_softmax %s_3, %acc_1 : <32x16xf32>, <32x?>
// CHECK-NEXT: %acc_5 = attn.tile.pv %p, %acc_4, %b, %h, %k0 : <32x16xf32>, <32x?>
// CHECK-NEXT: attn.yield %acc_5 : !attn.acc<32x?>
// CHECK: attn.tile.store %acc_0, %b, %h, %q0 : <32x?>
attn.spec @softcap_causal {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 32, tile_kv = 16, vector_width = 16, block_skip = "interval"> scale {
    %c = arith.constant 0.125 : f64
    attn.yield %c : f64
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <32x?xbf16>
    %init = attn.tile.init : <32x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <32x?> mask {
    ^bb0(%bb: i64, %hh: i64, %i: i64, %j: i64):
      %c = arith.cmpi sle, %j, %i : i64
      attn.yield %c : i1
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<32x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <32x?xbf16> -> <32x16xf32>
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

// Element-wise normalizers take attn.tile.normalize; their parameters stay
// on the tiled attention.
// CHECK-LABEL: attn.spec @relu_rows
// CHECK: attn.tiled_attention normalizer = <relu> schedule = <tile_q = 16, tile_kv = 7, vector_width = 16, block_skip = "none"> attributes {relu_power = 2 : i64, row_normalize}
// CHECK: %p, %acc_{{[0-9]+}} = attn.tile.normalize %s_{{[0-9]+}}, %acc_{{[0-9]+}} : <16x7xf32>, <16x?>
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

// CHECK-LABEL: attn.spec @sigmoid_bias
// CHECK: normalizer = <sigmoid>
// CHECK: } bias {
// CHECK-NEXT: arith.constant -2.000000e+00 : f64
attn.spec @sigmoid_bias {
  attn.tiled_attention normalizer = <sigmoid> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
    %c = arith.constant -2.0 : f64
    attn.yield %c : f64
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    %init = attn.tile.init : <16x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<16x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <16x?xf32> -> <16x16xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <16x16xf32>
      %p, %a1 = attn.tile.normalize %m, %a : <16x16xf32>, <16x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <16x16xf32>, <16x?>
      attn.yield %a2 : !attn.acc<16x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <16x?>
    attn.yield
  }
}
