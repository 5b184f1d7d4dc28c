//===- KernelCache.cpp - the JIT's trusted on-disk kernel cache -----------===//
//
// Where compiled kernels are kept between processes, for the CPU JIT
// (Compiler.cpp: a shared library and its name) and the CUDA JIT
// (CompilerCUDA.cpp: a fatbin and its metadata): choosing the cache
// directory, checking that it and every file read from it are the user's
// own, verifying entries against their SHA-256 manifest, publishing entries
// atomically, compiling each key once across processes under a flock, and
// loading a verified library from memory. Whatever keeps the cache from being
// used costs a warning, never the kernel: it is then compiled uncached.
//
//===----------------------------------------------------------------------===//

#include "KernelCache.h"
#include "attn/JIT/Compiler.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Errno.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Support/raw_ostream.h"
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <pwd.h>
#include <set>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace attn;

//===----------------------------------------------------------------------===//
// The kernel cache: a trusted store
//===----------------------------------------------------------------------===//
//
// Threat model: the user's own uid is trusted, nobody else is. Another user
// may control a directory we are pointed at (a shared /tmp path) or files in
// it, and any file may be truncated or altered after it was written. So:
//  - the directory and every file read from it must be owned by the
//    effective uid and not writable by group or others; anything else is
//    refused with a warning and the kernel is compiled uncached;
//  - all access goes through one directory fd opened with O_NOFOLLOW and
//    checked with fstat, and files are opened O_NOFOLLOW relative to it and
//    checked with fstat on the open fd (no path swapped after the check can
//    redirect a later access);
//  - an entry is `<key><suffix>` files plus a manifest `<key>.sha256`
//    recording each file's size and SHA-256, written last; files are read
//    into memory, verified there and used from there (a library is
//    dlopen'ed from a sealed memfd holding the verified bytes);
//  - a truncated or mismatched entry is removed (under the key's lock) and
//    recompiled;
//  - files are published as temporaries in the same directory (O_EXCL, mode
//    0600), fsync'ed and renamed into place; a temporary is removed on any
//    failure, and leftovers of crashed processes are swept under the lock;
//  - `<key>.lock` is flock'ed while an entry is compiled and published:
//    concurrent compiles of one key compile once, the others wait and load;
//    the holder removes it when done (KeyLock).

namespace {

using detail::CacheFile;
using detail::CacheResult;
using detail::ScratchDir;

constexpr llvm::StringLiteral kManifestSuffix = ".sha256";
constexpr llvm::StringLiteral kLockSuffix = ".lock";
constexpr llvm::StringLiteral kManifestHeader = "attnc-cache-entry v1";
/// Larger files are not cache entries: a kernel library is tens of KiB, a
/// fatbin a few MiB.
constexpr uint64_t kMaxEntryFileBytes = uint64_t(1) << 30;
constexpr uint64_t kMaxManifestBytes = 64 << 10;
/// How long a compile waits for another process compiling the same kernel
/// before it compiles the kernel itself, uncached.
constexpr std::chrono::seconds kLockWait(120);

std::atomic<bool> publishFault{false};

std::string sysError(int e) { return llvm::sys::StrError(e); }

/// An owned file descriptor.
class UniqueFd {
public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd(fd) {}
  UniqueFd(const UniqueFd &) = delete;
  UniqueFd &operator=(const UniqueFd &) = delete;
  ~UniqueFd() { reset(); }
  void reset(int n = -1) {
    if (fd >= 0)
      ::close(fd);
    fd = n;
  }
  int get() const { return fd; }
  int release() { return std::exchange(fd, -1); }
  explicit operator bool() const { return fd >= 0; }

private:
  int fd = -1;
};

/// The exclusive lock of one key: the file `<key>.lock`, flock'ed. Its
/// holder unlinks it before releasing it, so no lock file outlives its
/// compile; whoever then gets the lock of the unlinked file sees that and
/// locks the file now at that name instead (CacheStore::lock).
class KeyLock {
public:
  KeyLock() = default;
  KeyLock(const KeyLock &) = delete;
  KeyLock &operator=(const KeyLock &) = delete;
  ~KeyLock() {
    if (fd)
      ::unlinkat(dirFd, name.c_str(), 0);
  }

private:
  friend class CacheStore;
  int dirFd = -1;
  std::string name;
  UniqueFd fd;
};

/// Why `st` (a directory when `dir`, else a regular file) is not to be
/// trusted, or "" when the effective user owns it and nobody else can write
/// it.
std::string untrustedReason(const struct stat &st, bool dir) {
  if (S_ISLNK(st.st_mode))
    return "is a symbolic link";
  if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
    return dir ? "is not a directory" : "is not a regular file";
  if (st.st_uid != geteuid())
    return "is owned by uid " + std::to_string(st.st_uid) +
           ", not by you (uid " + std::to_string(geteuid()) + ")";
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
    return std::string("is writable by ") +
           (st.st_mode & S_IWOTH ? "others" : "its group") + " (mode " + mode +
           ")";
  }
  return "";
}

bool writeFully(int fd, llvm::ArrayRef<char> bytes) {
  const char *p = bytes.data();
  size_t left = bytes.size();
  while (left) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    p += n;
    left -= size_t(n);
  }
  return true;
}

/// Reads exactly `size` bytes from the start of `fd`; false (errno set, or
/// 0 for a short file) otherwise.
bool readFully(int fd, size_t size, std::vector<char> &bytes) {
  bytes.resize(size);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, bytes.data() + done, size - done, off_t(done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = 0;
      return false;
    }
    done += size_t(n);
  }
  return true;
}

std::string sha256Hex(llvm::ArrayRef<char> bytes) {
  return llvm::toHex(
      llvm::SHA256::hash(llvm::ArrayRef<uint8_t>(
          reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size())),
      /*LowerCase=*/true);
}

std::string temporaryDirectory() {
  llvm::SmallString<128> tmp;
  llvm::sys::path::system_temp_directory(/*ErasedOnReboot=*/true, tmp);
  return tmp.str().str();
}

/// Reports a warning through options.onWarning, else on stderr (each
/// distinct text once per process: a loop compiling many kernels against a
/// read-only cache says so once).
void warn(const CompileOptions &options, const std::string &text) {
  if (options.onWarning) {
    options.onWarning(text);
    return;
  }
  static std::mutex mu;
  static std::set<std::string> printed;
  std::lock_guard<std::mutex> lock(mu);
  if (printed.insert(text).second)
    llvm::errs() << "warning: " << text << "\n";
}

/// What a manifest records of one file of its entry.
struct FileRecord {
  std::string sha256; ///< lower-case hex
  uint64_t size = 0;
};
/// A manifest's records, by file suffix.
using Manifest = std::map<std::string, FileRecord>;

/// Parses a manifest: "<header>\n" then "<sha256 hex> <size> <suffix>\n" per
/// file. False if it is not one (or records a suffix twice).
bool parseManifest(llvm::StringRef text, Manifest &recorded) {
  llvm::SmallVector<llvm::StringRef> lines;
  text.split(lines, '\n', -1, /*KeepEmpty=*/false);
  bool valid = !lines.empty() && lines[0] == kManifestHeader;
  for (size_t i = 1; valid && i < lines.size(); ++i) {
    llvm::SmallVector<llvm::StringRef> f;
    lines[i].split(f, ' ');
    uint64_t size = 0;
    valid = f.size() == 3 && f[0].size() == 64 &&
            llvm::all_of(f[0], llvm::isHexDigit) &&
            !f[1].getAsInteger(10, size) &&
            recorded.emplace(f[2].str(), FileRecord{f[0].lower(), size}).second;
  }
  return valid;
}

/// One cache directory, opened and checked.
class CacheStore {
public:
  /// Opens the cache directory `dir`, creating it (mode 0700, parents as
  /// needed) if missing. Null with `problem` set when it cannot be created
  /// or opened or is not to be trusted.
  static std::unique_ptr<CacheStore> open(const std::string &dir,
                                          std::string &problem);

  enum class Lookup { Hit, Miss, Corrupt, Untrusted };
  /// Reads and verifies the entry `key` made of `suffixes`. On Corrupt and
  /// Untrusted, `reason` starts with the offending path.
  Lookup lookup(const std::string &key, llvm::ArrayRef<std::string> suffixes,
                std::vector<CacheFile> &files, std::string &reason) const;

  enum class Locked { Yes, Unwritable, Untrusted, TimedOut };
  /// Takes the exclusive lock of `key` (held until `held` is destroyed),
  /// waiting up to kLockWait for another holder.
  Locked lock(const std::string &key, KeyLock &held,
              std::string &problem) const;

  /// Publishes the entry `key` (files first, then the manifest). On failure
  /// nothing of the entry or of its temporaries is left.
  bool publish(const std::string &key, llvm::ArrayRef<CacheFile> files,
               std::string &problem) const;
  /// Removes the entry `key` (the manifest first: it stops verifying at
  /// once).
  void remove(const std::string &key,
              llvm::ArrayRef<std::string> suffixes) const;
  /// Removes temporaries and scratch directories of `key` that crashed
  /// processes left; only safe under the key's lock.
  void sweepLeftovers(const std::string &key) const;

  const std::string &directory() const { return dir; }
  std::string path(const std::string &name) const { return dir + "/" + name; }

private:
  CacheStore(std::string dir, int fd) : dir(std::move(dir)), dirFd(fd) {}
  enum class Opened { Ok, Missing, Untrusted, Failed };
  /// fstat()s `fd`, the file `name` opened in the directory, and checks it
  /// may be trusted: Ok, Untrusted or Failed, with `reason` set.
  Opened checkOpened(int fd, const std::string &name, struct stat &st,
                     std::string &reason) const;
  /// Opens the entry file `name` for reading and checks it (checkOpened).
  Opened openFile(const std::string &name, UniqueFd &fd, struct stat &st,
                  std::string &reason) const;
  /// Reads the manifest of `key`, which must record `fileCount` files: Hit
  /// with `recorded` filled, or why not (as lookup()).
  Lookup readManifest(const std::string &key, size_t fileCount,
                      Manifest &recorded, std::string &reason) const;
  /// Reads the entry file `name` and checks it against its manifest's
  /// `record`: Hit with `bytes` verified, or why not (as lookup()).
  Lookup readEntryFile(const std::string &name, const FileRecord &record,
                       std::vector<char> &bytes, std::string &reason) const;
  bool writeAtomically(const std::string &name, llvm::ArrayRef<char> bytes,
                       std::string &problem) const;

  std::string dir;
  UniqueFd dirFd;
};

std::unique_ptr<CacheStore> CacheStore::open(const std::string &dirIn,
                                             std::string &problem) {
  std::string dir = dirIn;
  while (dir.size() > 1 && dir.back() == '/')
    dir.pop_back();
  llvm::StringRef parent = llvm::sys::path::parent_path(dir);
  if (!parent.empty())
    if (std::error_code ec = llvm::sys::fs::create_directories(parent)) {
      problem =
          "cannot be created (" + parent.str() + ": " + ec.message() + ")";
      return nullptr;
    }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    problem = "cannot be created: " + sysError(errno);
    return nullptr;
  }
  struct stat st;
  UniqueFd fd(
      ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    int e = errno;
    if (::lstat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
      problem = untrustedReason(st, /*dir=*/true);
    else
      problem = "cannot be opened: " + sysError(e);
    return nullptr;
  }
  if (::fstat(fd.get(), &st) != 0) {
    problem = "cannot be examined: " + sysError(errno);
    return nullptr;
  }
  if (std::string why = untrustedReason(st, /*dir=*/true); !why.empty()) {
    problem = why;
    return nullptr;
  }
  return std::unique_ptr<CacheStore>(new CacheStore(dir, fd.release()));
}

CacheStore::Opened CacheStore::openFile(const std::string &name, UniqueFd &fd,
                                        struct stat &st,
                                        std::string &reason) const {
  // O_NONBLOCK: opening a planted FIFO must not hang (it is refused below).
  fd.reset(::openat(dirFd.get(), name.c_str(),
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    int e = errno;
    if (e == ENOENT)
      return Opened::Missing;
    reason = path(name) + (e == ELOOP ? " is a symbolic link"
                                      : " cannot be opened: " + sysError(e));
    return e == ELOOP ? Opened::Untrusted : Opened::Failed;
  }
  return checkOpened(fd.get(), name, st, reason);
}

CacheStore::Opened CacheStore::checkOpened(int fd, const std::string &name,
                                           struct stat &st,
                                           std::string &reason) const {
  if (::fstat(fd, &st) != 0) {
    reason = path(name) + " cannot be examined: " + sysError(errno);
    return Opened::Failed;
  }
  if (std::string why = untrustedReason(st, /*dir=*/false); !why.empty()) {
    reason = path(name) + " " + why;
    return Opened::Untrusted;
  }
  return Opened::Ok;
}

CacheStore::Lookup CacheStore::readManifest(const std::string &key,
                                            size_t fileCount,
                                            Manifest &recorded,
                                            std::string &reason) const {
  const std::string manifestName = key + kManifestSuffix.str();
  UniqueFd fd;
  struct stat st;
  switch (openFile(manifestName, fd, st, reason)) {
  case Opened::Missing:
    return Lookup::Miss;
  case Opened::Untrusted:
    return Lookup::Untrusted;
  case Opened::Failed:
    return Lookup::Corrupt;
  case Opened::Ok:
    break;
  }
  std::vector<char> text;
  if (uint64_t(st.st_size) > kMaxManifestBytes ||
      !readFully(fd.get(), size_t(st.st_size), text)) {
    reason = path(manifestName) + " is not a manifest";
    return Lookup::Corrupt;
  }
  if (!parseManifest(llvm::StringRef(text.data(), text.size()), recorded) ||
      recorded.size() != fileCount) {
    reason = path(manifestName) + " is not a valid manifest";
    return Lookup::Corrupt;
  }
  return Lookup::Hit;
}

CacheStore::Lookup CacheStore::readEntryFile(const std::string &name,
                                             const FileRecord &record,
                                             std::vector<char> &bytes,
                                             std::string &reason) const {
  UniqueFd fd;
  struct stat st;
  switch (openFile(name, fd, st, reason)) {
  case Opened::Missing:
    reason = path(name) + " is missing";
    return Lookup::Corrupt;
  case Opened::Untrusted:
    return Lookup::Untrusted;
  case Opened::Failed:
    return Lookup::Corrupt;
  case Opened::Ok:
    break;
  }
  // The size first: a truncated (or grown) file is never read, let alone
  // mapped.
  if (uint64_t(st.st_size) != record.size || record.size > kMaxEntryFileBytes) {
    reason = path(name) + " has " + std::to_string(st.st_size) +
             " bytes, its manifest records " + std::to_string(record.size) +
             " (truncated or replaced)";
    return Lookup::Corrupt;
  }
  if (!readFully(fd.get(), size_t(record.size), bytes)) {
    reason = path(name) + " cannot be read: " +
             (errno ? sysError(errno) : std::string("it is shorter"));
    return Lookup::Corrupt;
  }
  if (sha256Hex(bytes) != record.sha256) {
    reason = path(name) + " does not match the SHA-256 its manifest records";
    return Lookup::Corrupt;
  }
  return Lookup::Hit;
}

CacheStore::Lookup CacheStore::lookup(const std::string &key,
                                      llvm::ArrayRef<std::string> suffixes,
                                      std::vector<CacheFile> &files,
                                      std::string &reason) const {
  files.clear();
  Manifest recorded;
  if (Lookup found = readManifest(key, suffixes.size(), recorded, reason);
      found != Lookup::Hit)
    return found;
  for (const std::string &suffix : suffixes) {
    auto it = recorded.find(suffix);
    if (it == recorded.end()) {
      reason = path(key + kManifestSuffix.str()) + " does not record " + key +
               suffix;
      return Lookup::Corrupt;
    }
    CacheFile file{suffix, {}};
    if (Lookup found =
            readEntryFile(key + suffix, it->second, file.bytes, reason);
        found != Lookup::Hit)
      return found;
    files.push_back(std::move(file));
  }
  return Lookup::Hit;
}

CacheStore::Locked CacheStore::lock(const std::string &key, KeyLock &held,
                                    std::string &problem) const {
  const std::string name = key + kLockSuffix.str();
  const auto deadline = std::chrono::steady_clock::now() + kLockWait;
  // flock has no timeout: poll, backing off from 1 to 20 ms (a waiter loads
  // the entry within 20 ms of its publication).
  auto pause = std::chrono::milliseconds(1);
  auto wait = [&] {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
    return true;
  };
  for (;;) {
    UniqueFd fd(::openat(dirFd.get(), name.c_str(),
                         O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
                         0600));
    if (!fd) {
      int e = errno;
      problem =
          path(name) + (e == ELOOP ? " is a symbolic link"
                                   : " cannot be created: " + sysError(e));
      return e == ELOOP ? Locked::Untrusted : Locked::Unwritable;
    }
    struct stat st;
    switch (checkOpened(fd.get(), name, st, problem)) {
    case Opened::Ok:
      break;
    case Opened::Untrusted:
      return Locked::Untrusted;
    default:
      return Locked::Unwritable;
    }
    while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EINTR)
        continue;
      if (errno != EWOULDBLOCK) {
        problem = path(name) + " cannot be locked: " + sysError(errno);
        return Locked::Unwritable;
      }
      if (!wait()) {
        problem = path(name) + " is still held by another process after " +
                  std::to_string(kLockWait.count()) + " s";
        return Locked::TimedOut;
      }
    }
    // Locked; but if the previous holder unlinked this file meanwhile, the
    // lock is on a file nobody else will lock: start over.
    struct stat now;
    if (::fstatat(dirFd.get(), name.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0 &&
        now.st_dev == st.st_dev && now.st_ino == st.st_ino) {
      held.dirFd = dirFd.get();
      held.name = name;
      held.fd.reset(fd.release());
      return Locked::Yes;
    }
  }
}

bool CacheStore::writeAtomically(const std::string &name,
                                 llvm::ArrayRef<char> bytes,
                                 std::string &problem) const {
  static std::atomic<unsigned> counter{0};
  // Unique among live processes (pid) and threads (counter); O_EXCL refuses
  // anything already there.
  const std::string tmp = name + ".tmp-" + std::to_string(getpid()) + "-" +
                          std::to_string(counter++);
  UniqueFd fd(::openat(
      dirFd.get(), tmp.c_str(),
      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600));
  if (!fd) {
    problem = "cannot create " + path(tmp) + ": " + sysError(errno);
    return false;
  }
  auto fail = [&](const std::string &what) {
    problem = what;
    ::unlinkat(dirFd.get(), tmp.c_str(), 0);
    return false;
  };
  if (!writeFully(fd.get(), bytes))
    return fail("cannot write " + path(tmp) + ": " + sysError(errno));
  if (::fsync(fd.get()) != 0)
    return fail("cannot sync " + path(tmp) + ": " + sysError(errno));
  if (::close(fd.release()) != 0)
    return fail("cannot write " + path(tmp) + ": " + sysError(errno));
  if (publishFault)
    return fail("cannot rename " + path(tmp) + " to " + path(name) +
                ": injected failure (test)");
  if (::renameat(dirFd.get(), tmp.c_str(), dirFd.get(), name.c_str()) != 0)
    return fail("cannot rename " + path(tmp) + " to " + path(name) + ": " +
                sysError(errno));
  return true;
}

bool CacheStore::publish(const std::string &key,
                         llvm::ArrayRef<CacheFile> files,
                         std::string &problem) const {
  std::vector<std::string> suffixes;
  std::string manifest = kManifestHeader.str() + "\n";
  for (const CacheFile &f : files) {
    suffixes.push_back(f.suffix);
    if (!writeAtomically(key + f.suffix, f.bytes, problem)) {
      remove(key, suffixes);
      return false;
    }
    manifest += sha256Hex(f.bytes) + " " + std::to_string(f.bytes.size()) +
                " " + f.suffix + "\n";
  }
  if (!writeAtomically(key + kManifestSuffix.str(),
                       llvm::ArrayRef<char>(manifest.data(), manifest.size()),
                       problem)) {
    remove(key, suffixes);
    return false;
  }
  // The renames themselves reach the disk with the directory.
  ::fsync(dirFd.get());
  return true;
}

void CacheStore::remove(const std::string &key,
                        llvm::ArrayRef<std::string> suffixes) const {
  ::unlinkat(dirFd.get(), (key + kManifestSuffix.str()).c_str(), 0);
  for (const std::string &suffix : suffixes)
    ::unlinkat(dirFd.get(), (key + suffix).c_str(), 0);
}

void CacheStore::sweepLeftovers(const std::string &key) const {
  int fd = ::openat(dirFd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return;
  DIR *d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return;
  }
  const std::string prefix = key + ".";
  std::vector<std::string> files, dirs;
  while (struct dirent *e = ::readdir(d)) {
    llvm::StringRef name(e->d_name);
    if (!name.starts_with(prefix))
      continue;
    if (name.contains(".tmp-"))
      files.push_back(name.str());
    else if (name.drop_front(prefix.size()).starts_with("build-"))
      dirs.push_back(name.str());
  }
  ::closedir(d);
  for (const std::string &f : files)
    ::unlinkat(dirFd.get(), f.c_str(), 0);
  for (const std::string &s : dirs)
    llvm::sys::fs::remove_directories(path(s), /*IgnoreErrors=*/true);
}

/// A memfd holding `image`, sealed against any change; -1 with `error` set
/// where memfds are unavailable.
int sealedMemfd(llvm::ArrayRef<char> image, const std::string &key,
                std::string &error) {
#if defined(__linux__) && defined(MFD_ALLOW_SEALING)
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
  // MFD_EXEC: executable even under vm.memfd_noexec=1; kernels before 6.3
  // reject the flag, and their memfds are executable anyway.
  std::string name = "attnc-" + key;
  int fd =
      memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (fd < 0 && errno == EINVAL)
    fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    error = "memfd_create: " + sysError(errno);
    return -1;
  }
  if (!writeFully(fd, image) ||
      fcntl(fd, F_ADD_SEALS,
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    error = "memfd: " + sysError(errno);
    ::close(fd);
    return -1;
  }
  return fd;
#else
  (void)image;
  (void)key;
  error = "no memfd on this system";
  return -1;
#endif
}

} // namespace

void detail::setCachePublishFaultForTesting(bool fail) { publishFault = fail; }

//===----------------------------------------------------------------------===//
// ScratchDir
//===----------------------------------------------------------------------===//

detail::ScratchDir::~ScratchDir() {
  if (!path.empty())
    llvm::sys::fs::remove_directories(path, /*IgnoreErrors=*/true);
}

const std::string &detail::ScratchDir::get(std::string &error) {
  if (!path.empty())
    return path;
  for (const std::string &in : {parent, fallbackParent}) {
    if (in.empty())
      continue;
    std::string tmpl = in + "/" + prefix + "XXXXXX";
    if (::mkdtemp(tmpl.data())) {
      path = tmpl;
      return path;
    }
    error =
        "cannot create a temporary directory in " + in + ": " + sysError(errno);
  }
  return path; // ""
}

//===----------------------------------------------------------------------===//
// The cache directory
//===----------------------------------------------------------------------===//

/// The home directory of the effective user's passwd entry, if it is an
/// existing directory other than "/" (nobody's is "/nonexistent").
static std::string passwdHome() {
  long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size > 0 ? size_t(size) : 16384);
  struct passwd pw, *found = nullptr;
  if (getpwuid_r(geteuid(), &pw, buf.data(), buf.size(), &found) != 0 ||
      !found || !pw.pw_dir || pw.pw_dir[0] != '/' || pw.pw_dir[1] == '\0')
    return "";
  struct stat st;
  if (stat(pw.pw_dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return "";
  return pw.pw_dir;
}

std::string Compiler::cacheDirectory(const CompileOptions &options) {
  if (!options.cacheDir.empty())
    return options.cacheDir;
  if (const char *d = getenv("ATTN_CACHE_DIR"); d && *d)
    return d;
  // The XDG base directory spec: a relative $XDG_CACHE_HOME is ignored.
  if (const char *x = getenv("XDG_CACHE_HOME"); x && *x == '/')
    return std::string(x) + "/attnc";
  if (const char *h = getenv("HOME"); h && *h)
    return std::string(h) + "/.cache/attnc";
  if (std::string home = passwdHome(); !home.empty())
    return home + "/.cache/attnc";
  // Never one directory for all users: a per-user one, which is checked like
  // any cache directory (one someone else created first is refused).
  return "/tmp/attnc-cache-" + std::to_string(geteuid());
}

//===----------------------------------------------------------------------===//
// lookupOrCompile
//===----------------------------------------------------------------------===//

/// Compiles an entry without the cache: scratch files in a private temporary
/// directory, removed before returning; the kernel is loaded from memory.
static bool compileUncached(detail::CacheCompileFn compile, CacheResult &result,
                            std::string &error) {
  ScratchDir scratch(temporaryDirectory(), "attnc-");
  return compile(scratch, result.files, error);
}

/// Why the cache is not used when taking the key's lock ended with `locked`
/// (`problem` says more), or "" when the lock is held.
static std::string lockFailure(CacheStore::Locked locked,
                               const std::string &dir,
                               const std::string &problem) {
  switch (locked) {
  case CacheStore::Locked::Yes:
    return "";
  case CacheStore::Locked::Unwritable:
    return "kernel cache directory " + dir + " is not writable (" + problem +
           ")";
  case CacheStore::Locked::Untrusted:
    return "kernel cache entry " + problem + "; not using it";
  case CacheStore::Locked::TimedOut:
    return "kernel cache lock " + problem;
  }
  return "";
}

/// Looks the entry `key` up again under its lock, removing it first when it
/// is to be discarded (`discardReason`) or found corrupt. Hit with `files`
/// filled (another process published it meanwhile), Untrusted with `reason`
/// set, or Miss with `replaced` saying what was wrong with the entry removed
/// ("" if none).
static CacheStore::Lookup
lookupUnderLock(const CacheStore &store, const std::string &key,
                llvm::ArrayRef<std::string> suffixes,
                const std::string &discardReason, std::vector<CacheFile> &files,
                std::string &reason, std::string &replaced) {
  if (!discardReason.empty()) {
    store.remove(key, suffixes);
    replaced = "kernel cache entry " + store.path(key) + suffixes.front() +
               " " + discardReason + "; removed it and recompiled";
    return CacheStore::Lookup::Miss;
  }
  CacheStore::Lookup found = store.lookup(key, suffixes, files, reason);
  if (found == CacheStore::Lookup::Corrupt) {
    store.remove(key, suffixes);
    replaced = "kernel cache entry " + reason + "; removed it and recompiled";
    return CacheStore::Lookup::Miss;
  }
  return found;
}

/// Compiles the entry `key` of `store` (the cache directory `dir`) under the
/// key's lock and publishes it; `replaced` is what was wrong with the entry
/// it replaces ("" if none). A failed publish costs a warning, and the
/// compiled files are used uncached. False only when `compile` failed.
static bool compileAndPublish(const CompileOptions &options,
                              const CacheStore &store, const std::string &dir,
                              const std::string &key,
                              const std::string &replaced,
                              detail::CacheCompileFn compile,
                              CacheResult &result, std::string &error) {
  store.sweepLeftovers(key);
  {
    // Scratch files next to the entry (swept with it if we crash), or in the
    // temporary directory if the cache takes no new directory; the publish
    // below then says why.
    ScratchDir scratch(dir, key + ".build-", temporaryDirectory());
    if (!compile(scratch, result.files, error))
      return false;
  }
  std::string problem;
  if (!store.publish(key, result.files, problem)) {
    warn(options, (replaced.empty() ? "" : replaced + "; ") +
                      "cannot store the kernel in the cache (" + problem +
                      "); using it uncached");
    return true; // the compiled files are used uncached
  }
  if (!replaced.empty())
    warn(options, replaced);
  result.entryStem = store.path(key);
  return true;
}

bool detail::lookupOrCompile(const CompileOptions &options,
                             const std::string &key,
                             llvm::ArrayRef<std::string> suffixes,
                             const std::string &discardReason,
                             CacheCompileFn compile, CacheResult &result,
                             std::string &error) {
  result = CacheResult();
  if (!options.useCache)
    return compileUncached(compile, result, error);
  auto warnUncached = [&](const std::string &why) {
    warn(options, why + "; compiling without the cache");
    return compileUncached(compile, result, error);
  };
  auto hit = [&](const std::string &stem) {
    result.hit = true;
    result.entryStem = stem;
    return true;
  };

  std::string dir = Compiler::cacheDirectory(options), problem;
  std::unique_ptr<CacheStore> store = CacheStore::open(dir, problem);
  if (!store)
    return warnUncached("kernel cache directory " + dir + " " + problem);
  const std::string stem = store->path(key);
  std::string reason;
  // Fast path, without the lock: a verified entry is a hit whoever wrote it
  // when (the manifest is written last).
  if (discardReason.empty()) {
    switch (store->lookup(key, suffixes, result.files, reason)) {
    case CacheStore::Lookup::Hit:
      return hit(stem);
    case CacheStore::Lookup::Untrusted:
      return warnUncached("kernel cache entry " + reason + "; not using it");
    case CacheStore::Lookup::Miss:
    case CacheStore::Lookup::Corrupt:
      break; // decided again under the lock
    }
  }

  KeyLock lock;
  if (std::string why =
          lockFailure(store->lock(key, lock, problem), dir, problem);
      !why.empty())
    return warnUncached(why);
  std::string replaced;
  switch (lookupUnderLock(*store, key, suffixes, discardReason, result.files,
                          reason, replaced)) {
  case CacheStore::Lookup::Hit: // compiled by another process meanwhile
    return hit(stem);
  case CacheStore::Lookup::Untrusted:
    return warnUncached("kernel cache entry " + reason + "; not using it");
  case CacheStore::Lookup::Miss:
  case CacheStore::Lookup::Corrupt:
    break;
  }
  return compileAndPublish(options, *store, dir, key, replaced, compile, result,
                           error);
}

//===----------------------------------------------------------------------===//
// Loading a verified library
//===----------------------------------------------------------------------===//

void *detail::loadLibraryImage(llvm::ArrayRef<char> image,
                               const std::string &key, int &fd,
                               std::string &loadName, std::string &error) {
  // Loaded from memory, not from the cache path: the bytes just verified
  // against the manifest are the bytes dlopen maps. dlopen(path) would
  // reopen the file after the check (a window in which it can be replaced,
  // and a file truncated meanwhile faults with SIGBUS inside dlopen), and
  // even /proc/self/fd/N of the verified file leaves the inode writable by
  // its owner; a sealed memfd cannot change at all. glibc's dlopen matches
  // an already loaded library by name before opening anything, so the memfd
  // stays open (its /proc/self/fd/N name taken) while the library is loaded:
  // see releaseLibraryImage.
  fd = -1;
  std::string memfdError;
  int m = sealedMemfd(image, key, memfdError);
  if (m >= 0) {
    std::string name = "/proc/self/fd/" + std::to_string(m);
    if (void *h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      fd = m;
      loadName = name;
      return h;
    }
    const char *e = dlerror();
    memfdError = "from a memfd: " + std::string(e ? e : "?");
    ::close(m);
  }
  // No memfd, or one that cannot be mapped executable (vm.memfd_noexec=2)
  // or no /proc: a copy in a private directory (0700), loaded and removed.
  // Its name is unique in the process, so it never matches a loaded one.
  static std::atomic<unsigned> counter{0};
  ScratchDir scratch(temporaryDirectory(), "attnc-load-");
  std::string dirError;
  const std::string &dir = scratch.get(dirError);
  if (dir.empty()) {
    error =
        "cannot load the kernel library (" + memfdError + "; " + dirError + ")";
    return nullptr;
  }
  std::string path = dir + "/" + key + "-" + std::to_string(counter++) + ".so";
  UniqueFd out(::open(path.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      0700));
  if (!out || !writeFully(out.get(), image) || ::close(out.release()) != 0) {
    error = "cannot load the kernel library (" + memfdError +
            "; cannot write " + path + ": " + sysError(errno) + ")";
    return nullptr;
  }
  void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    error = "cannot load the kernel library (" + memfdError + "; " +
            (e ? e : "?") + ")";
    return nullptr;
  }
  loadName = path;
  return h;
}

void detail::releaseLibraryImage(int fd, const std::string &loadName) {
  if (fd < 0)
    return;
  // Still loaded (another handle, or a library that cannot be unloaded):
  // its name must stay unique, so the memfd stays open.
  if (void *h = dlopen(loadName.c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
    dlclose(h);
    return;
  }
  ::close(fd);
}
