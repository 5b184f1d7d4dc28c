// The CUDA patterns of the chunk ops, on a hand-written tile program of a
// gated linear attention (the chunked form: chunks of 32 steps, feature
// blocks of 64, slabs of value columns; f32 SIMT code over shared memory).
// RUN: attn-opt %s --convert-attn-to-nvvm=head-dims=64 --canonicalize --cse | FileCheck %s

// CHECK-LABEL: gpu.func @attn_gated_d64(
// chunk.loop: o is NaN where one value column does not fit the state
// buffer; then the slabs of value columns ...
// CHECK: scf.for
// CHECK: memref.store %cst{{.*}}, %arg3[
// CHECK: scf.for %[[SLAB:.*]] = %c0 to %{{.*}} step %c1 {
// ... each zeroing S (chunk.init_state, per slab):
// CHECK: scf.for
// CHECK: gpu.barrier
// ... around the chunks of 32 steps:
// CHECK: scf.for %{{.*}} = %c0 to %{{.*}} step %c1 {
// chunk.intra stages the chunk (values, log gates and their cumulative
// sums), then per feature block of 64: A += phi(q) phi(k)^T, the carried
// state read (inter-chunk) and the state update (chunk.update's work):
// CHECK: gpu.barrier
// CHECK: scf.for {{.*}} -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32) {
// CHECK: scf.for %{{.*}} = %c0 to %c64 step %c4
// CHECK: math.exp
// CHECK: gpu.barrier
// then A is stored with the causal mask and the decay:
// CHECK: math.exp
// chunk.readout: O += A V over the chunk's 32 steps:
// CHECK: scf.for %{{.*}} = %c0 to %c32 step %c4
// CHECK: gpu.barrier
// chunk.store: o rows of the chunk:
// CHECK: memref.store {{.*}}, %arg3[
// CHECK: gpu.barrier
// CHECK: gpu.return
attn.spec @gated {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : bf16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : bf16 ["B", "Hkv", "M", "Dv"]
  attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  ^bb0(%bb: i64, %hh: i64, %t: i64, %d: i64):
    %c = arith.constant -0.25 : f64
    attn.yield %c : f64
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    %s0 = attn.chunk.init_state %b, %h
    %s = attn.chunk.loop %b, %h iter_args(%s0) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      %fk = attn.chunk.features %b, %h, %t0 key
      %fq = attn.chunk.features %b, %h, %t0 query
      %v = attn.chunk.values %b, %h, %t0
      %g = attn.chunk.log_gates %b, %h, %t0
      %a = attn.chunk.intra %fq, %fk, %g
      %o = attn.chunk.readout %fq, %a, %v, %st, %g
      attn.chunk.store %o, %b, %h, %t0
      %st2 = attn.chunk.update %st, %fk, %v, %g
      attn.yield %st2 : !attn.state<?x?>
    }
    attn.chunk.store_state %s, %b, %h
    attn.yield
  }
}
