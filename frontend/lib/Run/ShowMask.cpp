//===- ShowMask.cpp - `attnc show-mask` -----------------------------------===//
//
// Tiles come from the block classifier (MaskAnalysis); the element-level
// picture from the reference's element-wise mask evaluator, so the PNG shows
// what the mask really is and the tint what the classifier claims. For large
// N x M the PNG is downsampled: a pixel is the visible fraction of the cell of
// elements it covers (the classifier settles uniform cells; partial ones are
// evaluated, or sampled when very large).
//
// Shapes and tile sizes come from users: the inputs, the tile map, the
// element mask and the picture are sized (saturating) and checked against
// --max-memory before any of them is allocated.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/ShowMask.h"
#include "attn/Analysis/MaskAnalysis.h"
#include "attn/Frontend/RunSpec.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "llvm/Support/CRC.h"
#include "llvm/Support/Compression.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"
#include <algorithm>
#include <cmath>
#include <optional>

using namespace mlir;
using namespace mlir::attn;
using ::attn::HostArray;

//===----------------------------------------------------------------------===//
// PNG
//===----------------------------------------------------------------------===//

static void putBE32(std::vector<uint8_t> &out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8)
    out.push_back(static_cast<uint8_t>(v >> s));
}

static void putChunk(std::vector<uint8_t> &out, const char type[4],
                     const std::vector<uint8_t> &data) {
  putBE32(out, static_cast<uint32_t>(data.size()));
  size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  uint32_t crc = llvm::crc32(llvm::ArrayRef<uint8_t>(out).drop_front(start));
  putBE32(out, crc);
}

/// A zlib stream of stored (uncompressed) deflate blocks.
static std::vector<uint8_t> zlibStored(const std::vector<uint8_t> &raw) {
  std::vector<uint8_t> z = {0x78, 0x01};
  size_t pos = 0;
  do {
    size_t n = std::min<size_t>(65535, raw.size() - pos);
    bool last = pos + n == raw.size();
    z.push_back(last ? 1 : 0); // BFINAL, BTYPE = 00
    z.push_back(static_cast<uint8_t>(n));
    z.push_back(static_cast<uint8_t>(n >> 8));
    z.push_back(static_cast<uint8_t>(~n));
    z.push_back(static_cast<uint8_t>(~n >> 8));
    z.insert(z.end(), raw.begin() + pos, raw.begin() + pos + n);
    pos += n;
  } while (pos < raw.size());
  uint32_t a = 1, b = 0; // Adler-32
  for (uint8_t c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  putBE32(z, (b << 16) | a);
  return z;
}

std::vector<uint8_t> mlir::attn::encodePng(uint32_t width, uint32_t height,
                                           const std::vector<uint8_t> &rgb,
                                           bool allowCompression) {
  std::vector<uint8_t> raw;
  raw.reserve(size_t(height) * (size_t(width) * 3 + 1));
  for (uint32_t y = 0; y < height; ++y) {
    raw.push_back(0); // filter: none
    const uint8_t *row = rgb.data() + size_t(y) * width * 3;
    raw.insert(raw.end(), row, row + size_t(width) * 3);
  }
  std::vector<uint8_t> idat;
  if (allowCompression && llvm::compression::zlib::isAvailable()) {
    llvm::SmallVector<uint8_t, 0> z;
    llvm::compression::zlib::compress(raw, z);
    idat.assign(z.begin(), z.end());
  } else {
    idat = zlibStored(raw);
  }
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr;
  putBE32(ihdr, width);
  putBE32(ihdr, height);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0}); // 8-bit RGB, no interlace
  putChunk(png, "IHDR", ihdr);
  putChunk(png, "IDAT", idat);
  putChunk(png, "IEND", {});
  return png;
}

//===----------------------------------------------------------------------===//
// show-mask
//===----------------------------------------------------------------------===//

namespace {
struct RGB {
  double r, g, b;
};
} // namespace

static RGB mix(RGB a, RGB b, double t) {
  return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}

static char classChar(BlockClass c) {
  return c == BlockClass::Full ? '#' : c == BlockClass::Empty ? '.' : '+';
}

/// Elements evaluated one by one for the summary's check and the exact PNG.
static constexpr int64_t kElementLimit = int64_t(1) << 22;

namespace {
/// The PNG's scale: an integer number of pixels per element up to 1024 px
/// (`up`), else an integer number of elements per pixel (`down`); W x H
/// pixels.
struct PngGeometry {
  int64_t up = 1, down = 1, W = 0, H = 0;
  PngGeometry(int64_t N, int64_t M) {
    int64_t longest = std::max(N, M);
    if (longest <= 1024)
      up = std::clamp<int64_t>(1024 / longest, 1, 16);
    else
      down = (longest + 1023) / 1024;
    W = down > 1 ? (M + down - 1) / down : M * up;
    H = down > 1 ? (N + down - 1) / down : N * up;
  }
};
} // namespace

/// Whether the element mask of N x M is small enough to evaluate in full.
static bool fullMask(int64_t N, int64_t M) {
  return N <= kElementLimit && M <= kElementLimit / N;
}

/// The memory show-mask needs besides the inputs: the reference's copies of
/// the aux inputs, and the tile map, the element mask and the picture.
static MemoryNeed showMaskMemory(const InputPlan &plan, int64_t N, int64_t M,
                                 int64_t tq, int64_t tk, bool png) {
  using ::attn::saturatingAdd;
  MemoryNeed need;
  need.inputs = plan.bytes;
  for (const auto &[name, shape] : plan.shapes)
    if (name != "q" && name != "k" && name != "v")
      need.reference =
          saturatingAdd(need.reference, ::attn::arrayBytes(shape, 8));
  int64_t nq = (N - 1) / tq + 1, nk = (M - 1) / tk + 1;
  need.other = ::attn::arrayBytes({nq, nk}, sizeof(BlockClass));
  if (fullMask(N, M))
    need.other = saturatingAdd(need.other, ::attn::arrayBytes({N, M}, 1));
  if (png) {
    // The visible fractions (double), the RGB pixels, the filtered rows and
    // the compressed image.
    PngGeometry g(N, M);
    need.other =
        saturatingAdd(need.other, ::attn::arrayBytes({g.W, g.H}, 8 + 3 * 3));
  }
  need.otherName = "the tile map";
  return need;
}

namespace {
/// One `attnc show-mask`: the mask of (b, h) in tq x tk tiles. The steps
/// run in a fixed order (inputs, classification, element check, summary,
/// PNG) and stop at the first error; the summary is printed before the PNG
/// is drawn, so a failure while drawing still leaves it on `os`.
class MaskReport {
public:
  MaskReport(SpecOp spec, const ShowMaskOptions &opts, llvm::raw_ostream &os)
      : spec(spec), opts(opts), os(os) {}

  std::string run();

private:
  std::string prepare();
  std::string checkElementMask();
  void printSummary();
  void printTileGrid();
  void printCounts();
  std::string drawPng();
  std::string cellFractions(const PngGeometry &geometry,
                            std::vector<double> &frac);
  std::string sampleCell(int64_t q0, int64_t q1, int64_t k0, int64_t k1,
                         double &fraction);
  std::vector<uint8_t> renderPixels(const PngGeometry &geometry,
                                    const std::vector<double> &frac);

  SpecOp spec;
  const ShowMaskOptions &opts;
  llvm::raw_ostream &os;

  InputPlan plan;
  MaskEvaluator ev;
  std::optional<MaskClassifier> classifier;
  int64_t N = 0, M = 0, b = 0, h = 0, tq = 0, tk = 0;
  /// Tile classes, nq x nk row-major.
  std::vector<BlockClass> classes;
  BlockStats stats;
  int64_t nq = 0, nk = 0;
  /// The element mask (N x M row-major) when haveMask.
  std::vector<uint8_t> mask;
  bool haveMask = false;
  int64_t visible = 0, uniformPartial = 0;
};
} // namespace

/// Gathers the inputs and sets up the evaluator; checks --b and --h.
std::string MaskReport::prepare() {
  if (opts.tileQ <= 0 || opts.tileKv <= 0)
    return "--tile-q and --tile-kv must be positive";
  if (std::string err =
          planInputs(spec, opts.inputs, opts.shape, opts.maxMemory, plan);
      !err.empty())
    return err;
  ::attn::DimBinding bound;
  if (std::string err =
          ::attn::bindShapes(getSignature(spec), plan.shapes, bound);
      !err.empty())
    return err;
  // A tile larger than the mask is the whole mask (and keeps the tile
  // arithmetic below far from overflowing).
  tq = std::min(opts.tileQ, bound.at("N"));
  tk = std::min(opts.tileKv, bound.at("M"));
  MemoryNeed need = showMaskMemory(plan, bound.at("N"), bound.at("M"), tq, tk,
                                   !opts.png.empty());
  if (std::string err = checkMemory(need, opts.maxMemory); !err.empty())
    return err;
  if (std::string err = makeRandomInputs(spec, opts.seed, plan); !err.empty())
    return err;
  uint64_t budget = memoryBudget(opts.maxMemory);
  if (std::string err = ev.init(spec, plan.inputs,
                                std::max<uint64_t>(budget - plan.bytes, 1));
      !err.empty())
    return err;
  const ::attn::DimBinding &dims = ev.dims();
  int64_t B = dims.at("B"), Hq = dims.at("Hq");
  N = dims.at("N");
  M = dims.at("M");
  if (opts.b < 0 || opts.b >= B)
    return "--b " + std::to_string(opts.b) + " is out of range [0, " +
           std::to_string(B) + ")";
  if (opts.h < 0 || opts.h >= Hq)
    return "--h " + std::to_string(opts.h) + " is out of range [0, " +
           std::to_string(Hq) + ")";
  b = opts.b;
  h = opts.h;
  return "";
}

/// Evaluates the element mask (when small enough) for the visible fraction,
/// the exact PNG, and a check of the classification: a tile classified full
/// or empty must be so element by element, else the classifier is unsound.
std::string MaskReport::checkElementMask() {
  haveMask = fullMask(N, M);
  if (!haveMask)
    return "";
  mask.resize(N * M);
  if (std::string err = ev.evaluate(b, h, 0, N, 0, M, mask.data());
      !err.empty())
    return err;
  for (uint8_t m : mask)
    visible += m;
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t j = 0; j < nk; ++j) {
      int64_t vis = 0, area = 0;
      for (int64_t q = i * tq; q < std::min(N, (i + 1) * tq); ++q)
        for (int64_t k = j * tk; k < std::min(M, (j + 1) * tk); ++k) {
          vis += mask[q * M + k];
          ++area;
        }
      BlockClass c = classes[i * nk + j];
      if ((c == BlockClass::Full && vis != area) ||
          (c == BlockClass::Empty && vis != 0))
        return "internal error: tile (" + std::to_string(i) + ", " +
               std::to_string(j) + ") classified " + blockClassName(c) +
               " has " + std::to_string(vis) + " of " + std::to_string(area) +
               " elements visible";
      if (c == BlockClass::Partial && (vis == 0 || vis == area))
        ++uniformPartial;
    }
  return "";
}

/// The spec, dims, params, aux inputs and what the analysis cannot track.
void MaskReport::printSummary() {
  const ::attn::DimBinding &dims = ev.dims();
  os << "spec: " << spec.getSymName();
  if (!opts.specPath.empty())
    os << " (" << opts.specPath << ")";
  os << "\ndims:";
  for (const char *d : {"B", "Hq", "Hkv", "N", "M"})
    os << " " << d << "=" << dims.at(d);
  for (const auto &[name, size] : dims)
    if (!isCanonicalDim(name))
      os << " " << name << "=" << size;
  os << "\nparams:";
  if (ev.params().empty())
    os << " (none)";
  for (const auto &[name, v] : ev.params()) {
    os << " " << name << "=";
    if (v.isInt)
      os << v.i;
    else
      os << llvm::format("%g", v.f);
  }
  os << "\n";
  bool anyAux = false, anyRandom = false;
  for (const ::attn::InputSig &in : getSignature(spec).inputs) {
    if (in.name == "q" || in.name == "k" || in.name == "v")
      continue;
    const HostArray &a = plan.inputs.at(in.name);
    bool fromFile = plan.fromFile.count(in.name);
    os << (anyAux ? " " : "inputs: ") << in.name << a.shapeString() << ":"
       << ::attn::dtypeName(a.dtype) << (fromFile ? "" : "(random)");
    anyAux = true;
    anyRandom |= !fromFile;
  }
  if (anyRandom)
    os << " seed=" << opts.seed;
  if (anyAux)
    os << "\n";
  if (!classifier->unknownOps().empty()) {
    os << "note: the analysis does not track";
    for (const std::string &o : classifier->unknownOps())
      os << " " << o;
    os << " (values depending on them are unknown: tiles become partial)\n";
  }
}

/// One character per tile, or per group of tiles when there are more than
/// opts.maxColumns of them in a row or column (so the grid fits a terminal).
void MaskReport::printTileGrid() {
  os << "mask of b=" << b << " h=" << h << ": " << N << " queries x " << M
     << " keys, tiles " << tq << " x " << tk << " (" << nq << " x " << nk
     << " tiles)\n";
  int64_t maxCols = std::max<unsigned>(opts.maxColumns, 1);
  int64_t gq = (nq + maxCols - 1) / maxCols, gk = (nk + maxCols - 1) / maxCols;
  if (gq == 1 && gk == 1)
    os << "legend: '#' full  '+' partial  '.' empty  (rows: query tiles, "
          "columns: key tiles)\n";
  else
    os << "legend: one character per " << gq << " x " << gk
       << " tiles: '#' all full  '.' all empty  '+' otherwise  (rows: query "
          "tiles, columns: key tiles)\n";
  for (int64_t i = 0; i < nq; i += gq) {
    std::string line;
    for (int64_t j = 0; j < nk; j += gk) {
      bool allFull = true, allEmpty = true;
      for (int64_t a = i; a < std::min(nq, i + gq); ++a)
        for (int64_t c = j; c < std::min(nk, j + gk); ++c) {
          BlockClass k = classes[a * nk + c];
          allFull &= k == BlockClass::Full;
          allEmpty &= k == BlockClass::Empty;
        }
      line += allFull    ? classChar(BlockClass::Full)
              : allEmpty ? classChar(BlockClass::Empty)
                         : classChar(BlockClass::Partial);
    }
    os << "  " << line << "\n";
  }
}

void MaskReport::printCounts() {
  int64_t computed = stats.full + stats.partial;
  os << "tiles: " << stats.total() << " = " << stats.full << " full + "
     << stats.partial << " partial + " << stats.empty << " empty\n";
  os << "computed: " << computed << " of " << stats.total() << " tiles ("
     << llvm::format("%.1f", 100.0 * stats.computedFraction())
     << "% of dense), " << stats.partial << " with a per-element mask\n";
  if (!haveMask)
    return;
  os << "elements: " << visible << " of " << N * M << " visible ("
     << llvm::format("%.1f", N * M ? 100.0 * visible / (N * M) : 0.0)
     << "%); classification checked element-wise";
  if (uniformPartial)
    os << "; " << uniformPartial
       << " partial tiles are actually uniform (the analysis lost "
          "precision there)";
  os << "\n";
}

/// The visible fraction of cell [q0, q1) x [k0, k1) without the element
/// mask: the cell's class when the classifier settles it, else a sample of
/// at most 16 x 16 of its elements.
std::string MaskReport::sampleCell(int64_t q0, int64_t q1, int64_t k0,
                                   int64_t k1, double &fraction) {
  // A cell inside one tile takes that tile's class when it is uniform.
  BlockClass c = BlockClass::Partial;
  if (q0 / tq == (q1 - 1) / tq && k0 / tk == (k1 - 1) / tk)
    c = classes[(q0 / tq) * nk + k0 / tk];
  if (c == BlockClass::Partial)
    c = classifier->classify(b, h, q0, q1, k0, k1);
  if (c != BlockClass::Partial) {
    fraction = c == BlockClass::Full ? 1.0 : 0.0;
    return "";
  }
  int64_t sq = std::max<int64_t>(1, (q1 - q0) / 16),
          sk = std::max<int64_t>(1, (k1 - k0) / 16);
  int64_t vis = 0, n = 0;
  uint8_t m;
  for (int64_t q = q0; q < q1; q += sq)
    for (int64_t k = k0; k < k1; k += sk) {
      if (std::string err = ev.evaluate(b, h, q, q + 1, k, k + 1, &m);
          !err.empty())
        return err;
      vis += m;
      ++n;
    }
  fraction = double(vis) / double(n);
  return "";
}

/// The visible fraction per element (upscaled PNG) or per cell of
/// down x down elements (downsampled PNG), row-major.
std::string MaskReport::cellFractions(const PngGeometry &geometry,
                                      std::vector<double> &frac) {
  int64_t down = geometry.down;
  int64_t cw = down > 1 ? geometry.W : M, ch = down > 1 ? geometry.H : N;
  frac.assign(cw * ch, 0.0);
  for (int64_t y = 0; y < ch; ++y)
    for (int64_t x = 0; x < cw; ++x) {
      int64_t q0 = y * down, q1 = std::min(N, q0 + down);
      int64_t k0 = x * down, k1 = std::min(M, k0 + down);
      double f = 0;
      if (haveMask) {
        int64_t vis = 0;
        for (int64_t q = q0; q < q1; ++q)
          for (int64_t k = k0; k < k1; ++k)
            vis += mask[q * M + k];
        f = double(vis) / double((q1 - q0) * (k1 - k0));
      } else if (std::string err = sampleCell(q0, q1, k0, k1, f);
                 !err.empty()) {
        return err;
      }
      frac[y * cw + x] = f;
    }
  return "";
}

/// Grey levels of the visible fractions, tinted by tile class, with the
/// tile grid drawn where tiles are at least 4 px apart.
std::vector<uint8_t> MaskReport::renderPixels(const PngGeometry &geometry,
                                              const std::vector<double> &frac) {
  int64_t up = geometry.up, down = geometry.down, W = geometry.W,
          H = geometry.H;
  int64_t cw = down > 1 ? W : M;
  const RGB tintFull{40, 200, 60}, tintPartial{255, 200, 0},
      tintEmpty{110, 20, 20}, gridColor{120, 120, 120};
  std::vector<uint8_t> rgb(W * H * 3);
  auto tilePx = [&](int64_t t) {
    return down > 1 ? double(t) / down : double(t * up);
  };
  bool gridQ = tilePx(tq) >= 4, gridK = tilePx(tk) >= 4;
  for (int64_t py = 0; py < H; ++py)
    for (int64_t px = 0; px < W; ++px) {
      int64_t ey = down > 1 ? py * down : py / up; // first element covered
      int64_t ex = down > 1 ? px * down : px / up;
      double f = down > 1 ? frac[py * cw + px] : frac[ey * cw + ex];
      RGB c{255 * f, 255 * f, 255 * f};
      BlockClass k = classes[(ey / tq) * nk + ex / tk];
      c = k == BlockClass::Full      ? mix(c, tintFull, 0.35)
          : k == BlockClass::Partial ? mix(c, tintPartial, 0.35)
                                     : mix(c, tintEmpty, 0.45);
      bool onGrid = false;
      if (gridQ) {
        int64_t prev = down > 1 ? ((py - 1) * down) / tq : (py - 1) / up / tq;
        onGrid |= py > 0 && prev != ey / tq;
      }
      if (gridK) {
        int64_t prev = down > 1 ? ((px - 1) * down) / tk : (px - 1) / up / tk;
        onGrid |= px > 0 && prev != ex / tk;
      }
      if (onGrid) // blended, so a one-pixel row under it stays visible
        c = mix(c, gridColor, 0.5);
      uint8_t *p = &rgb[(py * W + px) * 3];
      p[0] = static_cast<uint8_t>(std::lround(c.r));
      p[1] = static_cast<uint8_t>(std::lround(c.g));
      p[2] = static_cast<uint8_t>(std::lround(c.b));
    }
  return rgb;
}

std::string MaskReport::drawPng() {
  PngGeometry geometry(N, M);
  std::vector<double> frac;
  if (std::string err = cellFractions(geometry, frac); !err.empty())
    return err;
  int64_t up = geometry.up, down = geometry.down, W = geometry.W,
          H = geometry.H;
  std::vector<uint8_t> png =
      encodePng(static_cast<uint32_t>(W), static_cast<uint32_t>(H),
                renderPixels(geometry, frac));
  std::error_code ec;
  llvm::raw_fd_ostream file(opts.png, ec);
  if (ec)
    return "--png " + opts.png + ": " + ec.message();
  file.write(reinterpret_cast<const char *>(png.data()), png.size());
  file.close();
  if (file.has_error())
    return "--png " + opts.png + ": write failed";
  os << "wrote " << W << " x " << H << " PNG to " << opts.png << " ("
     << (down > 1 ? std::to_string(down) + " x " + std::to_string(down) +
                        " elements per pixel"
                  : std::to_string(up) + " x " + std::to_string(up) +
                        " pixels per element")
     << ")\n";
  return "";
}

std::string MaskReport::run() {
  if (std::string err = prepare(); !err.empty())
    return err;
  if (!spec.getAttention())
    return "show-mask: spec '" + spec.getSymName().str() +
           "' is linear attention, which has no mask";
  classifier.emplace(spec.getAttention(), ev.dims(), ev.params(), &plan.inputs);
  stats = classifyTiles(*classifier, N, M, b, h, tq, tk, &classes);
  nq = stats.numQTiles;
  nk = stats.numKvTiles;
  if (std::string err = checkElementMask(); !err.empty())
    return err;
  printSummary();
  printTileGrid();
  printCounts();
  if (opts.png.empty())
    return "";
  return drawPng();
}

std::string mlir::attn::showMask(SpecOp spec, const ShowMaskOptions &opts,
                                 llvm::raw_ostream &os) {
  return MaskReport(spec, opts, os).run();
}
