// The chunked linear-attention form takes at most 512 time steps per chunk
// (its scratch is chunk x chunk): a larger linear-chunk is a diagnostic.
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-cpu=linear-chunk=1024 -verify-diagnostics

// expected-error @+1 {{linear-chunk (1024) must be between 0 (the recurrent form) and 512 time steps}}
attn.spec @gla {
  attn.linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  }
}
