//===- CompilerInternal.h - helpers shared by the CPU and CUDA JIT -*- C++
//-*-===//

#ifndef ATTN_JIT_COMPILERINTERNAL_H
#define ATTN_JIT_COMPILERINTERNAL_H

#include "attn/Signature.h"
#include "attn/runtime.h"
#include <string>

namespace attn::detail {

/// The spec's source: the file at `spec` if it names one (no newline or
/// brace in it), else `spec` itself. False with `error` set on a bad path.
bool readSpecSource(const std::string &spec, std::string &source,
                    std::string &bufferName, std::string &error);
/// Identifies this build of the compiler (part of every cache key).
std::string compilerIdentity();
/// The cache file stem for a key text.
std::string hashKey(const std::string &keyText);
attn_elem_type_t toC(ElemType t);

} // namespace attn::detail

#endif
