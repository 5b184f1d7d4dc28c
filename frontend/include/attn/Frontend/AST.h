//===- AST.h - .attn abstract syntax tree -----------------------*- C++ -*-===//
//
// The AST mirrors the surface syntax one to one; names are resolved and types
// checked later, in MLIRGen, which reports errors at these locations.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_FRONTEND_AST_H
#define ATTN_FRONTEND_AST_H

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/SMLoc.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mlir::attn::ast {

class Expr;
using ExprPtr = std::unique_ptr<Expr>;

/// A call argument: positional (`name` empty) or named (`name = value`).
struct Arg {
  std::string name;
  llvm::SMLoc nameLoc;
  ExprPtr value;
};

class Expr {
public:
  enum class Kind { Int, Float, Bool, Ident, Unary, Binary, Call, Subscript };
  Expr(Kind kind, llvm::SMLoc loc) : kind(kind), loc(loc) {}
  virtual ~Expr() = default;
  Kind getKind() const { return kind; }
  llvm::SMLoc getLoc() const { return loc; }
  /// Deep copy; every node of the copy gets `newLoc` when it is set (used to
  /// attribute library-pattern expansions to their call site).
  virtual ExprPtr clone(std::optional<llvm::SMLoc> newLoc = {}) const = 0;

protected:
  llvm::SMLoc locOr(std::optional<llvm::SMLoc> l) const { return l ? *l : loc; }

private:
  const Kind kind;
  llvm::SMLoc loc;
};

class IntExpr : public Expr {
public:
  IntExpr(llvm::SMLoc loc, int64_t value)
      : Expr(Kind::Int, loc), value(value) {}
  int64_t value;
  ExprPtr clone(std::optional<llvm::SMLoc> l = {}) const override {
    return std::make_unique<IntExpr>(locOr(l), value);
  }
  static bool classof(const Expr *e) { return e->getKind() == Kind::Int; }
};

class FloatExpr : public Expr {
public:
  FloatExpr(llvm::SMLoc loc, double value)
      : Expr(Kind::Float, loc), value(value) {}
  double value;
  ExprPtr clone(std::optional<llvm::SMLoc> l = {}) const override {
    return std::make_unique<FloatExpr>(locOr(l), value);
  }
  static bool classof(const Expr *e) { return e->getKind() == Kind::Float; }
};

class BoolExpr : public Expr {
public:
  BoolExpr(llvm::SMLoc loc, bool value) : Expr(Kind::Bool, loc), value(value) {}
  bool value;
  ExprPtr clone(std::optional<llvm::SMLoc> l = {}) const override {
    return std::make_unique<BoolExpr>(locOr(l), value);
  }
  static bool classof(const Expr *e) { return e->getKind() == Kind::Bool; }
};

class IdentExpr : public Expr {
public:
  IdentExpr(llvm::SMLoc loc, std::string name)
      : Expr(Kind::Ident, loc), name(std::move(name)) {}
  std::string name;
  ExprPtr clone(std::optional<llvm::SMLoc> l = {}) const override {
    return std::make_unique<IdentExpr>(locOr(l), name);
  }
  static bool classof(const Expr *e) { return e->getKind() == Kind::Ident; }
};

class UnaryExpr : public Expr {
public:
  /// `op` is '-' or '!'.
  UnaryExpr(llvm::SMLoc loc, char op, ExprPtr operand)
      : Expr(Kind::Unary, loc), op(op), operand(std::move(operand)) {}
  char op;
  ExprPtr operand;
  ExprPtr clone(std::optional<llvm::SMLoc> l = {}) const override {
    return std::make_unique<UnaryExpr>(locOr(l), op, operand->clone(l));
  }
  static bool classof(const Expr *e) { return e->getKind() == Kind::Unary; }
};

/// The binary operators: arithmetic, then comparisons, then logical ones
/// (isComparison relies on the comparisons being contiguous). `FloorDiv` is
/// `//` (integer floor division), `Mod` is `%` (floor modulo).
enum class BinaryOp {
  Add,
  Sub,
  Mul,
  Div,
  FloorDiv,
  Mod,
  Lt,
  Le,
  Gt,
  Ge,
  Eq,
  Ne,
  And,
  Or
};

/// The operator as written in source: diagnostics and `--emit=ast` quote it.
inline llvm::StringRef spelling(BinaryOp op) {
  switch (op) {
  case BinaryOp::Add:
    return "+";
  case BinaryOp::Sub:
    return "-";
  case BinaryOp::Mul:
    return "*";
  case BinaryOp::Div:
    return "/";
  case BinaryOp::FloorDiv:
    return "//";
  case BinaryOp::Mod:
    return "%";
  case BinaryOp::Lt:
    return "<";
  case BinaryOp::Le:
    return "<=";
  case BinaryOp::Gt:
    return ">";
  case BinaryOp::Ge:
    return ">=";
  case BinaryOp::Eq:
    return "==";
  case BinaryOp::Ne:
    return "!=";
  case BinaryOp::And:
    return "&&";
  case BinaryOp::Or:
    return "||";
  }
  return "?";
}

/// `<`, `<=`, `>`, `>=`, `==` or `!=`.
inline bool isComparison(BinaryOp op) {
  return op >= BinaryOp::Lt && op <= BinaryOp::Ne;
}

/// `&&` or `||`.
inline bool isLogical(BinaryOp op) {
  return op == BinaryOp::And || op == BinaryOp::Or;
}

class BinaryExpr : public Expr {
public:
  BinaryExpr(llvm::SMLoc loc, BinaryOp op, ExprPtr lhs, ExprPtr rhs)
      : Expr(Kind::Binary, loc), op(op), lhs(std::move(lhs)),
        rhs(std::move(rhs)) {}
  BinaryOp op;
  ExprPtr lhs, rhs;
  ExprPtr clone(std::optional<llvm::SMLoc> l = {}) const override {
    return std::make_unique<BinaryExpr>(locOr(l), op, lhs->clone(l),
                                        rhs->clone(l));
  }
  static bool classof(const Expr *e) { return e->getKind() == Kind::Binary; }
};

class CallExpr : public Expr {
public:
  CallExpr(llvm::SMLoc loc, std::string callee, std::vector<Arg> args)
      : Expr(Kind::Call, loc), callee(std::move(callee)),
        args(std::move(args)) {}
  std::string callee;
  std::vector<Arg> args;
  ExprPtr clone(std::optional<llvm::SMLoc> l = {}) const override {
    std::vector<Arg> copy;
    for (const Arg &a : args)
      copy.push_back(Arg{a.name, l ? *l : a.nameLoc, a.value->clone(l)});
    return std::make_unique<CallExpr>(locOr(l), callee, std::move(copy));
  }
  static bool classof(const Expr *e) { return e->getKind() == Kind::Call; }
};

class SubscriptExpr : public Expr {
public:
  SubscriptExpr(llvm::SMLoc loc, std::string tensor,
                std::vector<ExprPtr> indices)
      : Expr(Kind::Subscript, loc), tensor(std::move(tensor)),
        indices(std::move(indices)) {}
  std::string tensor;
  std::vector<ExprPtr> indices;
  ExprPtr clone(std::optional<llvm::SMLoc> l = {}) const override {
    std::vector<ExprPtr> copy;
    for (const ExprPtr &i : indices)
      copy.push_back(i->clone(l));
    return std::make_unique<SubscriptExpr>(locOr(l), tensor, std::move(copy));
  }
  static bool classof(const Expr *e) { return e->getKind() == Kind::Subscript; }
};

//===----------------------------------------------------------------------===//
// Statements
//===----------------------------------------------------------------------===//

/// `param NAME (: int|float)? = EXPR`
struct ParamDecl {
  llvm::SMLoc loc;
  std::string name;
  std::string declaredType; // "", "int" or "float"
  llvm::SMLoc typeLoc;
  ExprPtr defaultValue;
};

/// One dim of an input shape: a symbol or a fixed size.
struct DimSpec {
  llvm::SMLoc loc;
  std::string symbol; // empty when fixed
  int64_t size = 0;
};

/// `input NAME : DTYPE [DIM, ...]`
struct InputDecl {
  llvm::SMLoc loc;
  std::string name;
  std::string dtype;
  llvm::SMLoc dtypeLoc;
  std::vector<DimSpec> dims;
};

/// `let NAME = EXPR`
struct LetDecl {
  llvm::SMLoc loc;
  std::string name;
  ExprPtr value;
};

/// `mask = EXPR`, `score = EXPR` or `scale = EXPR`.
struct Assignment {
  llvm::SMLoc loc;
  ExprPtr value;
};

/// `normalizer = NAME` or `normalizer = NAME(ARGS)`.
struct NormalizerDecl {
  llvm::SMLoc loc;
  std::string name;
  llvm::SMLoc nameLoc;
  std::vector<Arg> args;
};

/// One `KEY = VALUE` entry of a `linear { ... }` block. The value is kept
/// as an expression; MLIRGen interprets it per key (a feature map name, a
/// bool literal, `inclusive`/`exclusive`, or a float expression).
struct LinearEntry {
  llvm::SMLoc loc; // the key
  std::string key;
  ExprPtr value;
};

/// `linear { KEY = VALUE ... }`: the spec is linear attention (tier 2).
/// Keys are unique (the parser checks) and kept in source order.
struct LinearDecl {
  llvm::SMLoc loc;
  std::vector<LinearEntry> entries;
  const LinearEntry *find(llvm::StringRef key) const {
    for (const LinearEntry &e : entries)
      if (e.key == key)
        return &e;
    return nullptr;
  }
};

/// `attention NAME { ... }`. Statement order is kept: names must be defined
/// before use, which MLIRGen checks by walking `order`.
struct Spec {
  llvm::SMLoc loc;
  std::string name;
  std::vector<ParamDecl> params;
  std::vector<InputDecl> inputs;
  std::vector<LetDecl> lets;
  std::optional<Assignment> mask, score, scale;
  std::optional<NormalizerDecl> normalizer;
  std::optional<LinearDecl> linear;
  /// Source order of every statement: (kind, index into its vector).
  enum class StmtKind {
    Param,
    Input,
    Let,
    Mask,
    Score,
    Scale,
    Normalizer,
    Linear
  };
  std::vector<std::pair<StmtKind, size_t>> order;
};

/// Prints the AST as an indented tree (`attnc --emit=ast`).
void dump(const Spec &spec, const llvm::SourceMgr &sourceMgr,
          llvm::raw_ostream &os);

} // namespace mlir::attn::ast

#endif // ATTN_FRONTEND_AST_H
