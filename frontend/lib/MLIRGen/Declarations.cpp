//===- Declarations.cpp - params and inputs -------------------------------===//
//
// `input` statements become attn.input ops, `param` statements attn.param
// ops whose default is a region. The checks that need only the declaration
// are SpecChecker's; a param's type is checked here because it is the type
// of its default expression unless declared.
//
//===----------------------------------------------------------------------===//

#include "MLIRGenImpl.h"

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::ast;
using namespace mlir::attn::mlirgen;

LogicalResult MLIRGenImpl::emitInput(const InputDecl &in) {
  FailureOr<Type> elt = checker.checkInput(in);
  if (failed(elt))
    return failure();
  llvm::SmallVector<Attribute> dims;
  for (const DimSpec &d : in.dims)
    dims.push_back(d.symbol.empty()
                       ? Attribute(builder.getI64IntegerAttr(d.size))
                       : Attribute(builder.getStringAttr(d.symbol)));
  InputOp::create(builder, loc(in.loc), in.name, *elt,
                  builder.getArrayAttr(dims));
  return success();
}

LogicalResult MLIRGenImpl::emitParam(const ParamDecl &p, size_t position) {
  Ty declared = Ty::Int;
  bool hasDeclared = !p.declaredType.empty();
  if (hasDeclared)
    declared = p.declaredType == "int" ? Ty::Int : Ty::Float;

  // The op's type is provisional until the default's type is known.
  auto op =
      ParamOp::create(builder, loc(p.loc), p.name,
                      hasDeclared ? mlirType(declared) : builder.getI64Type());
  Block *block = new Block();
  op.getDefaultValue().push_back(block);
  RegionCtx rc(AttnRegion::ParamDefault, OpBuilder::atBlockBegin(block),
               position);
  FailureOr<TValue> v = emit(*p.defaultValue, rc);
  if (failed(v))
    return failure();
  Ty ty = hasDeclared ? declared : v->ty;
  if (ty == Ty::Bool) {
    emitError(p.defaultValue->getLoc())
        << "param '" << p.name << "' must be an int or a float, got bool";
    return failure();
  }
  FailureOr<Value> value = coerce(*v, ty, rc, p.defaultValue->getLoc(),
                                  ("default of param '" + p.name + "'"));
  if (failed(value))
    return failure();
  op.setType(mlirType(ty));
  YieldOp::create(rc.builder, loc(p.loc), *value);
  paramTypes[p.name] = ty;
  return success();
}
