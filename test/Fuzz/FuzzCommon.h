//===- FuzzCommon.h - helpers shared by the libFuzzer targets ---*- C++ -*-===//
//
// What every target needs: a way to report a broken invariant (a message on
// stderr, then abort, which libFuzzer reports as a crash and saves the input
// for) and the MLIR setup shared by the frontend and reference targets.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TEST_FUZZ_FUZZCOMMON_H
#define ATTN_TEST_FUZZ_FUZZCOMMON_H

#include <cstdio>
#include <cstdlib>
#include <string>

namespace attn::fuzz {

/// Reports a broken invariant and aborts. libFuzzer then prints the stack,
/// writes the input to crash-<sha1> and exits non-zero, so a violation is a
/// crash like any other.
[[noreturn]] inline void invariantFailed(const std::string &what,
                                         const std::string &detail = "") {
  std::fprintf(stderr, "\n=== attn fuzz invariant violated: %s\n",
               what.c_str());
  if (!detail.empty())
    std::fprintf(stderr, "%s\n", detail.c_str());
  std::fflush(stderr);
  std::abort();
}

/// True when \p s holds no newline: every error message of the runtime and
/// the reference evaluator is one line.
inline bool isOneLine(const std::string &s) {
  return s.find('\n') == std::string::npos && s.find('\r') == std::string::npos;
}

} // namespace attn::fuzz

#endif // ATTN_TEST_FUZZ_FUZZCOMMON_H
