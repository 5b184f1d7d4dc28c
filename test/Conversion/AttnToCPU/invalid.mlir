// convert-attn-to-cpu on a spec without a schedule is a diagnostic, not a crash.
// RUN: attn-opt %s --convert-attn-to-cpu -verify-diagnostics

attn.spec @unscheduled {
  // expected-error @+1 {{convert-attn-to-cpu needs a schedule; run attn-tile-attention first}}
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}
