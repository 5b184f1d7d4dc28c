//===- npy.cpp - NumPy .npy reader and writer -----------------------------===//
//
// Implements the .npy format (versions 1.0, 2.0 and 3.0) for C-ordered
// little-endian arrays. The header is a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// and comes from user files, so it is parsed by a small scanner whose every
// read is checked against the end of the header.
//
//===----------------------------------------------------------------------===//

#include "attn/npy.h"

#include <cassert>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

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

std::string HostArray::shapeString() const { return formatShape(shape); }

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

std::string attn::parseNpy(const void *data, size_t size, HostArray &out) {
  const uint8_t *bytes = static_cast<const uint8_t *>(data);
  if (size < kMagicLen || std::memcmp(bytes, kMagic, kMagicLen) != 0)
    return "not a .npy file (bad magic)";
  if (size < kMagicLen + 2)
    return "truncated: file ends inside the .npy preamble";
  unsigned major = bytes[6], minor = bytes[7];
  if (minor != 0 || major < 1 || major > 3)
    return "unsupported .npy format version " + std::to_string(major) + "." +
           std::to_string(minor) + " (expected 1.0, 2.0 or 3.0)";
  size_t lenBytes = major == 1 ? 2 : 4;
  size_t headerStart = kMagicLen + 2 + lenBytes;
  if (size < headerStart)
    return "truncated: file ends inside the .npy preamble";
  size_t headerLen = 0;
  for (size_t i = 0; i < lenBytes; ++i)
    headerLen |= static_cast<size_t>(bytes[kMagicLen + 2 + i]) << (8 * i);
  if (headerLen > size - headerStart)
    return "truncated: header length " + std::to_string(headerLen) +
           " exceeds the " + std::to_string(size - headerStart) +
           " bytes after the preamble";

  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  if (std::string err =
          parseHeader(reinterpret_cast<const char *>(bytes + headerStart),
                      headerLen, descr, fortran, shape);
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
  size_t need = static_cast<size_t>(numel) * dtypeSize(dtype);
  size_t have = size - headerStart - headerLen;
  if (have < need)
    return "truncated: header says " + formatShape(shape) + " " +
           dtypeName(dtype) + " = " + std::to_string(need) +
           " bytes, file has " + std::to_string(have);

  out.dtype = dtype;
  out.shape = std::move(shape);
  const uint8_t *payload = bytes + headerStart + headerLen;
  out.bytes.assign(payload, payload + need);
  if (out.dtype == DType::Bool) // Store canonical 0/1 bytes.
    for (uint8_t &b : out.bytes)
      b = b != 0;
  return "";
}

//===----------------------------------------------------------------------===//
// Serialization and file I/O
//===----------------------------------------------------------------------===//

std::string attn::serializeNpy(const HostArray &a, std::vector<uint8_t> &out) {
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
  out.reserve(preamble + header.size() + a.bytes.size());
  out.insert(out.end(), kMagic, kMagic + kMagicLen);
  out.push_back(static_cast<uint8_t>(major));
  out.push_back(0);
  for (size_t i = 0; i < preamble - kMagicLen - 2; ++i)
    out.push_back(static_cast<uint8_t>(header.size() >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), a.bytes.begin(), a.bytes.end());
  return "";
}

std::string attn::readNpy(const std::string &path, HostArray &out) {
  std::FILE *f = std::fopen(path.c_str(), "rb");
  if (!f) {
    int openErrno = errno;
    return "cannot open '" + path + "': " + std::strerror(openErrno);
  }
  std::vector<uint8_t> buf;
  size_t used = 0;
  errno = 0;
  while (true) {
    if (used == buf.size())
      buf.resize(used + (1 << 16) + used / 2);
    size_t n = std::fread(buf.data() + used, 1, buf.size() - used, f);
    if (n == 0) // End of file or error.
      break;
    used += n;
  }
  int readErrno = errno;
  bool failed = std::ferror(f);
  std::fclose(f);
  if (failed)
    return "error reading '" + path + "': " + std::strerror(readErrno);
  std::string err = parseNpy(buf.data(), used, out);
  return err.empty() ? err : path + ": " + err;
}

std::string attn::writeNpy(const std::string &path, const HostArray &a) {
  std::vector<uint8_t> buf;
  if (std::string err = serializeNpy(a, buf); !err.empty())
    return "cannot write '" + path + "': " + err;
  std::FILE *f = std::fopen(path.c_str(), "wb");
  if (!f) {
    int openErrno = errno;
    return "cannot open '" + path +
           "' for writing: " + std::strerror(openErrno);
  }
  bool ok = std::fwrite(buf.data(), 1, buf.size(), f) == buf.size();
  int writeErrno = errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    writeErrno = errno;
  }
  if (!ok)
    return "error writing '" + path + "': " + std::strerror(writeErrno);
  return "";
}
