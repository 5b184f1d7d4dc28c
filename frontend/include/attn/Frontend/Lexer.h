//===- Lexer.h - .attn lexer ------------------------------------*- C++ -*-===//

#ifndef ATTN_FRONTEND_LEXER_H
#define ATTN_FRONTEND_LEXER_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/SMLoc.h"
#include "llvm/Support/SourceMgr.h"

namespace mlir::attn {

struct Token {
  enum Kind {
#define TOK_MARKER(NAME) NAME,
#define TOK_IDENTIFIER(NAME) NAME,
#define TOK_LITERAL(NAME) NAME,
#define TOK_PUNCTUATION(NAME, SPELLING) NAME,
#define TOK_KEYWORD(SPELLING) kw_##SPELLING,
#include "attn/Frontend/TokenKinds.def"
  };
  Kind kind;
  /// The token's text in the source buffer (for errors: the message).
  llvm::StringRef spelling;

  bool is(Kind k) const { return kind == k; }
  bool isKeyword() const;
  llvm::SMLoc getLoc() const {
    return llvm::SMLoc::getFromPointer(spelling.data());
  }
  /// A printable description for "expected X, got Y" messages.
  static llvm::StringRef describe(Kind k);
};

/// Splits one buffer into tokens. `#` starts a comment to end of line.
class Lexer {
public:
  Lexer(const llvm::SourceMgr &sourceMgr, unsigned bufferID);
  Token lex();

private:
  Token formToken(Token::Kind kind, const char *start) {
    return Token{kind, llvm::StringRef(start, curPtr - start)};
  }
  Token lexIdentifierOrKeyword(const char *start);
  Token lexNumber(const char *start);

  llvm::StringRef buffer;
  const char *curPtr;
};

} // namespace mlir::attn

#endif // ATTN_FRONTEND_LEXER_H
