// RUN: attn-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{expects exactly one attention op ('attn.attention', 'attn.linear_attention', or a tiled or backward form of them), found 0}}
attn.spec @none {
}

// -----

// expected-error @+1 {{expects exactly one attention op ('attn.attention', 'attn.linear_attention', or a tiled or backward form of them), found 2}}
attn.spec @two {
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}

// -----

attn.spec @badparam {
  // expected-error @+1 {{type must be i64 or f64, got 'f32'}}
  attn.param @x : f32 {
    %c = arith.constant 1.0 : f32
    attn.yield %c : f32
  }
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}

// -----

attn.spec @paramyield {
  // expected-error @+1 {{'default' region must yield one 'i64'}}
  attn.param @x : i64 {
    %c = arith.constant 1.0 : f64
    attn.yield %c : f64
  }
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}

// -----

attn.spec @qshape {
  // expected-error @+1 {{input 'q' must have shape [B, Hq, N, Dqk], got [B, N, Dqk]}}
  attn.input @q : f32 ["B", "N", "Dqk"]
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}

// -----

attn.spec @qtype {
  // expected-error @+1 {{input 'q' must be f32, bf16 or f16, got 'i32'}}
  attn.input @q : i32 ["B", "Hq", "N", "Dqk"]
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}

// -----

attn.spec @auxtype {
  // expected-error @+1 {{auxiliary input 'doc' must be i32 or f32, got 'i64'}}
  attn.input @doc : i64 ["B", "N"]
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}

// -----

attn.spec @auxdim {
  // expected-error @+1 {{dim sizes must be positive, got 0 in input 'table'}}
  attn.input @table : f32 [0]
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}

// -----

attn.spec @auxG {
  // expected-error @+1 {{'G' is derived (Hq/Hkv) and cannot be a dim}}
  attn.input @table : f32 ["G"]
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}

// -----

attn.spec @lse {
  // expected-error @+1 {{'lse' output requires the softmax normalizer, got sigmoid}}
  attn.attention normalizer = <sigmoid> attributes {lse} scale {} mask {} score {} bias {}
}

// -----

attn.spec @relupower {
  // expected-error @+1 {{'relu_power' and 'row_normalize' apply only to the relu normalizer}}
  attn.attention normalizer = <softmax> attributes {row_normalize} scale {} mask {} score {} bias {}
}

// -----

attn.spec @relupower2 {
  // expected-error @+1 {{'relu_power' must be in [1, 8], got 9}}
  attn.attention normalizer = <relu> attributes {relu_power = 9 : i64} scale {} mask {} score {} bias {}
}

// -----

attn.spec @bias {
  // expected-error @+1 {{a 'bias' region applies only to the sigmoid normalizer}}
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {
    %c = arith.constant 1.0 : f64
    attn.yield %c : f64
  }
}

// -----

attn.spec @maskargs {
  // expected-error @+1 {{'mask' region expects arguments (i64, i64, i64, i64)}}
  attn.attention normalizer = <softmax> scale {} mask {
  ^bb0(%b: i64):
    %t = arith.constant true
    attn.yield %t : i1
  } score {} bias {}
}

// -----

attn.spec @maskyield {
  // expected-error @+1 {{'mask' region must yield one 'i1'}}
  attn.attention normalizer = <softmax> scale {} mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    attn.yield %i : i64
  } score {} bias {}
}

// -----

attn.spec @scoreargs {
  // expected-error @+1 {{'score' region expects arguments (f64, i64, i64, i64, i64)}}
  attn.attention normalizer = <softmax> scale {} mask {} score {
  ^bb0(%x: f64):
    attn.yield %x : f64
  } bias {}
}

// -----

attn.spec @scaletype {
  // expected-error @+1 {{'scale' region must yield one 'f64'}}
  attn.attention normalizer = <softmax> scale {
    %c = arith.constant 1 : i64
    attn.yield %c : i64
  } mask {} score {} bias {}
}

// -----

attn.spec @dim {
  attn.attention normalizer = <softmax> scale {
    // expected-error @+1 {{unknown dim 'T': not canonical and not declared by any input}}
    %t = attn.dim "T" : i64
    %f = arith.sitofp %t : i64 to f64
    attn.yield %f : f64
  } mask {} score {} bias {}
}

// -----

attn.spec @getparam {
  attn.attention normalizer = <softmax> scale {
    // expected-error @+1 {{'nope' is not an attn.param}}
    %p = attn.get_param @nope : f64
    attn.yield %p : f64
  } mask {} score {} bias {}
}

// -----

attn.spec @getparamtype {
  attn.param @w : i64 {
    %c = arith.constant 1 : i64
    attn.yield %c : i64
  }
  attn.attention normalizer = <softmax> scale {
    // expected-error @+1 {{type 'f64' does not match param @w of type 'i64'}}
    %p = attn.get_param @w : f64
    attn.yield %p : f64
  } mask {} score {} bias {}
}

// -----

attn.spec @paramorder {
  attn.param @a : i64 {
    // expected-error @+1 {{param @b is used before its definition}}
    %p = attn.get_param @b : i64
    attn.yield %p : i64
  }
  attn.param @b : i64 {
    %c = arith.constant 1 : i64
    attn.yield %c : i64
  }
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}

// -----

attn.spec @load {
  attn.input @doc : i32 ["B", "N"]
  attn.attention normalizer = <softmax> scale {} mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    // expected-error @+1 {{input 'doc' has 2 dims but 1 indices were given}}
    %d = attn.load @doc[%i] : i32
    %t = arith.constant true
    attn.yield %t : i1
  } score {} bias {}
}

// -----

attn.spec @loadtype {
  attn.input @doc : i32 ["B", "N"]
  attn.attention normalizer = <softmax> scale {} mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    // expected-error @+1 {{result type 'f32' does not match input 'doc' of element type 'i32'}}
    %d = attn.load @doc[%b, %i] : f32
    %t = arith.constant true
    attn.yield %t : i1
  } score {} bias {}
}

// -----

attn.spec @loadq {
  attn.input @q : f32 ["B", "Hq", "N", "Dqk"]
  attn.attention normalizer = <softmax> scale {} mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    // expected-error @+1 {{cannot index 'q' element-wise: q, k and v enter only through the score}}
    %d = attn.load @q[%b, %h, %i, %j] : f32
    %t = arith.constant true
    attn.yield %t : i1
  } score {} bias {}
}

// -----

attn.spec @loadmissing {
  attn.attention normalizer = <softmax> scale {} mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    // expected-error @+1 {{'doc' is not an attn.input}}
    %d = attn.load @doc[%b, %i] : i32
    %t = arith.constant true
    attn.yield %t : i1
  } score {} bias {}
}

// -----

attn.spec @body {
  // expected-error @+1 {{is not allowed in an 'attn.spec' body}}
  %c = arith.constant 1 : i64
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}

// -----

attn.spec @linbonus {
  // expected-error @+1 {{a 'bonus' region needs the exclusive readout}}
  attn.linear_attention feature_map = <identity>, <identity> scale {} gate {} beta {} bonus {
  ^bb0(%h: i64, %d: i64):
    %c = arith.constant 0.5 : f64
    attn.yield %c : f64
  }
}

// -----

attn.spec @linfm {
  // expected-error @+1 {{feature maps that change the feature dimension (pos_neg, taylor2, random) must be the same for q and k}}
  attn.linear_attention feature_map = <taylor2>, <identity> scale {} gate {} beta {} bonus {}
}

// -----

attn.spec @linrandom {
  // expected-error @+1 {{the random feature map needs a 'projection' input, and only it takes one}}
  attn.linear_attention feature_map = <random>, <random> scale {} gate {} beta {} bonus {}
}

// -----

attn.spec @linnoncausal {
  // expected-error @+1 {{gates, the delta rule and the exclusive readout need a causal recurrence}}
  attn.linear_attention feature_map = <identity>, <identity> attributes {noncausal} scale {} gate {
  ^bb0(%b: i64, %h: i64, %t: i64, %d: i64):
    %c = arith.constant -0.5 : f64
    attn.yield %c : f64
  } beta {} bonus {}
}

// -----

attn.spec @lindeltanorm {
  // expected-error @+1 {{the delta rule has no normalizer state; remove 'normalize'}}
  attn.linear_attention feature_map = <identity>, <identity> attributes {normalize} scale {} gate {} beta {
  ^bb0(%b: i64, %h: i64, %t: i64):
    %c = arith.constant 0.5 : f64
    attn.yield %c : f64
  } bonus {}
}

// -----

attn.spec @lingate {
  // expected-error @+1 {{'gate' region expects arguments (i64, i64, i64, i64)}}
  attn.linear_attention feature_map = <identity>, <identity> scale {} gate {
  ^bb0(%b: i64):
    %c = arith.constant -0.5 : f64
    attn.yield %c : f64
  } beta {} bonus {}
}
