// Linear-attention features the CUDA backend does not lower are errors on the
// spec, naming the feature.
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-nvvm -split-input-file -verify-diagnostics

// expected-error @+1 {{CUDA kernels take bf16 or f16 q, k and v; 'q' is 'f32' (leave it undeclared and pass --dtype=bf16|f16)}}
attn.spec @f32_inputs {
  attn.linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  }
}

// -----

// The delta rule keeps the state in registers: Dphi must be Dqk.
// expected-error @+1 {{the CUDA backend supports the delta rule only with feature maps that keep the dimension (got 'taylor2'; pos_neg, taylor2 and random are not supported with 'delta')}}
attn.spec @delta_taylor {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : bf16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : bf16 ["B", "Hkv", "M", "Dv"]
  attn.input @beta : f32 ["B", "Hq", "N"]
  attn.linear_attention feature_map = <taylor2>, <taylor2> scale {
  } gate {
  } beta {
  ^bb0(%b: i64, %h: i64, %t: i64):
    %x = attn.load @beta[%b, %h, %t] : f32
    %y = arith.extf %x : f32 to f64
    attn.yield %y : f64
  } bonus {
  }
}

// -----

// A carried state (attn-add-linear-state) is not supported yet.
// expected-error @+1 {{the CUDA backend does not support a carried linear-attention state yet (input 'state', from --linear-state / attn-add-linear-state); use the CPU target for decoding}}
attn.spec @carried {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : bf16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : bf16 ["B", "Hkv", "M", "Dv"]
  attn.input @state : f32 ["B", "Hq", "Dqk", "Dv"]
  attn.linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  }
}
