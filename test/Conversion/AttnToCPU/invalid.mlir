// convert-attn-to-cpu on a spec without a schedule must be a diagnostic.
// XFAIL: *
// Today the pass crashes instead (segfault in ScheduleAttr::getVectorWidth():
// KernelBuilder's constructor reads the null schedule before build() checks
// it). Remove the XFAIL line when that is fixed.
// RUN: attn-opt %s --convert-attn-to-cpu -verify-diagnostics

attn.spec @unscheduled {
  // expected-error @+1 {{convert-attn-to-cpu needs a schedule; run attn-tile-attention first}}
  attn.attention normalizer = <softmax> scale {} mask {} score {} bias {}
}
