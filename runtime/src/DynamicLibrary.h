//===- DynamicLibrary.h - load a GPU runtime with dlopen --------*- C++ -*-===//
//
// Private to runtime/src: what the CUDA driver's and the HIP runtime's
// loaders share. The runtime never links either library: it opens it at the
// first GPU call (RTLD_LOCAL, so that the library's own dependencies, such
// as the LLVM that HIP's COMGR brings, stay out of the global namespace) and
// resolves the entry points it uses, with one-line errors that name the
// library and the missing symbol.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_RUNTIME_DYNAMICLIBRARY_H
#define ATTN_RUNTIME_DYNAMICLIBRARY_H

#include <string>

namespace attn::runtime {

/// dlopen(`libName`, RTLD_NOW | RTLD_LOCAL); the handle is never closed
/// (modules and contexts live as long as the process). NULL with `error` =
/// "<what> not available: cannot load '<libName>': <why>" on failure.
void *openLibrary(const std::string &libName, const char *what,
                  std::string &error);

/// The address of `name` in `lib`; NULL with `error` = "<what> not
/// available: '<libName>' has no symbol <name> (<why>)" when missing.
void *findSymbol(void *lib, const std::string &libName, const char *what,
                 const char *name, std::string &error);

/// findSymbol() into a typed function pointer; false when missing.
template <typename Fn>
bool resolveSymbol(void *lib, const std::string &libName, const char *what,
                   const char *name, Fn &slot, std::string &error) {
  void *sym = findSymbol(lib, libName, what, name, error);
  slot = reinterpret_cast<Fn>(sym);
  return sym != nullptr;
}

} // namespace attn::runtime

#endif
