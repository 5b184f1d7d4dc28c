//===- AttnChunkBackwardOps.cpp - linear attention's gradients' ops -------===//

#include "attn/Dialect/Attn/IR/AttnOps.h"

using namespace mlir;
using namespace mlir::attn;

void TiledLinearAttentionBackwardOp::getAsmBlockArgumentNames(
    Region &region, OpAsmSetValueNameFn setName) {
  if (&region != &getBody() || region.empty())
    return;
  static constexpr const char *kNames[] = {"b", "h"};
  for (auto [arg, name] : llvm::zip(region.getArguments(), kNames))
    setName(arg, name);
}

LogicalResult ChunkBwdSaveOp::verify() {
  // Checkpoints are only read by a reverse scan, so only the gradients'
  // forward scan takes them.
  if (!(*this)->getParentOfType<TiledLinearAttentionBackwardOp>())
    return emitOpError() << "only the forward scan of an "
                            "'attn.tiled_linear_attention_backward' keeps "
                            "checkpoints";
  return success();
}

LogicalResult ChunkBwdReverseLoopOp::verifyRegions() {
  Type state = getInit().getType();
  return mlir::attn::detail::verifyRegionSignature(
      *this, getBody(), "do", {IndexType::get(getContext()), state}, state,
      false);
}

void ChunkBwdReverseLoopOp::getAsmBlockArgumentNames(
    Region &region, OpAsmSetValueNameFn setName) {
  if (region.empty())
    return;
  static constexpr const char *kNames[] = {"t0", "dst"};
  for (auto [arg, name] : llvm::zip(region.getArguments(), kNames))
    setName(arg, name);
}

void ChunkBwdReverseLoopOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "dst");
}
void ChunkBwdInitOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "dst");
}
void ChunkBwdRestoreOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "st");
}
void ChunkBwdGradOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "dst");
}
void ChunkBwdReadoutAllOp::getAsmResultNames(OpAsmSetValueNameFn setName) {
  setName(getResult(), "dst");
}
