// attn-add-linear-state: a causal linear-attention spec gets the carried
// state as ordinary inputs, `state` [B, Hq, Dphi, Dv] and, when normalized,
// `zstate` [B, Hq, Dphi]; Dphi is Dqk for maps that keep the dimension and
// the projection's row symbol for random features. What it cannot carry is
// an error on the op.
// RUN: attn-opt %s -split-input-file -attn-add-linear-state -verify-diagnostics | FileCheck %s

// CHECK-LABEL: attn.spec @retnet
// CHECK: attn.input @state : f32 ["B", "Hq", "Dqk", "Dv"]
// CHECK-NOT: @zstate
// CHECK: attn.linear_attention
attn.spec @retnet {
  attn.linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  }
}

// -----

// CHECK-LABEL: attn.spec @normalized
// CHECK: attn.input @state : f32 ["B", "Hq", "Dqk", "Dv"]
// CHECK: attn.input @zstate : f32 ["B", "Hq", "Dqk"]
attn.spec @normalized {
  attn.linear_attention feature_map = <elu_plus_one>, <elu_plus_one> attributes {normalize} scale {
  } gate {
  } beta {
  } bonus {
  }
}

// -----

// CHECK-LABEL: attn.spec @performer
// CHECK: attn.input @state : f32 ["B", "Hq", "R", "Dv"]
attn.spec @performer {
  attn.input @w : f32 ["R", "Dqk"]
  attn.linear_attention feature_map = <random>, <random> attributes {projection = @w} scale {
  } gate {
  } beta {
  } bonus {
  }
}

// -----

attn.spec @noncausal {
  // expected-error @+1 {{a carried state needs a causal recurrence}}
  attn.linear_attention feature_map = <identity>, <identity> attributes {noncausal} scale {
  } gate {
  } beta {
  } bonus {
  }
}

// -----

attn.spec @taylor {
  // expected-error @+1 {{a carried state is not supported yet for feature maps that change the dimension (pos_neg, taylor2)}}
  attn.linear_attention feature_map = <taylor2>, <taylor2> scale {
  } gate {
  } beta {
  } bonus {
  }
}

// -----

attn.spec @taken {
  attn.input @state : f32 ["B", "Hq", "Dqk", "Dv"]
  // expected-error @-2 {{attn-add-linear-state: the spec already has an input named 'state'}}
  attn.linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  }
}
