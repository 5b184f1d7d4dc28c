//===- npy.h - NumPy .npy reader and writer ---------------------*- C++ -*-===//
//
// A small, dependency-free reader/writer for NumPy's .npy format, used to
// move tensors between the runtime, tests and Python. Plain C++17 that builds
// with -fno-exceptions: nothing throws, errors come back as strings.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_NPY_H
#define ATTN_NPY_H

#include <cstddef>
#include <cstdint>
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

  /// A zero-filled array of the given type and (non-negative) shape.
  static HostArray zeros(DType dtype, std::vector<int64_t> shape);

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

/// All functions below return "" on success, or a one-line message (no
/// trailing newline) describing the failure; on failure \p out is unspecified.

/// Parses a complete .npy file image (format version 1.0, 2.0 or 3.0) holding
/// a C-ordered little-endian float32/float64/int32/int64/float16/bool array.
std::string parseNpy(const void *data, size_t size, HostArray &out);

/// Reads and parses the .npy file at \p path; messages name the path.
std::string readNpy(const std::string &path, HostArray &out);

/// Serializes \p a as a format-1.0 .npy image (2.0 only if the header would
/// not fit), with the data 64-byte aligned as NumPy writes it. Fails for BF16.
std::string serializeNpy(const HostArray &a, std::vector<uint8_t> &out);

/// Serializes \p a and writes it to \p path; messages name the path.
std::string writeNpy(const std::string &path, const HostArray &a);

} // namespace attn

#endif // ATTN_NPY_H
