//===- Driver.cpp - from .attn source to a verified attn module -----------===//

#include "attn/Frontend/Driver.h"
#include "attn/Dialect/Attn/Transforms/Passes.h"
#include "attn/Frontend/MLIRGen.h"
#include "attn/Frontend/Parser.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/thread.h"

using namespace mlir;
using namespace mlir::attn;

void mlir::attn::loadAttnDialects(MLIRContext &ctx) {
  ctx.loadDialect<AttnDialect, arith::ArithDialect, math::MathDialect>();
}

/// While alive, shortens the diagnostics emitted in `ctx` before whichever
/// handler the caller installed prints them: frontend messages quote the
/// user's names and tokens, which may be megabytes long.
static ScopedDiagnosticHandler shortenDiagnostics(MLIRContext &ctx) {
  return ScopedDiagnosticHandler(&ctx, [](Diagnostic &diag) {
    shortenDiagnostic(diag);
    return failure(); // not handled: on to the caller's handler
  });
}

/// Runs `fn` on a thread with a stack of its own. The parser and MLIRGen
/// recurse once per nesting level and expanded let (up to the frontend's
/// 2000-level limit), so how deep a spec may be must not depend on the
/// caller's stack: a JIT user's worker thread, `ulimit -s`, or the larger
/// frames of a sanitizer build. The stack is reserved, not committed: only
/// the pages a deep spec touches are used.
static void runOnFrontendStack(llvm::function_ref<void()> fn) {
  constexpr unsigned kFrontendStackBytes = 256u << 20;
  llvm::thread worker(std::optional<unsigned>(kFrontendStackBytes),
                      [&] { fn(); });
  worker.join();
}

std::unique_ptr<ast::Spec>
mlir::attn::parseSpecBuffer(MLIRContext &ctx, const llvm::SourceMgr &sourceMgr,
                            unsigned bufferID) {
  std::unique_ptr<ast::Spec> result;
  runOnFrontendStack([&] {
    ScopedDiagnosticHandler shorten = shortenDiagnostics(ctx);
    SourceLocator locator(&ctx, sourceMgr);
    result = parseSpec(locator, bufferID);
  });
  return result;
}

SpecOp mlir::attn::getSpec(ModuleOp module) {
  for (auto spec : module.getBody()->getOps<SpecOp>())
    return spec;
  return {};
}

OwningOpRef<ModuleOp> mlir::attn::loadSpec(MLIRContext &ctx,
                                           const llvm::SourceMgr &sourceMgr,
                                           unsigned bufferID,
                                           llvm::ArrayRef<std::string> params,
                                           std::string &paramError) {
  loadAttnDialects(ctx);
  ScopedDiagnosticHandler shorten = shortenDiagnostics(ctx);
  OwningOpRef<ModuleOp> module;
  runOnFrontendStack([&] {
    SourceLocator locator(&ctx, sourceMgr);
    std::unique_ptr<ast::Spec> ast = parseSpec(locator, bufferID);
    if (ast)
      module = mlirGen(locator, *ast);
  });
  if (!module)
    return nullptr;
  SpecOp spec = getSpec(*module);
  for (const std::string &kv : params) {
    auto [name, value] = llvm::StringRef(kv).split('=');
    if (!llvm::StringRef(kv).contains('=')) {
      paramError = "--param '" + kv + "' must be name=value";
      return nullptr;
    }
    std::string err = bindParam(spec, name.trim(), value);
    if (!err.empty()) {
      paramError = "--param " + kv + ": " + err;
      return nullptr;
    }
  }
  // After binding, before anything folds: overflow in compile-time integer
  // arithmetic is an error here, never a silent wrap.
  if (failed(checkConstantIntegers(spec)))
    return nullptr;
  PassManager pm(&ctx);
  pm.addPass(createCSEPass());
  if (failed(pm.run(*module)) || failed(mlir::verify(*module)))
    return nullptr;
  return module;
}

//===----------------------------------------------------------------------===//
// Diagnostics
//===----------------------------------------------------------------------===//

static bool isWordChar(char c) { return llvm::isAlnum(c) || c == '_'; }

std::string mlir::attn::shortenDiagnosticText(llvm::StringRef message) {
  std::string out;
  for (size_t i = 0, e = message.size(); i < e;) {
    if (!isWordChar(message[i])) {
      out += message[i++];
      continue;
    }
    size_t end = i;
    while (end < e && isWordChar(message[end]))
      ++end;
    if (end - i > kDiagMaxWordChars)
      out += message.substr(i, kDiagMaxWordChars).str() + "...";
    else
      out += message.slice(i, end).str();
    i = end;
  }
  return out;
}

void mlir::attn::shortenDiagnostic(Diagnostic &diag) {
  std::string text = diag.str();
  std::string shortText = shortenDiagnosticText(text);
  if (shortText != text) {
    // Replace the arguments by one string holding the shortened message.
    for (DiagnosticArgument &arg : diag.getArguments())
      arg = DiagnosticArgument(llvm::StringRef());
    diag << shortText;
  }
  for (Diagnostic &note : diag.getNotes())
    shortenDiagnostic(note);
}

SpecDiagnosticHandler::SpecDiagnosticHandler(llvm::SourceMgr &mgr,
                                             MLIRContext *ctx, raw_ostream &os)
    : SourceMgrDiagnosticHandler(mgr, ctx, os) {
  setHandler([this](Diagnostic &diag) {
    emit(diag);
    return success();
  });
}

SpecDiagnosticHandler::SpecDiagnosticHandler(llvm::SourceMgr &mgr,
                                             MLIRContext *ctx)
    : SpecDiagnosticHandler(mgr, ctx, llvm::errs()) {}

/// Line `line` (1-based) of `text` without its line break, lines ended as
/// lineStartOffsets() ends them; nullopt past the end.
static std::optional<llvm::StringRef> findLine(llvm::StringRef text,
                                               unsigned line) {
  size_t start = 0;
  for (unsigned l = 1; l < line; ++l) {
    size_t brk = text.find_first_of("\r\n", start);
    if (brk == llvm::StringRef::npos)
      return std::nullopt;
    start = brk + (text.substr(brk, 2) == "\r\n" ? 2 : 1);
  }
  return text.slice(start, text.find_first_of("\r\n", start));
}

std::optional<llvm::StringRef>
SpecDiagnosticHandler::ownSnippetLine(Location loc) {
  auto fileLoc = loc->findInstanceOf<FileLineColLoc>();
  if (!fileLoc)
    return std::nullopt;
  const llvm::MemoryBuffer *buffer =
      getBufferForFile(fileLoc.getFilename().getValue());
  if (!buffer)
    return std::nullopt;
  llvm::StringRef text = buffer->getBuffer();
  std::optional<llvm::StringRef> line = findLine(text, fileLoc.getLine());
  if (!line || (line->size() <= kDiagSnippetColumns && !hasLoneCR(text)))
    return std::nullopt;
  return line;
}

/// Prints `line` with a caret under 1-based column `col`: the whole line if
/// it is short, else kDiagSnippetColumns columns around the caret with "..."
/// where it was cut. Tabs and unprintable bytes show as one column each.
static void printSnippet(raw_ostream &os, llvm::StringRef line, unsigned col) {
  size_t caret = std::min<size_t>(col ? col - 1 : 0, line.size());
  size_t begin = 0, end = line.size();
  if (line.size() > kDiagSnippetColumns) {
    begin =
        caret > kDiagSnippetColumns / 2 ? caret - kDiagSnippetColumns / 2 : 0;
    begin = std::min(begin, line.size() - kDiagSnippetColumns);
    end = begin + kDiagSnippetColumns;
  }
  std::string shown = begin ? "..." : "";
  size_t caretColumn = shown.size() + caret - begin;
  for (char c : line.slice(begin, end))
    shown += c == '\t' ? ' ' : llvm::isPrint(c) ? c : '?';
  if (end < line.size())
    shown += "...";
  os << shown << "\n" << std::string(caretColumn, ' ') << "^\n";
}

void SpecDiagnosticHandler::emitOne(Location loc, llvm::StringRef message,
                                    DiagnosticSeverity severity) {
  std::optional<llvm::StringRef> line = ownSnippetLine(loc);
  if (!line) {
    emitDiagnostic(loc, message, severity);
    return;
  }
  emitDiagnostic(loc, message, severity, /*displaySourceLine=*/false);
  printSnippet(os, *line, loc->findInstanceOf<FileLineColLoc>().getColumn());
}

void SpecDiagnosticHandler::emit(Diagnostic &diag) {
  shortenDiagnostic(diag);
  bool ownSnippets = ownSnippetLine(diag.getLocation()).has_value() ||
                     llvm::any_of(diag.getNotes(), [&](Diagnostic &note) {
                       return ownSnippetLine(note.getLocation()).has_value();
                     });
  if (!ownSnippets) {
    emitDiagnostic(diag);
    return;
  }
  emitOne(diag.getLocation(), diag.str(), diag.getSeverity());
  for (Diagnostic &note : diag.getNotes())
    emitOne(note.getLocation(), note.str(), note.getSeverity());
}
