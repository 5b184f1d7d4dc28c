//===- KernelCacheTest.cpp - the kernel cache as a trusted store ----------===//
//
// The on-disk kernel cache must never load what it did not verify: a library
// planted under a kernel's key (with or without a forged manifest), a
// truncated entry, a directory or file someone else owns or can write. Each
// such case must still compile (uncached, with one warning) and give the
// right answer. Concurrent compiles of one key compile once, and nothing
// temporary is left behind.
//
// Ownership cases chown to uid 65534 and need root; read-only directories
// need a non-root process (root ignores modes): as root the test re-executes
// this binary as uid 65534 (KernelCacheChild.Compile), otherwise it uses
// chmod directly. Cases that cannot run skip with the reason.
//
//===----------------------------------------------------------------------===//

#include "CompilerInternal.h"
#include "attn/JIT/Compiler.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/SHA256.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <grp.h>
#include <random>
#include <spawn.h>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char **environ;

namespace fs = std::filesystem;
using namespace attn;

namespace {

constexpr uid_t kOtherUid = 65534; // nobody

/// A fresh directory (mode 0700) under the system temp dir, removed with its
/// contents.
class TempDir {
public:
  TempDir() {
    std::string tmpl =
        (fs::temp_directory_path() / "attn-cache-test-XXXXXX").string();
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, ec);
    fs::remove_all(path_, ec);
  }
  const std::string &path() const { return path_; }
  std::string operator/(const std::string &name) const {
    return path_ + "/" + name;
  }

private:
  std::string path_;
};

/// Sorted names in `dir` (not recursive).
std::vector<std::string> listDir(const std::string &dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec);
       !ec && it != fs::directory_iterator(); it.increment(ec))
    names.push_back(it->path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

/// The files of one complete CPU cache entry (no temporaries, no lock
/// file: its holder removes it).
std::vector<std::string> entryFiles(const std::string &key) {
  return {key + ".meta", key + ".sha256", key + ".so"};
}

std::vector<char> readBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void writeBytes(const std::string &path, const std::vector<char> &bytes,
                fs::perms mode = fs::perms::owner_read |
                                 fs::perms::owner_write) {
  fs::remove(path);
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  fs::permissions(path, mode);
}

std::string sha256Hex(const std::vector<char> &bytes) {
  return llvm::toHex(
      llvm::SHA256::hash(llvm::ArrayRef<uint8_t>(
          reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size())),
      /*LowerCase=*/true);
}

/// A manifest that records `files` (suffix -> bytes) as they are: what an
/// attacker who can write files could forge.
void forgeManifest(const std::string &stem,
                   const std::vector<std::string> &suffixes) {
  std::string text = "attnc-cache-entry v1\n";
  for (const std::string &s : suffixes) {
    std::vector<char> bytes = readBytes(stem + s);
    text +=
        sha256Hex(bytes) + " " + std::to_string(bytes.size()) + " " + s + "\n";
  }
  writeBytes(stem + ".sha256", std::vector<char>(text.begin(), text.end()));
}

const char *const kSpec = "# a causal spec for the cache tests\n"
                          "attention cache_causal {\n"
                          "  mask = causal\n"
                          "}\n";

/// Compile options for `cache` that collect warnings.
struct Options {
  CompileOptions options;
  std::vector<std::string> warnings;
  explicit Options(const std::string &cache) {
    options.cacheDir = cache;
    options.onWarning = [this](const std::string &w) { warnings.push_back(w); };
  }
  std::string allWarnings() const {
    std::string s;
    for (const std::string &w : warnings)
      s += "warning: " + w + "\n";
    return s;
  }
};

/// Runs `kernel` (a causal softmax spec, with a sliding window of `window`
/// keys if given) on a small problem and returns the max error against a
/// float64 reference (NaN on a run failure).
double causalError(const Kernel &kernel, int64_t window = 1 << 30) {
  const int64_t Hq = 2, N = 19, D = 8;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> q(Hq * N * D), k(Hq * N * D), v(Hq * N * D), o(Hq * N * D),
      lse(Hq * N);
  for (auto *x : {&q, &k, &v})
    for (float &e : *x)
      e = dist(rng);
  std::vector<int64_t> shape{1, Hq, N, D}, lseShape{1, Hq, N};
  auto tensor = [](float *data, std::vector<int64_t> &s) {
    DLTensor t;
    std::memset(&t, 0, sizeof t);
    t.data = data;
    t.device = {kDLCPU, 0};
    t.ndim = static_cast<int32_t>(s.size());
    t.dtype = {kDLFloat, 32, 1};
    t.shape = s.data();
    return t;
  };
  DLTensor tq = tensor(q.data(), shape), tk = tensor(k.data(), shape),
           tv = tensor(v.data(), shape), to = tensor(o.data(), shape),
           tl = tensor(lse.data(), lseShape);
  const DLTensor *inputs[] = {&tq, &tk, &tv};
  if (kernel.run(inputs, &to, &tl) != ATTN_OK)
    return NAN;
  double err = 0;
  for (int64_t h = 0; h < Hq; ++h)
    for (int64_t i = 0; i < N; ++i) {
      std::vector<double> s(i + 1);
      const int64_t first = std::max<int64_t>(0, i - window + 1);
      double mx = -INFINITY, sum = 0;
      for (int64_t j = first; j <= i; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d)
          dot += double(q[(h * N + i) * D + d]) * k[(h * N + j) * D + d];
        s[j] = dot / std::sqrt(double(D));
        mx = std::max(mx, s[j]);
      }
      for (int64_t j = first; j <= i; ++j)
        sum += std::exp(s[j] - mx);
      for (int64_t d = 0; d < D; ++d) {
        double ref = 0;
        for (int64_t j = first; j <= i; ++j)
          ref += std::exp(s[j] - mx) / sum * v[(h * N + j) * D + d];
        double e = std::fabs(o[(h * N + i) * D + d] - ref);
        if (!(e <= err))
          err = e;
      }
    }
  return err;
}

/// Compiles kSpec into `cache` (a fresh entry) and returns the entry's
/// stem `<cache>/<key>` and key.
std::string populate(const std::string &cache, std::string *key = nullptr) {
  Options o(cache);
  std::string error;
  auto k = Compiler().compile(kSpec, o.options, error);
  EXPECT_TRUE(k) << error;
  EXPECT_TRUE(o.warnings.empty()) << o.allWarnings();
  if (!k)
    return "";
  std::string path = k->libraryPath();
  EXPECT_EQ(fs::path(path).extension(), ".so");
  std::string stem = path.substr(0, path.size() - 3);
  if (key)
    *key = fs::path(stem).filename().string();
  return stem;
}

/// Compiles kSpec with `o` and checks that it worked and computes the right
/// answer. Returns the kernel.
std::unique_ptr<Kernel> compileAndCheck(Options &o) {
  std::string error;
  auto k = Compiler().compile(kSpec, o.options, error);
  EXPECT_TRUE(k) << error;
  if (k)
    EXPECT_LT(causalError(*k), 1e-4);
  return k;
}

/// Sets ATTN_TEST_MARKER for the lifetime of the object.
struct Marker {
  std::string path;
  explicit Marker(const TempDir &dir) : path(dir / "planted-library-ran") {
    setenv("ATTN_TEST_MARKER", path.c_str(), 1);
  }
  ~Marker() { unsetenv("ATTN_TEST_MARKER"); }
  bool fired() const { return fs::exists(path); }
};

bool isRoot() { return geteuid() == 0; }

/// Runs this binary's KernelCacheChild.Compile (compile kSpec into `cache`,
/// as uid `uid` if not -1) and returns its exit code (10 compiled, 11 cache
/// hit, other: failure); `output` gets its stdout and stderr.
int runChild(const std::string &cache, int uid, const std::string &tmpDir,
             const std::string &outputPath) {
  std::vector<std::string> env;
  for (char **e = environ; *e; ++e)
    if (std::strncmp(*e, "TMPDIR=", 7) && std::strncmp(*e, "GTEST_", 6))
      env.push_back(*e);
  env.push_back("ATTN_JIT_CHILD_CACHE=" + cache);
  env.push_back("TMPDIR=" + tmpDir);
  if (uid >= 0)
    env.push_back("ATTN_JIT_CHILD_UID=" + std::to_string(uid));
  std::vector<char *> envp;
  for (std::string &e : env)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string exe = fs::read_symlink("/proc/self/exe").string();
  std::string filter = "--gtest_filter=KernelCacheChild.Compile";
  char *argv[] = {exe.data(), filter.data(), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, outputPath.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid;
  int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

std::string readText(const std::string &path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

size_t countOf(const std::string &text, const std::string &what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos;
       at = text.find(what, at + 1))
    ++n;
  return n;
}

} // namespace

/// The child of the multi-process tests: compiles kSpec into
/// $ATTN_JIT_CHILD_CACHE (as uid $ATTN_JIT_CHILD_UID if set), prints the
/// warnings, checks the answer and exits 10 (compiled) or 11 (cache hit).
TEST(KernelCacheChild, Compile) {
  const char *cache = std::getenv("ATTN_JIT_CHILD_CACHE");
  if (!cache)
    GTEST_SKIP() << "runs only as a child process of the KernelCache tests";
  if (const char *uid = std::getenv("ATTN_JIT_CHILD_UID")) {
    gid_t g = gid_t(std::atoi(uid));
    if (setgroups(0, nullptr) != 0 || setgid(g) != 0 ||
        setuid(uid_t(std::atoi(uid))) != 0) {
      std::printf("cannot become uid %s\n", uid);
      std::fflush(stdout);
      _exit(3);
    }
  }
  CompileOptions options;
  options.cacheDir = cache;
  options.onWarning = [](const std::string &w) {
    std::printf("warning: %s\n", w.c_str());
  };
  std::string error;
  auto k = Compiler().compile(kSpec, options, error);
  int code = 4;
  if (!k)
    std::printf("error: %s\n", error.c_str());
  else if (!(causalError(*k) < 1e-4))
    std::printf("wrong answer\n");
  else
    code = k->cacheHit() ? 11 : 10;
  std::fflush(stdout);
  _exit(code);
}

// The reproducer: a library planted under the expected key. Over a
// valid entry it fails verification (size, or hash at the same size); it is
// replaced, never loaded.
TEST(KernelCache, PlantedLibraryOverAnEntryIsNeverLoaded) {
  TempDir cache, scratch;
  Marker marker(scratch);
  std::string key;
  std::string stem = populate(cache.path(), &key);
  ASSERT_FALSE(stem.empty());
  std::vector<char> planted = readBytes(ATTN_PLANTED_LIBRARY);
  ASSERT_FALSE(planted.empty()) << ATTN_PLANTED_LIBRARY;

  writeBytes(stem + ".so", planted);
  {
    Options o(cache.path());
    auto k = compileAndCheck(o);
    ASSERT_TRUE(k);
    EXPECT_FALSE(k->cacheHit());
    ASSERT_EQ(o.warnings.size(), 1u) << o.allWarnings();
    EXPECT_NE(o.warnings[0].find(stem + ".so has " +
                                 std::to_string(planted.size()) + " bytes"),
              std::string::npos)
        << o.allWarnings();
    EXPECT_NE(o.warnings[0].find("removed it and recompiled"),
              std::string::npos);
  }
  EXPECT_FALSE(marker.fired()) << "the planted library was loaded";
  EXPECT_EQ(listDir(cache.path()), entryFiles(key));

  // Same size, other bytes: caught by the hash.
  std::vector<char> flipped = readBytes(stem + ".so");
  flipped[flipped.size() / 2] ^= 1;
  writeBytes(stem + ".so", flipped);
  Options o(cache.path());
  auto k = compileAndCheck(o);
  ASSERT_TRUE(k);
  EXPECT_FALSE(k->cacheHit());
  ASSERT_EQ(o.warnings.size(), 1u) << o.allWarnings();
  EXPECT_NE(
      o.warnings[0].find("does not match the SHA-256 its manifest records"),
      std::string::npos)
      << o.allWarnings();
  EXPECT_EQ(listDir(cache.path()), entryFiles(key));
}

// Planted where there is no entry yet (no manifest: what the old cache
// loaded): a miss, compiled and replaced.
TEST(KernelCache, PlantedLibraryWithoutManifestIsNeverLoaded) {
  TempDir other, cache, scratch;
  Marker marker(scratch);
  std::string key;
  ASSERT_FALSE(populate(other.path(), &key).empty());
  std::vector<char> planted = readBytes(ATTN_PLANTED_LIBRARY);
  writeBytes(cache / (key + ".so"), planted);
  std::string name = "sig v1;name=cache_causal;tile_q=64;has_lse=1;inputs=\nreport\n";
  writeBytes(cache / (key + ".meta"),
             std::vector<char>(name.begin(), name.end()));
  for (bool hit : {false, true}) {
    Options o(cache.path());
    auto k = compileAndCheck(o);
    ASSERT_TRUE(k);
    EXPECT_EQ(k->cacheHit(), hit);
    EXPECT_TRUE(o.warnings.empty()) << o.allWarnings();
  }
  EXPECT_FALSE(marker.fired()) << "the planted library was loaded";
  EXPECT_NE(readBytes(cache / (key + ".so")), planted) << "not replaced";
  EXPECT_EQ(listDir(cache.path()), entryFiles(key));
}

// `truncate -s 50% <key>.so` used to make every later run die with SIGBUS in
// dlopen.
TEST(KernelCache, TruncatedEntryIsRemovedAndRecompiled) {
  TempDir cache;
  std::string key;
  std::string stem = populate(cache.path(), &key);
  ASSERT_FALSE(stem.empty());
  uintmax_t size = fs::file_size(stem + ".so");
  fs::resize_file(stem + ".so", size / 2);
  {
    Options o(cache.path());
    auto k = compileAndCheck(o);
    ASSERT_TRUE(k);
    EXPECT_FALSE(k->cacheHit());
    EXPECT_EQ(k->libraryPath(), stem + ".so");
    ASSERT_EQ(o.warnings.size(), 1u) << o.allWarnings();
    EXPECT_NE(o.warnings[0].find(stem + ".so has " + std::to_string(size / 2) +
                                 " bytes, its manifest records " +
                                 std::to_string(size)),
              std::string::npos)
        << o.allWarnings();
  }
  EXPECT_EQ(fs::file_size(stem + ".so"), size);
  EXPECT_EQ(listDir(cache.path()), entryFiles(key));
  // A truncated manifest or a lost sidecar: recompiled too.
  fs::resize_file(stem + ".sha256", 30);
  fs::remove(stem + ".name");
  for (int round = 0; round < 2; ++round) {
    Options o(cache.path());
    auto k = compileAndCheck(o);
    ASSERT_TRUE(k);
    EXPECT_EQ(k->cacheHit(), round == 1);
    EXPECT_EQ(o.warnings.size(), round == 0 ? 1u : 0u) << o.allWarnings();
  }
}

// A cache directory others can write, or that someone else owns (a shared
// /tmp path an attacker created first), is refused: one warning, and the
// kernel is compiled without the cache.
TEST(KernelCache, DirectoryWritableByOthersIsRefused) {
  TempDir parent, scratch;
  Marker marker(scratch);
  std::string dir = parent / "cache";
  std::string key;
  ASSERT_FALSE(populate(dir, &key).empty());
  // Even a valid-looking entry (a planted library with a matching manifest)
  // is not looked at.
  writeBytes(dir + "/" + key + ".so", readBytes(ATTN_PLANTED_LIBRARY));
  forgeManifest(dir + "/" + key, {".so", ".name"});
  std::vector<std::string> before = listDir(dir);
  for (auto mode :
       {fs::perms::all, fs::perms::owner_all | fs::perms::group_all}) {
    fs::permissions(dir, mode);
    Options o(dir);
    auto k = compileAndCheck(o);
    ASSERT_TRUE(k);
    EXPECT_FALSE(k->cacheHit());
    EXPECT_EQ(k->libraryPath(), "");
    ASSERT_EQ(o.warnings.size(), 1u) << o.allWarnings();
    const char *who =
        mode == fs::perms::all ? "others (mode 0777)" : "its group (mode 0770)";
    EXPECT_EQ(o.warnings[0], "kernel cache directory " + dir +
                                 " is writable by " + who +
                                 "; compiling without the cache");
    EXPECT_EQ(listDir(dir), before) << "the refused directory was written";
  }
  EXPECT_FALSE(marker.fired()) << "the planted library was loaded";
}

TEST(KernelCache, DirectoryOwnedBySomeoneElseIsRefused) {
  if (!isRoot())
    GTEST_SKIP() << "needs root to chown a directory to uid " << kOtherUid;
  TempDir parent, scratch;
  Marker marker(scratch);
  std::string dir = parent / "cache";
  std::string key;
  ASSERT_FALSE(populate(dir, &key).empty());
  writeBytes(dir + "/" + key + ".so", readBytes(ATTN_PLANTED_LIBRARY));
  forgeManifest(dir + "/" + key, {".so", ".name"});
  for (const std::string &f : listDir(dir))
    ASSERT_EQ(chown((dir + "/" + f).c_str(), kOtherUid, kOtherUid), 0);
  ASSERT_EQ(chown(dir.c_str(), kOtherUid, kOtherUid), 0);
  Options o(dir);
  auto k = compileAndCheck(o);
  ASSERT_TRUE(k);
  EXPECT_FALSE(k->cacheHit());
  ASSERT_EQ(o.warnings.size(), 1u) << o.allWarnings();
  EXPECT_EQ(o.warnings[0], "kernel cache directory " + dir +
                               " is owned by uid 65534, not by you (uid 0); "
                               "compiling without the cache");
  EXPECT_FALSE(marker.fired()) << "the planted library was loaded";
}

/// Compiles kSpec in `cache` and expects the entry refused: one warning
/// `kernel cache entry WHY; not using it; compiling without the cache`, and
/// a kernel compiled uncached that gives the right answer.
static void expectEntryRefused(const std::string &cache,
                               const std::string &why) {
  Options o(cache);
  auto k = compileAndCheck(o);
  ASSERT_TRUE(k);
  EXPECT_FALSE(k->cacheHit());
  EXPECT_EQ(k->libraryPath(), "");
  ASSERT_EQ(o.warnings.size(), 1u) << o.allWarnings();
  EXPECT_EQ(o.warnings[0], "kernel cache entry " + why +
                               "; not using it; compiling without the cache");
}

// Entries are checked one by one too: a file (the library or the manifest)
// others can write, in the user's own directory, even when it verifies.
TEST(KernelCache, EntryFilesWritableByOthersAreRefused) {
  TempDir cache, scratch;
  Marker marker(scratch);
  std::string stem = populate(cache.path());
  ASSERT_FALSE(stem.empty());
  writeBytes(stem + ".so", readBytes(ATTN_PLANTED_LIBRARY));
  forgeManifest(stem, {".so", ".name"});
  const auto rw = fs::perms::owner_read | fs::perms::owner_write;
  fs::permissions(stem + ".so", rw | fs::perms::others_write);
  expectEntryRefused(cache.path(),
                     stem + ".so is writable by others (mode 0602)");
  fs::permissions(stem + ".so", rw);
  fs::permissions(stem + ".sha256", rw | fs::perms::group_write);
  expectEntryRefused(cache.path(),
                     stem + ".sha256 is writable by its group (mode 0620)");
  EXPECT_FALSE(marker.fired()) << "the planted library was loaded";
}

// A symbolic link as an entry file or as the cache directory, and a file
// someone else owns in the user's own directory.
TEST(KernelCache, SymlinksAndForeignEntryFilesAreRefused) {
  TempDir cache, scratch;
  Marker marker(scratch);
  std::string stem = populate(cache.path());
  ASSERT_FALSE(stem.empty());
  writeBytes(cache / "elsewhere.so", readBytes(ATTN_PLANTED_LIBRARY));
  fs::remove(stem + ".so");
  fs::create_symlink(cache / "elsewhere.so", stem + ".so");
  forgeManifest(stem, {".so", ".name"});
  expectEntryRefused(cache.path(), stem + ".so is a symbolic link");
  if (isRoot()) {
    fs::remove(stem + ".so");
    fs::rename(cache / "elsewhere.so", stem + ".so");
    ASSERT_EQ(chown((stem + ".so").c_str(), kOtherUid, kOtherUid), 0);
    expectEntryRefused(cache.path(),
                       stem + ".so is owned by uid 65534, not by you (uid 0)");
  } else {
    std::printf("[ note ] not root: the foreign-owner case did not run\n");
  }
  EXPECT_FALSE(marker.fired()) << "the planted library was loaded";
  // A symlinked cache directory is refused as a whole.
  fs::create_directory_symlink(cache.path(), scratch / "link");
  Options o(scratch / "link");
  auto k = compileAndCheck(o);
  ASSERT_TRUE(k);
  ASSERT_EQ(o.warnings.size(), 1u) << o.allWarnings();
  EXPECT_EQ(o.warnings[0], "kernel cache directory " + (scratch / "link") +
                               " is a symbolic link; compiling without the "
                               "cache");
  EXPECT_FALSE(marker.fired()) << "the planted library was loaded";
}

// A cache directory that cannot be created used to be a hard error.
TEST(KernelCache, UnusableDirectoryFallsBackToCompilingInMemory) {
  TempDir parent, tmp;
  std::string file = parent / "a-file";
  writeBytes(file, {'x'});
  Options o(file + "/cache");
  std::string oldTmp = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "";
  bool hadTmp = std::getenv("TMPDIR") != nullptr;
  setenv("TMPDIR", tmp.path().c_str(), 1);
  auto k = compileAndCheck(o);
  if (hadTmp)
    setenv("TMPDIR", oldTmp.c_str(), 1);
  else
    unsetenv("TMPDIR");
  ASSERT_TRUE(k);
  EXPECT_FALSE(k->cacheHit());
  EXPECT_EQ(k->libraryPath(), "");
  ASSERT_EQ(o.warnings.size(), 1u) << o.allWarnings();
  EXPECT_EQ(o.warnings[0].rfind("kernel cache directory " + file +
                                    "/cache cannot be created",
                                0),
            0u)
      << o.allWarnings();
  EXPECT_TRUE(listDir(tmp.path()).empty())
      << ::testing::PrintToString(listDir(tmp.path()));
}

// A read-only cache: entries in it still load; a miss compiles in memory
// with one warning. Root ignores modes, so as root the compile runs in a
// child process as uid 65534.
TEST(KernelCache, ReadOnlyDirectoryFallsBack) {
  TempDir parent, tmp, logs;
  std::string empty = parent / "empty", full = parent / "full";
  ASSERT_TRUE(fs::create_directory(empty));
  ASSERT_FALSE(populate(full).empty());
  const bool root = isRoot();
  for (const std::string &dir : {empty, full}) {
    if (root) {
      for (const std::string &f : listDir(dir))
        ASSERT_EQ(chown((dir + "/" + f).c_str(), kOtherUid, kOtherUid), 0);
      ASSERT_EQ(chown(dir.c_str(), kOtherUid, kOtherUid), 0);
    }
    fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
  }
  if (root)
    ASSERT_EQ(chown(tmp.path().c_str(), kOtherUid, kOtherUid), 0);
  // Make the parents reachable for uid 65534 (mkdtemp makes them 0700).
  fs::permissions(parent.path(), fs::perms::owner_all | fs::perms::others_exec);
  std::vector<std::string> fullBefore = listDir(full);

  for (const std::string &dir : {empty, full}) {
    bool hit = dir == full;
    std::string output;
    int code;
    if (root) {
      std::string log = logs / "child.txt";
      code = runChild(dir, kOtherUid, tmp.path(), log);
      output = readText(log);
    } else {
      Options o(dir);
      std::string error;
      auto k = Compiler().compile(kSpec, o.options, error);
      output = o.allWarnings() + (k ? "" : "error: " + error);
      code = !k ? 4 : !(causalError(*k) < 1e-4) ? 5 : k->cacheHit() ? 11 : 10;
    }
    EXPECT_EQ(code, hit ? 11 : 10) << output;
    if (hit) {
      EXPECT_EQ(countOf(output, "warning:"), 0u) << output;
    } else {
      EXPECT_EQ(countOf(output, "warning:"), 1u) << output;
      EXPECT_NE(output.find("warning: kernel cache directory " + empty +
                            " is not writable"),
                std::string::npos)
          << output;
      EXPECT_NE(output.find("; compiling without the cache"), std::string::npos)
          << output;
    }
  }
  EXPECT_TRUE(listDir(empty).empty());
  EXPECT_EQ(listDir(full), fullBefore);
  for (const std::string &dir : {empty, full})
    fs::permissions(dir, fs::perms::owner_all);
  EXPECT_TRUE(listDir(tmp.path()).empty())
      << ::testing::PrintToString(listDir(tmp.path()));
}

// 16 processes compiling one new spec all compiled it; now the first takes
// the key's lock and compiles, the others wait and load its entry.
TEST(KernelCache, ConcurrentThreadsCompileOnce) {
  TempDir cache;
  constexpr int kThreads = 6;
  std::unique_ptr<Kernel> kernels[kThreads];
  std::string errors[kThreads];
  std::vector<std::string> warnings[kThreads];
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      CompileOptions o;
      o.cacheDir = cache.path();
      o.onWarning = [&, t](const std::string &w) { warnings[t].push_back(w); };
      kernels[t] = Compiler().compile(kSpec, o, errors[t]);
    });
  for (auto &t : threads)
    t.join();
  int compiled = 0;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(kernels[t]) << errors[t];
    EXPECT_TRUE(warnings[t].empty()) << warnings[t][0];
    compiled += !kernels[t]->cacheHit();
    EXPECT_LT(causalError(*kernels[t]), 1e-4);
  }
  EXPECT_EQ(compiled, 1);
  std::string key = fs::path(kernels[0]->libraryPath()).stem().string();
  EXPECT_EQ(listDir(cache.path()), entryFiles(key));
}

TEST(KernelCache, ConcurrentProcessesCompileOnce) {
  TempDir cache, tmp, logs;
  constexpr int kProcesses = 4;
  std::vector<std::thread> threads;
  int codes[kProcesses];
  for (int p = 0; p < kProcesses; ++p)
    threads.emplace_back([&, p] {
      codes[p] = runChild(cache.path(), -1, tmp.path(),
                          logs / ("child" + std::to_string(p) + ".txt"));
    });
  for (auto &t : threads)
    t.join();
  int compiled = 0;
  for (int p = 0; p < kProcesses; ++p) {
    std::string output =
        readText(logs / ("child" + std::to_string(p) + ".txt"));
    EXPECT_TRUE(codes[p] == 10 || codes[p] == 11) << codes[p] << ": " << output;
    EXPECT_EQ(output.find("warning:"), std::string::npos) << output;
    compiled += codes[p] == 10;
  }
  EXPECT_EQ(compiled, 1);
  std::vector<std::string> names = listDir(cache.path());
  ASSERT_EQ(names.size(), 3u) << ::testing::PrintToString(names);
  EXPECT_EQ(names, entryFiles(fs::path(names[0]).stem().string()));
  EXPECT_TRUE(listDir(tmp.path()).empty());
}

// A publish that fails after writing its temporary (as a failed rename did)
// leaves no temporary and no partial entry; the kernel is still used.
TEST(KernelCache, FailedPublishLeavesNothingBehind) {
  TempDir cache, other;
  std::string key;
  ASSERT_FALSE(populate(other.path(), &key).empty());
  Options o(cache.path());
  detail::setCachePublishFaultForTesting(true);
  std::string error;
  auto k = Compiler().compile(kSpec, o.options, error);
  detail::setCachePublishFaultForTesting(false);
  ASSERT_TRUE(k) << error;
  EXPECT_LT(causalError(*k), 1e-4);
  EXPECT_FALSE(k->cacheHit());
  EXPECT_EQ(k->libraryPath(), "");
  ASSERT_EQ(o.warnings.size(), 1u) << o.allWarnings();
  EXPECT_NE(o.warnings[0].find("cannot store the kernel in the cache (cannot "
                               "rename "),
            std::string::npos)
      << o.allWarnings();
  EXPECT_TRUE(listDir(cache.path()).empty())
      << ::testing::PrintToString(listDir(cache.path()));
  // Leftovers of a crashed compile (temporaries, a scratch directory) are
  // swept by the next compile of the key.
  writeBytes(cache / (key + ".so.tmp-99999-0"), {'x'});
  fs::create_directory(cache / (key + ".build-abcdef"));
  writeBytes(cache / (key + ".build-abcdef/kernel.o"), {'x'});
  Options again(cache.path());
  auto k2 = compileAndCheck(again);
  ASSERT_TRUE(k2);
  EXPECT_TRUE(again.warnings.empty()) << again.allWarnings();
  EXPECT_EQ(listDir(cache.path()), entryFiles(key));
}

// Libraries are dlopen'ed from /proc/self/fd/N of a memfd, and glibc
// returns an already loaded library of the same name: a kernel unloaded
// before the next is loaded must not make the next one (same symbols, other
// params) resolve to it.
TEST(KernelCache, KernelsLoadedOneAfterAnotherStayDistinct) {
  TempDir cache;
  const std::string spec =
      std::string(ATTN_EXAMPLES_DIR) + "/sliding_window.attn";
  for (int64_t window : {3, 9, 3}) {
    Options o(cache.path());
    o.options.params = {{"window", std::to_string(window)}};
    std::string error;
    auto k = Compiler().compile(spec, o.options, error);
    ASSERT_TRUE(k) << error;
    EXPECT_LT(causalError(*k, window), 1e-4) << "window " << window;
  } // each kernel is unloaded before the next is loaded
}

// With no ATTN_CACHE_DIR, XDG_CACHE_HOME or HOME the cache used to be the
// shared /tmp/attnc-cache.
TEST(KernelCache, DefaultDirectoryIsPerUser) {
  const char *names[] = {"ATTN_CACHE_DIR", "XDG_CACHE_HOME", "HOME"};
  std::vector<std::pair<std::string, std::string>> saved;
  for (const char *n : names)
    if (const char *v = std::getenv(n))
      saved.push_back({n, v});
  for (const char *n : names)
    unsetenv(n);
  std::string dir = Compiler::cacheDirectory(CompileOptions());
  setenv("XDG_CACHE_HOME", "relative/cache", 1); // invalid: ignored
  std::string withRelativeXdg = Compiler::cacheDirectory(CompileOptions());
  unsetenv("XDG_CACHE_HOME");
  for (auto &[n, v] : saved)
    setenv(n.c_str(), v.c_str(), 1);
  EXPECT_NE(dir, "/tmp/attnc-cache");
  EXPECT_EQ(withRelativeXdg, dir);
  bool perUserTmp = dir == "/tmp/attnc-cache-" + std::to_string(geteuid());
  bool home =
      dir.size() > 13 && dir.compare(dir.size() - 13, 13, "/.cache/attnc") == 0;
  EXPECT_TRUE(perUserTmp || home) << dir;
}
