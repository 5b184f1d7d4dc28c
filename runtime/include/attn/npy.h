//===- npy.h - NumPy .npy reader and writer ---------------------*- C++ -*-===//
//
// A small, dependency-free reader/writer for NumPy's .npy format, used to
// move tensors between the runtime, tests and Python, and the host-memory
// budget that every allocation sized by a user's shape is checked against.
// Plain C++17 that builds with -fno-exceptions: nothing throws, errors come
// back as strings.
//
// .npy files are untrusted input: a read is bounded by the header's declared
// size, which must match the file's real size, and by a memory budget.
// Outputs go to a temporary file beside the destination and are renamed into
// place only once every output of a set is written and synced.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_NPY_H
#define ATTN_NPY_H

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace attn {

/// Element types a HostArray can hold. BF16 has no standard .npy descr, so it
/// can live in memory but cannot be read from or written to a .npy file.
enum class DType : uint8_t { F32, F64, I32, I64, F16, BF16, Bool };

/// NumPy-style name of \p t: "float32", "float64", "int32", "int64",
/// "float16", "bfloat16" or "bool".
const char *dtypeName(DType t);

/// Size of one element of \p t in bytes.
size_t dtypeSize(DType t);

/// A dense host tensor: C order (row major), little-endian elements.
struct HostArray {
  DType dtype = DType::F64;
  std::vector<int64_t> shape;
  /// Raw element storage; size() == numel() * dtypeSize(dtype).
  std::vector<uint8_t> bytes;

  /// Product of the dimensions (1 for rank 0).
  int64_t numel() const;

  /// A zero-filled array of the given type and (non-negative) shape. For
  /// shapes that come from users, use allocate().
  static HostArray zeros(DType dtype, std::vector<int64_t> shape);

  /// A zero-filled array like zeros(), for shapes that come from users:
  /// returns a one-line message instead of asserting or aborting when a dim
  /// is negative, the size overflows, or the memory cannot be allocated.
  /// (A process whose new-handler aborts, as LLVM tools install, still gets
  /// the message: the handler is set aside for the allocation. That is not
  /// thread-safe against other threads' failing allocations.)
  static std::string allocate(DType dtype, std::vector<int64_t> shape,
                              HostArray &out);

  template <typename T> T *data() {
    return reinterpret_cast<T *>(bytes.data());
  }
  template <typename T> const T *data() const {
    return reinterpret_cast<const T *>(bytes.data());
  }

  /// Element \p flat (C-order index) converted to double, for any dtype.
  double getDouble(int64_t flat) const;

  /// Stores \p v at element \p flat, converting to the array's dtype: F16 and
  /// BF16 round to nearest even (overflowing to infinity), integers truncate
  /// toward zero and saturate (NaN becomes 0), Bool stores v != 0.
  void setDouble(int64_t flat, double v);

  /// The shape as "[2, 3, 4]" ("[]" for rank 0).
  std::string shapeString() const;
};

//===----------------------------------------------------------------------===//
// Host memory
//===----------------------------------------------------------------------===//

/// Byte counts that saturate at UINT64_MAX instead of wrapping, so that a
/// size computed from a hostile shape compares as "too large".
constexpr uint64_t kSaturatedBytes = std::numeric_limits<uint64_t>::max();
inline uint64_t saturatingAdd(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_add_overflow(a, b, &r) ? kSaturatedBytes : r;
}
inline uint64_t saturatingMul(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_mul_overflow(a, b, &r) ? kSaturatedBytes : r;
}

/// Bytes of a dense array of \p shape with \p elemSize-byte elements,
/// saturating (a negative dim also gives kSaturatedBytes).
uint64_t arrayBytes(const std::vector<int64_t> &shape, size_t elemSize);

/// The default budget for host memory sized by users' shapes (`attnc run
/// --max-memory`): half the physical memory (sysconf), or half a cgroup
/// memory limit if lower; where RLIMIT_AS or RLIMIT_DATA is set, at most
/// three quarters of what those limits leave beyond the memory already
/// mapped. Never 0.
uint64_t defaultMemoryBudget();

/// \p bytes for messages: "512 B", "1.5 KiB", "96.0 GiB" (powers of 1024).
std::string formatBytes(uint64_t bytes);

/// Parses a positive size such as "1048576", "512K", "1.5G", "8GiB", "2TB":
/// a number (decimals allowed with a suffix) and an optional K, M, G, T or P
/// suffix (powers of 1024; "i", "B" or "iB" may follow). False on anything
/// else, on 0 and on overflow.
bool parseByteSize(const std::string &text, uint64_t &bytes);

//===----------------------------------------------------------------------===//
// .npy
//===----------------------------------------------------------------------===//

/// The longest .npy header (the dict text) accepted. NumPy's own np.load
/// refuses headers over 10000 bytes unless told otherwise; this leaves room
/// for any shape NumPy writes.
constexpr size_t kMaxNpyHeaderBytes = size_t(1) << 20;

/// All functions below return "" on success, or a one-line message (no
/// trailing newline) describing the failure; on failure \p out is unspecified.

/// Parses a complete .npy file image (format version 1.0, 2.0 or 3.0) holding
/// a C-ordered little-endian float32/float64/int32/int64/float16/bool array.
/// The image must end where the header's data ends (no trailing bytes).
std::string parseNpy(const void *data, size_t size, HostArray &out);

/// Reads and parses the .npy file at \p path; messages name the path. Only
/// regular files are read, and only when their size is exactly what the
/// header declares; the data must fit in \p maxBytes (0: the
/// defaultMemoryBudget()), which messages describe as \p budgetText when
/// given (e.g. "--max-memory=8.0 GiB") and as "the memory budget of 8.0 GiB"
/// otherwise. Nothing is allocated before these checks pass.
std::string readNpy(const std::string &path, HostArray &out,
                    uint64_t maxBytes = 0, const std::string &budgetText = "");

/// Serializes the preamble and header of \p a (everything before the data)
/// as serializeNpy does. Fails for BF16 and for an inconsistent array.
std::string serializeNpyHeader(const HostArray &a, std::vector<uint8_t> &out);

/// Serializes \p a as a format-1.0 .npy image (2.0 only if the header would
/// not fit), with the data 64-byte aligned as NumPy writes it. Fails for BF16.
std::string serializeNpy(const HostArray &a, std::vector<uint8_t> &out);

/// Writes \p a to \p path atomically (an NpyOutputFiles of one file): a
/// failure leaves any existing file at \p path untouched. Messages name the
/// path.
std::string writeNpy(const std::string &path, const HostArray &a);

/// Writes \p a as .npy (header, then the data, without copying it) to the
/// open file \p fd, checking every write; \p name names the file in
/// messages.
std::string writeNpyToFd(int fd, const HostArray &a, const std::string &name);

/// .npy files that are published together or not at all. add() checks each
/// destination before anything is computed and opens a temporary file
/// beside it (O_EXCL, in the destination's directory, so that the final
/// rename stays within one file system); commit() writes and fsyncs every
/// temporary file and only then renames them over their destinations. If a
/// write fails (a full disk, a file size limit, an I/O error), every
/// temporary file is removed and existing files are left untouched. An
/// uncommitted set removes its temporary files when destroyed.
class NpyOutputFiles {
public:
  NpyOutputFiles() = default;
  ~NpyOutputFiles();
  NpyOutputFiles(const NpyOutputFiles &) = delete;
  NpyOutputFiles &operator=(const NpyOutputFiles &) = delete;

  /// Adds the destination \p path: its directory must exist and be writable,
  /// and it must not be a directory, a special file (a device, a FIFO), a
  /// dangling symbolic link, or the same file as a destination added before
  /// (compared after resolving the directory and symbolic links, and by
  /// inode where the file exists). A symbolic link is written through: the
  /// file it names is replaced.
  std::string add(const std::string &path);

  /// The number of destinations added.
  size_t size() const { return files.size(); }

  /// The temporary file of the \p i-th destination ("" once published or
  /// discarded), e.g. for a tool to remove on a fatal signal.
  const std::string &temporaryPath(size_t i) const { return files[i].temp; }

  /// Writes arrays[i] to the i-th destination (one array per add()), then
  /// publishes all of them. Can be called once.
  std::string commit(const std::vector<const HostArray *> &arrays);

  /// Closes and removes the temporary files (of an uncommitted set).
  void discard();

private:
  struct File {
    std::string path;   ///< as given (for messages)
    std::string target; ///< the resolved destination
    std::string temp;   ///< the temporary file beside it
    int fd = -1;
    uint64_t dev = 0, ino = 0; ///< of an existing destination
    bool exists = false;
  };
  std::vector<File> files;
  bool committed = false;
};

} // namespace attn

#endif // ATTN_NPY_H
