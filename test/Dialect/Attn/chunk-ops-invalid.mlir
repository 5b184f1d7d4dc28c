// The verifier of the linear family's tile-level IR.
// RUN: attn-opt %s --split-input-file -verify-diagnostics --allow-unregistered-dialect

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
    // expected-error @+1 {{'attn.chunk.values' op expects parent op to be one of 'attn.chunk.loop, attn.chunk.bwd.reverse_loop'}}
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

// -----

// Every chunk tile operand is !attn.tile<?x?xf32>: intra, readout, update,
// delta and store check theirs.
attn.spec @intra_static {
  attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
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
      %x = "test.cast"(%fk) : (!attn.tile<?x?xf32>) -> !attn.tile<?x?xf16>
      // expected-error @+1 {{'attn.chunk.intra' op operand #1 must be a chunk tile (!attn.tile<?x?xf32>)}}
      %a = "attn.chunk.intra"(%fq, %x, %g) : (!attn.tile<?x?xf32>, !attn.tile<?x?xf16>, !attn.tile<?x?xf32>) -> !attn.tile<?x?xf32>
      attn.yield %st : !attn.state<?x?>
    }
    attn.yield
  }
}

// -----

attn.spec @readout_static {
  attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
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
      %x = "test.cast"(%v) : (!attn.tile<?x?xf32>) -> !attn.tile<8x8xf32>
      // expected-error @+1 {{'attn.chunk.readout' op operand #2 must be a chunk tile (!attn.tile<?x?xf32>)}}
      %o = "attn.chunk.readout"(%fq, %a, %x, %st, %g) : (!attn.tile<?x?xf32>, !attn.tile<?x?xf32>, !attn.tile<8x8xf32>, !attn.state<?x?>, !attn.tile<?x?xf32>) -> !attn.tile<?x?xf32>
      attn.yield %st : !attn.state<?x?>
    }
    attn.yield
  }
}

// -----

attn.spec @update_state {
  attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
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
      %x = "test.cast"(%st) : (!attn.state<?x?>) -> !attn.tile<?x?xf32>
      // expected-error @+1 {{'attn.chunk.update' op operand #0 must be a linear-attention state}}
      %st2 = "attn.chunk.update"(%x, %fk, %v, %g) : (!attn.tile<?x?xf32>, !attn.tile<?x?xf32>, !attn.tile<?x?xf32>, !attn.tile<?x?xf32>) -> !attn.state<?x?>
      attn.yield %st : !attn.state<?x?>
    }
    attn.yield
  }
}

// -----

attn.spec @delta_result {
  attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
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
      // expected-error @+1 {{'attn.chunk.delta' op result #0 must be a chunk tile (!attn.tile<?x?xf32>)}}
      %u = "attn.chunk.delta"(%st, %fk, %v, %g, %b, %h, %t0) : (!attn.state<?x?>, !attn.tile<?x?xf32>, !attn.tile<?x?xf32>, !attn.tile<?x?xf32>, index, index, index) -> !attn.tile<4x?xf32>
      attn.yield %st : !attn.state<?x?>
    }
    attn.yield
  }
}

// -----

attn.spec @store_output {
  attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
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
      %x = "test.cast"(%v) : (!attn.tile<?x?xf32>) -> !attn.tile<?x?xbf16>
      // expected-error @+1 {{'attn.chunk.store' op operand #0 must be a chunk tile (!attn.tile<?x?xf32>)}}
      "attn.chunk.store"(%x, %b, %h, %t0) : (!attn.tile<?x?xbf16>, index, index, index) -> ()
      attn.yield %st : !attn.state<?x?>
    }
    attn.yield
  }
}

// -----

// The chunk step yields the state.
attn.spec @yield_type {
  attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    %s0 = attn.chunk.init_state %b, %h
    // expected-error @+1 {{'do' region must yield one '!attn.state<?x?>'}}
    %s = attn.chunk.loop %b, %h iter_args(%s0) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      %fk = attn.chunk.features %b, %h, %t0 key
      %fq = attn.chunk.features %b, %h, %t0 query
      %v = attn.chunk.values %b, %h, %t0
      %g = attn.chunk.log_gates %b, %h, %t0
      attn.yield %v : !attn.tile<?x?xf32>
    }
    attn.yield
  }
}
