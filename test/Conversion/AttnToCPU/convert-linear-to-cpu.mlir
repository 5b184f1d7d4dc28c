// convert-attn-to-cpu on attn.linear_attention: one work item per (b, h), the
// state in a heap buffer, vector code along Dv. linear-chunk=0 gives the
// step-by-step recurrence; the default is the chunked form.
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-cpu=linear-chunk=0 | FileCheck %s
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-cpu | FileCheck %s --check-prefix=CHUNK
// RUN: attn-opt %s --attn-lower-to-cpu | FileCheck %s --check-prefix=LLVM

// CHECK-LABEL: func.func @attn_gla_tiles(
// CHECK-SAME: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// CHECK-SAME: %{{.*}}: i64, %{{.*}}: i64) -> i32 attributes {llvm.emit_c_interface}
// The state S [Dphi x Dv padded] and the feature buffers are allocated once,
// on the heap, and the items run only when every allocation succeeded.
// CHECK: memref.alloc(%{{.*}}, %{{.*}}) {alignment = 64 : i64} : memref<?x?xf32>
// CHECK: memref.extract_aligned_pointer_as_index
// CHECK: scf.if %[[OK:[^ ]*]] {
// CHECK: scf.for
// A per-key-dim gate: exp(gate(b, h, t, d)) per feature into a buffer.

// CHECK: math.exp %{{.*}} : f64
// The update-and-readout loop: S = g S + k v (FMA), acc += q S.
// CHECK: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK: vector.store %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}] : memref<?x?xf32>, vector<16xf32>
// CHECK: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK: memref.dealloc
// CHECK: %[[ST:.*]] = arith.select %[[OK]], %{{.*}}, %{{.*}} : i32
// CHECK: return %[[ST]] : i32
// LLVM: llvm.func @attn_gla(%{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: i64)
// The chunked form: cumulative log gates in f64, floored at -80; decay
// exponents are exact differences of either sign (no clamp to <= 0), and in
// the diagonal blocks of A the masked entries (s > t) are replaced by 0
// before exp, so exp never sees a large positive masked difference.
// CHUNK-LABEL: func.func @attn_gla_tiles(
// CHUNK: arith.constant -8.000000e+01 : f64
// CHUNK: arith.maximumf %{{.*}}, %{{.*}} : f64
// CHUNK-NOT: arith.minimumf
// CHUNK: arith.select %{{.*}}, %{{.*}}, %{{.*}} : vector<16xi1>, vector<16xf64>
// CHUNK: math.exp %{{.*}} : vector<16xf32>
// CHUNK: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
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
