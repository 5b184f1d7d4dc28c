// RUN: attn-opt %s | FileCheck %s
// Round trip: print, parse again and print the same.
// RUN: attn-opt %s | attn-opt | FileCheck %s

// CHECK-LABEL: attn.spec @window
// CHECK: attn.param @window : i64 {
// CHECK: attn.input @doc : i32 ["B", "N"]
// CHECK: attn.attention normalizer = <softmax> attributes {lse} scale {
// CHECK: attn.dim "Dqk" : i64
// CHECK: } mask {
// CHECK: attn.get_param @window : i64
// CHECK: attn.load @doc[%{{.*}}, %{{.*}}] : i32
// CHECK: } score {
// CHECK: math.tanh
// CHECK: } bias {
attn.spec @window {
  attn.param @window : i64 {
    %c = arith.constant 256 : i64
    attn.yield %c : i64
  }
  attn.input @doc : i32 ["B", "N"]
  attn.attention normalizer = <softmax> attributes {lse} scale {
    %d = attn.dim "Dqk" : i64
    %f = arith.sitofp %d : i64 to f64
    %r = math.rsqrt %f : f64
    attn.yield %r : f64
  } mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    %w = attn.get_param @window : i64
    %diff = arith.subi %i, %j : i64
    %in = arith.cmpi slt, %diff, %w : i64
    %di = attn.load @doc[%b, %i] : i32
    %dj = attn.load @doc[%b, %j] : i32
    %same = arith.cmpi eq, %di, %dj : i32
    %m = arith.andi %in, %same : i1
    attn.yield %m : i1
  } score {
  ^bb0(%x: f64, %b: i64, %h: i64, %i: i64, %j: i64):
    %t = math.tanh %x : f64
    attn.yield %t : f64
  } bias {
  }
}

// CHECK-LABEL: attn.spec @sigmoid
// CHECK: attn.attention normalizer = <sigmoid> scale {
// CHECK: } bias {
// CHECK: attn.yield %{{.*}} : f64
attn.spec @sigmoid {
  attn.attention normalizer = <sigmoid> scale {
  } mask {
  } score {
  } bias {
    %m = attn.dim "M" : i64
    %f = arith.sitofp %m : i64 to f64
    %l = math.log %f : f64
    %n = arith.negf %l : f64
    attn.yield %n : f64
  }
}

// CHECK-LABEL: attn.spec @relu
// CHECK: normalizer = <relu> attributes {relu_power = 2 : i64, row_normalize}
attn.spec @relu {
  attn.attention normalizer = <relu> attributes {relu_power = 2 : i64, row_normalize} scale {
  } mask {
  } score {
  } bias {
  }
}
