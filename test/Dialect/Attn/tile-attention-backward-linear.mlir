// attn-tile-attention-backward on a linear attention: the forward's chunk
// scan keeping a checkpoint per chunk, then the reverse scan that restores
// each chunk's state, recomputes its inputs with the forward's ops and runs
// its gradient. The regions and attributes move to the backward op.
// RUN: attn-opt %s --split-input-file --pass-pipeline='builtin.module(attn.spec(attn-tile-attention-backward))' | FileCheck %s
// The pass is idempotent:
// RUN: attn-opt %s --split-input-file --pass-pipeline='builtin.module(attn.spec(attn-tile-attention-backward),attn.spec(attn-tile-attention-backward))' | FileCheck %s
// A decode spec (the carried state of attn-add-linear-state) has none:
// RUN: not attn-opt %s --split-input-file --pass-pipeline='builtin.module(attn-add-linear-state,attn.spec(attn-tile-attention-backward))' 2>&1 | FileCheck %s --check-prefix=STATE
// STATE: error: a linear attention with a carried state (decode) has no backward pass

// CHECK-LABEL: attn.spec @gla
// CHECK: attn.tiled_linear_attention_backward feature_map = <identity>, <identity> scale {
// CHECK: } gate {
// CHECK: attn.load @g
// CHECK: } body {
// CHECK-NEXT: ^bb0(%[[B:.*]]: index, %[[H:.*]]: index):
// CHECK-NEXT: %[[S0:.*]] = attn.chunk.init_state %[[B]], %[[H]]
// CHECK-NEXT: %[[SN:.*]] = attn.chunk.loop %[[B]], %[[H]] iter_args(%[[S0]]) do {
// CHECK-NEXT: ^bb0(%[[T0:.*]]: index, %[[ST:.*]]: !attn.state<?x?>):
// CHECK-NEXT: attn.chunk.bwd.save %[[ST]], %[[B]], %[[H]], %[[T0]]
// CHECK-NEXT: %[[FK:.*]] = attn.chunk.features %[[B]], %[[H]], %[[T0]] key
// CHECK-NEXT: %[[V:.*]] = attn.chunk.values %[[B]], %[[H]], %[[T0]]
// CHECK-NEXT: %[[G:.*]] = attn.chunk.log_gates %[[B]], %[[H]], %[[T0]]
// CHECK-NEXT: %[[ST1:.*]] = attn.chunk.update %[[ST]], %[[FK]], %[[V]], %[[G]]
// CHECK-NEXT: attn.yield %[[ST1]]
// CHECK-NEXT: }
// CHECK-NEXT: %[[D0:.*]] = attn.chunk.bwd.init %[[B]], %[[H]]
// CHECK-NEXT: %[[DN:.*]] = attn.chunk.bwd.reverse_loop %[[B]], %[[H]] iter_args(%[[D0]]) do {
// CHECK-NEXT: ^bb0(%[[R0:.*]]: index, %[[DST:.*]]: !attn.state<?x?>):
// CHECK-NEXT: %[[RS:.*]] = attn.chunk.bwd.restore %[[B]], %[[H]], %[[R0]]
// CHECK-NEXT: %[[RFK:.*]] = attn.chunk.features %[[B]], %[[H]], %[[R0]] key
// CHECK-NEXT: %[[RFQ:.*]] = attn.chunk.features %[[B]], %[[H]], %[[R0]] query
// CHECK-NEXT: %[[RV:.*]] = attn.chunk.values %[[B]], %[[H]], %[[R0]]
// CHECK-NEXT: %[[RG:.*]] = attn.chunk.log_gates %[[B]], %[[H]], %[[R0]]
// CHECK-NEXT: %[[D1:.*]] = attn.chunk.bwd.grad %[[RS]], %[[DST]], %[[RFQ]], %[[RFK]], %[[RV]], %[[RG]], %[[B]], %[[H]], %[[R0]]
// CHECK-NEXT: attn.yield %[[D1]]
// CHECK-NEXT: }
// CHECK-NEXT: attn.chunk.bwd.finish %[[DN]], %[[B]], %[[H]]
// CHECK-NEXT: attn.yield
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

// -----

// The delta rule: the forward scan's update takes the corrected values.
// CHECK-LABEL: attn.spec @delta
// CHECK: attn.chunk.bwd.save
// CHECK: %[[U:.*]] = attn.chunk.delta
// CHECK: attn.chunk.update {{.*}}, %[[U]],
// CHECK: attn.chunk.bwd.reverse_loop
// CHECK: attn.chunk.bwd.grad
attn.spec @delta {
  attn.linear_attention feature_map = <l2norm>, <l2norm> scale {
  } gate {
  } beta {
  ^bb0(%b: i64, %h: i64, %t: i64):
    %c = arith.constant 0.5 : f64
    attn.yield %c : f64
  } bonus {
  }
}

// -----

// Non-causal: the key scan (no checkpoints), then every query's gradient
// and every key's.
// CHECK-LABEL: attn.spec @noncausal
// CHECK: attn.tiled_linear_attention_backward feature_map = <elu_plus_one>, <elu_plus_one> attributes {noncausal}
// CHECK: attn.chunk.loop
// CHECK-NOT: attn.chunk.bwd.save
// CHECK: attn.chunk.update
// CHECK: %[[DS:.*]] = attn.chunk.bwd.readout_all %{{.*}}, %{{.*}}, %{{.*}}
// CHECK-NEXT: attn.chunk.bwd.keys_all %[[DS]],
// CHECK-NOT: attn.chunk.bwd.reverse_loop
attn.spec @noncausal {
  attn.linear_attention feature_map = <elu_plus_one>, <elu_plus_one> attributes {noncausal} scale {
  } gate {
  } beta {
  } bonus {
  }
}
