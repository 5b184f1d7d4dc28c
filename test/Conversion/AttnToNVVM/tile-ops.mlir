// The CUDA patterns of the tile ops, on a hand-written tile program
// (mma.sync fragments in registers, a two-stage cp.async ring for K/V).
// Each op's code, in order:
// RUN: attn-opt %s --convert-attn-to-nvvm=head-dims=64 --canonicalize --cse | FileCheck %s

// CHECK-LABEL: gpu.func @attn_softcap_causal_d64(
// tile.load_q: the q tile's cp.async copies, one group:
// CHECK: nvgpu.device_async_copy %arg0
// CHECK: nvgpu.device_async_create_group
// tile.kv_loop: the first visible kv tile (a while loop over the mask's
// tile classes), its K and V copies, then the loop carrying
// (tile, stage, m0, m1, l0, l1, O: 32 registers for Dv = 64):
// CHECK: scf.while
// CHECK: nvgpu.device_async_copy %arg1
// CHECK: nvgpu.device_async_copy %arg2
// CHECK: nvgpu.device_async_wait %{{.*}} {numGroups = 1 : i32}
// CHECK: gpu.barrier
// CHECK: scf.while ({{.*}}) : (index, index, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32) -> (
// ... prefetching the next visible tile into the other stage:
// CHECK: nvgpu.device_async_copy %arg1
// CHECK: nvgpu.device_async_wait
// CHECK: gpu.barrier
// tile.qk: ldmatrix fragments and mma.sync (m16n8k16), 4 per 16 of Dqk:
// CHECK: nvgpu.ldmatrix
// CHECK: nvvm.mma.sync
// tile.score + tile.mask: one version per tile class (partial: the mask per
// element and -inf; full: the score only), on the 16 S registers:
// CHECK: scf.if %{{.*}} -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32) {
// CHECK: math.tanh
// CHECK: arith.select
// CHECK: } else {
// CHECK: math.tanh
// tile.online_softmax: quad shuffles for the row max, exp2 with log2(e):
// CHECK: gpu.shuffle  xor
// CHECK: math.exp2
// tile.pv: P packed to bf16 pairs, V fragments transposed, mma.sync:
// CHECK: arith.truncf {{.*}} : vector<2xf32> to vector<2xbf16>
// CHECK: nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = true}
// CHECK: nvvm.mma.sync
// CHECK: gpu.barrier
// tile.store: row sums across the quad, o = O / l, lse by the first thread:
// CHECK: gpu.shuffle  xor
// CHECK: arith.divf
// CHECK: math.log
// CHECK: memref.store {{.*}}, %arg3[
// CHECK: memref.store {{.*}}, %arg4[
// CHECK: gpu.return
attn.spec @softcap_causal {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : bf16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : bf16 ["B", "Hkv", "M", "Dv"]
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 32, tile_kv = 32, vector_width = 16, block_skip = "interval"> scale {
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
      %s = attn.tile.qk %q, %b, %h, %k0 : <32x?xbf16> -> <32x32xf32>
      %t = attn.tile.score %s, %b, %h, %q0, %k0 : <32x32xf32> {
      ^bb0(%x: f64, %bb: i64, %hh: i64, %i: i64, %j: i64):
        %cap = arith.constant 30.0 : f64
        %d = arith.divf %x, %cap : f64
        %th = math.tanh %d : f64
        %y = arith.mulf %cap, %th : f64
        attn.yield %y : f64
      }
      %m = attn.tile.mask %t, %partial, %b, %h, %q0, %k0 : <32x32xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <32x32xf32>, <32x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <32x32xf32>, <32x?>
      attn.yield %a2 : !attn.acc<32x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <32x?>
    attn.yield
  }
}
