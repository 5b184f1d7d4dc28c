// The CPU patterns of the chunk ops, on a hand-written tile program of a
// gated linear attention, in the CPU's two forms: the recurrence
// (linear-chunk=0: one step per chunk, the update reading out on the way)
// and the chunked form (linear-chunk=16: the ops one by one on chunks).
// RUN: attn-opt %s --convert-attn-to-cpu=linear-chunk=0 --canonicalize --cse | FileCheck %s --check-prefix=REC
// RUN: attn-opt %s --convert-attn-to-cpu=linear-chunk=16 --canonicalize --cse | FileCheck %s --check-prefix=CHUNK

// REC-LABEL: func.func @attn_gated_tiles(
// The item loop; chunk.init_state: z and S zeroed (no carried state):
// REC: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c1 {
// REC: scf.for
// REC: memref.store %cst{{.*}}, %[[Z:.*]][%{{.*}}] : memref<?xf32>
// REC: memref.store %cst{{.*}}, %[[S:.*]][%{{.*}}, %{{.*}}] : memref<?x?xf32>
// chunk.loop: one step at a time over N:
// REC: scf.for %[[T:.*]] = %c0 to %{{.*}} step %c1 {
// chunk.features (key, then query) and chunk.values of the step:
// REC: memref.load %arg1[{{.*}}, %[[T]], {{.*}}]
// REC: memref.load %arg0[{{.*}}, %[[T]], {{.*}}]
// REC: memref.load %arg2[{{.*}}, %[[T]], {{.*}}]
// chunk.log_gates: exp(gate), constant here, as f32:
// REC: arith.truncf %{{.*}} : f64 to f32
// chunk.update: z = g z + phi_k, then S = g S + phi_k v^T with the readout
// phi_q^T S fused into the same loop:
// REC: arith.mulf
// REC: arith.addf
// REC: memref.store {{.*}}, %[[Z]]
// REC: scf.for {{.*}} -> (vector<16xf32>) {
// REC: vector.fma
// REC: vector.store {{.*}}, %[[S]]
// REC: vector.fma
// chunk.store, after the update: scale * acc to o.
// REC: arith.mulf {{.*}} : vector<16xf32>
// REC: memref.store {{.*}}, %arg3[
// REC-NOT: math.exp

// CHUNK-LABEL: func.func @attn_gated_tiles(
// chunk.loop: chunks of 16 steps:
// CHUNK: scf.for %{{.*}} = %c0 to %{{.*}} step %c1 {
// CHUNK: arith.minui {{.*}}%c16
// chunk.features, chunk.values and chunk.log_gates staged in one loop over
// the chunk's steps (q, k, v rows; log gates summed in f64):
// CHUNK: scf.for
// CHUNK: memref.load %arg0
// CHUNK: memref.load %arg1
// CHUNK: memref.load %arg2
// CHUNK: arith.addf {{.*}} : f64
// chunk.intra: A = causal, decayed phi_q phi_k^T in 4-row register blocks:
// CHUNK: scf.for {{.*}} step %c4 {
// CHUNK: vector.fma
// CHUNK: math.exp {{.*}} : vector<16xf32>
// chunk.readout: the decayed features, then O = A V + Qt~ S:
// CHUNK: math.exp
// chunk.store: o rows of the chunk:
// CHUNK: memref.store {{.*}}, %arg3[
// chunk.update: gamma = exp(L[last]), z and S decayed and accumulated:
// CHUNK: math.exp
// CHUNK: vector.fma
attn.spec @gated {
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
