// attn-approximate-math: vector math becomes polynomial arithmetic that stays
// in SIMD registers (instead of being scalarized into expf/logf/tanhf calls
// when lowered to LLVM). exp, log, tanh, log2 are approximated; powf, exp2
// and rsqrt are first expanded in terms of those.
// RUN: attn-opt %s --pass-pipeline='builtin.module(func.func(attn-approximate-math))' | FileCheck %s

// CHECK-LABEL: func.func @softmax_math(
// CHECK-NOT: math.exp
// CHECK-NOT: math.log
// CHECK-NOT: math.tanh
// CHECK: math.fma {{.*}} : vector<16xf32>
// CHECK-NOT: math.exp
// CHECK-NOT: math.log
// CHECK-NOT: math.tanh
// CHECK: return
func.func @softmax_math(%x: vector<16xf32>, %y: vector<16xf32>) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>) {
  %e = math.exp %x : vector<16xf32>
  %l = math.log %y : vector<16xf32>
  %t = math.tanh %x : vector<16xf32>
  return %e, %l, %t : vector<16xf32>, vector<16xf32>, vector<16xf32>
}

// CHECK-LABEL: func.func @expanded(
// CHECK-NOT: math.powf
// CHECK-NOT: math.exp2
// CHECK-NOT: math.exp
// CHECK-NOT: math.log
// CHECK-NOT: math.rsqrt
// CHECK: return
func.func @expanded(%x: vector<16xf32>, %y: vector<16xf32>) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>) {
  %p = math.powf %x, %y : vector<16xf32>
  %e = math.exp2 %x : vector<16xf32>
  %l = math.log2 %y : vector<16xf32>
  %r = math.rsqrt %y : vector<16xf32>
  return %p, %e, %l, %r : vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>
}

// Scalars too (the score region may compute per-row scalars).
// CHECK-LABEL: func.func @scalar(
// CHECK-NOT: math.exp
// CHECK: return
func.func @scalar(%x: f32) -> f32 {
  %e = math.exp %x : f32
  return %e : f32
}

// Exact ops without a polynomial form are kept (sqrt, absf lower to
// instructions).
// CHECK-LABEL: func.func @kept(
// CHECK: math.sqrt %{{.*}} : vector<16xf32>
// CHECK: math.absf %{{.*}} : vector<16xf32>
func.func @kept(%x: vector<16xf32>) -> (vector<16xf32>, vector<16xf32>) {
  %s = math.sqrt %x : vector<16xf32>
  %a = math.absf %x : vector<16xf32>
  return %s, %a : vector<16xf32>, vector<16xf32>
}
