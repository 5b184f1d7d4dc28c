// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-nvvm -split-input-file -verify-diagnostics

// Tensor cores take 16-bit inputs; f32 (the default) must be declared away.
// expected-error @+1 {{CUDA kernels take bf16 or f16 q, k and v (tensor cores); 'q' is 'f32' (leave it undeclared and pass --dtype=bf16|f16)}}
attn.spec @f32_inputs {
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "none">} scale {
  } mask {
  } score {
  } bias {
  }
}

// -----

// expected-error @+1 {{CUDA kernels need q, k and v of one type}}
attn.spec @mixed {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : f16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : bf16 ["B", "Hkv", "M", "Dv"]
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "none">} scale {
  } mask {
  } score {
  } bias {
  }
}

// -----

attn.spec @three_warps {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : bf16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : bf16 ["B", "Hkv", "M", "Dv"]
  // expected-error @+1 {{CUDA kernels need tile_q = 16, 32, 64 or 128 (16 query rows per warp), got 48}}
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 48, tile_kv = 64, vector_width = 16, block_skip = "none">} scale {
  } mask {
  } score {
  } bias {
  }
}

// -----

attn.spec @odd_kv_tile {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : bf16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : bf16 ["B", "Hkv", "M", "Dv"]
  // expected-error @+1 {{CUDA kernels need tile_kv a multiple of 16 in [16, 128], got 40}}
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 64, tile_kv = 40, vector_width = 16, block_skip = "none">} scale {
  } mask {
  } score {
  } bias {
  }
}
