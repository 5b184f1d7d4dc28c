//===- TileAttention.cpp - choose the tiled schedule ----------------------===//
//
// Implements attn-tile-attention. The schedule is data, not structure: the
// backend conversions read it to size their loops, which keeps the algorithm
// (the spec) apart from the schedule (what the autotuner will override).
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect/Attn/Transforms/Passes.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNTILEATTENTION
#include "attn/Dialect/Attn/Transforms/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
using namespace mlir::attn;

namespace {
struct TileAttentionPass
    : public mlir::attn::impl::AttnTileAttentionBase<TileAttentionPass> {
  using AttnTileAttentionBase::AttnTileAttentionBase;

  void runOnOperation() override {
    AttentionOp att = getOperation().getAttention();
    if (!att)
      return; // linear attention: chunked, no tiles to choose yet
    int64_t vw = vectorWidth > 0 ? vectorWidth : 16;
    int64_t tq = tileQ, tkv = tileKV;
    if (ScheduleAttr old = att.getScheduleAttr()) {
      if (tq == 0 && tkv == 0 && old.getVectorWidth() == vw) {
        if (failed(checkMaxTiles(att, old.getTileQ(), old.getTileKv())))
          signalPassFailure();
        return;
      }
      // A new vector width invalidates a tile_q chosen for the old one.
      if (old.getVectorWidth() != vw && tq == 0 && old.getTileQ() % vw != 0)
        tq = 4 * vw;
      tq = tq ? tq : old.getTileQ();
      tkv = tkv ? tkv : old.getTileKv();
    }
    tq = tq ? tq : 4 * vw;
    tkv = tkv ? tkv : 64;
    if (tq % vw != 0 || tq <= 0 || tkv <= 0) {
      att.emitError() << "tile_q (" << tq
                      << ") must be a positive multiple of the vector width ("
                      << vw << ") and tile_kv (" << tkv << ") must be positive";
      return signalPassFailure();
    }
    if (failed(checkMaxTiles(att, tq, tkv)))
      return signalPassFailure();
    StringRef skip = "none";
    if (!att.getMask().empty()) {
      skip = "interval";
      att.getMask().walk([&](LoadOp) { skip = "interval+scan"; });
    }
    att.setScheduleAttr(ScheduleAttr::get(&getContext(), tq, tkv, vw, skip));
  }

  static LogicalResult checkMaxTiles(AttentionOp att, int64_t tq, int64_t tkv) {
    if (tq <= kMaxTileRows && tkv <= kMaxTileRows)
      return success();
    return att.emitError() << "tile_q (" << tq << ") and tile_kv (" << tkv
                           << ") must be at most " << kMaxTileRows << " rows";
  }
};
} // namespace
