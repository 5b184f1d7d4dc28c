//===- FrontendFuzzer.cpp - libFuzzer target: .attn parse, MLIRGen, verify ===//
//
// Feeds arbitrary bytes to the frontend exactly as attnc does (loadSpec:
// parse, MLIRGen, CSE, verify) and checks what a user relies on:
//  - a rejected spec reported at least one error, and every error is located
//    in the spec (a FileLineColLoc naming the buffer, line and column within
//    it), so the user sees `file:line:col: error: ...`;
//  - an accepted spec's module is valid IR: printed in the attn dialect's
//    custom form it reparses (parseSourceString, which verifies) and prints
//    to the same text; the generic form round-trips the same way.
// Any crash, sanitizer report or broken invariant is a finding.
//
// Each input gets a fresh single-threaded MLIRContext, so nothing carries
// over from one input to the next (uniqued attributes would otherwise grow
// without bound over a long run).
//
//===----------------------------------------------------------------------===//

#include "FuzzCommon.h"

#include "attn/Frontend/Driver.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OperationSupport.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <string>
#include <vector>

using namespace mlir;
using namespace mlir::attn;
using ::attn::fuzz::invariantFailed;

namespace {

constexpr const char *kBufferName = "fuzz.attn";

/// An error diagnostic as the handler saw it.
struct SeenError {
  Location loc;
  std::string message;
};

std::string describe(const std::vector<SeenError> &errors) {
  std::string s;
  llvm::raw_string_ostream os(s);
  for (const SeenError &e : errors)
    os << e.loc << ": error: " << e.message << "\n";
  return s;
}

/// Lines of \p text when "\n", "\r\n" and a lone "\r" all end a line (the
/// most any convention can count).
unsigned countLines(llvm::StringRef text) {
  unsigned lines = 1;
  for (size_t i = 0; i < text.size(); ++i)
    if (text[i] == '\n' ||
        (text[i] == '\r' && (i + 1 == text.size() || text[i + 1] != '\n')))
      ++lines;
  return lines;
}

/// Every error must point into the spec: file name, a line that exists and a
/// column >= 1.
void checkLocated(const std::vector<SeenError> &errors, llvm::StringRef text) {
  unsigned lines = countLines(text);
  for (const SeenError &e : errors) {
    auto flc = dyn_cast<FileLineColLoc>(e.loc);
    if (!flc)
      invariantFailed("an error without a file:line:col location",
                      describe(errors));
    if (flc.getFilename() != kBufferName || flc.getLine() < 1 ||
        flc.getLine() > lines || flc.getColumn() < 1)
      invariantFailed("an error located outside the spec", describe(errors));
  }
}

std::string print(ModuleOp module, bool generic) {
  std::string s;
  llvm::raw_string_ostream os(s);
  OpPrintingFlags flags;
  if (generic)
    flags.printGenericOpForm();
  module->print(os, flags);
  return s;
}

/// print -> parse -> print must give the same text.
void checkRoundTrip(MLIRContext &ctx, ModuleOp module, bool generic,
                    std::vector<SeenError> &errors) {
  std::string first = print(module, generic);
  errors.clear();
  OwningOpRef<ModuleOp> reparsed =
      parseSourceString<ModuleOp>(first, ParserConfig(&ctx));
  const char *form = generic ? "generic" : "custom";
  if (!reparsed)
    invariantFailed(std::string("the ") + form +
                        " form of an accepted spec does not reparse",
                    first + "\n" + describe(errors));
  std::string second = print(*reparsed, generic);
  if (first != second)
    invariantFailed(std::string("the ") + form +
                        " form does not round-trip (print -> parse -> print)",
                    "--- first\n" + first + "--- second\n" + second);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  llvm::StringRef text(reinterpret_cast<const char *>(data), size);
  MLIRContext ctx(MLIRContext::Threading::DISABLED);
  std::vector<SeenError> errors;
  ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &d) {
    if (d.getSeverity() == DiagnosticSeverity::Error)
      errors.push_back({d.getLocation(), d.str()});
    return success(); // consumed: nothing is printed
  });

  llvm::SourceMgr sourceMgr;
  unsigned id = sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(text, kBufferName), llvm::SMLoc());
  std::string paramError;
  OwningOpRef<ModuleOp> module = loadSpec(ctx, sourceMgr, id, {}, paramError);
  if (!paramError.empty())
    invariantFailed("a param error without --param", paramError);

  if (!module) {
    if (errors.empty())
      invariantFailed("a rejected spec reported no error");
    checkLocated(errors, text);
    return 0;
  }
  if (!errors.empty())
    invariantFailed("an accepted spec reported errors", describe(errors));
  SpecOp spec = getSpec(*module);
  if (!spec)
    invariantFailed("an accepted spec produced no attn.spec");
  ::attn::Signature sig = getSignature(spec);
  if (sig.inputs.size() < 3 || sig.inputs[0].name != "q" ||
      sig.inputs[1].name != "k" || sig.inputs[2].name != "v")
    invariantFailed("the signature does not start with q, k, v");

  checkRoundTrip(ctx, *module, /*generic=*/false, errors);
  checkRoundTrip(ctx, *module, /*generic=*/true, errors);
  return 0;
}
