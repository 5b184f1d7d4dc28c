// The tile-level IR's verifier: each op is checked against the schedule
// and the normalizer of its attn.tiled_attention.
// RUN: attn-opt %s --split-input-file -verify-diagnostics --allow-unregistered-dialect

// A tile sized for another schedule.
attn.spec @rows {
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    // expected-error @+1 {{the q tile has 32 rows, but the schedule's tile_q is 16}}
    %q = attn.tile.load_q %b, %h, %q0 : <32x?xf32>
    %init = attn.tile.init : <16x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<16x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <32x?xf32> -> <16x16xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <16x16xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <16x16xf32>, <16x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <16x16xf32>, <16x?>
      attn.yield %a2 : !attn.acc<16x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <16x?>
    attn.yield
  }
}

// -----

attn.spec @cols {
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    %init = attn.tile.init : <16x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<16x?>):
      // expected-error @+1 {{the score tile has 8 columns, but the schedule's tile_kv is 16}}
      %s = attn.tile.qk %q, %b, %h, %k0 : <16x?xf32> -> <16x8xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <16x8xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <16x8xf32>, <16x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <16x8xf32>, <16x?>
      attn.yield %a2 : !attn.acc<16x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <16x?>
    attn.yield
  }
}

// -----

// The normalizer step must match the normalizer.
attn.spec @softmax_step_sigmoid {
  attn.tiled_attention normalizer = <sigmoid> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    %init = attn.tile.init : <16x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<16x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <16x?xf32> -> <16x16xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <16x16xf32>
      // expected-error @+1 {{does not apply to the sigmoid normalizer}}
      %p, %a1 = attn.tile.online_softmax %m, %a : <16x16xf32>, <16x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <16x16xf32>, <16x?>
      attn.yield %a2 : !attn.acc<16x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <16x?>
    attn.yield
  }
}

// -----

attn.spec @normalize_softmax {
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    %init = attn.tile.init : <16x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<16x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <16x?xf32> -> <16x16xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <16x16xf32>
      // expected-error @+1 {{does not apply to the softmax normalizer}}
      %p, %a1 = attn.tile.normalize %m, %a : <16x16xf32>, <16x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <16x16xf32>, <16x?>
      attn.yield %a2 : !attn.acc<16x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <16x?>
    attn.yield
  }
}

// -----

// The kv step takes (k0, partial, acc).
attn.spec @step_args {
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    %init = attn.tile.init : <16x?>
    %true = arith.constant true
    // expected-error @+1 {{'do' region expects arguments (index, i1, !attn.acc<16x?>)}}
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    } do {
    ^bb0(%k0: index, %a: !attn.acc<16x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <16x?xf32> -> <16x16xf32>
      %m = attn.tile.mask %s, %true, %b, %h, %q0, %k0 : <16x16xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <16x16xf32>, <16x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <16x16xf32>, <16x?>
      attn.yield %a2 : !attn.acc<16x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <16x?>
    attn.yield
  }
}

// -----

attn.spec @mask_sig {
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    %init = attn.tile.init : <16x?>
    // expected-error @+1 {{'mask' region expects arguments (i64, i64, i64, i64)}}
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    ^bb0(%i: i64, %j: i64):
      %c = arith.cmpi sle, %j, %i : i64
      attn.yield %c : i1
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<16x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <16x?xf32> -> <16x16xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <16x16xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <16x16xf32>, <16x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <16x16xf32>, <16x?>
      attn.yield %a2 : !attn.acc<16x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <16x?>
    attn.yield
  }
}

// -----

attn.spec @no_store {
  // expected-error @+1 {{body must have one 'attn.tile.kv_loop' and one 'attn.tile.store', found 1 and 0}}
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    %init = attn.tile.init : <16x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<16x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <16x?xf32> -> <16x16xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <16x16xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <16x16xf32>, <16x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <16x16xf32>, <16x?>
      attn.yield %a2 : !attn.acc<16x?>
    }
    attn.yield
  }
}

// -----

attn.spec @lse_relu {
  // expected-error @+1 {{'lse' output requires the softmax normalizer}}
  attn.tiled_attention normalizer = <relu> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> attributes {lse} scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    %init = attn.tile.init : <16x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<16x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <16x?xf32> -> <16x16xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <16x16xf32>
      %p, %a1 = attn.tile.normalize %m, %a : <16x16xf32>, <16x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <16x16xf32>, <16x?>
      attn.yield %a2 : !attn.acc<16x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <16x?>
    attn.yield
  }
}

// -----

attn.spec @bias_softmax {
  // expected-error @+1 {{a 'bias' region applies only to the sigmoid normalizer}}
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
    %c = arith.constant 1.0 : f64
    attn.yield %c : f64
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    %init = attn.tile.init : <16x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<16x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <16x?xf32> -> <16x16xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <16x16xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <16x16xf32>, <16x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <16x16xf32>, <16x?>
      attn.yield %a2 : !attn.acc<16x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <16x?>
    attn.yield
  }
}

// -----

attn.spec @score_sig {
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    %init = attn.tile.init : <16x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<16x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <16x?xf32> -> <16x16xf32>
      // expected-error @+1 {{'score' region expects arguments (f64, i64, i64, i64, i64)}}
      %t = attn.tile.score %s, %b, %h, %q0, %k0 : <16x16xf32> {
      ^bb0(%x: f32):
        attn.yield %x : f32
      }
      %m = attn.tile.mask %t, %partial, %b, %h, %q0, %k0 : <16x16xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <16x16xf32>, <16x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <16x16xf32>, <16x?>
      attn.yield %a2 : !attn.acc<16x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <16x?>
    attn.yield
  }
}

// -----

// A kv-tile op belongs in a kv loop.
attn.spec @misplaced {
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    // expected-error @+1 {{'attn.tile.qk' op expects parent op to be one of 'attn.tile.kv_loop, attn.tile.q_loop'}}
    %s = attn.tile.qk %q, %b, %h, %q0 : <16x?xf32> -> <16x16xf32>
    attn.yield
  }
}

// -----

// Tile types: two dims, float elements.
// expected-error @+1 {{a tile has two dims, got 3}}
func.func private @three_dims(!attn.tile<4x4x4xf32>)

// -----

// expected-error @+1 {{tile elements must be floats, got 'i32'}}
func.func private @int_tile(!attn.tile<4x4xi32>)

// -----

// The accumulator has the q tile's rows.
attn.spec @init_rows {
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    // expected-error @+1 {{the accumulator has 32 rows, but the schedule's tile_q is 16}}
    %init = attn.tile.init : <32x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <32x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<32x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <16x?xf32> -> <16x16xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <16x16xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <16x16xf32>, <32x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <16x16xf32>, <32x?>
      attn.yield %a2 : !attn.acc<32x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <32x?>
    attn.yield
  }
}

// -----

// Weights are f32 score tiles.
attn.spec @pv_f16 {
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    %init = attn.tile.init : <16x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<16x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <16x?xf32> -> <16x16xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <16x16xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <16x16xf32>, <16x?>
      %p16 = "test.cast"(%p) : (!attn.tile<16x16xf32>) -> !attn.tile<16x16xf16>
      // expected-error @+1 {{score tiles are f32, got 'f16'}}
      %a2 = attn.tile.pv %p16, %a1, %b, %h, %k0 : <16x16xf16>, <16x?>
      attn.yield %a2 : !attn.acc<16x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <16x?>
    attn.yield
  }
}

// -----

// The kv step yields the accumulator.
attn.spec @yield_type {
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <16x?xf32>
    %init = attn.tile.init : <16x?>
    // expected-error @+1 {{'do' region must yield one '!attn.acc<16x?>'}}
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <16x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<16x?>):
      attn.yield %partial : i1
    }
    attn.tile.store %acc, %b, %h, %q0 : <16x?>
    attn.yield
  }
}
