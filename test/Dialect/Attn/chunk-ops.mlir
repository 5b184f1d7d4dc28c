// The linear family's tile-level IR parses, verifies and prints back.
// RUN: attn-opt %s | FileCheck %s
// RUN: attn-opt %s | attn-opt | FileCheck %s
// RUN: attn-opt %s --mlir-print-op-generic | attn-opt | FileCheck %s

// A gated, delta-rule recurrence: the corrected values u feed the readout
// and the update.
// CHECK-LABEL: attn.spec @delta
// CHECK: attn.tiled_linear_attention feature_map = <identity>, <l2norm> scale {
// CHECK: } body {
// CHECK-NEXT: ^bb0(%b: index, %h: index):
// CHECK-NEXT: %state = attn.chunk.init_state %b, %h
// CHECK-NEXT: %state_0 = attn.chunk.loop %b, %h iter_args(%state) do {
// CHECK-NEXT: ^bb0(%t0: index, %st: !attn.state<?x?>):
// CHECK-NEXT: %fk = attn.chunk.features %b, %h, %t0 key
// CHECK-NEXT: %fq = attn.chunk.features %b, %h, %t0 query
// CHECK-NEXT: %v = attn.chunk.values %b, %h, %t0
// CHECK-NEXT: %g = attn.chunk.log_gates %b, %h, %t0
// CHECK-NEXT: %a = attn.chunk.intra %fq, %fk, %g
// CHECK-NEXT: %u = attn.chunk.delta %st, %fk, %v, %g, %b, %h, %t0
// CHECK-NEXT: %o = attn.chunk.readout %fq, %a, %u, %st, %g
// CHECK-NEXT: attn.chunk.store %o, %b, %h, %t0
// CHECK-NEXT: %st_1 = attn.chunk.update %st, %fk, %u, %g
// CHECK-NEXT: attn.yield %st_1 : !attn.state<?x?>
// CHECK-NEXT: }
// CHECK-NEXT: attn.chunk.store_state %state_0, %b, %h
// CHECK-NEXT: attn.yield
attn.spec @delta {
  attn.tiled_linear_attention feature_map = <identity>, <l2norm> scale {
  } gate {
  ^bb0(%bb: i64, %hh: i64, %t: i64, %d: i64):
    %c = arith.constant -0.1 : f64
    attn.yield %c : f64
  } beta {
  ^bb0(%bb: i64, %hh: i64, %t: i64):
    %c = arith.constant 0.5 : f64
    attn.yield %c : f64
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
      %u = attn.chunk.delta %st, %fk, %v, %g, %b, %h, %t0
      %o = attn.chunk.readout %fq, %a, %u, %st, %g
      attn.chunk.store %o, %b, %h, %t0
      %st2 = attn.chunk.update %st, %fk, %u, %g
      attn.yield %st2 : !attn.state<?x?>
    }
    attn.chunk.store_state %s, %b, %h
    attn.yield
  }
}

// Non-causal: the scan only builds the state; every query reads it after.
// CHECK-LABEL: attn.spec @noncausal
// CHECK: attn.tiled_linear_attention feature_map = <elu_plus_one>, <elu_plus_one> attributes {noncausal, normalize}
// CHECK: %st_1 = attn.chunk.update %st, %fk, %v, %g
// CHECK: attn.chunk.store_state %state_0, %b, %h
// CHECK-NEXT: attn.chunk.readout_all %state_0, %b, %h
attn.spec @noncausal {
  attn.tiled_linear_attention feature_map = <elu_plus_one>, <elu_plus_one> attributes {noncausal, normalize} scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    %s0 = attn.chunk.init_state %b, %h
    %s = attn.chunk.loop %b, %h iter_args(%s0) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      %fk = attn.chunk.features %b, %h, %t0 key
      %v = attn.chunk.values %b, %h, %t0
      %g = attn.chunk.log_gates %b, %h, %t0
      %st2 = attn.chunk.update %st, %fk, %v, %g
      attn.yield %st2 : !attn.state<?x?>
    }
    attn.chunk.store_state %s, %b, %h
    attn.chunk.readout_all %s, %b, %h
    attn.yield
  }
}
