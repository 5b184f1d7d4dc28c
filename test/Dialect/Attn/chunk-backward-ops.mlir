// The linear family's gradients' program round-trips (causal and
// non-causal forms).
// RUN: attn-opt %s | attn-opt | FileCheck %s

// CHECK-LABEL: attn.spec @gla
// CHECK: attn.chunk.bwd.save %st, %b, %h, %t0
// CHECK: %dst = attn.chunk.bwd.init %b, %h
// CHECK: attn.chunk.bwd.reverse_loop %b, %h iter_args(%dst) do {
// CHECK: ^bb0(%t0: index, %dst_{{[0-9]+}}: !attn.state<?x?>):
// CHECK: %st = attn.chunk.bwd.restore %b, %h, %t0
// CHECK: attn.chunk.bwd.grad %st, %dst_{{[0-9]+}}, %fq, %fk, %v, %g, %b, %h, %t0
// CHECK: attn.chunk.bwd.finish %dst_{{[0-9]+}}, %b, %h
attn.spec @gla {
  attn.input @g : f32 ["B", "Hq", "N", "Dqk"]
  attn.tiled_linear_attention_backward feature_map = <identity>, <identity> scale {
  } gate {
  ^bb0(%arg0: i64, %arg1: i64, %arg2: i64, %arg3: i64):
    %0 = attn.load @g[%arg0, %arg1, %arg2, %arg3] : f32
    %1 = arith.extf %0 : f32 to f64
    attn.yield %1 : f64
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    %state = attn.chunk.init_state %b, %h
    %state_0 = attn.chunk.loop %b, %h iter_args(%state) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      attn.chunk.bwd.save %st, %b, %h, %t0
      %fk = attn.chunk.features %b, %h, %t0 key
      %v = attn.chunk.values %b, %h, %t0
      %g = attn.chunk.log_gates %b, %h, %t0
      %st_2 = attn.chunk.update %st, %fk, %v, %g
      attn.yield %st_2 : !attn.state<?x?>
    }
    %dst = attn.chunk.bwd.init %b, %h
    %dst_1 = attn.chunk.bwd.reverse_loop %b, %h iter_args(%dst) do {
    ^bb0(%t0: index, %dst_2: !attn.state<?x?>):
      %st = attn.chunk.bwd.restore %b, %h, %t0
      %fk = attn.chunk.features %b, %h, %t0 key
      %fq = attn.chunk.features %b, %h, %t0 query
      %v = attn.chunk.values %b, %h, %t0
      %g = attn.chunk.log_gates %b, %h, %t0
      %dst_3 = attn.chunk.bwd.grad %st, %dst_2, %fq, %fk, %v, %g, %b, %h, %t0
      attn.yield %dst_3 : !attn.state<?x?>
    }
    attn.chunk.bwd.finish %dst_1, %b, %h
    attn.yield
  }
}

// CHECK-LABEL: attn.spec @noncausal
// CHECK: %dst = attn.chunk.bwd.readout_all %state_0, %b, %h
// CHECK-NEXT: attn.chunk.bwd.keys_all %dst, %b, %h
attn.spec @noncausal {
  attn.tiled_linear_attention_backward feature_map = <relu>, <relu> attributes {noncausal} scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    %state = attn.chunk.init_state %b, %h
    %state_0 = attn.chunk.loop %b, %h iter_args(%state) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      %fk = attn.chunk.features %b, %h, %t0 key
      %v = attn.chunk.values %b, %h, %t0
      %g = attn.chunk.log_gates %b, %h, %t0
      %st_1 = attn.chunk.update %st, %fk, %v, %g
      attn.yield %st_1 : !attn.state<?x?>
    }
    %dst = attn.chunk.bwd.readout_all %state_0, %b, %h
    attn.chunk.bwd.keys_all %dst, %b, %h
    attn.yield
  }
}
