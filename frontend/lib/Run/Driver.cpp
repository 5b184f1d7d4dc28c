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

using namespace mlir;
using namespace mlir::attn;

void mlir::attn::loadAttnDialects(MLIRContext &ctx) {
  ctx.loadDialect<AttnDialect, arith::ArithDialect, math::MathDialect>();
}

std::unique_ptr<ast::Spec>
mlir::attn::parseSpecBuffer(MLIRContext &ctx, const llvm::SourceMgr &sourceMgr,
                            unsigned bufferID) {
  SourceLocator locator(&ctx, sourceMgr);
  return parseSpec(locator, bufferID);
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
  SourceLocator locator(&ctx, sourceMgr);
  std::unique_ptr<ast::Spec> ast = parseSpec(locator, bufferID);
  if (!ast)
    return nullptr;
  OwningOpRef<ModuleOp> module = mlirGen(locator, *ast);
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
  PassManager pm(&ctx);
  pm.addPass(createCSEPass());
  if (failed(pm.run(*module)) || failed(mlir::verify(*module)))
    return nullptr;
  return module;
}
