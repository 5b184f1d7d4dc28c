// convert-attn-to-cpu on a tiled spec it cannot lower is a diagnostic, not
// a crash. Hand-written schedules past the limits (attn-tile-attention
// rejects such tiles; this pass checks schedules it did not choose).
// RUN: attn-opt %s --split-input-file --convert-attn-to-cpu -verify-diagnostics

attn.spec @huge_tile_q {
  // expected-error @+1 {{the CPU kernel needs tile_q (1024) a positive multiple of the vector width (16) and tile_q, tile_kv (64) at most 512 rows}}
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 1024, tile_kv = 64, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <1024x?xf32>
    %init = attn.tile.init : <1024x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <1024x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<1024x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <1024x?xf32> -> <1024x64xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <1024x64xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <1024x64xf32>, <1024x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <1024x64xf32>, <1024x?>
      attn.yield %a2 : !attn.acc<1024x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <1024x?>
    attn.yield
  }
}

// -----

attn.spec @huge_tile_kv {
  // expected-error @+1 {{the CPU kernel needs tile_q (64) a positive multiple of the vector width (16) and tile_q, tile_kv (131072) at most 512 rows}}
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 64, tile_kv = 131072, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <64x?xf32>
    %init = attn.tile.init : <64x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <64x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<64x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <64x?xf32> -> <64x131072xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <64x131072xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <64x131072xf32>, <64x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <64x131072xf32>, <64x?>
      attn.yield %a2 : !attn.acc<64x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <64x?>
    attn.yield
  }
}

// -----

attn.spec @partial_vector {
  // expected-error @+1 {{the CPU kernel needs tile_q (8) a positive multiple of the vector width (16)}}
  attn.tiled_attention normalizer = <softmax> schedule = <tile_q = 8, tile_kv = 64, vector_width = 16, block_skip = "none"> scale {
  } bias {
  } body {
  ^bb0(%b: index, %h: index, %q0: index):
    %q = attn.tile.load_q %b, %h, %q0 : <8x?xf32>
    %init = attn.tile.init : <8x?>
    %acc = attn.tile.kv_loop %b, %h, %q0 iter_args(%init) : <8x?> mask {
    } do {
    ^bb0(%k0: index, %partial: i1, %a: !attn.acc<8x?>):
      %s = attn.tile.qk %q, %b, %h, %k0 : <8x?xf32> -> <8x64xf32>
      %m = attn.tile.mask %s, %partial, %b, %h, %q0, %k0 : <8x64xf32>
      %p, %a1 = attn.tile.online_softmax %m, %a : <8x64xf32>, <8x?>
      %a2 = attn.tile.pv %p, %a1, %b, %h, %k0 : <8x64xf32>, <8x?>
      attn.yield %a2 : !attn.acc<8x?>
    }
    attn.tile.store %acc, %b, %h, %q0 : <8x?>
    attn.yield
  }
}
