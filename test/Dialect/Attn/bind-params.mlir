// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-bind-params{values=window=8,cap=2.5}))' | FileCheck %s
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-bind-params{values=nope=1}))' -verify-diagnostics -split-input-file

// CHECK-LABEL: attn.spec @p
// CHECK: attn.param @window : i64 {
// CHECK-NEXT: %[[C:.*]] = arith.constant 8 : i64
// CHECK-NEXT: attn.yield %[[C]] : i64
// CHECK: attn.param @cap : f64 {
// CHECK-NEXT: %[[F:.*]] = arith.constant 2.500000e+00 : f64
// CHECK-NEXT: attn.yield %[[F]] : f64
// expected-error @+1 {{unknown param 'nope' (spec 'p' has params: window, cap)}}
attn.spec @p {
  attn.param @window : i64 {
    %c = arith.constant 256 : i64
    attn.yield %c : i64
  }
  attn.param @cap : f64 {
    %c = arith.constant 30.0 : f64
    attn.yield %c : f64
  }
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}
