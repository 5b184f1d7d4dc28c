//===- ASTDump.cpp - print the .attn AST ----------------------------------===//
//
// `attnc --emit=ast`: one node per line, indented, each with line:col, so a
// test can check both structure and locations.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/AST.h"
#include "llvm/Support/Casting.h"
#include "llvm/Support/Format.h"

using namespace mlir::attn::ast;

namespace {
class Dumper {
public:
  Dumper(const llvm::SourceMgr &sm, llvm::raw_ostream &os) : sm(sm), os(os) {}

  void loc(llvm::SMLoc l) {
    if (!l.isValid()) {
      os << " @?";
      return;
    }
    auto [line, col] = sm.getLineAndColumn(l);
    os << " @" << line << ":" << col;
  }
  void indent() { os.indent(depth * 2); }

  void expr(const Expr &e) {
    indent();
    if (auto *i = llvm::dyn_cast<IntExpr>(&e)) {
      os << "Int " << i->value;
    } else if (auto *f = llvm::dyn_cast<FloatExpr>(&e)) {
      os << "Float " << llvm::format("%g", f->value);
    } else if (auto *b = llvm::dyn_cast<BoolExpr>(&e)) {
      os << "Bool " << (b->value ? "true" : "false");
    } else if (auto *id = llvm::dyn_cast<IdentExpr>(&e)) {
      os << "Ident " << id->name;
    } else if (auto *u = llvm::dyn_cast<UnaryExpr>(&e)) {
      os << "Unary '" << u->op << "'";
      loc(e.getLoc());
      os << "\n";
      nested([&] { expr(*u->operand); });
      return;
    } else if (auto *bin = llvm::dyn_cast<BinaryExpr>(&e)) {
      os << "Binary '" << spelling(bin->op) << "'";
      loc(e.getLoc());
      os << "\n";
      nested([&] {
        expr(*bin->lhs);
        expr(*bin->rhs);
      });
      return;
    } else if (auto *c = llvm::dyn_cast<CallExpr>(&e)) {
      os << "Call " << c->callee;
      loc(e.getLoc());
      os << "\n";
      nested([&] { args(c->args); });
      return;
    } else if (auto *s = llvm::dyn_cast<SubscriptExpr>(&e)) {
      os << "Subscript " << s->tensor;
      loc(e.getLoc());
      os << "\n";
      nested([&] {
        for (const ExprPtr &i : s->indices)
          expr(*i);
      });
      return;
    }
    loc(e.getLoc());
    os << "\n";
  }

  void args(const std::vector<Arg> &as) {
    for (const Arg &a : as) {
      if (a.name.empty()) {
        expr(*a.value);
        continue;
      }
      indent();
      os << "NamedArg " << a.name;
      loc(a.nameLoc);
      os << "\n";
      nested([&] { expr(*a.value); });
    }
  }

  template <typename F> void nested(F f) {
    ++depth;
    f();
    --depth;
  }

  void spec(const Spec &s) {
    os << "Spec " << s.name;
    loc(s.loc);
    os << "\n";
    depth = 1;
    for (auto [kind, idx] : s.order) {
      indent();
      switch (kind) {
      case Spec::StmtKind::Param: {
        const ParamDecl &p = s.params[idx];
        os << "Param " << p.name;
        if (!p.declaredType.empty())
          os << " : " << p.declaredType;
        loc(p.loc);
        os << "\n";
        nested([&] { expr(*p.defaultValue); });
        break;
      }
      case Spec::StmtKind::Input: {
        const InputDecl &in = s.inputs[idx];
        os << "Input " << in.name << " : " << in.dtype << "[";
        for (size_t i = 0; i < in.dims.size(); ++i) {
          if (i)
            os << ", ";
          if (in.dims[i].symbol.empty())
            os << in.dims[i].size;
          else
            os << in.dims[i].symbol;
        }
        os << "]";
        loc(in.loc);
        os << "\n";
        break;
      }
      case Spec::StmtKind::Let: {
        const LetDecl &l = s.lets[idx];
        os << "Let " << l.name;
        loc(l.loc);
        os << "\n";
        nested([&] { expr(*l.value); });
        break;
      }
      case Spec::StmtKind::Mask:
      case Spec::StmtKind::Score:
      case Spec::StmtKind::Scale: {
        const Assignment &a = kind == Spec::StmtKind::Mask    ? *s.mask
                              : kind == Spec::StmtKind::Score ? *s.score
                                                              : *s.scale;
        os << (kind == Spec::StmtKind::Mask    ? "Mask"
               : kind == Spec::StmtKind::Score ? "Score"
                                               : "Scale");
        loc(a.loc);
        os << "\n";
        nested([&] { expr(*a.value); });
        break;
      }
      case Spec::StmtKind::Normalizer: {
        const NormalizerDecl &n = *s.normalizer;
        os << "Normalizer " << n.name;
        loc(n.loc);
        os << "\n";
        nested([&] { args(n.args); });
        break;
      }
      case Spec::StmtKind::Linear: {
        os << "Linear";
        loc(s.linear->loc);
        os << "\n";
        nested([&] {
          for (const LinearEntry &e : s.linear->entries) {
            indent();
            os << "Key " << e.key;
            loc(e.loc);
            os << "\n";
            nested([&] { expr(*e.value); });
          }
        });
        break;
      }
      }
    }
  }

private:
  const llvm::SourceMgr &sm;
  llvm::raw_ostream &os;
  unsigned depth = 0;
};
} // namespace

void mlir::attn::ast::dump(const Spec &spec, const llvm::SourceMgr &sourceMgr,
                           llvm::raw_ostream &os) {
  Dumper(sourceMgr, os).spec(spec);
}
