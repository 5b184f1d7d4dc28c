// The gradients' program's verifier: the body's form follows the
// attention's causality, the forward's outputs have no place in it, and
// each op sits where it is meaningful.
// RUN: attn-opt %s --split-input-file -verify-diagnostics

attn.spec @noscan {
  // expected-error @+1 {{body must have an 'attn.chunk.loop' (the forward scan)}}
  attn.tiled_linear_attention_backward feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    attn.yield
  }
}

// -----

attn.spec @noreverse {
  // expected-error @+1 {{body must have one 'attn.chunk.bwd.reverse_loop' (the attention is causal)}}
  attn.tiled_linear_attention_backward feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    %state = attn.chunk.init_state %b, %h
    %state_0 = attn.chunk.loop %b, %h iter_args(%state) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      attn.yield %st : !attn.state<?x?>
    }
    attn.yield
  }
}

// -----

attn.spec @causalreadout {
  // expected-error @+1 {{body must have one 'attn.chunk.bwd.readout_all' (the attention is non-causal)}}
  attn.tiled_linear_attention_backward feature_map = <identity>, <identity> attributes {noncausal} scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    %state = attn.chunk.init_state %b, %h
    %state_0 = attn.chunk.loop %b, %h iter_args(%state) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      attn.yield %st : !attn.state<?x?>
    }
    %dst = attn.chunk.bwd.init %b, %h
    %dst_1 = attn.chunk.bwd.reverse_loop %b, %h iter_args(%dst) do {
    ^bb0(%t0: index, %d: !attn.state<?x?>):
      attn.yield %d : !attn.state<?x?>
    }
    attn.yield
  }
}

// -----

attn.spec @storestate {
  attn.tiled_linear_attention_backward feature_map = <identity>, <identity> attributes {noncausal} scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    %state = attn.chunk.init_state %b, %h
    %state_0 = attn.chunk.loop %b, %h iter_args(%state) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      attn.yield %st : !attn.state<?x?>
    }
    // expected-error @+1 {{writes the forward's outputs; it has no place in the gradients' program}}
    attn.chunk.store_state %state_0, %b, %h
    attn.yield
  }
}

// -----

// Checkpoints belong to the gradients' forward scan.
attn.spec @forwardsave {
  attn.tiled_linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    %state = attn.chunk.init_state %b, %h
    %state_0 = attn.chunk.loop %b, %h iter_args(%state) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      // expected-error @+1 {{only the forward scan of an 'attn.tiled_linear_attention_backward' keeps checkpoints}}
      attn.chunk.bwd.save %st, %b, %h, %t0
      attn.yield %st : !attn.state<?x?>
    }
    attn.yield
  }
}

// -----

attn.spec @restoreoutside {
  attn.tiled_linear_attention_backward feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    %state = attn.chunk.init_state %b, %h
    %state_0 = attn.chunk.loop %b, %h iter_args(%state) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      // expected-error @+1 {{'attn.chunk.bwd.restore' op expects parent op 'attn.chunk.bwd.reverse_loop'}}
      %r = attn.chunk.bwd.restore %b, %h, %t0
      attn.yield %st : !attn.state<?x?>
    }
    attn.yield
  }
}

// -----

attn.spec @reversesig {
  attn.tiled_linear_attention_backward feature_map = <identity>, <identity> scale {
  } gate {
  } beta {
  } bonus {
  } body {
  ^bb0(%b: index, %h: index):
    %state = attn.chunk.init_state %b, %h
    %state_0 = attn.chunk.loop %b, %h iter_args(%state) do {
    ^bb0(%t0: index, %st: !attn.state<?x?>):
      attn.yield %st : !attn.state<?x?>
    }
    %dst = attn.chunk.bwd.init %b, %h
    // expected-error @+1 {{'do'}}
    %dst_1 = attn.chunk.bwd.reverse_loop %b, %h iter_args(%dst) do {
    ^bb0(%t0: index):
      attn.yield %dst : !attn.state<?x?>
    }
    attn.yield
  }
}
