//===- Merge.cpp - attn::mergeStates, the LSE merge from C++ --------------===//
//
// A thin door to the runtime's attn_merge_states: the merge needs nothing
// compiled, so it lives beside Kernel::run with the same error convention
// (a status, and the message in attn_last_error()).
//
//===----------------------------------------------------------------------===//

#include "attn/JIT/Compiler.h"

attn_status_t attn::mergeStates(const DLTensor *oParts,
                                const DLTensor *lseParts, DLTensor *o,
                                DLTensor *lse,
                                const attn_run_options_t *options) {
  return attn_merge_states(oParts, lseParts, o, lse, options);
}
