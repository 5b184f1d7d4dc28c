// convert-attn-to-cpu on a spec it cannot lower is a diagnostic, not a crash.
// RUN: attn-opt %s --split-input-file --convert-attn-to-cpu -verify-diagnostics

attn.spec @unscheduled {
  // expected-error @+1 {{convert-attn-to-cpu needs a schedule; run attn-tile-attention first}}
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}

// -----

// A hand-written schedule past the tile limit (attn-tile-attention rejects
// such tiles; this pass checks schedules it did not choose).
attn.spec @huge_tile_q {
  // expected-error @+1 {{the CPU kernel needs tile_q (1024) a positive multiple of the vector width (16) and tile_q, tile_kv (64) at most 512 rows}}
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 1024, tile_kv = 64, vector_width = 16, block_skip = "none">} scale {} mask {} score {} bias {}
}

// -----

attn.spec @huge_tile_kv {
  // expected-error @+1 {{the CPU kernel needs tile_q (64) a positive multiple of the vector width (16) and tile_q, tile_kv (131072) at most 512 rows}}
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 64, tile_kv = 131072, vector_width = 16, block_skip = "none">} scale {} mask {} score {} bias {}
}

// -----

attn.spec @partial_vector {
  // expected-error @+1 {{the CPU kernel needs tile_q (8) a positive multiple of the vector width (16)}}
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 8, tile_kv = 64, vector_width = 16, block_skip = "none">} scale {} mask {} score {} bias {}
}
