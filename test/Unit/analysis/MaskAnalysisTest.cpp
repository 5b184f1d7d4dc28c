//===- MaskAnalysisTest.cpp - block classification vs the element mask ----===//
//
// SOUNDNESS: for every example spec and many hand-written masks, on awkward
// sizes and many tile shapes, every tile classified Full must be all visible
// and every tile classified Empty must be all masked in the element-wise mask
// of the reference evaluator (evaluateMask / MaskEvaluator).
//
// PRECISION: for the affine library masks on tile-aligned cases (and the
// document mask with its ids given), no tile may be Partial while it is
// actually uniform. With 1 x 1 tiles every integer-only mask must decide.
//
//===----------------------------------------------------------------------===//

#include "attn/Analysis/MaskAnalysis.h"
#include "attn/Frontend/Driver.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <iostream>
#include <random>
#include <sstream>

using namespace mlir;
using namespace mlir::attn;
using ::attn::HostArray;

namespace {

/// A loaded spec with the context that owns it.
struct Loaded {
  MLIRContext ctx;
  llvm::SourceMgr sourceMgr;
  OwningOpRef<ModuleOp> module;
  SpecOp spec;
};

std::unique_ptr<Loaded> loadBuffer(std::unique_ptr<llvm::MemoryBuffer> buf,
                                   const std::vector<std::string> &params) {
  auto l = std::make_unique<Loaded>();
  unsigned id = l->sourceMgr.AddNewSourceBuffer(std::move(buf), llvm::SMLoc());
  SourceMgrDiagnosticHandler handler(l->sourceMgr, &l->ctx);
  std::string paramError;
  l->module = loadSpec(l->ctx, l->sourceMgr, id, params, paramError);
  EXPECT_TRUE(paramError.empty()) << paramError;
  if (!l->module)
    return nullptr;
  l->spec = getSpec(*l->module);
  return l;
}

std::unique_ptr<Loaded> loadText(const std::string &text,
                                 const std::vector<std::string> &params = {}) {
  return loadBuffer(llvm::MemoryBuffer::getMemBufferCopy(text, "<test>"),
                    params);
}

std::unique_ptr<Loaded> loadFile(const std::string &path,
                                 const std::vector<std::string> &params = {}) {
  auto buf = llvm::MemoryBuffer::getFile(path);
  if (!buf) {
    ADD_FAILURE() << "cannot read " << path;
    return nullptr;
  }
  return loadBuffer(std::move(*buf), params);
}

std::string examplePath(const std::string &name) {
  return std::string(ATTN_EXAMPLES_DIR) + "/" + name + ".attn";
}

/// How to fill an i32 aux tensor: given its shape, returns the values.
using AuxFill = std::function<void(HostArray &, std::mt19937_64 &)>;

/// Sorted random ids in [0, k) along the last axis (contiguous segments).
AuxFill sortedIds(int k) {
  return [k](HostArray &a, std::mt19937_64 &rng) {
    std::uniform_int_distribution<int32_t> dist(0, k - 1);
    int64_t last = a.shape.empty() ? 1 : a.shape.back(), n = a.numel();
    for (int64_t i = 0; i < n; ++i)
      a.data<int32_t>()[i] = dist(rng);
    for (int64_t r = 0; r < n; r += last)
      std::sort(a.data<int32_t>() + r, a.data<int32_t>() + r + last);
  };
}

/// Unsorted random ints in [lo, hi].
AuxFill randomInts(int lo, int hi) {
  return [lo, hi](HostArray &a, std::mt19937_64 &rng) {
    std::uniform_int_distribution<int32_t> dist(lo, hi);
    for (int64_t i = 0, n = a.numel(); i < n; ++i)
      a.data<int32_t>()[i] = dist(rng);
  };
}

struct Sizes {
  int64_t B = 2, Hq = 4, Hkv = 2, N = 37, M = 37;
  std::map<std::string, int64_t> extra; ///< dims introduced by aux inputs
};

/// q, k, v (Dqk = Dv = 1: only their shapes matter) and the aux inputs.
std::map<std::string, HostArray>
makeInputs(SpecOp spec, const Sizes &s, uint64_t seed,
           const std::map<std::string, AuxFill> &fills = {}) {
  std::map<std::string, HostArray> in;
  in["q"] = HostArray::zeros(::attn::DType::F32, {s.B, s.Hq, s.N, 1});
  in["k"] = HostArray::zeros(::attn::DType::F32, {s.B, s.Hkv, s.M, 1});
  in["v"] = HostArray::zeros(::attn::DType::F32, {s.B, s.Hkv, s.M, 1});
  ::attn::DimBinding dims = {{"B", s.B}, {"Hq", s.Hq},       {"Hkv", s.Hkv},
                             {"N", s.N}, {"M", s.M},         {"Dqk", 1},
                             {"Dv", 1},  {"G", s.Hq / s.Hkv}};
  for (const auto &[k, v] : s.extra)
    dims[k] = v;
  std::mt19937_64 rng(seed);
  ::attn::Signature sig = getSignature(spec);
  for (const ::attn::InputSig &i : sig.inputs) {
    if (in.count(i.name))
      continue;
    std::vector<int64_t> shape = ::attn::shapeOf(i, dims);
    if (i.type == ::attn::ElemType::I32) {
      HostArray a = HostArray::zeros(::attn::DType::I32, shape);
      auto it = fills.find(i.name);
      (it != fills.end() ? it->second : sortedIds(4))(a, rng);
      in[i.name] = std::move(a);
    } else {
      HostArray a = HostArray::zeros(::attn::DType::F32, shape);
      std::normal_distribution<float> dist(0.f, 1.f);
      for (int64_t e = 0, n = a.numel(); e < n; ++e)
        a.data<float>()[e] = dist(rng);
      in[i.name] = std::move(a);
    }
  }
  return in;
}

struct Tally {
  int64_t configs = 0, tiles = 0, full = 0, empty = 0, partial = 0;
  /// Partial tiles that are actually all visible or all masked.
  int64_t imprecise = 0;
  int64_t unsound = 0;
  std::string firstImprecise;
  void add(const Tally &o) {
    configs += o.configs;
    tiles += o.tiles;
    full += o.full;
    empty += o.empty;
    partial += o.partial;
    imprecise += o.imprecise;
    unsound += o.unsound;
    if (firstImprecise.empty())
      firstImprecise = o.firstImprecise;
  }
};

/// Classifies every tile of the (b, h) pairs in `bhs` and compares with the
/// element mask. Unsound tiles are test failures; imprecise ones are counted.
/// Returns false (after reporting why) when the reference cannot evaluate the
/// mask at these sizes (e.g. a lookup out of range).
bool checkTiles(SpecOp spec, const std::map<std::string, HostArray> &inputs,
                bool withData, const std::vector<int64_t> &tilesQ,
                const std::vector<int64_t> &tilesKv, Tally &t,
                const std::string &what,
                std::vector<std::pair<int64_t, int64_t>> bhs = {}) {
  MaskEvaluator ev;
  std::string err = ev.init(spec, inputs);
  if (!err.empty()) {
    ADD_FAILURE() << what << ": " << err;
    return false;
  }
  const ::attn::DimBinding &dims = ev.dims();
  int64_t N = dims.at("N"), M = dims.at("M");
  if (bhs.empty())
    bhs = {{0, 0}, {dims.at("B") - 1, dims.at("Hq") - 1}};
  MaskClassifier classifier(spec.getAttention(), dims, ev.params(),
                            withData ? &inputs : nullptr);
  std::vector<uint8_t> mask(N * M);
  for (auto [b, h] : bhs) {
    err = ev.evaluate(b, h, 0, N, 0, M, mask.data());
    if (!err.empty())
      return false;
    // 2-D prefix sums of the mask: visible count of any rectangle in O(1).
    std::vector<int64_t> ps((N + 1) * (M + 1), 0);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < M; ++j)
        ps[(i + 1) * (M + 1) + j + 1] =
            mask[i * M + j] + ps[i * (M + 1) + j + 1] +
            ps[(i + 1) * (M + 1) + j] - ps[i * (M + 1) + j];
    for (int64_t tq : tilesQ)
      for (int64_t tk : tilesKv) {
        ++t.configs;
        for (int64_t q0 = 0; q0 < N; q0 += tq)
          for (int64_t k0 = 0; k0 < M; k0 += tk) {
            int64_t q1 = std::min(N, q0 + tq), k1 = std::min(M, k0 + tk);
            int64_t vis = ps[q1 * (M + 1) + k1] - ps[q0 * (M + 1) + k1] -
                          ps[q1 * (M + 1) + k0] + ps[q0 * (M + 1) + k0];
            int64_t area = (q1 - q0) * (k1 - k0);
            BlockClass c = classifier.classify(b, h, q0, q1, k0, k1);
            ++t.tiles;
            std::ostringstream where;
            where << what << " b=" << b << " h=" << h << " N=" << N
                  << " M=" << M << " tile " << tq << "x" << tk << " q[" << q0
                  << "," << q1 << ") kv[" << k0 << "," << k1 << "): classified "
                  << blockClassName(c) << ", " << vis << "/" << area
                  << " visible";
            if (c == BlockClass::Full) {
              ++t.full;
              if (vis != area && t.unsound++ < 10)
                ADD_FAILURE() << "UNSOUND " << where.str();
            } else if (c == BlockClass::Empty) {
              ++t.empty;
              if (vis != 0 && t.unsound++ < 10)
                ADD_FAILURE() << "UNSOUND " << where.str();
            } else {
              ++t.partial;
              if (vis == 0 || vis == area) {
                if (t.imprecise++ == 0)
                  t.firstImprecise = where.str();
              }
            }
          }
      }
  }
  return true;
}

const std::vector<int64_t> kTiles = {1, 3, 16, 64};
const std::vector<std::pair<int64_t, int64_t>> kAwkwardSizes = {
    {37, 37}, {100, 100}, {37, 100}, {100, 37}, {64, 64}};

/// Soundness over kAwkwardSizes x kTiles^2, with and without aux data.
/// Sizes the reference cannot evaluate (e.g. a lookup out of range when
/// M > N) are skipped; returns the number of sizes checked.
int soundnessSweep(SpecOp spec, const std::string &what, Tally &total,
                   const std::map<std::string, AuxFill> &fills = {},
                   std::map<std::string, int64_t> extra = {}) {
  int checked = 0;
  for (auto [N, M] : kAwkwardSizes) {
    Sizes s;
    s.N = N;
    s.M = M;
    s.extra = extra;
    auto inputs = makeInputs(spec, s, 1234 + N * 7 + M, fills);
    std::vector<uint8_t> probe;
    if (!evaluateMask(spec, inputs, 0, 0, probe).empty())
      continue; // not evaluable at this size (checked by the reference tests)
    ++checked;
    bool hasAux = getSignature(spec).inputs.size() > 3;
    for (bool withData : {true, false}) {
      if (!withData && !hasAux)
        continue; // the same run
      Tally t;
      std::string w = what + " N=" + std::to_string(N) +
                      " M=" + std::to_string(M) +
                      (withData ? " (data)" : " (no data)");
      checkTiles(spec, inputs, withData, kTiles, kTiles, t, w);
      EXPECT_EQ(t.unsound, 0) << w;
      if (getenv("ATTN_ANALYSIS_VERBOSE"))
        std::cout << w << ": " << t.tiles << " tiles, " << t.partial
                  << " partial, " << t.imprecise << " actually uniform"
                  << (t.imprecise ? " e.g. " + t.firstImprecise : "") << "\n";
      total.add(t);
    }
  }
  return checked;
}

//===----------------------------------------------------------------------===//
// Soundness
//===----------------------------------------------------------------------===//

TEST(MaskSoundness, EveryExample) {
  namespace fs = std::filesystem;
  // Extra param settings that make the examples' masks bite at small sizes.
  std::map<std::string, std::vector<std::vector<std::string>>> variants = {
      {"sliding_window", {{"window=10"}, {"window=1"}, {"window=0"}}},
      {"sinks_window", {{"window=8"}, {"window=20"}}},
      {"prefix_lm", {{"prefix=5"}, {"prefix=0"}, {"prefix=64"}}},
      {"neighborhood_2d",
       {{"height=5", "width=20", "kernel=3"},
        {"height=4", "width=16", "kernel=5"},
        {"height=10", "width=10", "kernel=7"},
        {"height=6", "width=6", "kernel=5"}}},
  };
  Tally total;
  int examples = 0;
  for (const auto &entry : fs::directory_iterator(ATTN_EXAMPLES_DIR)) {
    if (entry.path().extension() != ".attn")
      continue;
    std::string name = entry.path().stem().string();
    std::vector<std::vector<std::string>> settings = {{}};
    for (const auto &v : variants[name])
      settings.push_back(v);
    bool linear = false;
    for (const auto &params : settings) {
      auto l = loadFile(entry.path().string(), params);
      if (!l) {
        ADD_FAILURE() << "example " << name << " does not load";
        continue;
      }
      if ((linear = !l->spec.getAttention()))
        break; // linear attention (tier 2): no mask to classify
      std::string what = name;
      for (const auto &p : params)
        what += " " + p;
      int checked = soundnessSweep(l->spec, what, total);
      EXPECT_GT(checked, 0) << what << ": no size was evaluable";
    }
    if (!linear)
      ++examples;
  }
  EXPECT_GE(examples, 10);
  EXPECT_EQ(total.unsound, 0);
  RecordProperty("tiles", std::to_string(total.tiles));
  std::cout << "[examples] " << examples << " specs, " << total.configs
            << " tilings, " << total.tiles << " tiles: " << total.full
            << " full, " << total.empty << " empty, " << total.partial
            << " partial (" << total.imprecise
            << " of them actually uniform)\n";
}

struct HandMask {
  const char *name;
  const char *text;
  std::map<std::string, AuxFill> fills = {};
  std::map<std::string, int64_t> extra = {};
  std::vector<std::string> params = {};
};

std::vector<HandMask> handMasks() {
  return {
      {"dilated_1d", "attention t { mask = neighborhood_1d(5, dilation = 2) }"},
      {"dilated_1d_causal", "attention t { mask = neighborhood_1d(7, dilation "
                            "= 3, causal = true) }"},
      {"strided_1d", "attention t { mask = neighborhood_1d(6, stride = 2) }"},
      {"blocked_1d", "attention t { mask = neighborhood_1d(4, stride = 4) }"},
      {"dilated_2d",
       "attention t { param height = 5\n param width = 20\n"
       " mask = neighborhood_2d(height, width, 3, dilation = 2) }"},
      {"dilated_2d_causal",
       "attention t { mask = neighborhood_2d(4, 9, 3, dilation = 2, stride = "
       "2, causal = true) }"},
      {"na_3d", "attention t { mask = neighborhood_3d(3, 4, 3, 3) }"},
      {"mod7", "attention t { mask = q_idx % 7 < 3 }"},
      {"mod_both", "attention t { mask = (q_idx + kv_idx) % 2 == 0 }"},
      {"mod_negative", "attention t { mask = (kv_idx - q_idx) % 5 == 1 }"},
      {"mod_negative_divisor", "attention t { mask = q_idx % -3 == -1 }"},
      {"floordiv_blocks", "attention t { mask = q_idx // 3 == kv_idx // 3 }"},
      {"floordiv_negative",
       "attention t { mask = (q_idx - kv_idx) // 4 == 0 }"},
      {"floordiv_by_index",
       "attention t { mask = kv_idx // (q_idx + 1) == 1 }"},
      {"mod_by_index", "attention t { mask = kv_idx % (q_idx + 1) == 0 }"},
      {"min_max",
       "attention t { mask = min(q_idx, kv_idx) > 10 && max(q_idx, kv_idx) < "
       "30 }"},
      {"abs_band", "attention t { mask = abs(q_idx - kv_idx) <= 5 }"},
      {"abs_neg", "attention t { mask = abs(-kv_idx) * 2 < q_idx + 3 }"},
      {"select_int",
       "attention t { mask = kv_idx <= select(q_idx < 20, q_idx, 20) }"},
      {"select_bool",
       "attention t { mask = select(q_idx < 20, kv_idx < 10, kv_idx >= q_idx) "
       "}"},
      {"not_causal", "attention t { mask = !causal }"},
      {"not_band",
       "attention t { mask = !(q_idx - kv_idx < 5) && kv_idx <= q_idx }"},
      {"bool_eq", "attention t { mask = (q_idx < 10) == (kv_idx < 10) }"},
      {"bool_ne", "attention t { mask = (q_idx < 10) != (kv_idx > 20) }"},
      {"xor_like",
       "attention t { mask = (q_idx < 10 || kv_idx < 10) && !(q_idx < 10 && "
       "kv_idx < 10) }"},
      {"mul_indices", "attention t { mask = q_idx * kv_idx < 200 }"},
      {"mul_const", "attention t { mask = 3 * kv_idx - 2 * q_idx < 7 }"},
      {"prefix_lm_pattern", "attention t { mask = prefix_lm(9) }"},
      {"causal_top_left", "attention t { mask = causal_top_left }"},
      {"sinks_or_window",
       "attention t { mask = sliding_window(6) || (sinks(3) && causal) }"},
      {"per_head", "attention t { mask = (h < 2 && causal) || h >= 2 }"},
      {"per_kv_head", "attention t { mask = hk == 0 || causal }"},
      {"per_batch", "attention t { mask = kv_idx < 10 + b * 5 }"},
      {"dims", "attention t { mask = kv_idx < M // 2 || q_idx >= N - 3 }"},
      {"float_mask",
       "attention t { mask = sqrt(float(q_idx)) < float(kv_idx) }"},
      {"float_param",
       "attention t { param r = 0.5\n mask = kv_idx < q_idx * r }"},
      {"huge_const",
       "attention t { mask = q_idx * 3000000000000000000 > kv_idx }"},
      {"saturating",
       "attention t { mask = q_idx * 4611686018427387904 < kv_idx + 1 }"},
      {"document_sorted",
       "attention t { input doc : i32[B, N]\n mask = document(doc) && "
       "causal_top_left }",
       {{"doc", sortedIds(6)}}},
      {"document_unsorted",
       "attention t { input doc : i32[B, N]\n mask = doc[b, q_idx] == doc[b, "
       "min(kv_idx, N - 1)] }",
       {{"doc", randomInts(0, 2)}}},
      {"per_head_window",
       "attention t { input win : i32[Hq]\n mask = causal && q_idx + M - N - "
       "kv_idx < win[h] }",
       {{"win", randomInts(1, 20)}}},
      {"block_sparse",
       "attention t { input blocks : i32[B, Hkv, NB, MB]\n mask = blocks[b, "
       "hk, q_idx // 16, kv_idx // 16] != 0 }",
       {{"blocks", randomInts(0, 1)}},
       {{"NB", 7}, {"MB", 7}}},
      {"table_2d_range",
       "attention t { input t2 : i32[N, M]\n mask = t2[q_idx, kv_idx] > 1 }",
       {{"t2", randomInts(0, 3)}}},
      {"lookup_compare_index",
       "attention t { input start : i32[B, N]\n mask = kv_idx >= start[b, "
       "q_idx] && kv_idx <= q_idx }",
       {{"start", sortedIds(30)}}},
      {"float_table",
       "attention t { input ft : f32[N]\n mask = ft[q_idx] < 0.5 }"},
  };
}

TEST(MaskSoundness, HandWritten) {
  Tally total;
  int masks = 0;
  for (const HandMask &m : handMasks()) {
    auto l = loadText(m.text, m.params);
    ASSERT_TRUE(l) << m.name;
    int checked = soundnessSweep(l->spec, m.name, total, m.fills, m.extra);
    EXPECT_GT(checked, 0) << m.name << ": no size was evaluable";
    ++masks;
  }
  EXPECT_EQ(total.unsound, 0);
  std::cout << "[hand-written] " << masks << " masks, " << total.configs
            << " tilings, " << total.tiles << " tiles: " << total.full
            << " full, " << total.empty << " empty, " << total.partial
            << " partial (" << total.imprecise
            << " of them actually uniform)\n";
}

// A lookup box over maskintervals::kMaxScan (2^14) elements is not scanned,
// as in the kernel: the value is the whole i32 range (sound, Partial).
TEST(MaskSoundness, LargeLookupBoxIsNotScanned) {
  auto l = loadText("attention t { input t2 : i32[N, M]\n mask = t2[q_idx, "
                    "kv_idx] > 1 }");
  ASSERT_TRUE(l);
  Sizes s;
  s.B = 1;
  s.Hq = s.Hkv = 1;
  s.N = s.M = 256;
  auto inputs = makeInputs(l->spec, s, 7, {{"t2", randomInts(2, 3)}});
  MaskEvaluator ev;
  ASSERT_EQ(ev.init(l->spec, inputs), "");
  MaskClassifier c(l->spec.getAttention(), ev.dims(), ev.params(), &inputs);
  // 128 x 128 = 2^14 elements: scanned, all values > 1.
  EXPECT_EQ(c.classify(0, 0, 0, 128, 0, 128), BlockClass::Full);
  // 129 x 128: over the limit.
  EXPECT_EQ(c.classify(0, 0, 0, 129, 0, 128), BlockClass::Partial);
  Tally t;
  ASSERT_TRUE(checkTiles(l->spec, inputs, true, {1, 64, 128, 129, 256},
                         {1, 64, 128, 256}, t, "t2 large boxes"));
  EXPECT_EQ(t.unsound, 0);
}

//===----------------------------------------------------------------------===//
// Precision
//===----------------------------------------------------------------------===//

/// Tile-aligned sweeps: N, M multiples of every tile.
void expectExact(SpecOp spec, const std::string &what,
                 const std::vector<std::pair<int64_t, int64_t>> &sizes,
                 const std::vector<int64_t> &tilesQ,
                 const std::vector<int64_t> &tilesKv,
                 const std::map<std::string, AuxFill> &fills = {},
                 Tally *sum = nullptr, bool allowImprecise = false) {
  for (auto [N, M] : sizes) {
    Sizes s;
    s.N = N;
    s.M = M;
    auto inputs = makeInputs(spec, s, 99 + N + M, fills);
    Tally t;
    std::string w =
        what + " N=" + std::to_string(N) + " M=" + std::to_string(M);
    ASSERT_TRUE(checkTiles(spec, inputs, true, tilesQ, tilesKv, t, w)) << w;
    EXPECT_EQ(t.unsound, 0) << w;
    if (!allowImprecise)
      EXPECT_EQ(t.imprecise, 0) << w << ": e.g. " << t.firstImprecise;
    else
      std::cout << "[imprecise] " << w << ": " << t.imprecise << " of "
                << t.partial << " partial tiles are uniform\n";
    if (sum)
      sum->add(t);
  }
}

const std::vector<int64_t> kAligned = {1, 16, 32, 64};

TEST(MaskPrecision, Causal) {
  auto l = loadFile(examplePath("causal"));
  ASSERT_TRUE(l);
  expectExact(l->spec, "causal", {{256, 256}, {128, 256}, {256, 128}}, kAligned,
              kAligned);
  // The classic picture: 4 x 4 tiles of 64, 6 full, 4 partial, 6 empty.
  Sizes s;
  s.N = s.M = 256;
  auto inputs = makeInputs(l->spec, s, 0);
  ReferenceOutputs bound;
  std::vector<uint8_t> mask;
  ASSERT_EQ(evaluateMask(l->spec, inputs, 0, 0, mask, &bound), "");
  EXPECT_EQ(std::count(mask.begin(), mask.end(), 1), 256 * 257 / 2);
  std::vector<BlockClass> classes;
  BlockStats st = classifyTiles(l->spec.getAttention(), bound.dims,
                                bound.params, nullptr, 0, 0, 64, 64, &classes);
  EXPECT_EQ(st.numQTiles, 4);
  EXPECT_EQ(st.numKvTiles, 4);
  EXPECT_EQ(st.full, 6);
  EXPECT_EQ(st.partial, 4);
  EXPECT_EQ(st.empty, 6);
  EXPECT_DOUBLE_EQ(st.computedFraction(), 10.0 / 16.0);
  EXPECT_EQ(classes[0 * 4 + 1], BlockClass::Empty);
  EXPECT_EQ(classes[1 * 4 + 0], BlockClass::Full);
  EXPECT_EQ(classes[2 * 4 + 2], BlockClass::Partial);
}

TEST(MaskPrecision, SlidingWindow) {
  for (const char *w : {"window=1", "window=16", "window=48", "window=64",
                        "window=100", "window=256"}) {
    auto l = loadFile(examplePath("sliding_window"), {w});
    ASSERT_TRUE(l);
    expectExact(l->spec, std::string("sliding_window ") + w,
                {{256, 256}, {128, 256}, {256, 192}}, kAligned, kAligned);
  }
}

TEST(MaskPrecision, PrefixLM) {
  for (const char *p :
       {"prefix=0", "prefix=16", "prefix=40", "prefix=64", "prefix=200"}) {
    auto l = loadFile(examplePath("prefix_lm"), {p});
    ASSERT_TRUE(l);
    expectExact(l->spec, std::string("prefix_lm ") + p,
                {{256, 256}, {128, 256}, {256, 128}}, kAligned, kAligned);
  }
}

// The classification is the kernels' (one interval evaluation per tile, no
// splitting), so a tile where each side of `window || sinks` holds for part
// of the keys and their union covers all of them (kv tile [0, 16) of query
// 64 with window 64 and 4 sinks) stays Partial: the kernel evaluates the mask
// there. Sound, and exact on the tiles that are not so split.
TEST(MaskPrecision, SinksWindow) {
  // examples/sinks_window.attn's mask (its param `sinks` renamed, so this
  // does not depend on whether library names may be reused as params), and
  // the same mask from library patterns.
  const char *texts[] = {
      "attention t { param window = 256\n param nsinks = 4\n"
      " let pos = q_idx + M - N\n"
      " mask = kv_idx <= pos && (pos - kv_idx < window || kv_idx < nsinks) }",
      "attention t { param window = 256\n param nsinks = 4\n"
      " mask = sliding_window(window) || (sinks(nsinks) && causal) }"};
  for (const char *text : texts)
    for (std::vector<std::string> p :
         {std::vector<std::string>{"window=64", "nsinks=4"},
          {"window=32", "nsinks=16"},
          {"window=128", "nsinks=64"},
          {"window=100", "nsinks=4"},
          {"window=256", "nsinks=4"},
          {"window=8", "nsinks=40"}}) {
      auto l = loadText(text, p);
      ASSERT_TRUE(l);
      expectExact(l->spec, "sinks_window " + p[0] + " " + p[1],
                  {{256, 256}, {128, 256}}, kAligned, kAligned, {}, nullptr,
                  /*allowImprecise=*/true);
    }
}

// Like SinksWindow: tiles inside one image row whose window is clamped at
// the image border need a split the kernel does not do (sound, some Partial
// tiles are uniform).
TEST(MaskPrecision, Neighborhood2DTileInsideOneRow) {
  // Tiles of width <= the image width that divide it: each tile covers part
  // of one image row (of queries, and of keys).
  struct Case {
    int height, width, kernel;
    std::vector<int64_t> tiles;
  };
  for (const Case &c : std::vector<Case>{{8, 8, 3, {1, 2, 4, 8}},
                                         {16, 16, 5, {1, 4, 8, 16}},
                                         {8, 32, 7, {1, 8, 16, 32}},
                                         {6, 12, 3, {1, 3, 6, 12}},
                                         {12, 12, 7, {1, 3, 4, 12}}}) {
    std::vector<std::string> p = {"height=" + std::to_string(c.height),
                                  "width=" + std::to_string(c.width),
                                  "kernel=" + std::to_string(c.kernel)};
    auto l = loadFile(examplePath("neighborhood_2d"), p);
    ASSERT_TRUE(l);
    int64_t n = int64_t(c.height) * c.width;
    expectExact(l->spec, "neighborhood_2d " + p[0] + " " + p[1] + " " + p[2],
                {{n, n}}, c.tiles, c.tiles, {}, nullptr,
                /*allowImprecise=*/true);
  }
}

TEST(MaskPrecision, DocumentWithData) {
  auto l = loadFile(examplePath("document"));
  ASSERT_TRUE(l);
  for (int k : {2, 5, 20})
    expectExact(l->spec, "document ids<" + std::to_string(k),
                {{256, 256}, {192, 192}}, kAligned, kAligned,
                {{"doc", sortedIds(k)}});
}

TEST(MaskPrecision, BlockSparseTableAligned) {
  auto l = loadText("attention t { input blocks : i32[B, Hkv, NB, MB]\n"
                    " mask = causal && blocks[b, hk, q_idx // 32, kv_idx // "
                    "32] != 0 }");
  ASSERT_TRUE(l);
  Sizes s;
  s.N = s.M = 256;
  s.extra = {{"NB", 8}, {"MB", 8}};
  auto inputs = makeInputs(l->spec, s, 5, {{"blocks", randomInts(0, 1)}});
  Tally t;
  ASSERT_TRUE(checkTiles(l->spec, inputs, true, {1, 16, 32}, {1, 16, 32}, t,
                         "block_sparse"));
  EXPECT_EQ(t.unsound, 0);
  EXPECT_EQ(t.imprecise, 0) << t.firstImprecise;
}

/// With 1 x 1 tiles every value is a point: every integer-only mask must
/// decide every element (and agree with the reference: soundness).
TEST(MaskPrecision, ElementTilesDecideIntegerMasks) {
  std::vector<std::pair<std::string, std::unique_ptr<Loaded>>> specs;
  for (const char *e :
       {"causal", "sliding_window", "prefix_lm", "sinks_window", "document",
        "neighborhood_2d", "dense", "alibi", "softcap", "sigmoid"})
    specs.emplace_back(e, loadFile(examplePath(e)));
  for (const HandMask &m : handMasks()) {
    std::string n = m.name;
    if (n.find("float") != std::string::npos || n == "huge_const" ||
        n == "saturating")
      continue;
    specs.emplace_back(n, loadText(m.text, m.params));
  }
  std::map<std::string, HandMask> byName;
  for (HandMask &m : handMasks())
    byName.emplace(m.name, m);
  int64_t tiles = 0;
  for (auto &[name, l] : specs) {
    if (!l) {
      ADD_FAILURE() << name << " does not load";
      continue;
    }
    Sizes s;
    s.N = s.M = 64;
    auto it = byName.find(name);
    if (it != byName.end())
      s.extra = it->second.extra;
    auto inputs =
        makeInputs(l->spec, s, 3,
                   it != byName.end() ? it->second.fills
                                      : std::map<std::string, AuxFill>{});
    Tally t;
    ASSERT_TRUE(checkTiles(l->spec, inputs, true, {1}, {1}, t, name)) << name;
    EXPECT_EQ(t.unsound, 0) << name;
    EXPECT_EQ(t.partial, 0) << name << ": e.g. " << t.firstImprecise;
    tiles += t.tiles;
  }
  std::cout << "[1x1] " << specs.size() << " masks, " << tiles
            << " element tiles all decided\n";
}

TEST(MaskAnalysis, UnknownOpsAndDense) {
  auto f = loadText("attention t { mask = sqrt(float(q_idx)) < 3.0 }");
  ASSERT_TRUE(f);
  ::attn::DimBinding dims = {{"N", 16}, {"M", 16}};
  MaskClassifier c(f->spec.getAttention(), dims, {}, nullptr);
  EXPECT_FALSE(c.isDense());
  EXPECT_TRUE(llvm::is_contained(c.unknownOps(), "arith.cmpf"));
  EXPECT_EQ(c.classify(0, 0, 0, 1, 0, 1), BlockClass::Partial);

  auto d = loadFile(examplePath("dense"));
  ASSERT_TRUE(d);
  MaskClassifier dc(d->spec.getAttention(), dims, {}, nullptr);
  EXPECT_TRUE(dc.isDense());
  EXPECT_EQ(dc.classify(0, 0, 0, 16, 0, 16), BlockClass::Full);
  EXPECT_EQ(dc.classify(0, 0, 5, 5, 0, 16), BlockClass::Empty); // no rows
}

TEST(MaskAnalysis, DocumentWithoutDataOnlyCausalDecides) {
  auto l = loadFile(examplePath("document"));
  ASSERT_TRUE(l);
  ::attn::DimBinding dims = {{"B", 1}, {"N", 128}, {"M", 128}};
  // Above the diagonal: empty whatever the ids; below: unknown without ids.
  EXPECT_EQ(classifyBlock(l->spec.getAttention(), dims, {}, nullptr, 0, 0, 0,
                          64, 64, 128),
            BlockClass::Empty);
  EXPECT_EQ(classifyBlock(l->spec.getAttention(), dims, {}, nullptr, 0, 0, 64,
                          128, 0, 64),
            BlockClass::Partial);
}

TEST(MaskAnalysis, ManyTilesAreFast) {
  // 8192 x 8192 with 64 x 64 tiles = 16384 tiles of a neighborhood mask.
  auto l = loadFile(examplePath("neighborhood_2d"),
                    {"height=64", "width=128", "kernel=13"});
  ASSERT_TRUE(l);
  ::attn::DimBinding dims = {{"B", 1}, {"Hq", 1}, {"N", 8192}, {"M", 8192}};
  std::map<std::string, ScalarValue> params;
  ASSERT_EQ(evaluateParams(l->spec, dims, params), "");
  MaskClassifier c(l->spec.getAttention(), dims, params, nullptr);
  BlockStats st = classifyTiles(c, 8192, 8192, 0, 0, 64, 64);
  EXPECT_EQ(st.total(), 128 * 128);
  EXPECT_GT(st.empty, st.total() / 2);
}

} // namespace
