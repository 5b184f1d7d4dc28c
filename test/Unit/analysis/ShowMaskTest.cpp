//===- ShowMaskTest.cpp - `attnc show-mask` through its library call ------===//
//
// Calls showMask() directly (the attnc subcommand is a thin wrapper), checks
// the grid and counts, and decodes the PNGs it writes (chunk CRCs, the zlib
// stream, pixel colours). Set ATTN_SHOWMASK_PNG_DIR to keep the PNGs.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/Driver.h"
#include "attn/Frontend/ShowMask.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/CRC.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/Compression.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <iterator>

using namespace mlir;
using namespace mlir::attn;

namespace {

struct Loaded {
  MLIRContext ctx;
  llvm::SourceMgr sourceMgr;
  OwningOpRef<ModuleOp> module;
  SpecOp spec;
};

std::unique_ptr<Loaded> loadExample(const std::string &name,
                                    const std::vector<std::string> &params = {}) {
  auto l = std::make_unique<Loaded>();
  auto buf = llvm::MemoryBuffer::getFile(std::string(ATTN_EXAMPLES_DIR) + "/" +
                                         name + ".attn");
  if (!buf)
    return nullptr;
  unsigned id = l->sourceMgr.AddNewSourceBuffer(std::move(*buf), llvm::SMLoc());
  SourceMgrDiagnosticHandler handler(l->sourceMgr, &l->ctx);
  std::string paramError;
  l->module = loadSpec(l->ctx, l->sourceMgr, id, params, paramError);
  if (!l->module)
    return nullptr;
  l->spec = getSpec(*l->module);
  return l;
}

uint32_t be32(const uint8_t *p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) |
         (uint32_t(p[2]) << 8) | p[3];
}

/// Decodes a PNG as encodePng writes it (8-bit RGB, filter 0) into rgb.
::testing::AssertionResult decodePng(const std::vector<uint8_t> &png,
                                     uint32_t &w, uint32_t &h,
                                     std::vector<uint8_t> &rgb) {
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (png.size() < 8 || !std::equal(sig, sig + 8, png.begin()))
    return ::testing::AssertionFailure() << "bad signature";
  std::vector<uint8_t> idat;
  size_t pos = 8;
  bool sawEnd = false;
  while (pos + 12 <= png.size()) {
    uint32_t len = be32(&png[pos]);
    std::string type(png.begin() + pos + 4, png.begin() + pos + 8);
    if (pos + 12 + len > png.size())
      return ::testing::AssertionFailure() << "truncated chunk " << type;
    uint32_t crc = be32(&png[pos + 8 + len]);
    uint32_t want = llvm::crc32(
        llvm::ArrayRef<uint8_t>(png.data() + pos + 4, len + 4));
    if (crc != want)
      return ::testing::AssertionFailure() << "bad CRC in " << type;
    const uint8_t *d = &png[pos + 8];
    if (type == "IHDR") {
      w = be32(d);
      h = be32(d + 4);
      if (d[8] != 8 || d[9] != 2)
        return ::testing::AssertionFailure() << "not 8-bit RGB";
    } else if (type == "IDAT") {
      idat.insert(idat.end(), d, d + len);
    } else if (type == "IEND") {
      sawEnd = true;
    }
    pos += 12 + len;
  }
  if (!sawEnd || pos != png.size())
    return ::testing::AssertionFailure() << "no IEND at the end";
  size_t rawSize = size_t(h) * (size_t(w) * 3 + 1);
  std::vector<uint8_t> raw;
  if (idat.size() >= 3 && (idat[2] & 0x06) == 0) {
    // Stored blocks: check them and the Adler-32 by hand.
    size_t p = 2;
    bool last = false;
    while (!last) {
      last = idat[p] & 1;
      uint16_t n = idat[p + 1] | (idat[p + 2] << 8);
      uint16_t nn = idat[p + 3] | (idat[p + 4] << 8);
      if (uint16_t(~n) != nn)
        return ::testing::AssertionFailure() << "bad stored block length";
      raw.insert(raw.end(), idat.begin() + p + 5, idat.begin() + p + 5 + n);
      p += 5 + n;
    }
    uint32_t a = 1, b = 0;
    for (uint8_t c : raw) {
      a = (a + c) % 65521;
      b = (b + a) % 65521;
    }
    if (be32(&idat[p]) != ((b << 16) | a))
      return ::testing::AssertionFailure() << "bad Adler-32";
  } else {
    if (!llvm::compression::zlib::isAvailable())
      return ::testing::AssertionFailure() << "compressed without zlib?";
    llvm::SmallVector<uint8_t, 0> out;
    if (llvm::Error e =
            llvm::compression::zlib::decompress(idat, out, rawSize)) {
      llvm::consumeError(std::move(e));
      return ::testing::AssertionFailure() << "zlib stream does not inflate";
    }
    raw.assign(out.begin(), out.end());
  }
  if (raw.size() != rawSize)
    return ::testing::AssertionFailure() << "wrong image data size";
  rgb.clear();
  for (uint32_t y = 0; y < h; ++y) {
    if (raw[y * (w * 3 + 1)] != 0)
      return ::testing::AssertionFailure() << "filter type not 0";
    auto row = raw.begin() + y * (w * 3 + 1) + 1;
    rgb.insert(rgb.end(), row, row + w * 3);
  }
  return ::testing::AssertionSuccess();
}

std::string pngPath(const std::string &name) {
  const char *dir = getenv("ATTN_SHOWMASK_PNG_DIR");
  return (dir ? std::string(dir) : ::testing::TempDir()) + "/" + name + ".png";
}

std::vector<uint8_t> readAll(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

TEST(PngEncoder, StoredAndCompressedRoundTrip) {
  // 70000 pixels: more than one 64 KiB stored block.
  uint32_t w = 350, h = 200;
  std::vector<uint8_t> rgb(w * h * 3);
  for (size_t i = 0; i < rgb.size(); ++i)
    rgb[i] = static_cast<uint8_t>(i * 7 + i / 3);
  for (bool compress : {false, true}) {
    uint32_t dw = 0, dh = 0;
    std::vector<uint8_t> back;
    ASSERT_TRUE(decodePng(encodePng(w, h, rgb, compress), dw, dh, back))
        << "compress=" << compress;
    EXPECT_EQ(dw, w);
    EXPECT_EQ(dh, h);
    EXPECT_EQ(back, rgb);
  }
}

TEST(ShowMask, CausalGrid) {
  auto l = loadExample("causal");
  ASSERT_TRUE(l);
  ShowMaskOptions o;
  o.shape = "N=256,M=256";
  o.png = pngPath("causal");
  std::string out;
  llvm::raw_string_ostream os(out);
  ASSERT_EQ(showMask(l->spec, o, os), "");
  EXPECT_NE(out.find("tiles 64 x 64 (4 x 4 tiles)"), std::string::npos) << out;
  EXPECT_NE(out.find("\n  +...\n  #+..\n  ##+.\n  ###+\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("tiles: 16 = 6 full + 4 partial + 6 empty"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("computed: 10 of 16 tiles (62.5% of dense)"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("elements: 32896 of 65536 visible"), std::string::npos)
      << out;
  EXPECT_EQ(out.find("actually uniform"), std::string::npos) << out;

  uint32_t w, h;
  std::vector<uint8_t> rgb;
  ASSERT_TRUE(decodePng(readAll(o.png), w, h, rgb));
  EXPECT_EQ(w, 1024u); // 4 px per element
  EXPECT_EQ(h, 1024u);
  auto px = [&](uint32_t x, uint32_t y) {
    const uint8_t *p = &rgb[(y * w + x) * 3];
    return std::array<int, 3>{p[0], p[1], p[2]};
  };
  // Bottom-left: a full tile, visible: light green. Top-right: an empty tile,
  // masked: dark. On the diagonal tile: visible below, masked above.
  auto full = px(10, 1000), empty = px(1000, 10);
  EXPECT_GT(full[1], 200);
  EXPECT_GT(full[1], full[0]);
  EXPECT_LT(empty[0] + empty[1] + empty[2], 150);
  auto below = px(10, 200), above = px(200, 10);
  EXPECT_GT(below[0] + below[1], 400); // light yellow
  EXPECT_LT(above[0] + above[1] + above[2], 300);
  // A grid line at the tile boundary x = 64 elements = 256 px.
  EXPECT_NE(px(256, 700), px(258, 700));
  EXPECT_EQ(px(254, 700), px(258, 700));
}

TEST(ShowMask, WideGridIsGroupedAndLargePngDownsampled) {
  auto l = loadExample("sliding_window", {"window=1000"});
  ASSERT_TRUE(l);
  ShowMaskOptions o;
  o.shape = "N=20000,M=20000,Hq=1";
  o.tileQ = o.tileKv = 64; // 313 x 313 tiles: 3 x 3 per character
  o.png = pngPath("sliding_window_20000");
  std::string out;
  llvm::raw_string_ostream os(out);
  ASSERT_EQ(showMask(l->spec, o, os), "");
  EXPECT_NE(out.find("one character per 3 x 3 tiles"), std::string::npos)
      << out;
  EXPECT_EQ(out.find("elements:"), std::string::npos); // too large to check
  size_t first = out.find("\n  ");
  ASSERT_NE(first, std::string::npos);
  size_t eol = out.find('\n', first + 1);
  EXPECT_EQ(eol - first - 3, 105u) << out; // ceil(313 / 3) characters
  uint32_t w, h;
  std::vector<uint8_t> rgb;
  ASSERT_TRUE(decodePng(readAll(o.png), w, h, rgb));
  EXPECT_EQ(w, 1000u); // 20 elements per pixel
  EXPECT_EQ(h, 1000u);
}

TEST(ShowMask, DocumentAndNeighborhoodPngs) {
  auto d = loadExample("document");
  ASSERT_TRUE(d);
  ShowMaskOptions o;
  o.shape = "N=512,M=512";
  o.seed = 3;
  o.tileQ = o.tileKv = 32;
  o.png = pngPath("document");
  std::string out;
  llvm::raw_string_ostream os(out);
  ASSERT_EQ(showMask(d->spec, o, os), "");
  EXPECT_NE(out.find("inputs: doc[1, 512]:int32(random) seed=3"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("actually uniform"), std::string::npos) << out;

  auto n = loadExample("neighborhood_2d",
                       {"height=16", "width=16", "kernel=5"});
  ASSERT_TRUE(n);
  ShowMaskOptions p;
  p.shape = "N=256,M=256";
  p.tileQ = p.tileKv = 8;
  p.png = pngPath("neighborhood_2d");
  out.clear();
  ASSERT_EQ(showMask(n->spec, p, os), "");
  EXPECT_NE(out.find("(32 x 32 tiles)"), std::string::npos) << out;
  EXPECT_EQ(out.find("actually uniform"), std::string::npos) << out;
}

TEST(ShowMask, Errors) {
  auto l = loadExample("causal");
  ASSERT_TRUE(l);
  std::string out;
  llvm::raw_string_ostream os(out);
  ShowMaskOptions o;
  o.h = 9;
  EXPECT_EQ(showMask(l->spec, o, os), "--h 9 is out of range [0, 4)");
  o.h = 0;
  o.tileQ = 0;
  EXPECT_EQ(showMask(l->spec, o, os),
            "--tile-q and --tile-kv must be positive");
  o.tileQ = 64;
  o.shape = "X=3";
  EXPECT_NE(showMask(l->spec, o, os).find("unknown dim 'X'"),
            std::string::npos);
}

} // namespace
