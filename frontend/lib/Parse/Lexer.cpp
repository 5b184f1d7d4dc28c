//===- Lexer.cpp - .attn lexer --------------------------------------------===//

#include "attn/Frontend/Lexer.h"
#include "llvm/ADT/StringSwitch.h"
#include <cctype>

using namespace mlir::attn;

bool Token::isKeyword() const {
  switch (kind) {
#define TOK_KEYWORD(SPELLING)                                                  \
  case kw_##SPELLING:                                                          \
    return true;
#include "attn/Frontend/TokenKinds.def"
  default:
    return false;
  }
}

llvm::StringRef Token::describe(Kind k) {
  switch (k) {
  case eof:
    return "end of file";
  case error:
    return "invalid character";
  case identifier:
    return "identifier";
  case integer:
    return "integer";
  case floatliteral:
    return "float";
#define TOK_PUNCTUATION(NAME, SPELLING)                                        \
  case NAME:                                                                   \
    return "'" SPELLING "'";
#define TOK_KEYWORD(SPELLING)                                                  \
  case kw_##SPELLING:                                                          \
    return "'" #SPELLING "'";
#include "attn/Frontend/TokenKinds.def"
  }
  return "token";
}

Lexer::Lexer(const llvm::SourceMgr &sourceMgr, unsigned bufferID)
    : buffer(sourceMgr.getMemoryBuffer(bufferID)->getBuffer()),
      curPtr(buffer.begin()) {
  // A UTF-8 byte-order mark at the start is not part of the spec.
  if (buffer.starts_with("\xEF\xBB\xBF"))
    curPtr += 3;
}

Token Lexer::lex() {
  while (true) {
    const char *start = curPtr;
    if (curPtr == buffer.end())
      return formToken(Token::eof, start);
    char c = *curPtr++;
    switch (c) {
    case ' ':
    case '\t':
    case '\r':
    case '\n':
    case ';': // Optional statement separator, treated as whitespace.
      continue;
    case '#':
      while (curPtr != buffer.end() && *curPtr != '\n')
        ++curPtr;
      continue;
    case '{':
      return formToken(Token::l_brace, start);
    case '}':
      return formToken(Token::r_brace, start);
    case '(':
      return formToken(Token::l_paren, start);
    case ')':
      return formToken(Token::r_paren, start);
    case '[':
      return formToken(Token::l_square, start);
    case ']':
      return formToken(Token::r_square, start);
    case ',':
      return formToken(Token::comma, start);
    case ':':
      return formToken(Token::colon, start);
    case '+':
      return formToken(Token::plus, start);
    case '-':
      return formToken(Token::minus, start);
    case '*':
      return formToken(Token::star, start);
    case '%':
      return formToken(Token::percent, start);
    case '/':
      if (curPtr != buffer.end() && *curPtr == '/') {
        ++curPtr;
        return formToken(Token::slashslash, start);
      }
      return formToken(Token::slash, start);
    case '<':
      if (curPtr != buffer.end() && *curPtr == '=') {
        ++curPtr;
        return formToken(Token::less_equal, start);
      }
      return formToken(Token::less, start);
    case '>':
      if (curPtr != buffer.end() && *curPtr == '=') {
        ++curPtr;
        return formToken(Token::greater_equal, start);
      }
      return formToken(Token::greater, start);
    case '=':
      if (curPtr != buffer.end() && *curPtr == '=') {
        ++curPtr;
        return formToken(Token::equal_equal, start);
      }
      return formToken(Token::equal, start);
    case '!':
      if (curPtr != buffer.end() && *curPtr == '=') {
        ++curPtr;
        return formToken(Token::not_equal, start);
      }
      return formToken(Token::exclaim, start);
    case '&':
      if (curPtr != buffer.end() && *curPtr == '&') {
        ++curPtr;
        return formToken(Token::amp_amp, start);
      }
      return formToken(Token::error, start);
    case '|':
      if (curPtr != buffer.end() && *curPtr == '|') {
        ++curPtr;
        return formToken(Token::pipe_pipe, start);
      }
      return formToken(Token::error, start);
    default:
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_')
        return lexIdentifierOrKeyword(start);
      if (std::isdigit(static_cast<unsigned char>(c)) ||
          (c == '.' && curPtr != buffer.end() &&
           std::isdigit(static_cast<unsigned char>(*curPtr))))
        return lexNumber(start);
      return formToken(Token::error, start);
    }
  }
}

Token Lexer::lexIdentifierOrKeyword(const char *start) {
  while (curPtr != buffer.end() &&
         (std::isalnum(static_cast<unsigned char>(*curPtr)) || *curPtr == '_'))
    ++curPtr;
  llvm::StringRef text(start, curPtr - start);
  Token::Kind kind = llvm::StringSwitch<Token::Kind>(text)
#define TOK_KEYWORD(SPELLING) .Case(#SPELLING, Token::kw_##SPELLING)
#include "attn/Frontend/TokenKinds.def"
                         .Default(Token::identifier);
  return formToken(kind, start);
}

// integer := [0-9]+ ; float := [0-9]* '.' [0-9]* ([eE] [+-]? [0-9]+)?
//                             | [0-9]+ [eE] [+-]? [0-9]+
Token Lexer::lexNumber(const char *start) {
  auto isDigit = [&](const char *p) {
    return p != buffer.end() && std::isdigit(static_cast<unsigned char>(*p));
  };
  curPtr = start;
  bool isFloat = false;
  while (isDigit(curPtr))
    ++curPtr;
  if (curPtr != buffer.end() && *curPtr == '.') {
    isFloat = true;
    ++curPtr;
    while (isDigit(curPtr))
      ++curPtr;
  }
  if (curPtr != buffer.end() && (*curPtr == 'e' || *curPtr == 'E')) {
    const char *p = curPtr + 1;
    if (p != buffer.end() && (*p == '+' || *p == '-'))
      ++p;
    if (isDigit(p)) {
      isFloat = true;
      curPtr = p;
      while (isDigit(curPtr))
        ++curPtr;
    }
  }
  // A number glued to letters (`12abc`) is one bad token, not two.
  if (curPtr != buffer.end() &&
      (std::isalpha(static_cast<unsigned char>(*curPtr)) || *curPtr == '_')) {
    while (curPtr != buffer.end() &&
           (std::isalnum(static_cast<unsigned char>(*curPtr)) ||
            *curPtr == '_'))
      ++curPtr;
    return formToken(Token::error, start);
  }
  return formToken(isFloat ? Token::floatliteral : Token::integer, start);
}
