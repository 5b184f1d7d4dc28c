// The named pipeline attn-lower-to-cpu (default schedule): attn specs in,
// LLVM dialect only out: the kernel @attn_<name>_tiles, its C-interface
// wrapper and the runtime's packed entry @attn_<name>. Vector math is
// polynomial (no libm calls), the micro-kernels are vector<16xf32> FMAs, aux
// lookups across query lanes are masked gathers.
// RUN: attn-opt %s --attn-lower-to-cpu | FileCheck %s
// RUN: attn-opt %s --attn-lower-to-cpu | FileCheck %s --check-prefix=DIALECTS

// Nothing but the LLVM dialect is left.
// DIALECTS-NOT: {{[^a-z_.](arith|math|vector|memref|scf|cf|func|attn|affine|ub)\.[a-z]}}
// DIALECTS-NOT: unrealized_conversion_cast
// DIALECTS: llvm.func @attn_causal_tiles(
// DIALECTS-NOT: {{[^a-z_.](arith|math|vector|memref|scf|cf|func|attn|affine|ub)\.[a-z]}}
// DIALECTS-NOT: unrealized_conversion_cast
// DIALECTS: llvm.func @attn_causal(
// DIALECTS-NOT: {{[^a-z_.](arith|math|vector|memref|scf|cf|func|attn|affine|ub)\.[a-z]}}
// DIALECTS-NOT: unrealized_conversion_cast
// DIALECTS: llvm.func @attn_softcap_doc(
// DIALECTS-NOT: {{[^a-z_.](arith|math|vector|memref|scf|cf|func|attn|affine|ub)\.[a-z]}}
// DIALECTS-NOT: unrealized_conversion_cast

// Kernels and their C-interface wrappers come first, in spec order, then
// the packed entries.
// Scratch comes from malloc (never the stack) and the kernel returns its
// status.
// CHECK-LABEL: llvm.func @attn_causal_tiles(
// CHECK-SAME: -> i32
// CHECK-NOT: llvm.alloca
// CHECK: llvm.call @malloc
// CHECK-NOT: llvm.alloca
// CHECK: llvm.intr.fmuladd(%{{.*}}, %{{.*}}, %{{.*}}) : (vector<16xf32>, vector<16xf32>, vector<16xf32>) -> vector<16xf32>
// CHECK-NOT: llvm.call
// CHECK: llvm.call @free
// CHECK-NOT: llvm.alloca
// CHECK: llvm.return %{{.*}} : i32
// CHECK-LABEL: llvm.func @_mlir_ciface_attn_causal_tiles(
// CHECK-SAME: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: i64)
// CHECK: llvm.call @attn_causal_tiles(
// tanh soft-cap in the score (a polynomial, no call) and a doc[b, q_idx]
// lookup in the mask (a gather):
// CHECK-LABEL: llvm.func @attn_softcap_doc_tiles(
// CHECK: llvm.intr.masked.gather %{{.*}} : (vector<16x!llvm.ptr>, vector<16xi1>, vector<16xi32>) -> vector<16xi32>
// CHECK-NOT: llvm.call
// CHECK: llvm.call @free
// CHECK: llvm.return
// CHECK-LABEL: llvm.func @_mlir_ciface_attn_softcap_doc_tiles(
// CHECK-SAME: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: i64)
// CHECK-LABEL: llvm.func @attn_causal(
// CHECK-SAME: %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: i64) {
// CHECK: llvm.call @_mlir_ciface_attn_causal_tiles(
// CHECK: llvm.store {{.*}} atomic monotonic
// CHECK-LABEL: llvm.func @attn_softcap_doc(
// CHECK: llvm.getelementptr %{{.*}}[5]
// CHECK: llvm.call @_mlir_ciface_attn_softcap_doc_tiles(
attn.spec @causal {
  attn.attention normalizer = <softmax> scale {
  } mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    %m = attn.dim "M" : i64
    %t = arith.addi %i, %m : i64
    %n = attn.dim "N" : i64
    %pos = arith.subi %t, %n : i64
    %c = arith.cmpi sle, %j, %pos : i64
    attn.yield %c : i1
  } score {
  } bias {
  }
}

attn.spec @softcap_doc {
  attn.input @doc : i32 ["B", "N"]
  attn.attention normalizer = <softmax> scale {
  } mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    %di = attn.load @doc[%b, %i] : i32
    %dj = attn.load @doc[%b, %j] : i32
    %same = arith.cmpi eq, %di, %dj : i32
    %causal = arith.cmpi sle, %j, %i : i64
    %m = arith.andi %same, %causal : i1
    attn.yield %m : i1
  } score {
  ^bb0(%x: f64, %b: i64, %h: i64, %i: i64, %j: i64):
    %cap = arith.constant 30.0 : f64
    %y = arith.divf %x, %cap : f64
    %t = math.tanh %y : f64
    %s = arith.mulf %cap, %t : f64
    attn.yield %s : f64
  } bias {
  }
}
