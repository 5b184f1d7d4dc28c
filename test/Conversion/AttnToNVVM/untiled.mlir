// convert-attn-to-nvvm takes the tile-level IR: an attention that
// attn-tile-attention did not rewrite is a diagnostic, not a crash.
// RUN: attn-opt %s --convert-attn-to-nvvm -verify-diagnostics
attn.spec @unscheduled {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : bf16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : bf16 ["B", "Hkv", "M", "Dv"]
  // expected-error @+1 {{convert-attn-to-nvvm needs the tiled form (attn.tiled_attention); run attn-tile-attention first}}
  attn.attention normalizer = <softmax> scale {
  } mask {
  } score {
  } bias {
  }
}
