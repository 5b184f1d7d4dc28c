//===- Registry.cpp - the backends this build has -------------------------===//
//
// Kept apart from Backend.cpp: the backends link against the shared pieces
// there, and the registry links against the backends.
//
//===----------------------------------------------------------------------===//

#include "attn/Target/Backend.h"
#include <mutex>

using namespace mlir;
using namespace mlir::attn;

//===----------------------------------------------------------------------===//
// Registry
//===----------------------------------------------------------------------===//

namespace {
struct Registry {
  std::mutex mu;
  std::vector<std::unique_ptr<Backend>> backends;
};
Registry &registry() {
  static Registry r;
  return r;
}
} // namespace

// One factory per backend this build has; BackendList.def is generated from
// the attn_add_backend() calls in lowering/lib/Target/CMakeLists.txt.
namespace mlir::attn {
#define ATTN_BACKEND(Name) std::unique_ptr<Backend> create##Name##Backend();
#include "BackendList.def"
#undef ATTN_BACKEND
} // namespace mlir::attn

void mlir::attn::registerBackend(std::unique_ptr<Backend> backend) {
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (const auto &b : r.backends)
    if (b->name() == backend->name())
      return;
  r.backends.push_back(std::move(backend));
}

void mlir::attn::registerAllBackends() {
  static std::once_flag once;
  std::call_once(once, [] {
#define ATTN_BACKEND(Name) registerBackend(create##Name##Backend());
#include "BackendList.def"
#undef ATTN_BACKEND
  });
}

std::vector<const Backend *> mlir::attn::registeredBackends() {
  registerAllBackends();
  Registry &r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<const Backend *> out;
  for (const auto &b : r.backends)
    out.push_back(b.get());
  return out;
}

const Backend *mlir::attn::lookupBackend(llvm::StringRef target,
                                         std::string &error) {
  llvm::StringRef name = target.split(':').first.trim();
  for (const Backend *b : registeredBackends())
    if (b->name() == name)
      return b;
  error =
      "unknown target '" + target.str() + "' (expected " + targetHelp() + ")";
  return nullptr;
}

std::unique_ptr<BackendTarget> mlir::attn::parseTarget(llvm::StringRef target,
                                                       std::string &error) {
  const Backend *b = lookupBackend(target, error);
  return b ? b->parseTarget(target, error) : nullptr;
}

std::string mlir::attn::targetHelp() {
  std::string s;
  for (const Backend *b : registeredBackends())
    s += (s.empty() ? "" : "; ") + b->targetSyntax().str();
  return s;
}
