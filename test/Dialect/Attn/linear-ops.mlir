// RUN: attn-opt %s | FileCheck %s
// RUN: attn-opt %s | attn-opt | FileCheck %s

// CHECK-LABEL: attn.spec @gla
// CHECK: attn.linear_attention feature_map = <identity>, <identity> scale {
// CHECK: } gate {
// CHECK: attn.load @g
// CHECK: } beta {
// CHECK: } bonus {
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

// CHECK-LABEL: attn.spec @rwkv6
// CHECK: attn.linear_attention feature_map = <identity>, <identity> attributes {exclusive}
attn.spec @rwkv6 {
  attn.input @w : f32 ["B", "Hq", "N", "Dqk"]
  attn.input @u : f32 ["Hq", "Dqk"]
  attn.linear_attention feature_map = <identity>, <identity> attributes {exclusive} scale {
  } gate {
  ^bb0(%b: i64, %h: i64, %t: i64, %d: i64):
    %x = attn.load @w[%b, %h, %t, %d] : f32
    %y = arith.extf %x : f32 to f64
    attn.yield %y : f64
  } beta {
  } bonus {
  ^bb0(%h: i64, %d: i64):
    %x = attn.load @u[%h, %d] : f32
    %y = arith.extf %x : f32 to f64
    attn.yield %y : f64
  }
}

// CHECK-LABEL: attn.spec @performer
// CHECK: feature_map = <random>, <random> attributes {normalize, projection = @W}
attn.spec @performer {
  attn.input @W : f32 ["R", "Dqk"]
  attn.linear_attention feature_map = <random>, <random> attributes {normalize, projection = @W} scale {} gate {} beta {} bonus {}
}
