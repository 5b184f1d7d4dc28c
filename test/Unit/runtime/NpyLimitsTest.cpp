//===- NpyLimitsTest.cpp - .npy files as untrusted input and output -------===//
//
// The reader's bounds (regular files only, the header's size against the
// file's, the header length, the memory budget), allocation that reports
// failure instead of aborting, the memory budget and size helpers, and the
// output files that appear together or not at all (a full disk through
// /dev/full, a file size limit and, where a tmpfs can be mounted, a real
// 64 KiB file system).
//
//===----------------------------------------------------------------------===//

#include "attn/npy.h"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <new>
#include <set>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace attn;

namespace {

#define EXPECT_CONTAINS(str, sub)                                              \
  EXPECT_NE(std::string(str).find(sub), std::string::npos)                     \
      << "message: " << (str) << "\nexpected to contain: " << (sub)

/// A fresh directory under the gtest temp dir, removed (with its files)
/// when the test ends.
class TempDir {
public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "attn_npy_limits_XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()))
      path = buf.data();
  }
  ~TempDir() {
    for (const std::string &name : list())
      unlink((path + "/" + name).c_str());
    rmdir(path.c_str());
  }
  std::string file(const std::string &name) const { return path + "/" + name; }
  /// The names in the directory, sorted.
  std::set<std::string> list() const {
    std::set<std::string> names;
    if (DIR *d = opendir(path.c_str())) {
      while (dirent *e = readdir(d))
        if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, ".."))
          names.insert(e->d_name);
      closedir(d);
    }
    return names;
  }
  std::string path;
};

void writeFile(const std::string &path, const std::vector<uint8_t> &bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char *>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// A float32 array of \p n elements, values 0, 1, 2, ...
HostArray floats(int64_t n) {
  HostArray a = HostArray::zeros(DType::F32, {n});
  for (int64_t i = 0; i < n; ++i)
    a.setDouble(i, static_cast<double>(i));
  return a;
}

std::vector<uint8_t> image(const HostArray &a) {
  std::vector<uint8_t> buf;
  EXPECT_EQ(serializeNpy(a, buf), "");
  return buf;
}

/// A .npy preamble (version 2.0) declaring a header of \p headerLen bytes.
std::vector<uint8_t> preambleV2(uint32_t headerLen) {
  std::vector<uint8_t> b = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0};
  for (int i = 0; i < 4; ++i)
    b.push_back(static_cast<uint8_t>(headerLen >> (8 * i)));
  return b;
}

#if defined(__SANITIZE_ADDRESS__)
#define ATTN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ATTN_ASAN 1
#endif
#endif

//===----------------------------------------------------------------------===//
// Reading
//===----------------------------------------------------------------------===//

TEST(NpyLimits, ReadRejectsFilesThatAreNotRegular) {
  HostArray a;
  std::string err = readNpy("/dev/zero", a);
  EXPECT_EQ(err, "cannot read '/dev/zero': it is a character device, not a "
                 "regular .npy file");
  TempDir dir;
  EXPECT_EQ(readNpy(dir.path, a),
            "cannot read '" + dir.path +
                "': it is a directory, not a regular .npy file");
  // A FIFO: rejected at once, not read until a writer appears.
  std::string fifo = dir.file("fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(readNpy(fifo, a), "cannot read '" + fifo +
                                  "': it is a FIFO, not a regular .npy file");
}

TEST(NpyLimits, ReadNeedsTheFileSizeTheHeaderDeclares) {
  TempDir dir;
  std::vector<uint8_t> good = image(floats(5));
  HostArray a;
  writeFile(dir.file("good.npy"), good);
  ASSERT_EQ(readNpy(dir.file("good.npy"), a), "");
  EXPECT_EQ(a.shape, std::vector<int64_t>{5});

  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  writeFile(dir.file("long.npy"), longer);
  EXPECT_EQ(readNpy(dir.file("long.npy"), a),
            dir.file("long.npy") +
                ": size mismatch: header says [5] float32 = 20 bytes, file "
                "has 21 (1 bytes after the data)");
  // The same for an image in memory: one notion of a valid file.
  HostArray b;
  EXPECT_CONTAINS(parseNpy(longer.data(), longer.size(), b), "size mismatch");

  std::vector<uint8_t> shorter(good.begin(), good.end() - 1);
  writeFile(dir.file("short.npy"), shorter);
  EXPECT_CONTAINS(readNpy(dir.file("short.npy"), a),
                  "truncated: header says [5] float32 = 20 bytes, file has "
                  "19");
}

TEST(NpyLimits, HugeDeclaredShapeInASmallFileAllocatesNothing) {
  // The header claims 2^40 float32 (4 TiB); the file holds 8 bytes of data.
  std::string header =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }";
  header.resize(117, ' ');
  header += '\n';
  std::vector<uint8_t> buf = {
      0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<uint8_t>(header.size()),
      0};
  buf.insert(buf.end(), header.begin(), header.end());
  buf.insert(buf.end(), 8, 0);
  TempDir dir;
  writeFile(dir.file("huge.npy"), buf);
  HostArray a;
  EXPECT_CONTAINS(readNpy(dir.file("huge.npy"), a),
                  "truncated: header says [1099511627776] float32 = "
                  "4398046511104 bytes, file has 8");
}

TEST(NpyLimits, HeaderLengthIsBounded) {
  // A 2 MiB header that is really there: refused by its length, unparsed.
  uint32_t len = 2u << 20;
  std::vector<uint8_t> buf = preambleV2(len);
  buf.resize(buf.size() + len, ' ');
  TempDir dir;
  writeFile(dir.file("long-header.npy"), buf);
  HostArray a;
  EXPECT_EQ(readNpy(dir.file("long-header.npy"), a),
            dir.file("long-header.npy") +
                ": header length 2097152 exceeds the limit of 1048576 bytes");
  EXPECT_EQ(parseNpy(buf.data(), buf.size(), a),
            "header length 2097152 exceeds the limit of 1048576 bytes");
}

TEST(NpyLimits, ReadIsBoundedByTheMemoryBudget) {
  TempDir dir;
  writeFile(dir.file("a.npy"), image(floats(1000)));
  HostArray a;
  EXPECT_EQ(readNpy(dir.file("a.npy"), a, 100),
            dir.file("a.npy") + ": its float32 [1000] array needs 3.9 KiB, "
                                "more than the memory budget of 100 B");
  EXPECT_EQ(readNpy(dir.file("a.npy"), a, 100, "--max-memory=100 B"),
            dir.file("a.npy") + ": its float32 [1000] array needs 3.9 KiB, "
                                "more than --max-memory=100 B");
  ASSERT_EQ(readNpy(dir.file("a.npy"), a, 4000), "");
  EXPECT_EQ(a.getDouble(999), 999.0);
}

//===----------------------------------------------------------------------===//
// Allocation, the budget, sizes
//===----------------------------------------------------------------------===//

TEST(NpyLimits, AllocateReportsOverflow) {
  HostArray a;
  EXPECT_EQ(HostArray::allocate(DType::F32, {int64_t(1) << 62, 4}, a),
            "a float32 [4611686018427387904, 4] array is too large (its size "
            "in bytes overflows)");
  EXPECT_CONTAINS(HostArray::allocate(DType::F32, {-1}, a), "too large");
  ASSERT_EQ(HostArray::allocate(DType::I32, {3, 2}, a), "");
  EXPECT_EQ(a.bytes, std::vector<uint8_t>(24, 0));
}

[[noreturn]] void abortingNewHandler() { std::abort(); }

TEST(NpyLimits, AllocateReportsOutOfMemoryUnderAnAbortingNewHandler) {
#ifdef ATTN_ASAN
  GTEST_SKIP() << "ASan reserves its shadow memory past any RLIMIT_AS";
#else
  // In a child process limited to 512 MiB of address space more than it
  // uses, with a new-handler that aborts (as LLVM tools install): a 4 GiB
  // array is an error message, not an abort.
  EXPECT_EXIT(
      {
        std::set_new_handler(abortingNewHandler);
        std::ifstream statm("/proc/self/statm");
        unsigned long long pages = 0;
        statm >> pages;
        rlimit lim;
        lim.rlim_cur = lim.rlim_max =
            pages * static_cast<unsigned long long>(sysconf(_SC_PAGESIZE)) +
            (512ull << 20);
        setrlimit(RLIMIT_AS, &lim);
        HostArray a;
        std::string err =
            HostArray::allocate(DType::F32, {int64_t(1) << 30}, a);
        std::fprintf(stderr, "%s\n", err.c_str());
        std::exit(err.find("out of memory allocating 4.0 GiB for a float32 "
                           "[1073741824] array") != std::string::npos
                      ? 0
                      : 1);
      },
      ::testing::ExitedWithCode(0), "out of memory");
#endif
}

TEST(NpyLimits, DefaultBudgetFollowsTheAddressSpaceLimit) {
  uint64_t budget = defaultMemoryBudget();
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  EXPECT_GT(budget, 0u);
  EXPECT_LE(budget, static_cast<uint64_t>(pages) * page / 2);
#ifndef ATTN_ASAN
  EXPECT_EXIT(
      {
        rlimit lim;
        lim.rlim_cur = lim.rlim_max = 64ull << 30;
        setrlimit(RLIMIT_AS, &lim);
        // At most 3/4 of the 64 GiB limit (less what is mapped already).
        std::exit(defaultMemoryBudget() <= (48ull << 30) ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
#endif
}

TEST(NpyLimits, ByteSizes) {
  uint64_t b = 0;
  EXPECT_TRUE(parseByteSize("1048576", b));
  EXPECT_EQ(b, 1048576u);
  EXPECT_TRUE(parseByteSize("512K", b));
  EXPECT_EQ(b, 512u << 10);
  EXPECT_TRUE(parseByteSize("8G", b));
  EXPECT_EQ(b, 8ull << 30);
  EXPECT_TRUE(parseByteSize("8gib", b));
  EXPECT_EQ(b, 8ull << 30);
  EXPECT_TRUE(parseByteSize("2TB", b));
  EXPECT_EQ(b, 2ull << 40);
  EXPECT_TRUE(parseByteSize("1.5G", b));
  EXPECT_EQ(b, 3ull << 29);
  EXPECT_TRUE(parseByteSize("100B", b));
  EXPECT_EQ(b, 100u);
  for (const char *bad : {"", "0", "0G", "G", "-1G", "1.5", "8X", "8GG", "1.G",
                          "99999999999999999999", "16777216T", " 8G"})
    EXPECT_FALSE(parseByteSize(bad, b)) << bad;

  EXPECT_EQ(formatBytes(0), "0 B");
  EXPECT_EQ(formatBytes(1023), "1023 B");
  EXPECT_EQ(formatBytes(1536), "1.5 KiB");
  EXPECT_EQ(formatBytes(96ull << 30), "96.0 GiB");
  EXPECT_EQ(formatBytes(kSaturatedBytes), "16.0 EiB");
  EXPECT_EQ(arrayBytes({2, 3}, 4), 24u);
  EXPECT_EQ(arrayBytes({}, 8), 8u);
  EXPECT_EQ(arrayBytes({int64_t(1) << 62, 8}, 4), kSaturatedBytes);
  EXPECT_EQ(arrayBytes({-1}, 4), kSaturatedBytes);
}

//===----------------------------------------------------------------------===//
// Writing
//===----------------------------------------------------------------------===//

TEST(NpyLimits, WriteErrorsAreReported) {
  int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    GTEST_SKIP() << "no /dev/full";
  std::string err = writeNpyToFd(fd, floats(10), "full.npy");
  close(fd);
  EXPECT_EQ(err, "error writing 'full.npy': No space left on device");
}

TEST(NpyLimits, OutputPathsAreCheckedWhenAdded) {
  TempDir dir;
  writeFile(dir.file("a.npy"), {1, 2, 3});
  NpyOutputFiles out;
  EXPECT_EQ(out.add(dir.file("missing/o.npy")),
            "cannot open '" + dir.file("missing/o.npy") +
                "' for writing: No such file or directory");
  EXPECT_EQ(out.add(dir.file("a.npy/o.npy")),
            "cannot open '" + dir.file("a.npy/o.npy") +
                "' for writing: Not a directory");
  EXPECT_EQ(out.add(dir.path),
            "cannot open '" + dir.path + "' for writing: it is a directory");
  EXPECT_EQ(out.add(dir.path + "/"),
            "cannot open '" + dir.path +
                "/' for writing: it names a directory");
  EXPECT_CONTAINS(out.add("/dev/null"),
                  "cannot open '/dev/null' for writing: it is a character "
                  "device");
  ASSERT_EQ(out.add(dir.file("o.npy")), "");
  // The same file again: by another spelling, through a symbolic link
  // (also one to a file not yet there), or a hard link.
  EXPECT_EQ(out.add(dir.path + "/./o.npy"),
            "'" + dir.path + "/./o.npy' is the same file as '" +
                dir.file("o.npy") + "' (each output needs its own file)");
  ASSERT_EQ(symlink("o.npy", dir.file("link.npy").c_str()), 0);
  EXPECT_CONTAINS(out.add(dir.file("link.npy")), "is the same file as");
  ASSERT_EQ(out.add(dir.file("a.npy")), "");
  ASSERT_EQ(link(dir.file("a.npy").c_str(), dir.file("hard.npy").c_str()), 0);
  EXPECT_CONTAINS(out.add(dir.file("hard.npy")), "is the same file as");
  ASSERT_EQ(symlink("nowhere/x.npy", dir.file("dangling.npy").c_str()), 0);
  EXPECT_EQ(out.add(dir.file("dangling.npy")),
            "cannot open '" + dir.file("dangling.npy") +
                "' for writing: No such file or directory");
  EXPECT_EQ(out.size(), 2u);
  // The temporary files exist from add() on, and go with the set.
  // a, hard, link, dangling and the two temporary files.
  EXPECT_EQ(dir.list().size(), 6u);
  out.discard();
  EXPECT_EQ(dir.list(), (std::set<std::string>{"a.npy", "dangling.npy",
                                               "hard.npy", "link.npy"}));
}

TEST(NpyLimits, OutputsAppearTogether) {
  TempDir dir;
  HostArray small = floats(3), big = floats(5000);
  {
    NpyOutputFiles out;
    ASSERT_EQ(out.add(dir.file("lse.npy")), "");
    ASSERT_EQ(out.add(dir.file("o.npy")), "");
    ASSERT_EQ(out.commit({&small, &big}), "");
  }
  EXPECT_EQ(dir.list(), (std::set<std::string>{"lse.npy", "o.npy"}));
  HostArray a;
  ASSERT_EQ(readNpy(dir.file("o.npy"), a), "");
  EXPECT_EQ(a.bytes, big.bytes);
  // An uncommitted set leaves nothing behind, and existing files alone.
  {
    NpyOutputFiles out;
    ASSERT_EQ(out.add(dir.file("o.npy")), "");
    ASSERT_EQ(out.add(dir.file("new.npy")), "");
  }
  EXPECT_EQ(dir.list(), (std::set<std::string>{"lse.npy", "o.npy"}));
  ASSERT_EQ(readNpy(dir.file("o.npy"), a), "");
  EXPECT_EQ(a.bytes, big.bytes);
}

/// In a child process: writes two outputs under a 64 KiB file size limit
/// (SIGXFSZ ignored, so the write fails with EFBIG); exits 0 when the
/// commit reports the failure.
[[noreturn]] void commitPastFileSizeLimit(const TempDir &dir) {
  std::signal(SIGXFSZ, SIG_IGN);
  rlimit lim;
  lim.rlim_cur = lim.rlim_max = 64 << 10;
  setrlimit(RLIMIT_FSIZE, &lim);
  HostArray small = floats(3), big = floats(100000);
  NpyOutputFiles out;
  if (!out.add(dir.file("lse.npy")).empty() ||
      !out.add(dir.file("o.npy")).empty())
    std::exit(2);
  std::string err = out.commit({&small, &big});
  std::fprintf(stderr, "%s\n", err.c_str());
  std::exit(err.empty() ? 1 : 0);
}

TEST(NpyLimits, AFailedSecondOutputLeavesNoFirstOutput) {
  // The first, small output is written to its temporary file, the second
  // fails: neither appears, and the existing files keep their contents.
  TempDir dir;
  writeFile(dir.file("o.npy"), {'o', 'l', 'd'});
  EXPECT_EXIT(commitPastFileSizeLimit(dir), ::testing::ExitedWithCode(0),
              "error writing '.*o.npy': File too large \\(no output was "
              "written\\)");
  EXPECT_EQ(dir.list(), std::set<std::string>{"o.npy"});
  EXPECT_EQ(readFile(dir.file("o.npy")), "old");
}

TEST(NpyLimits, FullTmpfs) {
  // A real full file system: a 64 KiB tmpfs (needs CAP_SYS_ADMIN).
  TempDir dir;
  std::string mnt = dir.file("mnt");
  ASSERT_EQ(mkdir(mnt.c_str(), 0700), 0);
  if (mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=64k") != 0) {
    int e = errno;
    rmdir(mnt.c_str());
    GTEST_SKIP() << "cannot mount a 64 KiB tmpfs (" << std::strerror(e)
                 << "); the full-disk case is covered by /dev/full and "
                    "RLIMIT_FSIZE";
  }
  writeFile(mnt + "/o.npy", {'o', 'l', 'd'});
  HostArray small = floats(3), big = floats(100000);
  std::string err;
  {
    NpyOutputFiles out;
    ASSERT_EQ(out.add(mnt + "/lse.npy"), "");
    ASSERT_EQ(out.add(mnt + "/o.npy"), "");
    err = out.commit({&small, &big});
  }
  std::string left = readFile(mnt + "/o.npy");
  bool lseThere = access((mnt + "/lse.npy").c_str(), F_OK) == 0;
  DIR *d = opendir(mnt.c_str());
  int entries = 0;
  while (dirent *e = d ? readdir(d) : nullptr)
    entries += e->d_name[0] != '.' || std::strlen(e->d_name) > 2;
  if (d)
    closedir(d);
  // A read-only file system is found when the output is added.
  ASSERT_EQ(
      mount("tmpfs", mnt.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, "size=64k"),
      0);
  NpyOutputFiles ro;
  std::string roErr = ro.add(mnt + "/x.npy");
  umount(mnt.c_str());
  rmdir(mnt.c_str());

  EXPECT_EQ(err, "error writing '" + mnt +
                     "/o.npy': No space left on device (no output was "
                     "written)");
  EXPECT_EQ(left, "old");
  EXPECT_FALSE(lseThere);
  EXPECT_EQ(entries, 1) << "temporary files were left behind";
  EXPECT_EQ(roErr, "cannot open '" + mnt +
                       "/x.npy' for writing: Read-only file system");
}

} // namespace
