//===- NpyTest.cpp - tests for the .npy reader and writer -----------------===//
//
// Round trips, hand-built headers for every format version, one test per
// error message, float16/bfloat16 conversions, and a mutation loop that feeds
// damaged files to the parser (run it under ASan/valgrind to catch overreads).
//
//===----------------------------------------------------------------------===//

#include "attn/npy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <ostream>
#include <unistd.h>

using namespace attn;

namespace {

/// Builds a .npy image by hand: magic, version, little-endian header length
/// (2 bytes for version 1, else 4), the header text, then \p payload.
std::vector<uint8_t> makeNpy(unsigned major, const std::string &header,
                             const std::vector<uint8_t> &payload = {},
                             unsigned minor = 0) {
  std::vector<uint8_t> buf = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  buf.push_back(static_cast<uint8_t>(major));
  buf.push_back(static_cast<uint8_t>(minor));
  for (unsigned i = 0; i < (major == 1 ? 2u : 4u); ++i)
    buf.push_back(static_cast<uint8_t>(header.size() >> (8 * i)));
  buf.insert(buf.end(), header.begin(), header.end());
  buf.insert(buf.end(), payload.begin(), payload.end());
  return buf;
}

/// A header dict with the given descr and shape text.
std::string dict(const std::string &descr, const std::string &shape,
                 const char *fortran = "False") {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran +
         ", 'shape': " + shape + ", }\n";
}

template <typename T> std::vector<uint8_t> bytesOf(std::vector<T> values) {
  std::vector<uint8_t> out(values.size() * sizeof(T));
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

std::string parse(const std::vector<uint8_t> &buf, HostArray &out) {
  return parseNpy(buf.data(), buf.size(), out);
}

std::string parseError(const std::vector<uint8_t> &buf) {
  HostArray out;
  return parse(buf, out);
}

#define EXPECT_CONTAINS(str, sub)                                              \
  EXPECT_NE(std::string(str).find(sub), std::string::npos)                     \
      << "message: " << (str) << "\nexpected to contain: " << (sub)

/// A path under the gtest temp dir, unique to this process.
std::string tempPath(const std::string &name) {
  return ::testing::TempDir() + "attn_npy_" + std::to_string(getpid()) + "_" +
         name;
}

/// Raw bits of element \p i of a 16-bit array.
uint16_t bits16(const HostArray &a, int64_t i) { return a.data<uint16_t>()[i]; }

uint16_t encodeBits(DType t, double v) {
  HostArray a = HostArray::zeros(t, {1});
  a.setDouble(0, v);
  return bits16(a, 0);
}

double decodeBits(DType t, uint16_t bits) {
  HostArray a = HostArray::zeros(t, {1});
  a.data<uint16_t>()[0] = bits;
  return a.getDouble(0);
}

} // namespace

//===----------------------------------------------------------------------===//
// DType and HostArray basics
//===----------------------------------------------------------------------===//

TEST(NpyDType, NamesAndSizes) {
  EXPECT_STREQ(dtypeName(DType::F32), "float32");
  EXPECT_STREQ(dtypeName(DType::F64), "float64");
  EXPECT_STREQ(dtypeName(DType::I32), "int32");
  EXPECT_STREQ(dtypeName(DType::I64), "int64");
  EXPECT_STREQ(dtypeName(DType::F16), "float16");
  EXPECT_STREQ(dtypeName(DType::BF16), "bfloat16");
  EXPECT_STREQ(dtypeName(DType::Bool), "bool");
  EXPECT_EQ(dtypeSize(DType::F32), 4u);
  EXPECT_EQ(dtypeSize(DType::F64), 8u);
  EXPECT_EQ(dtypeSize(DType::I32), 4u);
  EXPECT_EQ(dtypeSize(DType::I64), 8u);
  EXPECT_EQ(dtypeSize(DType::F16), 2u);
  EXPECT_EQ(dtypeSize(DType::BF16), 2u);
  EXPECT_EQ(dtypeSize(DType::Bool), 1u);
}

TEST(NpyHostArray, ZerosNumelShapeString) {
  HostArray scalar = HostArray::zeros(DType::F64, {});
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(scalar.bytes.size(), 8u);
  EXPECT_EQ(scalar.shapeString(), "[]");
  EXPECT_EQ(scalar.getDouble(0), 0.0);

  HostArray a = HostArray::zeros(DType::F32, {2, 3, 4});
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.numel(), 24);
  EXPECT_EQ(a.bytes.size(), 96u);
  EXPECT_EQ(a.shapeString(), "[2, 3, 4]");
  a.data<float>()[23] = 2.5f;
  EXPECT_EQ(a.getDouble(23), 2.5);
  const HostArray &ca = a;
  EXPECT_EQ(ca.data<float>()[23], 2.5f);

  HostArray empty = HostArray::zeros(DType::I32, {3, 0});
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_TRUE(empty.bytes.empty());
}

//===----------------------------------------------------------------------===//
// Round trips
//===----------------------------------------------------------------------===//

namespace attn {
/// Names DType test parameters in gtest output.
void PrintTo(DType t, std::ostream *os) { *os << dtypeName(t); }
} // namespace attn

namespace {
class NpyRoundTrip : public ::testing::TestWithParam<DType> {};

/// Fills \p a with distinct values that every dtype represents exactly.
void fill(HostArray &a) {
  for (int64_t i = 0; i < a.numel(); ++i)
    a.setDouble(i, a.dtype == DType::Bool ? i % 3 == 0
                                          : static_cast<double>(i - 7) / 2);
}
} // namespace

TEST_P(NpyRoundTrip, Ranks014InMemory) {
  for (std::vector<int64_t> shape :
       {std::vector<int64_t>{}, {5}, {2, 3, 1, 4}, {2, 0, 3}}) {
    HostArray a = HostArray::zeros(GetParam(), shape);
    SCOPED_TRACE(a.shapeString());
    fill(a);
    std::vector<uint8_t> buf;
    ASSERT_EQ(serializeNpy(a, buf), "");

    // Format 1.0 preamble, header padded with spaces to a 64-byte boundary
    // and terminated by '\n'.
    ASSERT_GE(buf.size(), 10u);
    EXPECT_EQ(std::memcmp(buf.data(), "\x93NUMPY\x01\x00", 8), 0);
    size_t headerLen = buf[8] | (buf[9] << 8);
    size_t dataStart = 10 + headerLen;
    EXPECT_EQ(dataStart % 64, 0u);
    ASSERT_EQ(buf.size(), dataStart + a.bytes.size());
    EXPECT_EQ(buf[dataStart - 1], '\n');

    HostArray b;
    ASSERT_EQ(parse(buf, b), "");
    EXPECT_EQ(b.dtype, a.dtype);
    EXPECT_EQ(b.shape, a.shape);
    EXPECT_EQ(b.bytes, a.bytes);
  }
}

TEST_P(NpyRoundTrip, ThroughFile) {
  HostArray a = HostArray::zeros(GetParam(), {3, 1, 2, 5});
  fill(a);
  std::string path = tempPath(std::string(dtypeName(GetParam())) + ".npy");
  ASSERT_EQ(writeNpy(path, a), "");
  HostArray b;
  ASSERT_EQ(readNpy(path, b), "");
  std::remove(path.c_str());
  EXPECT_EQ(b.dtype, a.dtype);
  EXPECT_EQ(b.shape, a.shape);
  EXPECT_EQ(b.bytes, a.bytes);
  for (int64_t i = 0; i < a.numel(); ++i)
    EXPECT_EQ(b.getDouble(i), a.getDouble(i));
}

INSTANTIATE_TEST_SUITE_P(AllWritable, NpyRoundTrip,
                         ::testing::Values(DType::F32, DType::F64, DType::I32,
                                           DType::I64, DType::F16, DType::Bool),
                         [](const ::testing::TestParamInfo<DType> &info) {
                           return std::string(dtypeName(info.param));
                         });

TEST(NpyWrite, HeaderMatchesNumPy) {
  // The header text numpy 1.24's np.save writes (including its spare space
  // for growing shape[0]) is the dict padded with spaces to 117 characters,
  // then '\n', so that the data starts at byte 128.
  auto header = [](const HostArray &a) {
    std::vector<uint8_t> buf;
    EXPECT_EQ(serializeNpy(a, buf), "");
    EXPECT_EQ(buf.size(), 128 + a.bytes.size());
    EXPECT_EQ(buf[8] | (buf[9] << 8), 118);
    return std::string(buf.begin() + 10, buf.begin() + 128);
  };
  auto padded = [](std::string dict) {
    dict.resize(117, ' ');
    return dict + "\n";
  };
  EXPECT_EQ(header(HostArray::zeros(DType::F32, {2, 3})),
            padded("{'descr': '<f4', 'fortran_order': False, "
                   "'shape': (2, 3), }"));
  EXPECT_EQ(header(HostArray::zeros(DType::Bool, {5})),
            padded("{'descr': '|b1', 'fortran_order': False, "
                   "'shape': (5,), }"));
  EXPECT_EQ(header(HostArray::zeros(DType::F64, {})),
            padded("{'descr': '<f8', 'fortran_order': False, 'shape': (), }"));
  EXPECT_EQ(header(HostArray::zeros(DType::I64, {2, 3, 1, 4})),
            padded("{'descr': '<i8', 'fortran_order': False, "
                   "'shape': (2, 3, 1, 4), }"));
}

TEST(NpyWrite, Errors) {
  std::vector<uint8_t> buf;
  EXPECT_CONTAINS(serializeNpy(HostArray::zeros(DType::BF16, {2}), buf),
                  "cannot save bfloat16 to .npy");
  HostArray a = HostArray::zeros(DType::F32, {2, 3});
  a.bytes.pop_back();
  EXPECT_CONTAINS(serializeNpy(a, buf),
                  "array holds 23 bytes but shape [2, 3] float32 needs 24");
  a.shape = {-1};
  EXPECT_CONTAINS(serializeNpy(a, buf), "invalid shape [-1]");

  std::string path = tempPath("no/such/dir/x.npy");
  std::string err = writeNpy(path, HostArray::zeros(DType::F32, {1}));
  EXPECT_CONTAINS(err, "cannot open '" + path + "' for writing");
  err = writeNpy(path, HostArray::zeros(DType::BF16, {1}));
  EXPECT_CONTAINS(err, path);
  EXPECT_CONTAINS(err, "bfloat16");
}

//===----------------------------------------------------------------------===//
// Reading hand-built files
//===----------------------------------------------------------------------===//

TEST(NpyRead, Version1) {
  HostArray a;
  ASSERT_EQ(
      parse(makeNpy(1, dict("<f8", "(3,)"), bytesOf<double>({1.0, -2.5, 3.25})),
            a),
      "");
  EXPECT_EQ(a.dtype, DType::F64);
  EXPECT_EQ(a.shape, std::vector<int64_t>{3});
  EXPECT_EQ(a.getDouble(0), 1.0);
  EXPECT_EQ(a.getDouble(1), -2.5);
  EXPECT_EQ(a.getDouble(2), 3.25);
}

TEST(NpyRead, Version2DoubleQuotesReorderedKeys) {
  HostArray a;
  std::string header = "{\"shape\":(2,3,),\t\"fortran_order\" : False ,\n"
                       "  \"descr\": \"<i4\"}   \r\n";
  ASSERT_EQ(parse(makeNpy(2, header, bytesOf<int32_t>({1, 2, 3, 4, 5, -6})), a),
            "");
  EXPECT_EQ(a.dtype, DType::I32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.getDouble(5), -6.0);
}

TEST(NpyRead, Version3ScalarBool) {
  HostArray a;
  // A non-0/1 bool byte is normalized to 1.
  ASSERT_EQ(
      parse(makeNpy(3, "{'descr': '|b1', 'fortran_order': False, 'shape': ()}",
                    {2}),
            a),
      "");
  EXPECT_EQ(a.dtype, DType::Bool);
  EXPECT_TRUE(a.shape.empty());
  EXPECT_EQ(a.numel(), 1);
  EXPECT_EQ(a.bytes, std::vector<uint8_t>{1});
}

TEST(NpyRead, OtherDtypesAndShapes) {
  HostArray a;
  ASSERT_EQ(
      parse(makeNpy(1, dict("<f4", "(1, 2)"), bytesOf<float>({.5f, 8})), a),
      "");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.getDouble(1), 8.0);

  ASSERT_EQ(parse(makeNpy(1, dict("<i8", "(2L, 1L)"),
                          bytesOf<int64_t>({-(int64_t(1) << 40), 7})),
                  a),
            "");
  EXPECT_EQ(a.dtype, DType::I64);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(a.data<int64_t>()[0], -(int64_t(1) << 40));

  ASSERT_EQ(parse(makeNpy(1, dict("<f2", "(2,)"),
                          bytesOf<uint16_t>({0x3e00, 0xc000})),
                  a),
            "");
  EXPECT_EQ(a.dtype, DType::F16);
  EXPECT_EQ(a.getDouble(0), 1.5);
  EXPECT_EQ(a.getDouble(1), -2.0);

  // Zero-size arrays need no data; bytes past the data are an error (the
  // file must be exactly as large as its header says).
  ASSERT_EQ(parse(makeNpy(1, dict("<f4", "(0, 4)")), a), "");
  EXPECT_EQ(a.numel(), 0);
  EXPECT_NE(parse(makeNpy(1, dict("|b1", "(1,)"), {0, 1, 1}), a)
                .find("size mismatch: header says [1] bool = 1 bytes, file has 3"),
            std::string::npos);
  // No spaces, no trailing comma in the dict, no final newline.
  ASSERT_EQ(parse(makeNpy(1,
                          "{'descr':'<f8','fortran_order':False,"
                          "'shape':( 1 , )}",
                          bytesOf<double>({4})),
                  a),
            "");
  EXPECT_EQ(a.shape, std::vector<int64_t>{1});
}

TEST(NpyRead, FileErrorsNamePath) {
  HostArray a;
  std::string missing = tempPath("missing.npy");
  std::string err = readNpy(missing, a);
  EXPECT_CONTAINS(err, "cannot open '" + missing + "'");
  EXPECT_CONTAINS(err, "No such file");

  std::string bad = tempPath("bad.npy");
  std::FILE *f = std::fopen(bad.c_str(), "wb");
  ASSERT_TRUE(f);
  std::fputs("hello, world", f);
  std::fclose(f);
  err = readNpy(bad, a);
  std::remove(bad.c_str());
  EXPECT_EQ(err, bad + ": not a .npy file (bad magic)");

  err = readNpy(::testing::TempDir(), a);
  EXPECT_CONTAINS(err, ::testing::TempDir());
  EXPECT_EQ(err.find('\n'), std::string::npos);
}

//===----------------------------------------------------------------------===//
// Parse errors
//===----------------------------------------------------------------------===//

TEST(NpyReadError, BadMagic) {
  EXPECT_EQ(parseError({}), "not a .npy file (bad magic)");
  EXPECT_EQ(parseError({'h', 'e', 'l', 'l', 'o', '!', 1, 0, 0, 0}),
            "not a .npy file (bad magic)");
  std::vector<uint8_t> buf = makeNpy(1, dict("<f4", "()"), {0, 0, 0, 0});
  buf[5] = 'Z';
  EXPECT_EQ(parseError(buf), "not a .npy file (bad magic)");
}

TEST(NpyReadError, TruncatedPreambleAndHeader) {
  std::vector<uint8_t> buf = makeNpy(1, dict("<f4", "()"), {0, 0, 0, 0});
  for (size_t n : {6, 7, 9}) {
    std::vector<uint8_t> cut(buf.begin(), buf.begin() + n);
    EXPECT_CONTAINS(parseError(cut), "truncated: file ends inside the .npy");
  }
  std::vector<uint8_t> cut(buf.begin(), buf.begin() + 20);
  EXPECT_CONTAINS(parseError(cut), "truncated: header length");
  std::vector<uint8_t> v2 = makeNpy(2, "{}");
  v2[11] = 0x80; // Header length 2^31 + 2.
  EXPECT_CONTAINS(parseError(v2), "truncated: header length 2147483650");
}

TEST(NpyReadError, UnsupportedVersion) {
  EXPECT_CONTAINS(parseError(makeNpy(4, dict("<f4", "()"))),
                  "unsupported .npy format version 4.0");
  EXPECT_CONTAINS(parseError(makeNpy(1, dict("<f4", "()"), {}, 1)),
                  "unsupported .npy format version 1.1");
  EXPECT_CONTAINS(parseError(makeNpy(0, dict("<f4", "()"))),
                  "unsupported .npy format version 0.0");
}

TEST(NpyReadError, MalformedHeader) {
  struct Case {
    const char *header, *message;
  } cases[] = {
      {"", "expected '{' at offset 0"},
      {"descr", "expected '{'"},
      {"{'descr' '<f4'}", "expected ':' after key at offset 9"},
      {"{'descr': '<f4", "expected a string value for 'descr'"},
      {"{'descr': <f4}", "expected a string value for 'descr'"},
      {"{descr: '<f4'}", "expected a quoted key or '}'"},
      {"{'descr': '<f4',, }", "expected a quoted key or '}'"},
      {"{'descr': '<f4' 'shape': ()}", "expected ',' or '}' after value"},
      {"{'fortran_order': Maybe}", "expected True or False"},
      {"{'fortran_order': Truest}", "expected True or False"},
      {"{'shape': [2, 3]}", "expected '(' starting the shape tuple"},
      {"{'shape': (2 3)}", "expected ',' or ')' in the shape tuple"},
      {"{'shape': (,)}", "expected an integer in the shape tuple"},
      {"{'shape': (2,,)}", "expected an integer in the shape tuple"},
      {"{'shape': (-)}", "expected an integer in the shape tuple"},
      {"{'shape': (2.5,)}", "expected ',' or ')' in the shape tuple"},
      {"{'shape': (2,", "expected an integer in the shape tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': ()} x",
       "unexpected characters after '}'"},
      {"{'descr': '<f4', 'shape': ()}", "missing key 'fortran_order'"},
      {"{'fortran_order': False, 'shape': ()}", "missing key 'descr'"},
      {"{'descr': '<f4', 'fortran_order': False}", "missing key 'shape'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}",
       "unexpected key 'x'"},
      {"{'descr': '<f4', 'descr': '<f4'}", "duplicate key 'descr'"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.header);
    std::string err = parseError(makeNpy(1, c.header));
    EXPECT_CONTAINS(err, "malformed .npy header: ");
    EXPECT_CONTAINS(err, c.message);
    EXPECT_EQ(err.find('\n'), std::string::npos);
  }
}

TEST(NpyReadError, UnsupportedDtype) {
  EXPECT_EQ(parseError(makeNpy(1, dict(">f4", "(1,)"), {0, 0, 0, 0})),
            "unsupported dtype '>f4'; expected little-endian "
            "float32/float64/int32/int64/float16/bool");
  EXPECT_CONTAINS(parseError(makeNpy(1, dict("<u2", "(1,)"), {0, 0})),
                  "unsupported dtype '<u2'");
  EXPECT_CONTAINS(parseError(makeNpy(1, dict("<f4\n\x01", "(1,)"))),
                  "unsupported dtype '<f4\\x0a\\x01'");
  EXPECT_CONTAINS(
      parseError(makeNpy(1, "{'descr': [('a', '<f4')], 'fortran_order': "
                            "False, 'shape': (1,)}")),
      "unsupported dtype: structured (record) arrays are not supported");
}

TEST(NpyReadError, FortranOrder) {
  EXPECT_EQ(parseError(makeNpy(1, dict("<f4", "(2, 2)", "True"),
                               bytesOf<float>({1, 2, 3, 4}))),
            "Fortran-order arrays are not supported; save a C-contiguous "
            "array (np.ascontiguousarray)");
}

TEST(NpyReadError, BadShape) {
  EXPECT_EQ(parseError(makeNpy(1, dict("<f4", "(2, -3)"))),
            "negative dimension -3 in shape");
  EXPECT_EQ(parseError(makeNpy(1, dict("<f4", "(99999999999999999999,)"))),
            "shape dimension 99999999999999999999 is too large");
  EXPECT_CONTAINS(parseError(makeNpy(1, dict("<f4", "(9223372036854775808,)"))),
                  "is too large");
  EXPECT_EQ(parseError(makeNpy(1, dict("<f4", "(4294967296, 4294967296)"))),
            "shape [4294967296, 4294967296] is too large (size overflows)");
  // The element count fits in int64 but the byte count does not.
  EXPECT_CONTAINS(parseError(makeNpy(1, dict("<f8", "(4611686018427387904,)"))),
                  "is too large (size overflows)");
  // A zero dimension makes any other dimension harmless.
  HostArray a;
  EXPECT_EQ(parse(makeNpy(1, dict("<f8", "(0, 9223372036854775807)")), a), "");
}

TEST(NpyReadError, TruncatedData) {
  EXPECT_EQ(
      parseError(makeNpy(1, dict("<f4", "(2, 3)"), std::vector<uint8_t>(20))),
      "truncated: header says [2, 3] float32 = 24 bytes, file has 20");
  EXPECT_EQ(parseError(makeNpy(3, dict("<f8", "()"))),
            "truncated: header says [] float64 = 8 bytes, file has 0");
}

TEST(NpyReadError, SurvivesDamagedInput) {
  // Mutate valid files and random header soup; the parser must either fail
  // cleanly or produce a consistent array. Deterministic LCG for repeatability.
  uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&state](uint64_t bound) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<size_t>((state >> 33) % bound);
  };
  std::vector<std::vector<uint8_t>> seeds;
  for (DType t : {DType::F32, DType::F64, DType::I32, DType::I64, DType::F16,
                  DType::Bool}) {
    std::vector<uint8_t> buf;
    ASSERT_EQ(serializeNpy(HostArray::zeros(t, {2, 3}), buf), "");
    seeds.push_back(buf);
  }
  seeds.push_back(makeNpy(2, dict("<f8", "(1,)"), std::vector<uint8_t>(8)));
  const char alphabet[] = "{}()[]:,'\" \n-0123456789LTrueFalsdcrhp<>|fib248_";
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<uint8_t> buf = seeds[next(seeds.size())];
    if (iter % 4 == 0) {
      // Replace the header with random dict-like text of random length.
      size_t len = next(80);
      std::string soup;
      for (size_t i = 0; i < len; ++i)
        soup += alphabet[next(sizeof(alphabet) - 1)];
      buf = makeNpy(static_cast<unsigned>(1 + next(3)), soup,
                    std::vector<uint8_t>(next(64)));
    } else {
      for (size_t n = 1 + next(4); n > 0; --n)
        buf[next(std::min<size_t>(buf.size(), 128))] =
            static_cast<uint8_t>(next(256));
    }
    buf.resize(next(buf.size() + 1));
    // Copy into an exact-size heap buffer so ASan flags any overread.
    std::unique_ptr<uint8_t[]> exact(new uint8_t[buf.size() + 1]);
    std::memcpy(exact.get(), buf.data(), buf.size());
    HostArray a;
    std::string err = parseNpy(exact.get(), buf.size(), a);
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
    if (err.empty()) {
      EXPECT_EQ(a.bytes.size(),
                static_cast<size_t>(a.numel()) * dtypeSize(a.dtype));
    }
  }
}

//===----------------------------------------------------------------------===//
// Element conversions
//===----------------------------------------------------------------------===//

TEST(NpyConvert, FloatAndInt) {
  HostArray f = HostArray::zeros(DType::F32, {1});
  f.setDouble(0, 0.1);
  EXPECT_EQ(f.getDouble(0), static_cast<double>(0.1f));
  HostArray d = HostArray::zeros(DType::F64, {1});
  d.setDouble(0, 0.1);
  EXPECT_EQ(d.getDouble(0), 0.1);

  HostArray i = HostArray::zeros(DType::I32, {1});
  auto i32 = [&i](double v) {
    i.setDouble(0, v);
    return i.data<int32_t>()[0];
  };
  EXPECT_EQ(i32(2.9), 2);
  EXPECT_EQ(i32(-2.9), -2);
  EXPECT_EQ(i32(-2147483648.0), std::numeric_limits<int32_t>::min());
  EXPECT_EQ(i32(1e20), std::numeric_limits<int32_t>::max());
  EXPECT_EQ(i32(-1e20), std::numeric_limits<int32_t>::min());
  EXPECT_EQ(i32(std::nan("")), 0);

  HostArray l = HostArray::zeros(DType::I64, {1});
  auto i64 = [&l](double v) {
    l.setDouble(0, v);
    return l.data<int64_t>()[0];
  };
  EXPECT_EQ(i64(-7.5), -7);
  EXPECT_EQ(i64(9007199254740993.0), int64_t(1) << 53);
  EXPECT_EQ(i64(1e19), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(i64(-std::numeric_limits<double>::infinity()),
            std::numeric_limits<int64_t>::min());
  l.data<int64_t>()[0] = -(int64_t(1) << 60);
  EXPECT_EQ(l.getDouble(0), -std::ldexp(1.0, 60));

  HostArray b = HostArray::zeros(DType::Bool, {1});
  auto boolOf = [&b](double v) {
    b.setDouble(0, v);
    return static_cast<int>(b.bytes[0]);
  };
  EXPECT_EQ(boolOf(0.0), 0);
  EXPECT_EQ(boolOf(-0.0), 0);
  EXPECT_EQ(boolOf(0.25), 1);
  EXPECT_EQ(boolOf(-3), 1);
  EXPECT_EQ(boolOf(std::nan("")), 1);
  EXPECT_EQ(b.getDouble(0), 1.0);
}

TEST(NpyConvert, Float16) {
  const DType h = DType::F16;
  EXPECT_EQ(encodeBits(h, 1.0), 0x3c00);
  EXPECT_EQ(encodeBits(h, 1.5), 0x3e00);
  EXPECT_EQ(encodeBits(h, -2.0), 0xc000);
  EXPECT_EQ(encodeBits(h, 0.1), 0x2e66);
  EXPECT_EQ(encodeBits(h, 1.0 / 3), 0x3555);
  EXPECT_EQ(encodeBits(h, 65504), 0x7bff);
  EXPECT_EQ(encodeBits(h, 65519.99), 0x7bff);
  EXPECT_EQ(encodeBits(h, 65520), 0x7c00); // Halfway to 2^16: rounds to inf.
  EXPECT_EQ(encodeBits(h, 1e300), 0x7c00);
  EXPECT_EQ(encodeBits(h, -std::numeric_limits<double>::infinity()), 0xfc00);
  EXPECT_EQ(encodeBits(h, 0.0), 0x0000);
  EXPECT_EQ(encodeBits(h, -0.0), 0x8000);
  // Ties round to even: 1 + 2^-11 is halfway between 0x3c00 and 0x3c01.
  EXPECT_EQ(encodeBits(h, 1 + std::ldexp(1, -11)), 0x3c00);
  EXPECT_EQ(encodeBits(h, 1 + 3 * std::ldexp(1, -11)), 0x3c02);
  EXPECT_EQ(encodeBits(h, 1 + std::ldexp(1, -11) + std::ldexp(1, -30)), 0x3c01);
  // Subnormals: the smallest is 2^-24; 2^-25 ties to 0, 3*2^-25 ties to 2.
  EXPECT_EQ(encodeBits(h, std::ldexp(1, -24)), 0x0001);
  EXPECT_EQ(encodeBits(h, std::ldexp(1, -25)), 0x0000);
  EXPECT_EQ(encodeBits(h, std::ldexp(1.0001, -25)), 0x0001);
  EXPECT_EQ(encodeBits(h, 3 * std::ldexp(1, -25)), 0x0002);
  EXPECT_EQ(encodeBits(h, -1023 * std::ldexp(1, -24)), 0x83ff);
  // Rounding the largest subnormal up carries into the smallest normal.
  EXPECT_EQ(encodeBits(h, std::ldexp(1, -14) - std::ldexp(1, -25)), 0x0400);
  EXPECT_EQ(encodeBits(h, std::ldexp(1, -14)), 0x0400);
  uint16_t nan = encodeBits(h, std::nan(""));
  EXPECT_EQ(nan & 0x7c00, 0x7c00);
  EXPECT_NE(nan & 0x03ff, 0);

  EXPECT_EQ(decodeBits(h, 0x3e00), 1.5);
  EXPECT_EQ(decodeBits(h, 0x7bff), 65504.0);
  EXPECT_EQ(decodeBits(h, 0x0001), std::ldexp(1, -24));
  EXPECT_EQ(decodeBits(h, 0x03ff), 1023 * std::ldexp(1, -24));
  EXPECT_EQ(decodeBits(h, 0x3555), 0.333251953125);
  EXPECT_EQ(decodeBits(h, 0xc000), -2.0);
  EXPECT_EQ(decodeBits(h, 0x7c00), std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(decodeBits(h, 0x7e00)));
  EXPECT_TRUE(std::signbit(decodeBits(h, 0x8000)));
}

TEST(NpyConvert, BFloat16) {
  const DType b = DType::BF16;
  EXPECT_EQ(encodeBits(b, 1.0), 0x3f80);
  EXPECT_EQ(encodeBits(b, 3.0), 0x4040);
  EXPECT_EQ(encodeBits(b, -2.0), 0xc000);
  EXPECT_EQ(encodeBits(b, 3.14159265358979323846), 0x4049);
  // Ties to even around 1.0 (spacing 2^-7).
  EXPECT_EQ(encodeBits(b, 1 + std::ldexp(1, -8)), 0x3f80);
  EXPECT_EQ(encodeBits(b, 1 + 3 * std::ldexp(1, -8)), 0x3f82);
  EXPECT_EQ(encodeBits(b, 1 + std::ldexp(1, -8) + std::ldexp(1, -30)), 0x3f81);
  // Largest finite bfloat16 and overflow (FLT_MAX is past the halfway point).
  EXPECT_EQ(encodeBits(b, (2 - std::ldexp(1, -7)) * std::ldexp(1, 127)),
            0x7f7f);
  EXPECT_EQ(encodeBits(b, std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(encodeBits(b, -1e300), 0xff80);
  EXPECT_EQ(encodeBits(b, std::ldexp(1, -133)), 0x0001);
  EXPECT_EQ(encodeBits(b, std::ldexp(1, -134)), 0x0000);
  EXPECT_EQ(encodeBits(b, -0.0), 0x8000);
  uint16_t nan = encodeBits(b, std::nan(""));
  EXPECT_EQ(nan & 0x7f80, 0x7f80);
  EXPECT_NE(nan & 0x007f, 0);

  EXPECT_EQ(decodeBits(b, 0x4049), 3.140625);
  EXPECT_EQ(decodeBits(b, 0x3f81), 1 + std::ldexp(1, -7));
  EXPECT_EQ(decodeBits(b, 0x0001), std::ldexp(1, -133));
  EXPECT_EQ(decodeBits(b, 0xff80), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(decodeBits(b, 0x7fc0)));
}

TEST(NpyConvert, Exhaustive16BitRoundTrip) {
  // Every non-NaN bit pattern decodes and re-encodes to itself.
  for (DType t : {DType::F16, DType::BF16}) {
    HostArray a = HostArray::zeros(t, {1});
    for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
      a.data<uint16_t>()[0] = static_cast<uint16_t>(bits);
      double v = a.getDouble(0);
      if (std::isnan(v))
        continue;
      a.setDouble(0, v);
      ASSERT_EQ(bits16(a, 0), bits) << dtypeName(t);
    }
  }
}
