// convert-attn-to-cpu takes the tile-level IR: an attention that
// attn-tile-attention did not rewrite is a diagnostic, not a crash.
// RUN: attn-opt %s --convert-attn-to-cpu -verify-diagnostics

attn.spec @unscheduled {
  // expected-error @+1 {{convert-attn-to-cpu needs the tiled form (attn.tiled_attention); run attn-tile-attention first}}
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}
