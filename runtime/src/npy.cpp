//===- npy.cpp - NumPy .npy reader and writer -----------------------------===//
//
// Implements the .npy format (versions 1.0, 2.0 and 3.0) for C-ordered
// little-endian arrays. The header is a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// and comes from user files, so it is parsed by a small scanner whose every
// read is checked against the end of the header. Files are read only after
// the header's data size is checked against the file's real size and the
// memory budget; outputs are written to temporary files and renamed.
//
//===----------------------------------------------------------------------===//

#include "attn/npy.h"

#include <algorithm>
#include <cassert>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace attn;

static constexpr char kMagic[] = "\x93NUMPY";
static constexpr size_t kMagicLen = 6;
/// NumPy aligns the start of the data to this many bytes.
static constexpr size_t kAlign = 64;
/// NumPy leaves room in the header for shape[0] to grow to this many digits.
static constexpr size_t kGrowthDigits = 21;
static constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

//===----------------------------------------------------------------------===//
// DType and HostArray
//===----------------------------------------------------------------------===//

namespace {
struct DTypeInfo {
  const char *name;
  size_t size;
  /// The .npy descr, or null where NumPy has no standard one.
  const char *descr;
};
} // namespace

/// Indexed by DType.
static constexpr DTypeInfo kDTypes[] = {
    {"float32", 4, "<f4"}, {"float64", 8, "<f8"}, {"int32", 4, "<i4"},
    {"int64", 8, "<i8"},   {"float16", 2, "<f2"}, {"bfloat16", 2, nullptr},
    {"bool", 1, "|b1"},
};
static constexpr size_t kNumDTypes = sizeof(kDTypes) / sizeof(kDTypes[0]);
static_assert(kNumDTypes == static_cast<size_t>(DType::Bool) + 1,
              "kDTypes must cover every DType");

const char *attn::dtypeName(DType t) {
  return kDTypes[static_cast<size_t>(t)].name;
}

size_t attn::dtypeSize(DType t) { return kDTypes[static_cast<size_t>(t)].size; }

/// Formats \p shape as "[2, 3, 4]".
static std::string formatShape(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

/// Computes the element count of \p shape into \p n; false on a negative
/// dimension or if the count (or its size in bytes of \p t) overflows int64.
static bool checkedNumel(const std::vector<int64_t> &shape, DType t,
                         int64_t &n) {
  n = 1;
  for (int64_t d : shape) {
    if (d < 0 || (d != 0 && n > kInt64Max / d))
      return false;
    n *= d;
  }
  return n <= kInt64Max / static_cast<int64_t>(dtypeSize(t));
}

uint64_t attn::arrayBytes(const std::vector<int64_t> &shape, size_t elemSize) {
  uint64_t bytes = elemSize;
  for (int64_t d : shape) {
    if (d < 0)
      return kSaturatedBytes;
    bytes = saturatingMul(bytes, static_cast<uint64_t>(d));
  }
  return bytes;
}

int64_t HostArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

HostArray HostArray::zeros(DType dtype, std::vector<int64_t> shape) {
  HostArray a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  int64_t n = 0;
  [[maybe_unused]] bool ok = checkedNumel(a.shape, dtype, n);
  assert(ok && "invalid shape");
  a.bytes.assign(static_cast<size_t>(n) * dtypeSize(dtype), 0);
  return a;
}

/// Resizes \p v to \p n zero bytes; false when the memory cannot be had.
static bool tryAssignZeros(std::vector<uint8_t> &v, size_t n) {
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
  // With no new-handler, operator new throws std::bad_alloc; LLVM tools
  // install one that aborts the process instead, so set it aside.
  std::new_handler saved = std::set_new_handler(nullptr);
  bool ok = true;
  try {
    v.assign(n, 0);
  } catch (const std::bad_alloc &) {
    ok = false;
  }
  std::set_new_handler(saved);
  return ok;
#else
  // Without exceptions a failed operator new cannot be caught: probe with
  // malloc, which reports failure by returning null.
  void *probe = std::malloc(n ? n : 1);
  if (!probe)
    return false;
  std::free(probe);
  v.assign(n, 0);
  return true;
#endif
}

std::string HostArray::allocate(DType dtype, std::vector<int64_t> shape,
                                HostArray &out) {
  out = HostArray();
  int64_t n = 0;
  uint64_t bytes = arrayBytes(shape, dtypeSize(dtype));
  if (!checkedNumel(shape, dtype, n) ||
      bytes > static_cast<uint64_t>(std::numeric_limits<std::ptrdiff_t>::max()))
    return std::string("a ") + dtypeName(dtype) + " " + formatShape(shape) +
           " array is too large (its size in bytes overflows)";
  if (!tryAssignZeros(out.bytes, static_cast<size_t>(bytes)))
    return "out of memory allocating " + formatBytes(bytes) + " for a " +
           dtypeName(dtype) + " " + formatShape(shape) + " array";
  out.dtype = dtype;
  out.shape = std::move(shape);
  return "";
}

std::string HostArray::shapeString() const { return formatShape(shape); }

//===----------------------------------------------------------------------===//
// Host memory
//===----------------------------------------------------------------------===//

/// The first number in the file at \p path, or 0 when there is none (a
/// missing file, or "max" in a cgroup limit).
static uint64_t readNumberFile(const char *path) {
  std::ifstream in(path);
  unsigned long long v = 0;
  if (!(in >> v))
    return 0;
  return v;
}

/// Field \p index (0-based, in pages) of /proc/self/statm, in bytes; 0 if
/// it cannot be read.
static uint64_t statmBytes(int index) {
  std::ifstream in("/proc/self/statm");
  unsigned long long v = 0;
  for (int i = 0; i <= index; ++i)
    if (!(in >> v))
      return 0;
  long page = sysconf(_SC_PAGESIZE);
  return saturatingMul(v, page > 0 ? static_cast<uint64_t>(page) : 4096);
}

/// Three quarters of what \p resource's soft limit leaves beyond \p used;
/// kSaturatedBytes where there is no limit.
static uint64_t rlimitLeft(int resource, uint64_t used) {
  struct rlimit lim;
  if (getrlimit(resource, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY)
    return kSaturatedBytes;
  uint64_t cur = static_cast<uint64_t>(lim.rlim_cur);
  uint64_t left = cur > used ? cur - used : 0;
  return left / 4 * 3;
}

uint64_t attn::defaultMemoryBudget() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  uint64_t physical = pages > 0 && page > 0
                          ? saturatingMul(static_cast<uint64_t>(pages),
                                          static_cast<uint64_t>(page))
                          : uint64_t(8) << 30;
  // A container's limit (cgroup v2, then v1) where it is lower.
  for (const char *cgroup : {"/sys/fs/cgroup/memory.max",
                             "/sys/fs/cgroup/memory/memory.limit_in_bytes"})
    if (uint64_t limit = readNumberFile(cgroup))
      physical = std::min(physical, limit);
  uint64_t budget = physical / 2;
  budget = std::min(budget, rlimitLeft(RLIMIT_AS, statmBytes(0)));
  budget = std::min(budget, rlimitLeft(RLIMIT_DATA, statmBytes(5)));
  return std::max<uint64_t>(budget, 1);
}

std::string attn::formatBytes(uint64_t bytes) {
  if (bytes < 1024)
    return std::to_string(bytes) + " B";
  static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes) / 1024;
  size_t u = 0;
  while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f %s", v, units[u]);
  return buf;
}

bool attn::parseByteSize(const std::string &text, uint64_t &bytes) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])))
    ++i;
  size_t intEnd = i;
  bool decimal = i < text.size() && text[i] == '.';
  if (decimal) {
    ++i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])))
      ++i;
  }
  if (intEnd == 0 || (decimal && i == intEnd + 1))
    return false;
  std::string number = text.substr(0, i), suffix = text.substr(i);
  for (char &c : suffix)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  uint64_t unit = 1;
  if (!suffix.empty() && std::strchr("KMGTP", suffix[0])) {
    int shift =
        10 * (1 + static_cast<int>(std::strchr("KMGTP", suffix[0]) - "KMGTP"));
    unit = uint64_t(1) << shift;
    suffix.erase(0, 1);
    if (suffix == "I" || suffix == "IB" || suffix == "B")
      suffix.clear();
  } else if (suffix == "B") {
    suffix.clear();
  }
  if (!suffix.empty())
    return false;
  if (decimal) {
    if (unit == 1)
      return false;
    double v = std::strtod(number.c_str(), nullptr) * static_cast<double>(unit);
    if (!(v >= 1) || v >= 18446744073709551616.0)
      return false;
    bytes = static_cast<uint64_t>(v);
    return true;
  }
  uint64_t n = 0;
  for (char c : number) {
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (n > (kSaturatedBytes - d) / 10)
      return false;
    n = n * 10 + d;
  }
  bytes = saturatingMul(n, unit);
  return bytes != 0 && bytes != kSaturatedBytes;
}

/// Rounds non-negative \p x (< 2^53) to the nearest integer, ties to even,
/// independently of the current floating-point rounding mode.
static uint64_t roundHalfEven(double x) {
  double r = std::floor(x);
  double frac = x - r;
  uint64_t q = static_cast<uint64_t>(r);
  if (frac > 0.5 || (frac == 0.5 && (q & 1)))
    ++q;
  return q;
}

/// Encodes \p v as a 16-bit IEEE-style float with \p expBits exponent and
/// \p mantBits mantissa bits (5/10 for float16, 8/7 for bfloat16), rounding to
/// nearest even. Rounding may carry into the exponent, which yields the next
/// binade, or infinity past the largest finite value.
static uint16_t encodeFloat16(double v, int expBits, int mantBits) {
  const uint32_t sign = std::signbit(v) ? 1u << (expBits + mantBits) : 0;
  const uint32_t expAllOnes = (1u << expBits) - 1;
  const uint32_t inf = expAllOnes << mantBits;
  const int bias = (1 << (expBits - 1)) - 1;
  if (std::isnan(v))
    return static_cast<uint16_t>(sign | inf | (1u << (mantBits - 1)));
  double a = std::fabs(v);
  if (std::isinf(a))
    return static_cast<uint16_t>(sign | inf);
  if (a < std::ldexp(1.0, 1 - bias)) {
    // Zero or subnormal: the bits are the mantissa in units of the smallest
    // subnormal; rounding up to 2^mantBits gives the smallest normal.
    uint64_t q = roundHalfEven(std::ldexp(a, bias - 1 + mantBits));
    return static_cast<uint16_t>(sign | q);
  }
  int e = 0;
  std::frexp(a, &e); // a = m * 2^e with m in [0.5, 1).
  int64_t biased = e - 1 + bias;
  if (biased >= static_cast<int64_t>(expAllOnes))
    return static_cast<uint16_t>(sign | inf);
  // q in [2^mantBits, 2^(mantBits+1)] includes the implicit leading one.
  uint64_t q = roundHalfEven(std::ldexp(a, mantBits - (e - 1)));
  uint64_t bits = (static_cast<uint64_t>(biased) << mantBits) +
                  (q - (uint64_t(1) << mantBits));
  return static_cast<uint16_t>(sign | bits);
}

/// Decodes a 16-bit float laid out as described for encodeFloat16.
static double decodeFloat16(uint16_t bits, int expBits, int mantBits) {
  const uint32_t expAllOnes = (1u << expBits) - 1;
  const int bias = (1 << (expBits - 1)) - 1;
  uint32_t mant = bits & ((1u << mantBits) - 1);
  uint32_t exp = (bits >> mantBits) & expAllOnes;
  double mag;
  if (exp == 0)
    mag = std::ldexp(mant, 1 - bias - mantBits);
  else if (exp == expAllOnes)
    mag = mant ? std::numeric_limits<double>::quiet_NaN()
               : std::numeric_limits<double>::infinity();
  else
    mag = std::ldexp(mant | (1u << mantBits),
                     static_cast<int>(exp) - bias - mantBits);
  return (bits >> (expBits + mantBits)) & 1 ? -mag : mag;
}

/// Converts \p v to integer type T: truncates toward zero, saturates at T's
/// range and maps NaN to 0 (a plain cast would be undefined behavior).
template <typename T> static T saturatingCast(double v) {
  constexpr T lo = std::numeric_limits<T>::min();
  constexpr T hi = std::numeric_limits<T>::max();
  if (std::isnan(v))
    return 0;
  if (v <= static_cast<double>(lo))
    return lo;
  if (v >= static_cast<double>(hi))
    return hi;
  return static_cast<T>(v);
}

template <typename T> static T loadAt(const uint8_t *p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T> static void storeAt(uint8_t *p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

double HostArray::getDouble(int64_t flat) const {
  size_t size = dtypeSize(dtype);
  assert(flat >= 0 && static_cast<size_t>(flat) < bytes.size() / size &&
         "index out of range");
  const uint8_t *p = bytes.data() + static_cast<size_t>(flat) * size;
  switch (dtype) {
  case DType::F32:
    return loadAt<float>(p);
  case DType::F64:
    return loadAt<double>(p);
  case DType::I32:
    return loadAt<int32_t>(p);
  case DType::I64:
    return static_cast<double>(loadAt<int64_t>(p));
  case DType::F16:
    return decodeFloat16(loadAt<uint16_t>(p), 5, 10);
  case DType::BF16:
    return decodeFloat16(loadAt<uint16_t>(p), 8, 7);
  case DType::Bool:
    return *p ? 1.0 : 0.0;
  }
  return 0.0;
}

void HostArray::setDouble(int64_t flat, double v) {
  size_t size = dtypeSize(dtype);
  assert(flat >= 0 && static_cast<size_t>(flat) < bytes.size() / size &&
         "index out of range");
  uint8_t *p = bytes.data() + static_cast<size_t>(flat) * size;
  switch (dtype) {
  case DType::F32:
    return storeAt(p, static_cast<float>(v));
  case DType::F64:
    return storeAt(p, v);
  case DType::I32:
    return storeAt(p, saturatingCast<int32_t>(v));
  case DType::I64:
    return storeAt(p, saturatingCast<int64_t>(v));
  case DType::F16:
    return storeAt(p, encodeFloat16(v, 5, 10));
  case DType::BF16:
    return storeAt(p, encodeFloat16(v, 8, 7));
  case DType::Bool:
    *p = v != 0.0;
    return;
  }
}

//===----------------------------------------------------------------------===//
// Header parsing
//===----------------------------------------------------------------------===//

/// Quotes untrusted text for a one-line message: non-printable bytes become
/// \xNN escapes and the result is cut to about \p limit characters.
static std::string printable(const char *p, size_t n, size_t limit = 40) {
  std::string s;
  for (size_t i = 0; i < n && i < limit; ++i) {
    unsigned char c = static_cast<unsigned char>(p[i]);
    if (c >= 0x20 && c < 0x7f) {
      s += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      s += buf;
    }
  }
  if (n > limit)
    s += "...";
  return s;
}

static std::string printable(const std::string &s) {
  return printable(s.data(), s.size());
}

namespace {
/// A cursor over the header text. All reads are checked against `end`.
struct Cursor {
  const char *begin, *p, *end;

  char peek() const { return p == end ? '\0' : *p; }
  void skipSpace() {
    while (p != end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
      ++p;
  }
  /// Skips whitespace, then consumes \p c if it is next.
  bool consume(char c) {
    skipSpace();
    if (p == end || *p != c)
      return false;
    ++p;
    return true;
  }
  /// Consumes the identifier \p word (e.g. True) if it is next.
  bool consumeWord(const char *word) {
    skipSpace();
    size_t n = std::strlen(word);
    if (static_cast<size_t>(end - p) < n || std::memcmp(p, word, n) != 0)
      return false;
    if (static_cast<size_t>(end - p) > n &&
        (std::isalnum(static_cast<unsigned char>(p[n])) || p[n] == '_'))
      return false;
    p += n;
    return true;
  }
  /// Consumes a '...' or "..." string literal (no escapes) into \p out.
  bool consumeString(std::string &out) {
    skipSpace();
    char quote = peek();
    if (quote != '\'' && quote != '"')
      return false;
    const char *start = p + 1;
    const char *close = start;
    while (close != end && *close != quote)
      ++close;
    if (close == end)
      return false;
    out.assign(start, close);
    p = close + 1;
    return true;
  }
  std::string error(const char *what) const {
    return std::string("malformed .npy header: ") + what + " at offset " +
           std::to_string(p - begin) + " in \"" +
           printable(begin, end - begin, 80) + "\"";
  }
};
} // namespace

/// Parses a shape tuple such as "()", "(5,)" or "(2, 3)".
static std::string parseShape(Cursor &c, std::vector<int64_t> &shape) {
  shape.clear();
  if (!c.consume('('))
    return c.error("expected '(' starting the shape tuple");
  if (c.consume(')'))
    return "";
  while (true) {
    c.skipSpace();
    const char *start = c.p;
    bool negative = c.peek() == '-';
    if (negative)
      ++c.p;
    const char *digits = c.p;
    int64_t v = 0;
    bool overflow = false;
    while (c.p != c.end && *c.p >= '0' && *c.p <= '9') {
      int d = *c.p++ - '0';
      if (v > (kInt64Max - d) / 10)
        overflow = true;
      else if (!overflow)
        v = v * 10 + d;
    }
    if (c.p == digits)
      return c.error("expected an integer in the shape tuple");
    std::string text(start, c.p);
    if (c.peek() == 'L' || c.peek() == 'l') // Python 2 long literal.
      ++c.p;
    if (negative && (v != 0 || overflow))
      return "negative dimension " + printable(text) + " in shape";
    if (overflow)
      return "shape dimension " + printable(text) + " is too large";
    shape.push_back(v);
    if (c.consume(')'))
      return "";
    if (!c.consume(','))
      return c.error("expected ',' or ')' in the shape tuple");
    if (c.consume(')'))
      return "";
  }
}

/// Parses the header dict into its three required entries.
static std::string parseHeader(const char *text, size_t len, std::string &descr,
                               bool &fortran, std::vector<int64_t> &shape) {
  Cursor c{text, text, text + len};
  if (!c.consume('{'))
    return c.error("expected '{'");
  bool haveDescr = false, haveFortran = false, haveShape = false;
  while (!c.consume('}')) {
    std::string key;
    if (!c.consumeString(key))
      return c.error("expected a quoted key or '}'");
    if (!c.consume(':'))
      return c.error("expected ':' after key");
    bool *seen = key == "descr"           ? &haveDescr
                 : key == "fortran_order" ? &haveFortran
                 : key == "shape"         ? &haveShape
                                          : nullptr;
    if (!seen)
      return "malformed .npy header: unexpected key '" + printable(key) + "'";
    if (*seen)
      return "malformed .npy header: duplicate key '" + key + "'";
    *seen = true;
    if (key == "descr") {
      c.skipSpace();
      if (c.peek() == '[')
        return "unsupported dtype: structured (record) arrays are not "
               "supported";
      if (!c.consumeString(descr))
        return c.error("expected a string value for 'descr'");
    } else if (key == "fortran_order") {
      if (c.consumeWord("True"))
        fortran = true;
      else if (c.consumeWord("False"))
        fortran = false;
      else
        return c.error("expected True or False for 'fortran_order'");
    } else if (std::string err = parseShape(c, shape); !err.empty()) {
      return err;
    }
    if (c.consume(','))
      continue;
    if (c.consume('}'))
      break;
    return c.error("expected ',' or '}' after value");
  }
  c.skipSpace();
  if (c.p != c.end)
    return c.error("unexpected characters after '}'");
  if (!haveDescr)
    return "malformed .npy header: missing key 'descr'";
  if (!haveFortran)
    return "malformed .npy header: missing key 'fortran_order'";
  if (!haveShape)
    return "malformed .npy header: missing key 'shape'";
  return "";
}

namespace {
/// Where a .npy image's data is and what it holds, per its header.
struct NpyLayout {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t dataOffset = 0; ///< the preamble and the header
  uint64_t dataBytes = 0;
};
} // namespace

/// The preamble is at most this long: magic, version, 4-byte header length.
static constexpr size_t kMaxPreamble = kMagicLen + 2 + 4;

/// Checks the preamble of a .npy image of \p total bytes, given its first
/// min(total, kMaxPreamble) bytes \p p, and locates the header text.
static std::string parsePreamble(const uint8_t *p, uint64_t total,
                                 size_t &headerStart, size_t &headerLen) {
  if (total < kMagicLen || std::memcmp(p, kMagic, kMagicLen) != 0)
    return "not a .npy file (bad magic)";
  if (total < kMagicLen + 2)
    return "truncated: file ends inside the .npy preamble";
  unsigned major = p[6], minor = p[7];
  if (minor != 0 || major < 1 || major > 3)
    return "unsupported .npy format version " + std::to_string(major) + "." +
           std::to_string(minor) + " (expected 1.0, 2.0 or 3.0)";
  size_t lenBytes = major == 1 ? 2 : 4;
  headerStart = kMagicLen + 2 + lenBytes;
  if (total < headerStart)
    return "truncated: file ends inside the .npy preamble";
  headerLen = 0;
  for (size_t i = 0; i < lenBytes; ++i)
    headerLen |= static_cast<size_t>(p[kMagicLen + 2 + i]) << (8 * i);
  if (headerLen > total - headerStart)
    return "truncated: header length " + std::to_string(headerLen) +
           " exceeds the " + std::to_string(total - headerStart) +
           " bytes after the preamble";
  if (headerLen > kMaxNpyHeaderBytes)
    return "header length " + std::to_string(headerLen) +
           " exceeds the limit of " + std::to_string(kMaxNpyHeaderBytes) +
           " bytes";
  return "";
}

/// Parses the header text (at \p headerStart, \p headerLen bytes) into the
/// array's dtype, shape and data size.
static std::string parseLayout(const char *text, size_t headerStart,
                               size_t headerLen, NpyLayout &layout) {
  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  if (std::string err = parseHeader(text, headerLen, descr, fortran, shape);
      !err.empty())
    return err;

  size_t index = 0;
  while (index < kNumDTypes &&
         (!kDTypes[index].descr || descr != kDTypes[index].descr))
    ++index;
  if (index == kNumDTypes)
    return "unsupported dtype '" + printable(descr) +
           "'; expected little-endian "
           "float32/float64/int32/int64/float16/bool";
  DType dtype = static_cast<DType>(index);
  if (fortran)
    return "Fortran-order arrays are not supported; save a C-contiguous "
           "array (np.ascontiguousarray)";
  int64_t numel = 0;
  if (!checkedNumel(shape, dtype, numel))
    return "shape " + formatShape(shape) + " is too large (size overflows)";
  layout.dtype = dtype;
  layout.shape = std::move(shape);
  layout.dataOffset = headerStart + headerLen;
  layout.dataBytes = static_cast<uint64_t>(numel) * dtypeSize(dtype);
  return "";
}

/// Checks that an image of \p total bytes ends exactly where the data does.
static std::string checkDataSize(const NpyLayout &layout, uint64_t total) {
  uint64_t have = total - layout.dataOffset;
  std::string declared = "header says " + formatShape(layout.shape) + " " +
                         dtypeName(layout.dtype) + " = " +
                         std::to_string(layout.dataBytes) + " bytes";
  if (have < layout.dataBytes)
    return "truncated: " + declared + ", file has " + std::to_string(have);
  if (have > layout.dataBytes)
    return "size mismatch: " + declared + ", file has " + std::to_string(have) +
           " (" + std::to_string(have - layout.dataBytes) +
           " bytes after the data)";
  return "";
}

/// Makes bool elements canonical 0/1 bytes.
static void canonicalizeBools(HostArray &a) {
  if (a.dtype == DType::Bool)
    for (uint8_t &b : a.bytes)
      b = b != 0;
}

std::string attn::parseNpy(const void *data, size_t size, HostArray &out) {
  const uint8_t *bytes = static_cast<const uint8_t *>(data);
  size_t headerStart = 0, headerLen = 0;
  if (std::string err = parsePreamble(bytes, size, headerStart, headerLen);
      !err.empty())
    return err;
  NpyLayout layout;
  if (std::string err =
          parseLayout(reinterpret_cast<const char *>(bytes + headerStart),
                      headerStart, headerLen, layout);
      !err.empty())
    return err;
  if (std::string err = checkDataSize(layout, size); !err.empty())
    return err;
  if (std::string err = HostArray::allocate(layout.dtype, layout.shape, out);
      !err.empty())
    return err;
  if (layout.dataBytes)
    std::memcpy(out.bytes.data(), bytes + layout.dataOffset,
                static_cast<size_t>(layout.dataBytes));
  canonicalizeBools(out);
  return "";
}

//===----------------------------------------------------------------------===//
// Serialization and file I/O
//===----------------------------------------------------------------------===//

std::string attn::serializeNpyHeader(const HostArray &a,
                                     std::vector<uint8_t> &out) {
  const char *descr = kDTypes[static_cast<size_t>(a.dtype)].descr;
  if (!descr)
    return std::string("cannot save ") + dtypeName(a.dtype) +
           " to .npy (no standard NumPy dtype); convert to float32 first";
  int64_t numel = 0;
  if (!checkedNumel(a.shape, a.dtype, numel))
    return "cannot save array with invalid shape " + a.shapeString();
  size_t expected = static_cast<size_t>(numel) * dtypeSize(a.dtype);
  if (a.bytes.size() != expected)
    return "array holds " + std::to_string(a.bytes.size()) +
           " bytes but shape " + a.shapeString() + " " + dtypeName(a.dtype) +
           " needs " + std::to_string(expected);

  // Same text as NumPy: keys sorted, Python tuple repr for the shape.
  std::string header = "{'descr': '";
  header += descr;
  header += "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < a.shape.size(); ++i)
    header += (i ? ", " : "") + std::to_string(a.shape[i]);
  header += a.shape.size() == 1 ? ",), }" : "), }";
  if (!a.shape.empty()) {
    size_t digits = std::to_string(a.shape[0]).size();
    if (digits < kGrowthDigits)
      header.append(kGrowthDigits - digits, ' ');
  }
  // Pad with spaces and a final '\n' so the data starts 64-byte aligned.
  // Like NumPy, fall back to version 2.0 only if the length needs 32 bits.
  unsigned major = header.size() + kAlign + 1 > 0xffff ? 2 : 1;
  size_t preamble = kMagicLen + 2 + (major == 1 ? 2 : 4);
  size_t padded = header.size() + 1;
  padded += kAlign - (preamble + padded) % kAlign;
  header.resize(padded - 1, ' ');
  header += '\n';

  out.clear();
  out.reserve(preamble + header.size());
  out.insert(out.end(), kMagic, kMagic + kMagicLen);
  out.push_back(static_cast<uint8_t>(major));
  out.push_back(0);
  for (size_t i = 0; i < preamble - kMagicLen - 2; ++i)
    out.push_back(static_cast<uint8_t>(header.size() >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  return "";
}

std::string attn::serializeNpy(const HostArray &a, std::vector<uint8_t> &out) {
  if (std::string err = serializeNpyHeader(a, out); !err.empty())
    return err;
  out.insert(out.end(), a.bytes.begin(), a.bytes.end());
  return "";
}

/// Reads exactly \p n bytes at \p offset of \p fd into \p buf; false with
/// errno set on an error, or with errno 0 when the file ends first.
static bool readAt(int fd, void *buf, size_t n, uint64_t offset) {
  uint8_t *p = static_cast<uint8_t *>(buf);
  while (n > 0) {
    ssize_t got = pread(fd, p, std::min<size_t>(n, size_t(1) << 30),
                        static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0) {
      if (got == 0)
        errno = 0;
      return false;
    }
    p += got;
    n -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

/// What a non-regular file is, for messages.
static const char *fileKind(mode_t mode) {
  if (S_ISDIR(mode))
    return "a directory";
  if (S_ISCHR(mode))
    return "a character device";
  if (S_ISBLK(mode))
    return "a block device";
  if (S_ISFIFO(mode))
    return "a FIFO";
  if (S_ISSOCK(mode))
    return "a socket";
  return "not a regular file";
}

namespace {
/// Closes a file descriptor when it goes out of scope.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0)
      close(fd);
  }
};
} // namespace

std::string attn::readNpy(const std::string &path, HostArray &out,
                          uint64_t maxBytes, const std::string &budgetText) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is then
  // rejected as not a regular file).
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int openErrno = errno;
    return "cannot open '" + path + "': " + std::strerror(openErrno);
  }
  FdCloser closer{fd};
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int statErrno = errno;
    return "cannot read '" + path + "': " + std::strerror(statErrno);
  }
  if (!S_ISREG(st.st_mode))
    return "cannot read '" + path + "': it is " + fileKind(st.st_mode) +
           ", not a regular .npy file";
  uint64_t total = static_cast<uint64_t>(st.st_size);
  auto readError = [&](const char *what) {
    int readErrno = errno;
    if (readErrno == 0)
      return path + ": truncated: the file ended while reading its " + what +
             " (was it changed while being read?)";
    return "error reading '" + path + "': " + std::strerror(readErrno);
  };

  uint8_t preamble[kMaxPreamble] = {};
  size_t headerStart = 0, headerLen = 0;
  if (!readAt(fd, preamble, std::min<uint64_t>(total, kMaxPreamble), 0))
    return readError("preamble");
  if (std::string err = parsePreamble(preamble, total, headerStart, headerLen);
      !err.empty())
    return path + ": " + err;
  std::string header(headerLen, '\0');
  if (!readAt(fd, &header[0], headerLen, headerStart))
    return readError("header");
  NpyLayout layout;
  if (std::string err =
          parseLayout(header.data(), headerStart, headerLen, layout);
      !err.empty())
    return path + ": " + err;
  if (std::string err = checkDataSize(layout, total); !err.empty())
    return path + ": " + err;
  uint64_t budget = maxBytes ? maxBytes : defaultMemoryBudget();
  if (layout.dataBytes > budget)
    return path + ": its " + dtypeName(layout.dtype) + " " +
           formatShape(layout.shape) + " array needs " +
           formatBytes(layout.dataBytes) + ", more than " +
           (budgetText.empty() ? "the memory budget of " + formatBytes(budget)
                               : budgetText);
  if (std::string err = HostArray::allocate(layout.dtype, layout.shape, out);
      !err.empty())
    return path + ": " + err;
  if (!readAt(fd, out.bytes.data(), static_cast<size_t>(layout.dataBytes),
              layout.dataOffset))
    return readError("data");
  canonicalizeBools(out);
  return "";
}

//===----------------------------------------------------------------------===//
// Writing: temporary files published by rename
//===----------------------------------------------------------------------===//

/// Writes all \p n bytes of \p data to \p fd; false with errno set if not.
static bool writeAll(int fd, const void *data, size_t n) {
  const uint8_t *p = static_cast<const uint8_t *>(data);
  while (n > 0) {
    ssize_t put = write(fd, p, std::min<size_t>(n, size_t(1) << 30));
    if (put < 0 && errno == EINTR)
      continue;
    if (put <= 0) {
      if (put == 0)
        errno = EIO;
      return false;
    }
    p += put;
    n -= static_cast<size_t>(put);
  }
  return true;
}

std::string attn::writeNpyToFd(int fd, const HostArray &a,
                               const std::string &name) {
  std::vector<uint8_t> header;
  if (std::string err = serializeNpyHeader(a, header); !err.empty())
    return "cannot write '" + name + "': " + err;
  if (!writeAll(fd, header.data(), header.size()) ||
      !writeAll(fd, a.bytes.data(), a.bytes.size())) {
    int writeErrno = errno;
    return "error writing '" + name + "': " + std::strerror(writeErrno);
  }
  return "";
}

/// Splits \p path into its directory ("." when it has none) and last name.
static void splitPath(const std::string &path, std::string &dir,
                      std::string &name) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    dir = ".";
    name = path;
    return;
  }
  dir = slash == 0 ? "/" : path.substr(0, slash);
  name = path.substr(slash + 1);
}

/// realpath(3) as a string; false with errno set on failure.
static bool resolvePath(const std::string &path, std::string &out) {
  char *r = realpath(path.c_str(), nullptr);
  if (!r)
    return false;
  out = r;
  std::free(r);
  return true;
}

static std::string joinPath(const std::string &dir, const std::string &name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

NpyOutputFiles::~NpyOutputFiles() {
  if (!committed)
    discard();
}

void NpyOutputFiles::discard() {
  for (File &f : files) {
    if (f.fd >= 0)
      close(f.fd);
    f.fd = -1;
    if (!f.temp.empty())
      unlink(f.temp.c_str());
    f.temp.clear();
  }
}

std::string NpyOutputFiles::add(const std::string &path) {
  auto cannot = [&](const std::string &why) {
    return "cannot open '" + path + "' for writing: " + why;
  };
  if (committed)
    return cannot("the output set was already written");
  File f;
  f.path = path;
  std::string dir, name, realDir;
  splitPath(path, dir, name);
  if (name.empty() || name == "." || name == "..")
    return cannot("it names a directory");
  if (!resolvePath(dir, realDir))
    return cannot(std::strerror(errno));
  f.target = joinPath(realDir, name);

  // Write through symbolic links (to the file they name, which may not
  // exist yet), as opening the path would, rather than replacing the link.
  struct stat st;
  for (int depth = 0; lstat(f.target.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
       ++depth) {
    std::vector<char> link(static_cast<size_t>(st.st_size) + 256);
    ssize_t n = readlink(f.target.c_str(), link.data(), link.size());
    if (depth == 40 || n <= 0 || static_cast<size_t>(n) >= link.size())
      return cannot(std::strerror(depth == 40 ? ELOOP : errno));
    std::string to(link.data(), static_cast<size_t>(n));
    std::string linkDir = realDir;
    splitPath(to[0] == '/' ? to : joinPath(linkDir, to), dir, name);
    if (name.empty() || name == "." || name == "..")
      return cannot("it names a directory");
    if (!resolvePath(dir, realDir))
      return cannot(std::strerror(errno));
    f.target = joinPath(realDir, name);
  }
  struct stat dirSt;
  if (stat(realDir.c_str(), &dirSt) != 0)
    return cannot(std::strerror(errno));
  if (!S_ISDIR(dirSt.st_mode))
    return cannot(std::strerror(ENOTDIR));
  if (stat(f.target.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode))
      return cannot("it is a directory");
    if (!S_ISREG(st.st_mode))
      return cannot(std::string("it is ") + fileKind(st.st_mode) +
                    " (outputs are written to a temporary file that "
                    "replaces the destination)");
    f.exists = true;
    f.dev = static_cast<uint64_t>(st.st_dev);
    f.ino = static_cast<uint64_t>(st.st_ino);
  } else if (errno != ENOENT) {
    return cannot(std::strerror(errno));
  }
  for (const File &other : files)
    if (other.target == f.target ||
        (f.exists && other.exists && other.dev == f.dev && other.ino == f.ino))
      return "'" + path + "' is the same file as '" + other.path +
             "' (each output needs its own file)";

  // The temporary file: beside the destination, created exclusively (never
  // an existing file or a link planted under its name).
  static unsigned counter = 0;
  for (int attempt = 0; attempt < 100; ++attempt) {
    uint64_t stamp = static_cast<uint64_t>(
        std::chrono::steady_clock::now().time_since_epoch().count());
    std::string temp =
        joinPath(realDir, "." + name + ".tmp" + std::to_string(getpid()) + "-" +
                              std::to_string(counter++) + "-" +
                              std::to_string(stamp % 1000000));
    int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST)
      continue;
    if (fd < 0)
      return cannot(std::strerror(errno));
    if (f.exists) // keep the replaced file's permissions
      (void)fchmod(fd, st.st_mode & 07777);
    f.fd = fd;
    f.temp = temp;
    files.push_back(std::move(f));
    return "";
  }
  return cannot("could not create a temporary file beside it");
}

std::string
NpyOutputFiles::commit(const std::vector<const HostArray *> &arrays) {
  if (committed || arrays.size() != files.size()) {
    discard();
    return "internal error: " + std::to_string(arrays.size()) + " arrays for " +
           std::to_string(files.size()) + " output files";
  }
  for (size_t i = 0; i < files.size(); ++i) {
    File &f = files[i];
    std::string err = writeNpyToFd(f.fd, *arrays[i], f.path);
    int closeFd = f.fd;
    f.fd = -1;
    if (err.empty() && fsync(closeFd) != 0 && errno != EINVAL)
      err = "error writing '" + f.path + "': " + std::strerror(errno);
    if (close(closeFd) != 0 && err.empty())
      err = "error writing '" + f.path + "': " + std::strerror(errno);
    if (!err.empty()) {
      discard();
      return err + (files.size() > 1 ? " (no output was written)" : "");
    }
  }
  committed = true;
  std::string published;
  for (size_t i = 0; i < files.size(); ++i) {
    File &f = files[i];
    if (rename(f.temp.c_str(), f.target.c_str()) != 0) {
      int renameErrno = errno;
      std::string err = "cannot rename '" + f.temp + "' to '" + f.path +
                        "': " + std::strerror(renameErrno);
      discard();
      return err + (published.empty()
                        ? std::string()
                        : " (already written: " + published + ")");
    }
    f.temp.clear();
    published += (published.empty() ? "" : ", ") + f.path;
  }
  // Make the renames durable too (best effort: not every file system can
  // sync a directory).
  for (File &f : files) {
    std::string dir, name;
    splitPath(f.target, dir, name);
    int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)fsync(dfd);
      close(dfd);
    }
  }
  return "";
}

std::string attn::writeNpy(const std::string &path, const HostArray &a) {
  // An array that cannot be saved is reported before touching the file.
  std::vector<uint8_t> header;
  if (std::string err = serializeNpyHeader(a, header); !err.empty())
    return "cannot write '" + path + "': " + err;
  NpyOutputFiles out;
  if (std::string err = out.add(path); !err.empty())
    return err;
  return out.commit({&a});
}
