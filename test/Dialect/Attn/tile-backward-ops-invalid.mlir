// The backward tile program's verifier: tiles against the schedule (dK/dV
// accumulators have tile_kv rows), the q loop's regions, the body's shape,
// and where each op may appear.
// RUN: attn-opt %s --split-input-file -verify-diagnostics --allow-unregistered-dialect

attn.spec @gradrows {
  attn.tiled_attention_backward normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 32, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %hk: index, %k0: index):
    // expected-error @+1 {{the gradient accumulator has 16 rows, but the schedule's tile_kv is 32}}
    %init = attn.tile.bwd.init : <16x?x?>
    attn.yield
  }
}

// -----

attn.spec @noloop {
  // expected-error @+1 {{body must have one 'attn.tile.q_loop' and one 'attn.tile.bwd.store', found 0 and 0}}
  attn.tiled_attention_backward normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 32, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %hk: index, %k0: index):
    attn.yield
  }
}

// -----

attn.spec @lse {
  // expected-error @+1 {{schedule sizes must be positive}}
  attn.tiled_attention_backward normalizer = <softmax> schedule = <tile_q = 0, tile_kv = 32, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %hk: index, %k0: index):
    attn.yield
  }
}

// -----

attn.spec @loopargs {
  attn.tiled_attention_backward normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 32, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %hk: index, %k0: index):
    %init = attn.tile.bwd.init : <32x?x?>
    // expected-error @+1 {{'do' region}}
    %grad = attn.tile.q_loop %b, %hk, %k0 iter_args(%init) : <32x?x?> mask {
    } do {
    ^bb0(%h: index, %q0: index, %g: !attn.grad<32x?x?>):
      attn.yield %g : !attn.grad<32x?x?>
    }
    attn.tile.bwd.store %grad, %b, %hk, %k0 : <32x?x?>
    attn.yield
  }
}

// -----

attn.spec @scoretile {
  attn.tiled_attention_backward normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 32, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %hk: index, %k0: index):
    %init = attn.tile.bwd.init : <32x?x?>
    %grad = attn.tile.q_loop %b, %hk, %k0 iter_args(%init) : <32x?x?> mask {
    } do {
    ^bb0(%h: index, %q0: index, %partial: i1, %g: !attn.grad<32x?x?>):
      // expected-error @+1 {{the score tile has 16 columns, but the schedule's tile_kv is 32}}
      %dp = attn.tile.bwd.dp %b, %h, %q0, %k0 : <16x16xf32>
      attn.yield %g : !attn.grad<32x?x?>
    }
    attn.tile.bwd.store %grad, %b, %hk, %k0 : <32x?x?>
    attn.yield
  }
}

// -----

attn.spec @dkq {
  attn.tiled_attention_backward normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 32, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %hk: index, %k0: index):
    %init = attn.tile.bwd.init : <32x?x?>
    %grad = attn.tile.q_loop %b, %hk, %k0 iter_args(%init) : <32x?x?> mask {
    } do {
    ^bb0(%h: index, %q0: index, %partial: i1, %g: !attn.grad<32x?x?>):
      %q = "test.q"() : () -> !attn.tile<8x?xf32>
      %dp = attn.tile.bwd.dp %b, %h, %q0, %k0 : <16x32xf32>
      // expected-error @+1 {{the q tile has 8 rows, but the schedule's tile_q is 16}}
      %g1 = attn.tile.bwd.dk %dp, %q, %g : <16x32xf32>, <8x?xf32>, <32x?x?>
      attn.yield %g1 : !attn.grad<32x?x?>
    }
    attn.tile.bwd.store %grad, %b, %hk, %k0 : <32x?x?>
    attn.yield
  }
}

// -----

attn.spec @scoreregion {
  attn.tiled_attention_backward normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 32, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %hk: index, %k0: index):
    %init = attn.tile.bwd.init : <32x?x?>
    %grad = attn.tile.q_loop %b, %hk, %k0 iter_args(%init) : <32x?x?> mask {
    } do {
    ^bb0(%h: index, %q0: index, %partial: i1, %g: !attn.grad<32x?x?>):
      %dp = attn.tile.bwd.dp %b, %h, %q0, %k0 : <16x32xf32>
      // expected-error @+1 {{'score' region}}
      %dx = attn.tile.bwd.score %dp, %dp, %b, %h, %q0, %k0 : <16x32xf32> {
      ^bb0(%v: f64):
        attn.yield %v : f64
      }
      attn.yield %g : !attn.grad<32x?x?>
    }
    attn.tile.bwd.store %grad, %b, %hk, %k0 : <32x?x?>
    attn.yield
  }
}

// -----

// The gradient steps belong in the q loop, and the forward's normalizer
// steps do not.
attn.spec @placement {
  attn.tiled_attention_backward normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 32, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %hk: index, %k0: index):
    // expected-error @+1 {{'attn.tile.bwd.dp' op expects parent op 'attn.tile.q_loop'}}
    %dp = attn.tile.bwd.dp %b, %hk, %k0, %k0 : <16x32xf32>
    attn.yield
  }
}

// -----

attn.spec @gradtype {
  attn.tiled_attention_backward normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 32, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %hk: index, %k0: index):
    // expected-error @+1 {{a gradient accumulator has three dims (rows x Dqk x Dv)}}
    %init = attn.tile.bwd.init : <32x?>
    attn.yield
  }
}
