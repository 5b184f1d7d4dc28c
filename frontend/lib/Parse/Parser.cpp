//===- Parser.cpp - .attn recursive-descent parser ------------------------===//
//
// Each method parses one grammar rule, written above it. Errors are reported
// once, through MLIR diagnostics, and parsing stops at the first one.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/Parser.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"
#include <algorithm>
#include <cmath>

using namespace mlir;
using namespace mlir::attn;
using namespace mlir::attn::ast;

std::vector<size_t> mlir::attn::lineStartOffsets(llvm::StringRef text) {
  std::vector<size_t> starts = {0};
  for (size_t i = 0, e = text.size(); i < e; ++i) {
    if (text[i] == '\r' && i + 1 < e && text[i + 1] == '\n')
      ++i;
    if (text[i] == '\n' || text[i] == '\r')
      starts.push_back(i + 1);
  }
  return starts;
}

bool mlir::attn::hasLoneCR(llvm::StringRef text) {
  for (size_t i = text.find('\r'); i != llvm::StringRef::npos;
       i = text.find('\r', i + 1))
    if (i + 1 == text.size() || text[i + 1] != '\n')
      return true;
  return false;
}

const std::vector<size_t> &
SourceLocator::crLineStarts(unsigned bufferID) const {
  auto [it, inserted] = lineStartsCache.try_emplace(bufferID);
  if (inserted) {
    llvm::StringRef text = sourceMgr.getMemoryBuffer(bufferID)->getBuffer();
    if (hasLoneCR(text))
      it->second = lineStartOffsets(text);
  }
  return it->second;
}

Location SourceLocator::get(llvm::SMLoc loc) const {
  unsigned bufferID = sourceMgr.FindBufferContainingLoc(loc);
  if (!bufferID)
    return UnknownLoc::get(ctx);
  const llvm::MemoryBuffer *buffer = sourceMgr.getMemoryBuffer(bufferID);
  unsigned line, col;
  const std::vector<size_t> &starts = crLineStarts(bufferID);
  if (starts.empty()) {
    std::tie(line, col) = sourceMgr.getLineAndColumn(loc, bufferID);
  } else {
    size_t offset = loc.getPointer() - buffer->getBufferStart();
    auto next = std::upper_bound(starts.begin(), starts.end(), offset);
    line = next - starts.begin();
    col = offset - *std::prev(next) + 1;
  }
  return FileLineColLoc::get(ctx, buffer->getBufferIdentifier(), line, col);
}

namespace {
class Parser {
public:
  Parser(const SourceLocator &locator, unsigned bufferID)
      : locator(locator), lexer(locator.getSourceMgr(), bufferID),
        tok(lexer.lex()) {}

  std::unique_ptr<Spec> parseFile();
  ExprPtr parseStandaloneExpr();

private:
  //===--------------------------------------------------------------------===//
  // Helpers
  //===--------------------------------------------------------------------===//

  void consume() { tok = lexer.lex(); }
  bool consumeIf(Token::Kind k) {
    if (!tok.is(k))
      return false;
    consume();
    return true;
  }
  InFlightDiagnostic emitError(llvm::SMLoc loc) {
    hadError = true;
    return mlir::emitError(locator.get(loc));
  }
  /// "expected X, got Y" at the current token.
  LogicalResult emitExpected(llvm::StringRef what) {
    if (tok.is(Token::error)) {
      auto diag = emitError(tok.getLoc());
      unsigned char c = tok.spelling.front();
      if (tok.spelling.size() == 1 && (c >= 0x80 || !llvm::isPrint(c)))
        // Do not echo a stray byte: it may not be printable or valid UTF-8.
        diag << "invalid character (byte 0x" << llvm::hexdigit(c >> 4)
             << llvm::hexdigit(c & 15)
             << "); .attn source is ASCII outside comments";
      else if (tok.spelling == "&" || tok.spelling == "|")
        diag << "invalid token '" << tok.spelling << "'; did you mean '"
             << tok.spelling << tok.spelling << "'?";
      else
        diag << "invalid token '" << tok.spelling << "'; expected " << what;
      return failure();
    }
    auto diag = emitError(tok.getLoc()) << "expected " << what << ", got ";
    if (tok.is(Token::eof))
      diag << "end of file";
    else
      diag << "'" << tok.spelling << "'";
    return failure();
  }
  LogicalResult expect(Token::Kind k, llvm::StringRef context = "") {
    if (consumeIf(k))
      return success();
    std::string what = Token::describe(k).str();
    if (!context.empty())
      what += " " + context.str();
    return emitExpected(what);
  }
  bool isStatementStart() const {
    return tok.is(Token::kw_param) || tok.is(Token::kw_input) ||
           tok.is(Token::kw_let) || tok.is(Token::kw_mask) ||
           tok.is(Token::kw_score) || tok.is(Token::kw_scale) ||
           tok.is(Token::kw_normalizer) || tok.is(Token::kw_linear) ||
           tok.is(Token::r_brace);
  }

  LogicalResult parseStatement(Spec &spec);
  LogicalResult parseParam(Spec &spec);
  LogicalResult parseInput(Spec &spec);
  LogicalResult parseLet(Spec &spec);
  LogicalResult parseAssignment(Spec &spec, Spec::StmtKind kind);
  LogicalResult parseNormalizer(Spec &spec);
  LogicalResult parseLinear(Spec &spec);
  /// Reports `stmt` (mask, score or normalizer at `loc`) in a spec with a
  /// linear block at `linearLoc`.
  LogicalResult emitLinearConflict(llvm::StringRef stmt, llvm::SMLoc loc,
                                   llvm::SMLoc linearLoc);
  LogicalResult parseArgs(std::vector<Arg> &args);
  LogicalResult checkNotDefined(Spec &spec, llvm::StringRef name,
                                llvm::SMLoc loc);

  /// Guards recursion (parentheses, call arguments, subscripts, unary
  /// operators) and tree depth: later passes walk the AST recursively, so an
  /// absurdly nested expression is an error rather than a stack overflow.
  static constexpr unsigned kMaxExprDepth = 1000;
  LogicalResult enterNested();
  void exitNested() { --nesting; }
  /// Records the depth of a new node with children `children` (leaves have
  /// depth 1); null after an error if the tree gets deeper than the limit.
  ExprPtr withDepth(ExprPtr node, llvm::ArrayRef<const Expr *> children);

  ExprPtr parseExpr();
  ExprPtr parseOr();
  ExprPtr parseAnd();
  ExprPtr parseNot();
  ExprPtr parseComparison();
  ExprPtr parseAdditive();
  ExprPtr parseMultiplicative();
  ExprPtr parseUnary();
  ExprPtr parsePrimary();

  const SourceLocator &locator;
  Lexer lexer;
  Token tok;
  bool hadError = false;
  /// Statement names seen so far, for duplicate-definition errors.
  llvm::StringMap<llvm::SMLoc> defined;
  unsigned nesting = 0;
  llvm::DenseMap<const Expr *, unsigned> depths;
};
} // namespace

/// file := 'attention' IDENT '{' statement* '}' EOF
std::unique_ptr<Spec> Parser::parseFile() {
  auto spec = std::make_unique<Spec>();
  spec->loc = tok.getLoc();
  if (failed(expect(Token::kw_attention, "to start a spec")))
    return nullptr;
  if (!tok.is(Token::identifier)) {
    (void)emitExpected("spec name after 'attention'");
    return nullptr;
  }
  spec->name = tok.spelling.str();
  consume();
  if (failed(expect(Token::l_brace, "to open the spec body")))
    return nullptr;
  while (!tok.is(Token::r_brace)) {
    if (tok.is(Token::eof)) {
      emitError(tok.getLoc())
          << "expected '}' to close spec '" << spec->name << "'";
      return nullptr;
    }
    if (failed(parseStatement(*spec)))
      return nullptr;
  }
  consume();
  if (!tok.is(Token::eof)) {
    if (tok.is(Token::kw_attention))
      emitError(tok.getLoc()) << "only one 'attention' spec per file";
    else
      (void)emitExpected("end of file after the spec");
    return nullptr;
  }
  return spec;
}

ExprPtr Parser::parseStandaloneExpr() {
  ExprPtr e = parseExpr();
  if (!e)
    return nullptr;
  if (!tok.is(Token::eof)) {
    (void)emitExpected("end of expression");
    return nullptr;
  }
  return e;
}

/// statement := param | input | let | mask | score | scale | normalizer
///            | linear
LogicalResult Parser::parseStatement(Spec &spec) {
  switch (tok.kind) {
  case Token::kw_param:
    return parseParam(spec);
  case Token::kw_input:
    return parseInput(spec);
  case Token::kw_let:
    return parseLet(spec);
  case Token::kw_mask:
    return parseAssignment(spec, Spec::StmtKind::Mask);
  case Token::kw_score:
    return parseAssignment(spec, Spec::StmtKind::Score);
  case Token::kw_scale:
    return parseAssignment(spec, Spec::StmtKind::Scale);
  case Token::kw_normalizer:
    return parseNormalizer(spec);
  case Token::kw_linear:
    return parseLinear(spec);
  default:
    return emitExpected("a statement (param, input, let, mask, score, scale, "
                        "normalizer or linear)");
  }
}

LogicalResult Parser::checkNotDefined(Spec &spec, llvm::StringRef name,
                                      llvm::SMLoc loc) {
  auto it = defined.find(name);
  if (it == defined.end()) {
    defined[name] = loc;
    return success();
  }
  emitError(loc) << "'" << name << "' is already defined";
  mlir::emitRemark(locator.get(it->second)) << "previous definition is here";
  return failure();
}

/// param := 'param' IDENT (':' ('int' | 'float'))? '=' expr
LogicalResult Parser::parseParam(Spec &spec) {
  ParamDecl decl;
  decl.loc = tok.getLoc();
  consume();
  if (!tok.is(Token::identifier))
    return emitExpected("param name");
  decl.name = tok.spelling.str();
  llvm::SMLoc nameLoc = tok.getLoc();
  consume();
  if (consumeIf(Token::colon)) {
    if (!tok.is(Token::identifier) ||
        (tok.spelling != "int" && tok.spelling != "float"))
      return emitExpected("param type 'int' or 'float'");
    decl.declaredType = tok.spelling.str();
    decl.typeLoc = tok.getLoc();
    consume();
  }
  if (failed(expect(Token::equal, "and a default value after the param name")))
    return failure();
  decl.defaultValue = parseExpr();
  if (!decl.defaultValue || failed(checkNotDefined(spec, decl.name, nameLoc)))
    return failure();
  spec.order.push_back({Spec::StmtKind::Param, spec.params.size()});
  spec.params.push_back(std::move(decl));
  return success();
}

/// input := 'input' IDENT ':' IDENT '[' dim (',' dim)* ']'
/// dim   := IDENT | INT
LogicalResult Parser::parseInput(Spec &spec) {
  InputDecl decl;
  decl.loc = tok.getLoc();
  consume();
  if (!tok.is(Token::identifier))
    return emitExpected("input name");
  decl.name = tok.spelling.str();
  llvm::SMLoc nameLoc = tok.getLoc();
  consume();
  if (failed(expect(Token::colon, "after the input name")))
    return failure();
  if (!tok.is(Token::identifier))
    return emitExpected("element type (f32, bf16, f16 or i32)");
  decl.dtype = tok.spelling.str();
  decl.dtypeLoc = tok.getLoc();
  consume();
  if (failed(expect(Token::l_square, "to start the shape")))
    return failure();
  do {
    DimSpec dim;
    dim.loc = tok.getLoc();
    if (tok.is(Token::identifier)) {
      dim.symbol = tok.spelling.str();
    } else if (tok.is(Token::integer)) {
      if (tok.spelling.getAsInteger(10, dim.size) || dim.size <= 0) {
        emitError(tok.getLoc()) << "dim size must be a positive integer";
        return failure();
      }
    } else {
      return emitExpected("dim (a symbol like N or a positive integer)");
    }
    consume();
    decl.dims.push_back(std::move(dim));
  } while (consumeIf(Token::comma));
  if (failed(expect(Token::r_square, "to end the shape")))
    return failure();
  if (failed(checkNotDefined(spec, decl.name, nameLoc)))
    return failure();
  spec.order.push_back({Spec::StmtKind::Input, spec.inputs.size()});
  spec.inputs.push_back(std::move(decl));
  return success();
}

/// let := 'let' IDENT '=' expr
LogicalResult Parser::parseLet(Spec &spec) {
  LetDecl decl;
  decl.loc = tok.getLoc();
  consume();
  if (!tok.is(Token::identifier))
    return emitExpected("name after 'let'");
  decl.name = tok.spelling.str();
  llvm::SMLoc nameLoc = tok.getLoc();
  consume();
  if (failed(expect(Token::equal, "after the let name")))
    return failure();
  decl.value = parseExpr();
  if (!decl.value || failed(checkNotDefined(spec, decl.name, nameLoc)))
    return failure();
  spec.order.push_back({Spec::StmtKind::Let, spec.lets.size()});
  spec.lets.push_back(std::move(decl));
  return success();
}

/// mask := 'mask' '=' expr ; score := 'score' '=' expr ; scale := ...
LogicalResult Parser::parseAssignment(Spec &spec, Spec::StmtKind kind) {
  llvm::SMLoc loc = tok.getLoc();
  llvm::StringRef what = tok.spelling;
  std::optional<Assignment> &slot = kind == Spec::StmtKind::Mask ? spec.mask
                                    : kind == Spec::StmtKind::Score
                                        ? spec.score
                                        : spec.scale;
  if (slot) {
    emitError(loc) << "'" << what << "' is already set";
    mlir::emitRemark(locator.get(slot->loc)) << "previous definition is here";
    return failure();
  }
  if (spec.linear && kind != Spec::StmtKind::Scale)
    return emitLinearConflict(what, loc, spec.linear->loc);
  consume();
  if (failed(expect(Token::equal, ("after '" + what + "'").str())))
    return failure();
  ExprPtr value = parseExpr();
  if (!value)
    return failure();
  slot = Assignment{loc, std::move(value)};
  spec.order.push_back({kind, 0});
  return success();
}

/// normalizer := 'normalizer' '=' IDENT ('(' args? ')')?
LogicalResult Parser::parseNormalizer(Spec &spec) {
  llvm::SMLoc loc = tok.getLoc();
  if (spec.normalizer) {
    emitError(loc) << "'normalizer' is already set";
    mlir::emitRemark(locator.get(spec.normalizer->loc))
        << "previous definition is here";
    return failure();
  }
  if (spec.linear)
    return emitLinearConflict("normalizer", loc, spec.linear->loc);
  consume();
  if (failed(expect(Token::equal, "after 'normalizer'")))
    return failure();
  NormalizerDecl decl;
  decl.loc = loc;
  if (!tok.is(Token::identifier))
    return emitExpected("normalizer name (softmax, sigmoid, relu or none)");
  decl.name = tok.spelling.str();
  decl.nameLoc = tok.getLoc();
  consume();
  if (consumeIf(Token::l_paren)) {
    if (!tok.is(Token::r_paren) && failed(parseArgs(decl.args)))
      return failure();
    if (failed(expect(Token::r_paren, "to close the normalizer arguments")))
      return failure();
  }
  spec.normalizer = std::move(decl);
  spec.order.push_back({Spec::StmtKind::Normalizer, 0});
  return success();
}

/// The keys of a linear block.
static const llvm::StringRef kLinearKeys[] = {
    "feature_map", "feature_map_q", "feature_map_k", "gate", "delta",
    "normalize",   "causal",        "readout",       "bonus"};
static const char kLinearKeyList[] = "feature_map, feature_map_q, "
                                     "feature_map_k, gate, delta, normalize, "
                                     "causal, readout, bonus";

LogicalResult Parser::emitLinearConflict(llvm::StringRef stmt, llvm::SMLoc loc,
                                         llvm::SMLoc linearLoc) {
  {
    auto diag = emitError(loc);
    if (stmt == "mask")
      diag << "linear attention has no mask; remove 'mask' (a linear block "
              "is causal unless it says 'causal = false')";
    else if (stmt == "score")
      diag << "linear attention has no score modification; remove 'score'";
    else
      diag << "linear attention has no 'normalizer'; write 'normalize = "
              "true' in the linear block instead";
  } // report the error before the remark
  if (linearLoc.isValid())
    mlir::emitRemark(locator.get(linearLoc)) << "the linear block is here";
  return failure();
}

/// linear := 'linear' '{' { IDENT '=' expr } '}'
LogicalResult Parser::parseLinear(Spec &spec) {
  llvm::SMLoc loc = tok.getLoc();
  if (spec.linear) {
    emitError(loc) << "'linear' is already set";
    mlir::emitRemark(locator.get(spec.linear->loc))
        << "previous definition is here";
    return failure();
  }
  // A mask, score or normalizer before the block: the error goes to that
  // statement, as when it comes after the block.
  if (spec.mask)
    return emitLinearConflict("mask", spec.mask->loc, loc);
  if (spec.score)
    return emitLinearConflict("score", spec.score->loc, loc);
  if (spec.normalizer)
    return emitLinearConflict("normalizer", spec.normalizer->loc, loc);
  consume();
  if (failed(expect(Token::l_brace, "to open the linear block")))
    return failure();
  LinearDecl decl;
  decl.loc = loc;
  while (!tok.is(Token::r_brace)) {
    if (tok.is(Token::eof)) {
      emitError(tok.getLoc()) << "expected '}' to close the linear block";
      return failure();
    }
    if (tok.is(Token::kw_scale)) {
      emitError(tok.getLoc()) << "'scale' is a top-level statement; write it "
                                 "outside the linear block";
      return failure();
    }
    if (tok.is(Token::kw_mask) || tok.is(Token::kw_score) ||
        tok.is(Token::kw_normalizer))
      return emitLinearConflict(tok.spelling, tok.getLoc(), {});
    if (!tok.is(Token::identifier))
      return emitExpected(std::string("a linear key (") + kLinearKeyList +
                          ") or '}'");
    LinearEntry entry;
    entry.loc = tok.getLoc();
    entry.key = tok.spelling.str();
    if (!llvm::is_contained(kLinearKeys, entry.key)) {
      emitError(entry.loc) << "unknown key '" << entry.key
                           << "' in the linear block (keys: " << kLinearKeyList
                           << ")";
      return failure();
    }
    if (const LinearEntry *prev = decl.find(entry.key)) {
      emitError(entry.loc) << "'" << entry.key
                           << "' is already set in the linear block";
      mlir::emitRemark(locator.get(prev->loc)) << "previous definition is here";
      return failure();
    }
    // `feature_map` sets both maps; `feature_map_q`/`_k` set one each.
    llvm::StringRef key = entry.key;
    const LinearEntry *clash = nullptr;
    if (key == "feature_map")
      clash = decl.find("feature_map_q") ? decl.find("feature_map_q")
                                         : decl.find("feature_map_k");
    else if (key == "feature_map_q" || key == "feature_map_k")
      clash = decl.find("feature_map");
    if (clash) {
      emitError(entry.loc) << "'" << key << "' conflicts with '" << clash->key
                           << "' ('feature_map' sets the maps of both q and "
                              "k; 'feature_map_q' and 'feature_map_k' set "
                              "one each)";
      mlir::emitRemark(locator.get(clash->loc))
          << "'" << clash->key << "' is here";
      return failure();
    }
    consume();
    if (failed(expect(Token::equal, ("after '" + key + "'").str())))
      return failure();
    entry.value = parseExpr();
    if (!entry.value)
      return failure();
    decl.entries.push_back(std::move(entry));
  }
  consume();
  spec.linear = std::move(decl);
  spec.order.push_back({Spec::StmtKind::Linear, 0});
  return success();
}

/// args := arg (',' arg)* ; arg := IDENT '=' expr | expr
LogicalResult Parser::parseArgs(std::vector<Arg> &args) {
  do {
    Arg arg;
    // A named argument is IDENT '='; peek by lexing from a copy.
    if (tok.is(Token::identifier)) {
      Lexer peek = lexer;
      if (peek.lex().is(Token::equal)) {
        arg.name = tok.spelling.str();
        arg.nameLoc = tok.getLoc();
        consume();
        consume();
      }
    }
    if (arg.name.empty() && !args.empty() && !args.back().name.empty()) {
      emitError(tok.getLoc()) << "positional argument after a named argument";
      return failure();
    }
    arg.value = parseExpr();
    if (!arg.value)
      return failure();
    args.push_back(std::move(arg));
  } while (consumeIf(Token::comma));
  return success();
}

//===----------------------------------------------------------------------===//
// Expressions
//===----------------------------------------------------------------------===//

LogicalResult Parser::enterNested() {
  if (nesting >= kMaxExprDepth) {
    emitError(tok.getLoc()) << "expression is nested too deeply (more than "
                            << kMaxExprDepth << " levels)";
    return failure();
  }
  ++nesting;
  return success();
}

ExprPtr Parser::withDepth(ExprPtr node, llvm::ArrayRef<const Expr *> children) {
  unsigned depth = 0;
  for (const Expr *child : children) {
    auto it = depths.find(child);
    depth = std::max(depth, it == depths.end() ? 1u : it->second);
  }
  if (++depth > kMaxExprDepth) {
    emitError(node->getLoc()) << "expression is nested too deeply (more than "
                              << kMaxExprDepth << " levels)";
    return nullptr;
  }
  depths[node.get()] = depth;
  return node;
}

/// expr := or
ExprPtr Parser::parseExpr() {
  if (failed(enterNested()))
    return nullptr;
  ExprPtr e = parseOr();
  exitNested();
  return e;
}

/// or := and ('||' and)*
ExprPtr Parser::parseOr() {
  ExprPtr lhs = parseAnd();
  while (lhs && tok.is(Token::pipe_pipe)) {
    llvm::SMLoc loc = tok.getLoc();
    consume();
    ExprPtr rhs = parseAnd();
    if (!rhs)
      return nullptr;
    const Expr *children[] = {lhs.get(), rhs.get()};
    lhs = withDepth(std::make_unique<BinaryExpr>(
                        loc, BinaryOp::Or, std::move(lhs), std::move(rhs)),
                    children);
  }
  return lhs;
}

/// and := not ('&&' not)*
ExprPtr Parser::parseAnd() {
  ExprPtr lhs = parseNot();
  while (lhs && tok.is(Token::amp_amp)) {
    llvm::SMLoc loc = tok.getLoc();
    consume();
    ExprPtr rhs = parseNot();
    if (!rhs)
      return nullptr;
    const Expr *children[] = {lhs.get(), rhs.get()};
    lhs = withDepth(std::make_unique<BinaryExpr>(
                        loc, BinaryOp::And, std::move(lhs), std::move(rhs)),
                    children);
  }
  return lhs;
}

/// not := '!' not | comparison
ExprPtr Parser::parseNot() {
  if (tok.is(Token::exclaim)) {
    llvm::SMLoc loc = tok.getLoc();
    consume();
    if (failed(enterNested()))
      return nullptr;
    ExprPtr operand = parseNot();
    exitNested();
    if (!operand)
      return nullptr;
    const Expr *child = operand.get();
    return withDepth(std::make_unique<UnaryExpr>(loc, '!', std::move(operand)),
                     child);
  }
  return parseComparison();
}

/// The binary operator a token spells, if any.
static std::optional<BinaryOp> binaryOpOf(Token::Kind k) {
  switch (k) {
  case Token::plus:
    return BinaryOp::Add;
  case Token::minus:
    return BinaryOp::Sub;
  case Token::star:
    return BinaryOp::Mul;
  case Token::slash:
    return BinaryOp::Div;
  case Token::slashslash:
    return BinaryOp::FloorDiv;
  case Token::percent:
    return BinaryOp::Mod;
  case Token::less:
    return BinaryOp::Lt;
  case Token::less_equal:
    return BinaryOp::Le;
  case Token::greater:
    return BinaryOp::Gt;
  case Token::greater_equal:
    return BinaryOp::Ge;
  case Token::equal_equal:
    return BinaryOp::Eq;
  case Token::not_equal:
    return BinaryOp::Ne;
  case Token::amp_amp:
    return BinaryOp::And;
  case Token::pipe_pipe:
    return BinaryOp::Or;
  default:
    return std::nullopt;
  }
}

static bool isComparisonToken(Token::Kind k) {
  std::optional<BinaryOp> op = binaryOpOf(k);
  return op && isComparison(*op);
}

/// comparison := additive (cmpop additive)?   (non-associative)
ExprPtr Parser::parseComparison() {
  ExprPtr lhs = parseAdditive();
  if (!lhs || !isComparisonToken(tok.kind))
    return lhs;
  llvm::SMLoc loc = tok.getLoc();
  BinaryOp op = *binaryOpOf(tok.kind);
  consume();
  ExprPtr rhs = parseAdditive();
  if (!rhs)
    return nullptr;
  if (isComparisonToken(tok.kind)) {
    emitError(tok.getLoc())
        << "comparisons do not chain; write 'a < b && b < c'";
    return nullptr;
  }
  const Expr *children[] = {lhs.get(), rhs.get()};
  return withDepth(
      std::make_unique<BinaryExpr>(loc, op, std::move(lhs), std::move(rhs)),
      children);
}

/// additive := multiplicative (('+' | '-') multiplicative)*
ExprPtr Parser::parseAdditive() {
  ExprPtr lhs = parseMultiplicative();
  while (lhs && (tok.is(Token::plus) || tok.is(Token::minus))) {
    llvm::SMLoc loc = tok.getLoc();
    BinaryOp op = *binaryOpOf(tok.kind);
    consume();
    ExprPtr rhs = parseMultiplicative();
    if (!rhs)
      return nullptr;
    const Expr *children[] = {lhs.get(), rhs.get()};
    lhs = withDepth(
        std::make_unique<BinaryExpr>(loc, op, std::move(lhs), std::move(rhs)),
        children);
  }
  return lhs;
}

/// multiplicative := unary (('*' | '/' | '//' | '%') unary)*
ExprPtr Parser::parseMultiplicative() {
  ExprPtr lhs = parseUnary();
  while (lhs && (tok.is(Token::star) || tok.is(Token::slash) ||
                 tok.is(Token::slashslash) || tok.is(Token::percent))) {
    llvm::SMLoc loc = tok.getLoc();
    BinaryOp op = *binaryOpOf(tok.kind);
    consume();
    ExprPtr rhs = parseUnary();
    if (!rhs)
      return nullptr;
    const Expr *children[] = {lhs.get(), rhs.get()};
    lhs = withDepth(
        std::make_unique<BinaryExpr>(loc, op, std::move(lhs), std::move(rhs)),
        children);
  }
  return lhs;
}

/// unary := '-' unary | primary
ExprPtr Parser::parseUnary() {
  if (tok.is(Token::minus)) {
    llvm::SMLoc loc = tok.getLoc();
    consume();
    if (failed(enterNested()))
      return nullptr;
    ExprPtr operand = parseUnary();
    exitNested();
    if (!operand)
      return nullptr;
    const Expr *child = operand.get();
    return withDepth(std::make_unique<UnaryExpr>(loc, '-', std::move(operand)),
                     child);
  }
  return parsePrimary();
}

/// primary := INT | FLOAT | 'true' | 'false' | '(' expr ')'
///          | IDENT | IDENT '(' args? ')' | IDENT '[' expr (',' expr)* ']'
///          | 'score'
ExprPtr Parser::parsePrimary() {
  llvm::SMLoc loc = tok.getLoc();
  switch (tok.kind) {
  case Token::integer: {
    int64_t v;
    if (tok.spelling.getAsInteger(10, v)) {
      emitError(loc) << "integer literal '" << tok.spelling
                     << "' does not fit in 64 bits";
      return nullptr;
    }
    consume();
    return std::make_unique<IntExpr>(loc, v);
  }
  case Token::floatliteral: {
    double v;
    if (tok.spelling.getAsDouble(v, /*AllowInexact=*/true)) {
      emitError(loc) << "invalid float literal '" << tok.spelling << "'";
      return nullptr;
    }
    if (std::isinf(v)) {
      emitError(loc) << "float literal '" << tok.spelling
                     << "' is too large (overflows float64)";
      return nullptr;
    }
    consume();
    return std::make_unique<FloatExpr>(loc, v);
  }
  case Token::kw_true:
  case Token::kw_false: {
    bool v = tok.is(Token::kw_true);
    consume();
    return std::make_unique<BoolExpr>(loc, v);
  }
  case Token::l_paren: {
    consume();
    ExprPtr e = parseExpr();
    if (!e || failed(expect(Token::r_paren, "to close the parenthesis")))
      return nullptr;
    return e;
  }
  case Token::kw_score:
  case Token::kw_mask:
  case Token::kw_scale:
  case Token::identifier: {
    std::string name = tok.spelling.str();
    consume();
    if (consumeIf(Token::l_paren)) {
      std::vector<Arg> args;
      if (!tok.is(Token::r_paren) && failed(parseArgs(args)))
        return nullptr;
      if (failed(expect(Token::r_paren, "to close the call")))
        return nullptr;
      llvm::SmallVector<const Expr *> children;
      for (const Arg &a : args)
        children.push_back(a.value.get());
      return withDepth(std::make_unique<CallExpr>(loc, name, std::move(args)),
                       children);
    }
    if (consumeIf(Token::l_square)) {
      std::vector<ExprPtr> indices;
      do {
        ExprPtr idx = parseExpr();
        if (!idx)
          return nullptr;
        indices.push_back(std::move(idx));
      } while (consumeIf(Token::comma));
      if (failed(expect(Token::r_square, "to close the subscript")))
        return nullptr;
      llvm::SmallVector<const Expr *> children;
      for (const ExprPtr &i : indices)
        children.push_back(i.get());
      return withDepth(
          std::make_unique<SubscriptExpr>(loc, name, std::move(indices)),
          children);
    }
    return std::make_unique<IdentExpr>(loc, name);
  }
  default:
    (void)emitExpected("an expression");
    return nullptr;
  }
}

std::unique_ptr<Spec> mlir::attn::parseSpec(const SourceLocator &locator,
                                            unsigned bufferID) {
  Parser parser(locator, bufferID);
  return parser.parseFile();
}

ExprPtr mlir::attn::parseExpression(const SourceLocator &locator,
                                    unsigned bufferID) {
  Parser parser(locator, bufferID);
  return parser.parseStandaloneExpr();
}
