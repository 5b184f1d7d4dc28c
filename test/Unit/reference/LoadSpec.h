//===- LoadSpec.h - specs from text for the reference tests -----*- C++ -*-===//
//
// Loads a spec through the driver API (parse, MLIRGen, bind params) and
// keeps the context, source and diagnostics alive beside it.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TEST_UNIT_REFERENCE_LOADSPEC_H
#define ATTN_TEST_UNIT_REFERENCE_LOADSPEC_H

#include "attn/Frontend/Driver.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace attn_test {

/// A spec loaded from text, with the context and source it lives in.
struct Loaded {
  std::string text;
  mlir::MLIRContext ctx;
  llvm::SourceMgr sourceMgr;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  mlir::attn::SpecOp spec;
  std::string diagnostics;
};

inline std::unique_ptr<Loaded> load(const std::string &text,
                                    const std::vector<std::string> &params = {},
                                    const std::string &name = "<test>") {
  auto l = std::make_unique<Loaded>();
  l->text = text;
  unsigned id = l->sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBuffer(l->text, name), llvm::SMLoc());
  mlir::ScopedDiagnosticHandler handler(&l->ctx, [&](mlir::Diagnostic &d) {
    l->diagnostics += d.str() + "\n";
    return mlir::success();
  });
  std::string paramError;
  l->module =
      mlir::attn::loadSpec(l->ctx, l->sourceMgr, id, params, paramError);
  EXPECT_EQ(paramError, "");
  EXPECT_TRUE(l->module) << "spec did not load:\n" << l->diagnostics << text;
  if (!l->module)
    return nullptr;
  l->spec = mlir::attn::getSpec(*l->module);
  return l;
}

} // namespace attn_test

#endif // ATTN_TEST_UNIT_REFERENCE_LOADSPEC_H
