//===- DynamicLibrary.cpp - load a GPU runtime with dlopen ----------------===//

#include "DynamicLibrary.h"

#include <dlfcn.h>

void *attn::runtime::openLibrary(const std::string &libName, const char *what,
                                 std::string &error) {
  void *lib = dlopen(libName.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib)
    return lib;
  const char *why = dlerror();
  std::string reason = why ? why : "dlopen failed";
  if (reason.find(libName) == std::string::npos)
    reason = "cannot load '" + libName + "': " + reason;
  error = std::string(what) + " not available: " + reason;
  return nullptr;
}

void *attn::runtime::findSymbol(void *lib, const std::string &libName,
                                const char *what, const char *name,
                                std::string &error) {
  dlerror();
  void *sym = dlsym(lib, name);
  if (!sym) {
    const char *why = dlerror();
    error = std::string(what) + " not available: '" + libName +
            "' has no symbol " + name +
            (why ? std::string(" (") + why + ")" : std::string());
  }
  return sym;
}
