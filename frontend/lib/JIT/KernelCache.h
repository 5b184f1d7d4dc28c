//===- KernelCache.h - the JIT's trusted on-disk kernel cache ---*- C++ -*-===//
//
// The on-disk store that compile() and compileCUDA() share (KernelCache.cpp
// has its threat model). An entry is a set of files `<dir>/<key><suffix>`
// (e.g. `.so` and `.name`) and a manifest `<dir>/<key>.sha256` recording each
// file's size and SHA-256, published last. `<dir>/<key>.lock` is flock'ed
// while the entry is compiled and published (and removed after), so
// concurrent compiles of one key compile once.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_JIT_KERNELCACHE_H
#define ATTN_JIT_KERNELCACHE_H

#include "attn/JIT/Compiler.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include <string>
#include <vector>

namespace attn::detail {

/// One file of a cache entry.
struct CacheFile {
  std::string suffix; ///< ".so", ".name", ".fatbin", ...
  std::vector<char> bytes;
};

/// A private directory (mkdtemp, mode 0700), created on first use and
/// removed with its contents on destruction.
class ScratchDir {
public:
  /// `parent/prefixXXXXXX`, else `fallbackParent/prefixXXXXXX`.
  ScratchDir(std::string parent, std::string prefix,
             std::string fallbackParent = "")
      : parent(std::move(parent)), prefix(std::move(prefix)),
        fallbackParent(std::move(fallbackParent)) {}
  ScratchDir(const ScratchDir &) = delete;
  ScratchDir &operator=(const ScratchDir &) = delete;
  ~ScratchDir();
  /// The directory, created now if needed; "" with `error` set on failure.
  const std::string &get(std::string &error);

private:
  std::string parent, prefix, fallbackParent, path;
};

/// Produces an entry's files, in the order of the requested suffixes; may
/// use `scratch` for intermediate files. False with `error` set on failure.
using CacheCompileFn = llvm::function_ref<bool(
    ScratchDir &scratch, std::vector<CacheFile> &files, std::string &error)>;

/// What lookupOrCompile produced.
struct CacheResult {
  /// The entry's files, verified against the manifest when `hit`.
  std::vector<CacheFile> files;
  /// True when the files came from the cache.
  bool hit = false;
  /// `<dir>/<key>` when the files are (now) in the cache, else "".
  std::string entryStem;
};

/// The cache protocol of compile() and compileCUDA(): returns the verified
/// entry `key` of the cache `options` names, or compiles it with `compile`
/// (once across processes: under the key's lock) and publishes it. With
/// `discardReason` set, the existing entry is removed first (it verified but
/// could not be used; the reason is warned about). Whatever keeps the cache
/// from being used costs one warning (options.onWarning) and the kernel is
/// compiled uncached. False only when `compile` failed.
bool lookupOrCompile(const CompileOptions &options, const std::string &key,
                     llvm::ArrayRef<std::string> suffixes,
                     const std::string &discardReason, CacheCompileFn compile,
                     CacheResult &result, std::string &error);

/// dlopen()s the shared library `image` from memory (a sealed memfd, or a
/// private temporary copy where memfds cannot be mapped executable). On
/// success `fd` is the memfd (or -1) and `loadName` the name it was loaded
/// under; pass both to releaseLibraryImage after dlclose.
void *loadLibraryImage(llvm::ArrayRef<char> image, const std::string &key,
                       int &fd, std::string &loadName, std::string &error);
/// Closes the memfd of a library once no handle keeps it loaded.
void releaseLibraryImage(int fd, const std::string &loadName);

/// Test hook: while set, cache publishes fail after writing their temporary
/// file (as a failed rename would), so tests can check nothing is left.
void setCachePublishFaultForTesting(bool fail);

} // namespace attn::detail

#endif // ATTN_JIT_KERNELCACHE_H
