// convert-attn-to-cpu on attn.linear_attention: one work item per (b, h), the
// state in a heap buffer, vector code along Dv. linear-chunk=0 gives the
// step-by-step recurrence; the default is the chunked form.
// RUN: attn-opt %s --convert-attn-to-cpu=linear-chunk=0 | FileCheck %s
// RUN: attn-opt %s --convert-attn-to-cpu | FileCheck %s --check-prefix=CHUNK
// RUN: attn-opt %s --attn-lower-to-cpu | FileCheck %s --check-prefix=LLVM

// CHECK-LABEL: func.func @attn_gla_tiles(
// CHECK-SAME: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// CHECK-SAME: %{{.*}}: i64, %{{.*}}: i64) attributes {llvm.emit_c_interface}
// The state S [Dphi x Dv padded] and the feature buffers are allocated once.
// CHECK: memref.alloc(%{{.*}}, %{{.*}}) : memref<?x?xf32>
// CHECK: scf.for
// A per-key-dim gate: exp(gate(b, h, t, d)) per feature into a buffer.

// CHECK: math.exp %{{.*}} : f64
// The update-and-readout loop: S = g S + k v (FMA), acc += q S.
// CHECK: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK: vector.store %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}] : memref<?x?xf32>, vector<16xf32>
// CHECK: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK: memref.dealloc
// LLVM: llvm.func @attn_gla(%{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: i64)
// The chunked form: cumulative log gates in f64, clamped at -80, and
// exponents of differences clamped to <= 0 before exp.
// CHUNK-LABEL: func.func @attn_gla_tiles(
// CHUNK: arith.constant -8.000000e+01 : f64
// CHUNK: arith.maximumf %{{.*}}, %{{.*}} : f64
// CHUNK: arith.minimumf %{{.*}}, %{{.*}} : vector<16xf64>
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
