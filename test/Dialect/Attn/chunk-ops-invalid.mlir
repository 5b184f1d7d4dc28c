// The verifier of the linear family's tile-level IR.
// RUN: attn-opt %s --split-input-file -verify-diagnostics

attn.spec @no_loop {
  // expected-error @+1 {{body must have an 'attn.chunk.loop'}}
  attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    attn.yield
  }
}

// -----

// The spec-level rules hold for the tiled form too.
attn.spec @bonus_inclusive {
  // expected-error @+1 {{a 'bonus' region needs the exclusive readout}}
  attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  ^bb0(%hh: i64, %d: i64):
    %c = arith.constant 1.0 : f64
    attn.yield %c : f64
  } body {
  ^bb0(%b: index, %h: index):
    %s0 = attn.chunk.init_state %b, %h
    %s = attn.chunk.loop %b, %h iter_args(%s0) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      attn.yield %st : !attn.state<?x?>
    }
    attn.yield
  }
}

// -----

attn.spec @step_args {
  attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    %s0 = attn.chunk.init_state %b, %h
    // expected-error @+1 {{'do' region expects arguments (index, !attn.state<?x?>)}}
    %s = attn.chunk.loop %b, %h iter_args(%s0) do {
    ^bb0(%st: !attn.state<?x?>):
      attn.yield %st : !attn.state<?x?>
    }
    attn.yield
  }
}

// -----

attn.spec @misplaced {
  attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    // expected-error @+1 {{'attn.chunk.values' op expects parent op 'attn.chunk.loop'}}
    %v = attn.chunk.values %b, %h, %b
    %s0 = attn.chunk.init_state %b, %h
    %s = attn.chunk.loop %b, %h iter_args(%s0) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      attn.yield %st : !attn.state<?x?>
    }
    attn.yield
  }
}

// -----

// Chunk tiles have the target's sizes: a static one is rejected.
attn.spec @static_chunk {
  attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    %s0 = attn.chunk.init_state %b, %h
    %s = attn.chunk.loop %b, %h iter_args(%s0) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      // expected-error @+1 {{'attn.chunk.values' op result #0 must be a chunk tile (!attn.tile<?x?xf32>)}}
      %v = "attn.chunk.values"(%b, %h, %t0) : (index, index, index) -> !attn.tile<4x4xf32>
      attn.yield %st : !attn.state<?x?>
    }
    attn.yield
  }
}
