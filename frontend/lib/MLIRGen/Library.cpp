//===- Library.cpp - library mask patterns --------------------------------===//
//
// Library patterns are written in the .attn expression language itself and
// expanded at their call site, so they need no special support downstream:
// the block classifier sees the same integer predicates a user would write.
// The NATTEN per-axis rule follows NATTEN's reference mask (VARIANTS.md A3).
//
//===----------------------------------------------------------------------===//

#include "Library.h"
#include "attn/Frontend/MLIRGen.h"
#include "attn/Frontend/Parser.h"
#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/MemoryBuffer.h"
#include <mutex>

using namespace mlir;
using namespace mlir::attn;

namespace {
struct PatternText {
  const char *name;
  std::vector<const char *> params;   // "name" or "name=default"
  const char *body;
};
} // namespace

static const PatternText kPatterns[] = {
    {"causal", {}, "kv_idx <= q_idx + M - N"},
    {"causal_top_left", {}, "kv_idx <= q_idx"},
    {"sliding_window",
     {"w"},
     "kv_idx <= q_idx + M - N && q_idx + M - N - kv_idx < w"},
    {"sinks", {"s"}, "kv_idx < s"},
    {"prefix_lm", {"p"}, "kv_idx < p || kv_idx <= q_idx"},
    {"document", {"doc"}, "doc[b, q_idx] == doc[b, kv_idx]"},
    {"neighborhood_1d",
     {"kernel", "dilation=1", "stride=1", "causal=false"},
     "_na(q_idx, kv_idx, N, kernel, dilation, stride, causal)"},
    {"neighborhood_2d",
     {"height", "width", "kernel", "dilation=1", "stride=1", "causal=false"},
     "_na(q_idx // width, kv_idx // width, height, kernel, dilation, stride, "
     "causal) && _na(q_idx % width, kv_idx % width, width, kernel, dilation, "
     "stride, causal)"},
    {"neighborhood_3d",
     {"depth", "height", "width", "kernel", "dilation=1", "stride=1",
      "causal=false"},
     "_na(q_idx // (height * width), kv_idx // (height * width), depth, "
     "kernel, dilation, stride, causal) && _na((q_idx // width) % height, "
     "(kv_idx // width) % height, height, kernel, dilation, stride, causal) "
     "&& _na(q_idx % width, kv_idx % width, width, kernel, dilation, stride, "
     "causal)"},
    // One axis of NATTEN: coordinates i, j on an axis of length L, window
    // w, dilation d, stride s, causal c.
    {"_na",
     {"i", "j", "L", "w", "d", "s", "c"},
     "i % d == j % d && _na_lo(i // d, (L - i % d + d - 1) // d, w, s, c) <= "
     "j // d && j // d < _na_hi(i // d, (L - i % d + d - 1) // d, w, s, c)"},
    // The stride group's leader, whose window every member shares.
    {"_na_lead",
     {"ii", "Lg", "s", "c"},
     "select(c, min((ii // s) * s + s - 1, Lg - 1), min((ii // s) * s + s // "
     "2, Lg - 1))"},
    {"_na_lo",
     {"ii", "Lg", "w", "s", "c"},
     "select(c, max(_na_lead(ii, Lg, s, c) - w // 2 - (w // 2 + w % 2 - 1), "
     "0), max(_na_lead(ii, Lg, s, c) - w // 2, 0) + select(_na_lead(ii, Lg, "
     "s, c) + (w // 2 + w % 2 - 1) >= Lg, Lg - (w // 2 + w % 2 - 1) - "
     "_na_lead(ii, Lg, s, c) - 1, 0))"},
    {"_na_hi",
     {"ii", "Lg", "w", "s", "c"},
     "select(c, min(ii + 1, Lg), _na_lo(ii, Lg, w, s, c) + w)"},
};

namespace {
struct LibraryState {
  llvm::SourceMgr sourceMgr;
  llvm::StringMap<LibraryPattern> patterns;
  bool parsed = false;
};
} // namespace

static ast::ExprPtr parseLibraryText(LibraryState &state, MLIRContext *ctx,
                                     llvm::StringRef text,
                                     llvm::StringRef what) {
  unsigned id = state.sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(text, ("<library:" + what + ">").str()),
      llvm::SMLoc());
  SourceLocator locator(ctx, state.sourceMgr);
  ast::ExprPtr e = parseExpression(locator, id);
  if (!e)
    llvm::report_fatal_error("attnc: bad library pattern text");
  return e;
}

const LibraryPattern *mlir::attn::lookupLibraryPattern(llvm::StringRef name,
                                                       MLIRContext *ctx) {
  static LibraryState state;
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  if (!state.parsed) {
    state.parsed = true;
    for (const PatternText &p : kPatterns) {
      LibraryPattern pat;
      pat.name = p.name;
      pat.numRequired = 0;
      pat.isPublic = p.name[0] != '_';
      for (const char *param : p.params) {
        auto [pname, def] = llvm::StringRef(param).split('=');
        pat.params.push_back(pname);
        if (def.empty())
          ++pat.numRequired;
        else
          pat.defaults.push_back(parseLibraryText(state, ctx, def, p.name));
      }
      pat.body = parseLibraryText(state, ctx, p.body, p.name);
      state.patterns.try_emplace(p.name, std::move(pat));
    }
  }
  auto it = state.patterns.find(name);
  return it == state.patterns.end() ? nullptr : &it->second;
}

std::vector<std::string> mlir::attn::libraryPatternSignatures() {
  std::vector<std::string> out;
  for (const PatternText &p : kPatterns) {
    if (p.name[0] == '_')
      continue;
    std::string s = p.name;
    if (!p.params.empty()) {
      s += "(";
      for (size_t i = 0; i < p.params.size(); ++i)
        s += (i ? ", " : "") + std::string(p.params[i]);
      s += ")";
    }
    out.push_back(s);
  }
  return out;
}
