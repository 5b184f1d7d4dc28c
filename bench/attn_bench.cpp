//===- attn_bench.cpp - CPU benchmark of compiled attention kernels -------===//
//
//   attn-bench --suite cpu [--quick]
//   attn-bench --spec examples/causal.attn [--spec ...] [--shapes
//   N=1k,4k,D=64,128]
//              [--param NAME=VALUE]... [options]
//
// Compiles each spec once through the JIT (attn::Compiler, default kernel
// cache), allocates the inputs once per shape (random normal f32, 64-byte
// aligned), warms up once, then times Kernel::run() alone with
// std::chrono::steady_clock until at least --min-runs runs and --min-time
// seconds of timed runs have accumulated, and reports the median. Printed as
// markdown tables:
//
//  - throughput: median ms, GFLOP/s counted as the DENSE-equivalent
//    4*B*Hq*N*M*D (2*B*Hq*N*M*(Dqk+Dv)) whatever the mask, so masked variants
//    show an "effective" rate; the fraction of the fp32 FMA peak (--peak,
//    default 230 GFLOP/s = 2 cores, docs/benchmarks.md); for masked specs the
//    time ratio to dense at the same shape and the ideal ratio (the visible
//    fraction of the N x M score matrix, known for the example masks);
//  - compile latency: cold compile without the cache (useCache=false), cold
//    compile into a fresh empty cache directory, and a cache hit (a second
//    compile with that directory), each the median of --compile-reps.
//
// See docs/benchmarks.md.
//
//===----------------------------------------------------------------------===//

#include "attn/JIT/Compiler.h"
#include "attn/Signature.h"
#include "attn/runtime.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#ifndef ATTN_BENCH_EXAMPLES_DIR
#define ATTN_BENCH_EXAMPLES_DIR "examples"
#endif

namespace {

using Clock = std::chrono::steady_clock;
using Params = std::vector<std::pair<std::string, std::string>>;

double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty())
    return NAN;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

//===--- Options ----------------------------------------------------------===//

struct Shape {
  int64_t B = 1, Hq = 8, Hkv = 8, N = 1024, M = 1024, Dqk = 64, Dv = 64;
  bool operator<(const Shape &o) const {
    return std::tie(B, Hq, Hkv, N, M, Dqk, Dv) <
           std::tie(o.B, o.Hq, o.Hkv, o.N, o.M, o.Dqk, o.Dv);
  }
  bool operator==(const Shape &o) const { return !(*this < o) && !(o < *this); }
};

struct Options {
  std::string suite;
  std::vector<std::string> specs;
  std::string shapesText;
  Params params;
  int threads = 0;
  double minTime = 1.0;
  int minRuns = 3;
  int maxRuns = 10000;
  int compileReps = 5;
  bool quick = false;
  bool noCompile = false;
  bool noThroughput = false;
  bool noBaseline = false;
  double peak = 230.0;
  std::string examplesDir = ATTN_BENCH_EXAMPLES_DIR;
  std::string target = "cpu";
  int64_t tileQ = 0, tileKV = 0;
  std::string cacheDir;
};

void usage(FILE *f) {
  std::fprintf(
      f,
      "usage: attn-bench (--suite cpu | --spec PATH [--spec PATH]...) "
      "[options]\n"
      "\n"
      "  --suite cpu           the standard CPU table: dense and causal at B=1 "
      "H=8,\n"
      "                        N in {1k,4k,16k}, D in {64,128}; "
      "sliding_window(256) at\n"
      "                        N=16k; document, prefix_lm, softcap, alibi, "
      "sigmoid,\n"
      "                        sliding_window, GQA (Hq=32 Hkv=8) at N=4k "
      "D=128; "
      "compile\n"
      "                        latency of every tier-1 example\n"
      "  --spec PATH           a .attn spec (repeatable); dense (examples/"
      "dense.attn) is\n"
      "                        added at every shape as the baseline unless "
      "--no-baseline\n"
      "  --shapes LIST         with --spec: KEY=V[,V...] lists, keys B, H|Hq, "
      "Hkv (default\n"
      "                        Hq), N, M (default N), D|Dqk, Dv (default Dqk); "
      "sizes take\n"
      "                        a k suffix (1k = 1024); the cartesian product "
      "is "
      "run.\n"
      "                        Other keys bind extra dims of aux inputs (one "
      "value).\n"
      "                        Default N=1k,4k,16k,D=64,128 (B=1, H=8)\n"
      "  --param NAME=VALUE    param override for every --spec (not the "
      "baseline)\n"
      "  --threads T           threads per run (0 = attn_cpu_num_threads(), "
      "default)\n"
      "  --min-time S          timed seconds per measurement (default 1.0)\n"
      "  --min-runs R          timed runs per measurement, at least (default "
      "3)\n"
      "  --max-runs R          at most (default 10000)\n"
      "  --compile-reps K      compiles per compile-latency figure (default "
      "5)\n"
      "  --quick               tiny smoke version: N=256, one timed run, one "
      "compile rep\n"
      "  --no-compile          skip the compile-latency section\n"
      "  --no-throughput       only the compile-latency section\n"
      "  --no-baseline         do not add the dense baseline to --spec runs\n"
      "  --peak GFLOPS         peak for the %% column (default 230: fp32 FMA, "
      "2 "
      "cores)\n"
      "  --examples DIR        where the example specs are (default %s)\n"
      "  --target T            compile target (default cpu)\n"
      "  --tile-q T, --tile-kv T   schedule overrides (default: heuristic)\n"
      "  --cache-dir DIR       kernel cache for the throughput runs (default: "
      "the\n"
      "                        compiler's, $ATTN_CACHE_DIR or "
      "~/.cache/attnc)\n",
      ATTN_BENCH_EXAMPLES_DIR);
}

bool parseSize(const std::string &s, int64_t &out) {
  if (s.empty())
    return false;
  std::string digits = s;
  int64_t mul = 1;
  if (digits.back() == 'k' || digits.back() == 'K') {
    mul = 1024;
    digits.pop_back();
  }
  if (digits.empty() ||
      digits.find_first_not_of("0123456789") != std::string::npos ||
      digits.size() > 12)
    return false;
  out = std::stoll(digits) * mul;
  return out > 0;
}

bool parseDouble(const std::string &s, double &out) {
  char *end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return !s.empty() && end && *end == '\0' && std::isfinite(out);
}

bool parseInt(const std::string &s, int64_t &out) {
  char *end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  out = v;
  return !s.empty() && end && *end == '\0';
}

/// "N=1k,4k,D=64,128" (commas, spaces or semicolons) -> key -> values.
std::string
parseShapes(const std::string &text,
            std::vector<std::pair<std::string, std::vector<int64_t>>> &lists) {
  std::string tok;
  std::vector<std::string> toks;
  for (char c : text + ",") {
    if (c == ',' || c == ' ' || c == ';' || c == '\t') {
      if (!tok.empty())
        toks.push_back(tok);
      tok.clear();
    } else {
      tok += c;
    }
  }
  for (const std::string &t : toks) {
    std::string value = t;
    size_t eq = t.find('=');
    if (eq != std::string::npos) {
      std::string key = t.substr(0, eq);
      if (key.empty())
        return "--shapes: empty key in '" + t + "'";
      for (auto &kv : lists)
        if (kv.first == key)
          return "--shapes: key " + key + " given twice";
      lists.push_back({key, {}});
      value = t.substr(eq + 1);
    } else if (lists.empty()) {
      return "--shapes: '" + t + "' before any KEY=";
    }
    int64_t v;
    if (!parseSize(value, v))
      return "--shapes: bad size '" + value + "' (positive integer, k = 1024)";
    lists.back().second.push_back(v);
  }
  if (lists.empty())
    return "--shapes: empty";
  return "";
}

//===--- Host buffers -----------------------------------------------------===//

struct FreeDeleter {
  void operator()(void *p) const { std::free(p); }
};

/// A compact, 64-byte aligned host tensor.
struct HostTensor {
  std::unique_ptr<void, FreeDeleter> mem;
  std::vector<int64_t> shape;
  DLTensor t{};

  HostTensor(std::vector<int64_t> s, DLDataType dtype) : shape(std::move(s)) {
    int64_t n = numel();
    size_t bytes = static_cast<size_t>(n) * ((dtype.bits + 7) / 8);
    bytes = std::max<size_t>(64, (bytes + 63) / 64 * 64);
    mem.reset(std::aligned_alloc(64, bytes));
    if (mem)
      std::memset(mem.get(), 0, bytes);
    t.data = mem.get();
    t.device = {kDLCPU, 0};
    t.ndim = static_cast<int32_t>(shape.size());
    t.dtype = dtype;
    t.shape = shape.data();
    t.strides = nullptr;
    t.byte_offset = 0;
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
  template <typename T> T *data() const { return static_cast<T *>(mem.get()); }
};

/// splitmix64 + Box-Muller: fast, deterministic standard normals.
struct Normal {
  uint64_t state;
  bool have = false;
  float spare = 0;
  explicit Normal(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  float operator()() {
    if (have) {
      have = false;
      return spare;
    }
    double u1 = ((next() >> 11) + 1.0) * 0x1.0p-53; // (0, 1]
    double u2 = (next() >> 11) * 0x1.0p-53;         // [0, 1)
    double r = std::sqrt(-2.0 * std::log(u1));
    spare = static_cast<float>(r * std::sin(2 * 3.14159265358979323846 * u2));
    have = true;
    return static_cast<float>(r * std::cos(2 * 3.14159265358979323846 * u2));
  }
};

uint16_t toBF16(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  b += 0x7fff + ((b >> 16) & 1); // round to nearest even (finite inputs)
  return static_cast<uint16_t>(b >> 16);
}

uint16_t toF16(float f) {
  _Float16 h = static_cast<_Float16>(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}

DLDataType dlType(attn::ElemType t) {
  switch (t) {
  case attn::ElemType::F32:
    return {kDLFloat, 32, 1};
  case attn::ElemType::BF16:
    return {kDLBfloat, 16, 1};
  case attn::ElemType::F16:
    return {kDLFloat, 16, 1};
  case attn::ElemType::I32:
    return {kDLInt, 32, 1};
  }
  return {kDLFloat, 32, 1};
}

/// Random normal data (converted to the element type); i32 tensors get
/// "document ids" along the last dim: x[..., i] = i * 4 / size (4 equal
/// documents for a [B, N] doc tensor).
void fill(HostTensor &h, attn::ElemType type, uint64_t seed) {
  Normal rng(seed);
  int64_t n = h.numel();
  switch (type) {
  case attn::ElemType::F32:
    for (int64_t i = 0; i < n; ++i)
      h.data<float>()[i] = rng();
    break;
  case attn::ElemType::BF16:
    for (int64_t i = 0; i < n; ++i)
      h.data<uint16_t>()[i] = toBF16(rng());
    break;
  case attn::ElemType::F16:
    for (int64_t i = 0; i < n; ++i)
      h.data<uint16_t>()[i] = toF16(rng());
    break;
  case attn::ElemType::I32: {
    int64_t last = h.shape.empty() ? 1 : h.shape.back();
    for (int64_t i = 0; i < n; ++i)
      h.data<int32_t>()[i] = static_cast<int32_t>((i % last) * 4 / last);
    break;
  }
  }
}

/// All tensors of one shape; inputs are created on first use by a signature.
struct ShapeData {
  Shape shape;
  std::map<std::string, int64_t> extraDims;
  std::map<std::string, std::unique_ptr<HostTensor>>
      inputs; // by name+type+dims
  std::unique_ptr<HostTensor> o, lse;

  std::string tensorsFor(const attn::Signature &sig,
                         std::vector<const DLTensor *> &out) {
    attn::DimBinding dims = {{"B", shape.B},     {"Hq", shape.Hq},
                             {"Hkv", shape.Hkv}, {"N", shape.N},
                             {"M", shape.M},     {"Dqk", shape.Dqk},
                             {"Dv", shape.Dv},   {"G", shape.Hq / shape.Hkv}};
    for (auto &[k, v] : extraDims)
      dims[k] = v;
    out.clear();
    uint64_t seed = 1;
    for (const attn::InputSig &in : sig.inputs) {
      ++seed;
      for (const attn::DimRef &d : in.dims)
        if (!d.symbol.empty() && !dims.count(d.symbol))
          return "input " + in.name + attn::dimsString(in) + ": dim " +
                 d.symbol + " is not bound; give it with --shapes " + d.symbol +
                 "=SIZE";
      std::vector<int64_t> s = attn::shapeOf(in, dims);
      std::string key = in.name + ":" + attn::elemTypeName(in.type);
      for (int64_t d : s)
        key += "," + std::to_string(d);
      auto &slot = inputs[key];
      if (!slot) {
        slot = std::make_unique<HostTensor>(s, dlType(in.type));
        if (!slot->mem)
          return "out of memory allocating input " + in.name;
        fill(*slot, in.type, seed * 0x1000193ULL);
      }
      out.push_back(&slot->t);
    }
    if (!o) {
      o = std::make_unique<HostTensor>(
          std::vector<int64_t>{shape.B, shape.Hq, shape.N, shape.Dv},
          DLDataType{kDLFloat, 32, 1});
      lse = std::make_unique<HostTensor>(
          std::vector<int64_t>{shape.B, shape.Hq, shape.N},
          DLDataType{kDLFloat, 32, 1});
      if (!o->mem || !lse->mem)
        return "out of memory allocating o/lse";
    }
    return "";
  }
};

//===--- Ideal ratio: the visible fraction of the score matrix
//-------------===//

/// `param NAME = INTEGER` defaults read from the spec text, then overrides.
std::map<std::string, int64_t> intParams(const std::string &source,
                                         const Params &overrides) {
  std::map<std::string, int64_t> out;
  std::istringstream in(source);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string kw, name, eq, value;
    if (!(ls >> kw >> name >> eq >> value) || kw != "param" || eq != "=")
      continue;
    int64_t v;
    if (parseInt(value, v))
      out[name] = v;
  }
  for (auto &[k, v] : overrides) {
    int64_t x;
    if (parseInt(v, x))
      out[k] = x;
  }
  return out;
}

/// Fraction of the N x M (query, key) pairs the mask keeps, for the example
/// masks (by spec name); -1 when unknown. Matches the examples' definitions
/// and the doc ids this benchmark generates (4 equal documents).
double visibleFraction(const std::string &name,
                       const std::map<std::string, int64_t> &p, int64_t N,
                       int64_t M) {
  auto get = [&](const char *k, int64_t def) {
    auto it = p.find(k);
    return it == p.end() ? def : it->second;
  };
  auto clamp = [](int64_t x, int64_t lo, int64_t hi) {
    return std::max(lo, std::min(hi, x));
  };
  double visible = 0;
  if (name == "dense" || name == "sigmoid")
    return 1.0;
  if (name == "causal" || name == "softcap" || name == "alibi") {
    for (int64_t i = 0; i < N; ++i)
      visible += clamp(i + M - N + 1, 0, M);
  } else if (name == "sliding_window" || name == "sinks_window") {
    int64_t w = get("window", 256),
            s = name == "sinks_window" ? get("sinks", 4) : 0;
    for (int64_t i = 0; i < N; ++i) {
      int64_t pos = i + M - N;
      int64_t hi = std::min(pos, M - 1); // visible keys j <= hi
      if (hi < 0)
        continue;
      int64_t lo = std::max<int64_t>(0, pos - w + 1);
      int64_t win = hi >= lo ? hi - lo + 1 : 0;
      int64_t sinks = std::max<int64_t>(0, std::min(s, lo));
      sinks = std::min(sinks, hi + 1);
      visible += win + sinks;
    }
  } else if (name == "prefix_lm") {
    int64_t pre = get("prefix", 16);
    for (int64_t i = 0; i < N; ++i)
      visible += std::max(clamp(pre, 0, M), clamp(i + 1, 0, M));
  } else if (name == "document") {
    if (N != M)
      return -1;
    for (int64_t i = 0; i < N; ++i) {
      int64_t doc = i * 4 / N, start = i;
      while (start > 0 && (start - 1) * 4 / N == doc)
        --start;
      visible += i - start + 1;
    }
  } else {
    return -1;
  }
  return visible / (static_cast<double>(N) * static_cast<double>(M));
}

//===--- Jobs -------------------------------------------------------------===//

struct SpecRef {
  std::string path; // file path or spec text
  Params params;
  std::string key() const {
    std::string k = path;
    for (auto &[a, b] : params)
      k += "\n" + a + "=" + b;
    return k;
  }
};

struct Job {
  std::string group; // table it belongs to
  SpecRef spec;
  Shape shape;
  int baseline = -1; // index of the job whose time is the ratio's denominator
  // Results.
  bool ok = false;
  std::string error, label, paramText;
  int runs = 0;
  double medianMs = NAN, minMs = NAN, ideal = -1;

  Job(std::string g, SpecRef s, Shape sh)
      : group(std::move(g)), spec(std::move(s)), shape(sh) {}
};

std::string paramsText(const Params &p) {
  std::string s;
  for (auto &[k, v] : p)
    s += (s.empty() ? "" : " ") + k + "=" + v;
  return s;
}

std::string readFile(const std::string &path) {
  std::ifstream f(path);
  if (!f)
    return "";
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string fmtMs(double ms) {
  char buf[32];
  if (!std::isfinite(ms))
    return "—";
  if (ms < 1)
    std::snprintf(buf, sizeof buf, "%.4f", ms);
  else if (ms < 100)
    std::snprintf(buf, sizeof buf, "%.3f", ms);
  else
    std::snprintf(buf, sizeof buf, "%.1f", ms);
  return buf;
}

std::string fmt(const char *f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

/// Markdown table with padded columns (readable raw and rendered).
struct Table {
  std::vector<std::string> head;
  std::vector<bool> right;
  std::vector<std::vector<std::string>> rows;
  static size_t width(const std::string &s) {
    size_t n = 0;
    for (unsigned char c : s)
      n += (c & 0xc0) != 0x80; // count UTF-8 code points
    return n;
  }
  void print() const {
    std::vector<size_t> w(head.size());
    for (size_t c = 0; c < head.size(); ++c) {
      w[c] = std::max<size_t>(3, width(head[c]));
      for (auto &r : rows)
        w[c] = std::max(w[c], width(r[c]));
    }
    auto line = [&](const std::vector<std::string> &cells) {
      std::string s = "|";
      for (size_t c = 0; c < cells.size(); ++c) {
        std::string pad(w[c] - width(cells[c]), ' ');
        s += " " + (right[c] ? pad + cells[c] : cells[c] + pad) + " |";
      }
      std::printf("%s\n", s.c_str());
    };
    line(head);
    std::string sep = "|";
    for (size_t c = 0; c < head.size(); ++c)
      sep += (right[c] ? std::string(w[c] + 1, '-') + ":|"
                       : ":" + std::string(w[c] + 1, '-') + "|");
    std::printf("%s\n", sep.c_str());
    for (auto &r : rows)
      line(r);
    std::fflush(stdout);
  }
};

struct Bench {
  Options opt;
  attn::Compiler compiler;
  std::map<std::string, std::unique_ptr<attn::Kernel>> kernels;
  std::map<std::string, std::string> compileErrors;
  double firstCompileMs = -1;
  std::string firstCompileWhat;
  int failures = 0;

  attn::CompileOptions compileOptions(const SpecRef &s) const {
    attn::CompileOptions co;
    co.params = s.params;
    co.target = opt.target;
    co.tileQ = opt.tileQ;
    co.tileKV = opt.tileKV;
    return co;
  }

  /// Compiles through `co`, timing the call; records the process's first.
  std::unique_ptr<attn::Kernel> timedCompile(const SpecRef &s,
                                             const attn::CompileOptions &co,
                                             double &ms, std::string &error) {
    auto t0 = Clock::now();
    std::unique_ptr<attn::Kernel> k = compiler.compile(s.path, co, error);
    ms = secondsSince(t0) * 1e3;
    if (firstCompileMs < 0 && k && !k->cacheHit()) {
      firstCompileMs = ms;
      firstCompileWhat = s.path;
    }
    return k;
  }

  attn::Kernel *kernel(const SpecRef &s, std::string &error) {
    std::string key = s.key();
    if (auto it = kernels.find(key); it != kernels.end())
      return it->second.get();
    if (auto it = compileErrors.find(key); it != compileErrors.end()) {
      error = it->second;
      return nullptr;
    }
    attn::CompileOptions co = compileOptions(s);
    co.cacheDir = opt.cacheDir;
    double ms;
    auto k = timedCompile(s, co, ms, error);
    if (!k) {
      compileErrors[key] = error;
      return nullptr;
    }
    std::fprintf(stderr, "  %s %s in %.0f ms\n",
                 k->cacheHit() ? "loaded" : "compiled", s.path.c_str(), ms);
    return (kernels[key] = std::move(k)).get();
  }

  void measure(Job &job, ShapeData &data) {
    std::string error;
    attn::Kernel *k = kernel(job.spec, error);
    job.label = job.spec.path;
    job.paramText = paramsText(job.spec.params);
    if (!k) {
      job.error = "compile failed: " + error;
      return;
    }
    job.label = k->desc().name;
    const Shape &s = job.shape;
    job.ideal = visibleFraction(
        job.label, intParams(readFile(job.spec.path), job.spec.params), s.N,
        s.M);
    std::vector<const DLTensor *> inputs;
    if (std::string err = data.tensorsFor(k->signature(), inputs);
        !err.empty()) {
      job.error = err;
      return;
    }
    DLTensor *lse = k->hasLse() ? &data.lse->t : nullptr;
    attn_run_options_t ro{opt.threads};
    // Warm-up (also checks that the kernel accepts the tensors).
    if (attn_status_t st = k->run(inputs.data(), &data.o->t, lse, &ro);
        st != ATTN_OK) {
      job.error =
          std::string(attn_status_string(st)) + ": " + attn_last_error();
      return;
    }
    const float *o = data.o->data<float>();
    for (int64_t i = 0, n = data.o->numel(); i < n; ++i)
      if (!std::isfinite(o[i])) {
        job.error = "non-finite output at element " + std::to_string(i);
        return;
      }
    std::vector<double> times;
    double total = 0;
    while (
        static_cast<int>(times.size()) < opt.minRuns ||
        (total < opt.minTime && static_cast<int>(times.size()) < opt.maxRuns)) {
      auto t0 = Clock::now();
      attn_status_t st = k->run(inputs.data(), &data.o->t, lse, &ro);
      auto t1 = Clock::now();
      if (st != ATTN_OK) {
        job.error =
            std::string(attn_status_string(st)) + ": " + attn_last_error();
        return;
      }
      double sec = std::chrono::duration<double>(t1 - t0).count();
      times.push_back(sec * 1e3);
      total += sec;
    }
    job.runs = static_cast<int>(times.size());
    job.medianMs = median(times);
    job.minMs = *std::min_element(times.begin(), times.end());
    job.ok = true;
  }

  static double flops(const Shape &s) {
    return 2.0 * s.B * s.Hq * static_cast<double>(s.N) * s.M * (s.Dqk + s.Dv);
  }

  void runJobs(std::vector<Job> &jobs,
               const std::map<std::string, int64_t> &extraDims) {
    // Jobs of one shape run back to back on the same inputs; the shape's
    // tensors are freed when the next shape starts.
    std::unique_ptr<ShapeData> data;
    std::vector<std::string> groups;
    for (auto &j : jobs)
      if (std::find(groups.begin(), groups.end(), j.group) == groups.end())
        groups.push_back(j.group);
    size_t done = 0;
    for (const std::string &g : groups) {
      std::vector<size_t> idx;
      for (size_t i = 0; i < jobs.size(); ++i)
        if (jobs[i].group == g)
          idx.push_back(i);
      for (size_t i : idx) {
        Job &j = jobs[i];
        if (!data || !(data->shape == j.shape)) {
          data.reset();
          data = std::make_unique<ShapeData>();
          data->shape = j.shape;
          data->extraDims = extraDims;
        }
        ++done;
        std::fprintf(stderr,
                     "[%zu/%zu] %s %s B=%lld Hq=%lld Hkv=%lld N=%lld "
                     "M=%lld Dqk=%lld Dv=%lld\n",
                     done, jobs.size(), j.spec.path.c_str(),
                     paramsText(j.spec.params).c_str(), (long long)j.shape.B,
                     (long long)j.shape.Hq, (long long)j.shape.Hkv,
                     (long long)j.shape.N, (long long)j.shape.M,
                     (long long)j.shape.Dqk, (long long)j.shape.Dv);
        auto t0 = Clock::now();
        measure(j, *data);
        if (j.ok)
          std::fprintf(stderr, "  %d runs, median %s ms (%.1f s)\n", j.runs,
                       fmtMs(j.medianMs).c_str(), secondsSince(t0));
        else {
          ++failures;
          std::fprintf(stderr, "  error: %s\n", j.error.c_str());
        }
      }
      printGroup(g, jobs, idx);
    }
  }

  void printGroup(const std::string &g, const std::vector<Job> &jobs,
                  const std::vector<size_t> &idx) const {
    Table t;
    t.head = {"spec",         "params", "B",       "Hq",
              "Hkv",          "N",      "D",       "runs",
              "median ms",    "min ms", "GFLOP/s", "% peak",
              "time / dense", "ideal"};
    t.right = {false, false, true, true, true, true, true,
               true,  true,  true, true, true, true, true};
    for (size_t i : idx) {
      const Job &j = jobs[i];
      const Shape &s = j.shape;
      std::string n = std::to_string(s.N);
      if (s.M != s.N)
        n += " (M=" + std::to_string(s.M) + ")";
      std::string d = std::to_string(s.Dqk);
      if (s.Dv != s.Dqk)
        d += "/" + std::to_string(s.Dv);
      std::vector<std::string> r = {j.label,
                                    j.paramText.empty() ? "" : j.paramText,
                                    std::to_string(s.B),
                                    std::to_string(s.Hq),
                                    std::to_string(s.Hkv),
                                    n,
                                    d};
      if (!j.ok) {
        r.push_back("—");
        r.push_back("error");
        while (r.size() < t.head.size())
          r.push_back("—");
        r[0] += " (" + j.error.substr(0, 60) + ")";
      } else {
        double gf = flops(s) / (j.medianMs * 1e-3) / 1e9;
        r.push_back(std::to_string(j.runs));
        r.push_back(fmtMs(j.medianMs));
        r.push_back(fmtMs(j.minMs));
        r.push_back(fmt("%.1f", gf));
        r.push_back(fmt("%.0f%%", 100 * gf / opt.peak));
        if (j.baseline >= 0 && jobs[j.baseline].ok)
          r.push_back(fmt("%.3f", j.medianMs / jobs[j.baseline].medianMs));
        else
          r.push_back("—");
        r.push_back(j.baseline >= 0 && j.ideal >= 0 ? fmt("%.3f", j.ideal)
                                                    : "—");
      }
      t.rows.push_back(r);
    }
    std::printf("\n### %s\n\n", g.c_str());
    t.print();
  }

  /// Compile-latency section for `specs`.
  void compileLatency(const std::vector<SpecRef> &specs) {
    int reps = std::max(1, opt.compileReps);
    Table t;
    t.head = {"spec",
              "params",
              "cold, no cache (ms)",
              "cold, fresh cache dir (ms)",
              "cache hit (ms)",
              "cold ≤ 500 ms",
              "hit ≤ 5 ms"};
    t.right = {false, false, true, true, true, false, false};
    double worstCold = 0, worstHit = 0;
    std::string worstColdSpec, worstHitSpec;
    for (const SpecRef &s : specs) {
      std::fprintf(stderr, "compile latency: %s %s (%d reps)\n", s.path.c_str(),
                   paramsText(s.params).c_str(), reps);
      std::vector<double> noCache, fresh, hit;
      std::string error, name = s.path;
      bool ok = true;
      for (int r = 0; r < reps && ok; ++r) {
        double ms;
        attn::CompileOptions co = compileOptions(s);
        co.useCache = false;
        {
          auto k = timedCompile(s, co, ms, error);
          if (!k || k->cacheHit()) {
            ok = false;
            if (k)
              error = "useCache=false gave a cache hit";
            break;
          }
          name = k->desc().name;
          noCache.push_back(ms);
        }
        // A fresh, empty cache directory: compile (miss), then load (hit).
        std::error_code tmpEc;
        std::filesystem::path tmpDir =
            std::filesystem::temp_directory_path(tmpEc);
        if (tmpEc)
          tmpDir = "/tmp";
        std::string tmpl = (tmpDir / "attn-bench-XXXXXX").string();
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (!mkdtemp(buf.data())) {
          ok = false;
          error = "cannot create a temporary cache directory";
          break;
        }
        std::string dir = buf.data();
        co.useCache = true;
        co.cacheDir = dir;
        {
          auto k = timedCompile(s, co, ms, error);
          if (!k || k->cacheHit()) {
            ok = false;
            if (k)
              error = "fresh cache directory gave a cache hit";
          } else {
            fresh.push_back(ms);
          }
        } // unloaded (dlclose) before the hit loads it again
        if (ok) {
          auto k = timedCompile(s, co, ms, error);
          if (!k || !k->cacheHit()) {
            ok = false;
            if (k)
              error = "second compile with the same cache dir was not a hit";
          } else {
            hit.push_back(ms);
          }
        }
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      }
      std::vector<std::string> row = {name, paramsText(s.params)};
      if (!ok) {
        ++failures;
        std::fprintf(stderr, "  error: %s\n", error.c_str());
        row[0] += " (error: " + error.substr(0, 60) + ")";
        while (row.size() < t.head.size())
          row.push_back("—");
      } else {
        double c1 = median(noCache), c2 = median(fresh), h = median(hit);
        std::fprintf(stderr,
                     "  cold %.1f ms (no cache), %.1f ms (fresh dir), hit "
                     "%.2f ms\n",
                     c1, c2, h);
        double cold = std::max(c1, c2);
        if (cold > worstCold)
          worstCold = cold, worstColdSpec = name;
        if (h > worstHit)
          worstHit = h, worstHitSpec = name;
        row.push_back(fmt("%.1f", c1));
        row.push_back(fmt("%.1f", c2));
        row.push_back(fmt("%.2f", h));
        row.push_back(cold <= 500 ? "yes" : "NO");
        row.push_back(h <= 5 ? "yes" : "NO");
      }
      t.rows.push_back(row);
    }
    std::printf("\n### Compile latency (median of %d, in-process)\n\n", reps);
    t.print();
    if (!worstColdSpec.empty())
      std::printf("\nworst cold median %.1f ms (%s), worst cache-hit median "
                  "%.2f ms (%s)\n",
                  worstCold, worstColdSpec.c_str(), worstHit,
                  worstHitSpec.c_str());
    if (firstCompileMs >= 0)
      std::printf("first cold compile of this process (includes one-time "
                  "LLVM/MLIR initialisation): %.1f ms, %s\n",
                  firstCompileMs, firstCompileWhat.c_str());
    std::fflush(stdout);
  }
};

std::string examplePath(const Options &o, const std::string &name) {
  return o.examplesDir + "/" + name + ".attn";
}

} // namespace

int main(int argc, char **argv) {
  Options opt;
  bool minTimeSet = false, minRunsSet = false, repsSet = false;
  auto need = [&](int &i, const char *flag) -> const char * {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "attn-bench: %s needs a value\n", flag);
      std::exit(2);
    }
    return argv[++i];
  };
  auto bad = [](const std::string &msg) {
    std::fprintf(stderr, "attn-bench: %s\n", msg.c_str());
    std::exit(2);
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    // Accept --flag=value too.
    std::string inlineValue;
    bool hasInline = false;
    if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
      inlineValue = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
      hasInline = true;
    }
    auto value = [&]() -> std::string {
      return hasInline ? inlineValue : std::string(need(i, a.c_str()));
    };
    int64_t n;
    double x;
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (a == "--suite") {
      opt.suite = value();
    } else if (a == "--spec") {
      opt.specs.push_back(value());
    } else if (a == "--shapes") {
      opt.shapesText += " " + value();
    } else if (a == "--param") {
      std::string p = value();
      size_t eq = p.find('=');
      if (eq == std::string::npos || eq == 0)
        bad("--param '" + p + "' must be NAME=VALUE");
      opt.params.push_back({p.substr(0, eq), p.substr(eq + 1)});
    } else if (a == "--threads") {
      if (!parseInt(value(), n) || n < 0 || n > 4096)
        bad("--threads needs an integer >= 0");
      opt.threads = static_cast<int>(n);
    } else if (a == "--min-time") {
      if (!parseDouble(value(), x) || x < 0)
        bad("--min-time needs seconds >= 0");
      opt.minTime = x;
      minTimeSet = true;
    } else if (a == "--min-runs") {
      if (!parseInt(value(), n) || n < 1 || n > 1000000)
        bad("--min-runs needs an integer >= 1");
      opt.minRuns = static_cast<int>(n);
      minRunsSet = true;
    } else if (a == "--max-runs") {
      if (!parseInt(value(), n) || n < 1 || n > 100000000)
        bad("--max-runs needs an integer >= 1");
      opt.maxRuns = static_cast<int>(n);
    } else if (a == "--compile-reps") {
      if (!parseInt(value(), n) || n < 1 || n > 1000)
        bad("--compile-reps needs an integer >= 1");
      opt.compileReps = static_cast<int>(n);
      repsSet = true;
    } else if (a == "--quick") {
      opt.quick = true;
    } else if (a == "--no-compile") {
      opt.noCompile = true;
    } else if (a == "--no-throughput") {
      opt.noThroughput = true;
    } else if (a == "--no-baseline") {
      opt.noBaseline = true;
    } else if (a == "--peak") {
      if (!parseDouble(value(), x) || x <= 0)
        bad("--peak needs GFLOP/s > 0");
      opt.peak = x;
    } else if (a == "--examples") {
      opt.examplesDir = value();
    } else if (a == "--target") {
      opt.target = value();
    } else if (a == "--tile-q") {
      if (!parseInt(value(), n) || n < 0)
        bad("--tile-q needs an integer >= 0");
      opt.tileQ = n;
    } else if (a == "--tile-kv") {
      if (!parseInt(value(), n) || n < 0)
        bad("--tile-kv needs an integer >= 0");
      opt.tileKV = n;
    } else if (a == "--cache-dir") {
      opt.cacheDir = value();
    } else {
      std::fprintf(stderr, "attn-bench: unknown argument '%s'\n\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (opt.quick) {
    if (!minTimeSet)
      opt.minTime = 0;
    if (!minRunsSet)
      opt.minRuns = 1;
    if (!repsSet)
      opt.compileReps = 1;
  }
  if (opt.maxRuns < opt.minRuns)
    opt.maxRuns = opt.minRuns;
  if (opt.suite.empty() == opt.specs.empty())
    bad("give either --suite cpu or one or more --spec PATH (--help)");
  if (!opt.suite.empty() && opt.suite != "cpu")
    bad("unknown suite '" + opt.suite + "' (known: cpu)");
  if (!opt.suite.empty() && !opt.shapesText.empty())
    bad("--shapes applies to --spec; --suite cpu has fixed shapes (--quick "
        "for the tiny version)");
  if (!opt.suite.empty() && !opt.params.empty())
    bad("--param applies to --spec; --suite cpu uses fixed params");

  Bench bench;
  bench.opt = opt;
  auto start = Clock::now();
  int threads = opt.threads ? opt.threads : attn_cpu_num_threads();

  std::vector<Job> jobs;
  std::vector<SpecRef> compileSpecs;
  std::map<std::string, int64_t> extraDims;
  std::string dense = examplePath(opt, "dense");
  if (!std::filesystem::exists(dense))
    dense = "attention dense {\n  normalizer = softmax\n}\n";

  if (!opt.suite.empty()) {
    // The standard CPU table.
    std::vector<int64_t> Ns = {1024, 4096, 16384}, Ds = {64, 128};
    int64_t varN = 4096, varD = 128;
    if (opt.quick)
      Ns = {256}, varN = 256;
    auto shape = [](int64_t Hq, int64_t Hkv, int64_t N, int64_t D) {
      Shape s;
      s.B = 1, s.Hq = Hq, s.Hkv = Hkv, s.N = s.M = N, s.Dqk = s.Dv = D;
      return s;
    };
    std::string causal = examplePath(opt, "causal");
    std::string grid = "Dense and causal (B=1, H=8); sliding_window(256) at "
                       "the largest N";
    for (int64_t N : Ns)
      for (int64_t D : Ds) {
        int base = static_cast<int>(jobs.size());
        jobs.push_back({grid, {dense, {}}, shape(8, 8, N, D)});
        Job c{grid, {causal, {}}, shape(8, 8, N, D)};
        c.baseline = base;
        jobs.push_back(c);
        if (N == Ns.back()) {
          Job w{grid,
                {examplePath(opt, "sliding_window"), {{"window", "256"}}},
                shape(8, 8, N, D)};
          w.baseline = base;
          jobs.push_back(w);
        }
      }
    std::string var = "Variants at N=" + std::to_string(varN) +
                      ", D=" + std::to_string(varD) +
                      " (B=1, H=8; GQA: Hq=32, Hkv=8 vs dense Hq=Hkv=32)";
    int base = static_cast<int>(jobs.size());
    jobs.push_back({var, {dense, {}}, shape(8, 8, varN, varD)});
    std::vector<std::pair<std::string, Params>> variants = {
        {"causal", {}},   {"sliding_window", {{"window", "256"}}},
        {"document", {}}, {"prefix_lm", {}},
        {"softcap", {}},  {"alibi", {}},
        {"sigmoid", {}}};
    for (auto &[name, params] : variants) {
      Job j{var, {examplePath(opt, name), params}, shape(8, 8, varN, varD)};
      j.baseline = base;
      jobs.push_back(j);
    }
    int base32 = static_cast<int>(jobs.size());
    jobs.push_back({var, {dense, {}}, shape(32, 32, varN, varD)});
    Job gqa{var, {dense, {}}, shape(32, 8, varN, varD)};
    gqa.baseline = base32;
    jobs.push_back(gqa);

    for (const char *name :
         {"dense", "causal", "sliding_window", "softcap", "alibi", "document",
          "prefix_lm", "sigmoid", "neighborhood_2d", "sinks_window"})
      compileSpecs.push_back({examplePath(opt, name), {}});
  } else {
    // --spec PATH...
    std::vector<std::pair<std::string, std::vector<int64_t>>> lists;
    std::string shapesText = opt.shapesText;
    if (shapesText.empty())
      shapesText = opt.quick ? "N=256,D=64,128" : "N=1k,4k,16k,D=64,128";
    if (std::string err = parseShapes(shapesText, lists); !err.empty())
      bad(err);
    std::map<std::string, std::vector<int64_t>> L;
    const std::set<std::string> known = {"B", "H", "Hq",  "Hkv", "N",
                                         "M", "D", "Dqk", "Dv"};
    for (auto &[k, v] : lists) {
      std::string key = k == "H" ? "Hq" : k == "D" ? "Dqk" : k;
      if (!known.count(k)) {
        if (v.size() != 1)
          bad("--shapes: extra dim " + k + " takes one value");
        extraDims[k] = v[0];
        continue;
      }
      if (L.count(key))
        bad("--shapes: " + k + " given twice");
      L[key] = v;
    }
    auto get = [&](const char *k, std::vector<int64_t> def) {
      return L.count(k) ? L[k] : def;
    };
    std::vector<Shape> shapes;
    for (int64_t B : get("B", {1}))
      for (int64_t Hq : get("Hq", {8}))
        for (int64_t Hkv : get("Hkv", {-1}))
          for (int64_t N : get("N", {1024}))
            for (int64_t M : get("M", {-1}))
              for (int64_t Dqk : get("Dqk", {64}))
                for (int64_t Dv : get("Dv", {-1})) {
                  Shape s;
                  s.B = B, s.Hq = Hq, s.Hkv = Hkv < 0 ? Hq : Hkv, s.N = N;
                  s.M = M < 0 ? N : M, s.Dqk = Dqk, s.Dv = Dv < 0 ? Dqk : Dv;
                  if (s.Hq % s.Hkv)
                    bad("--shapes: Hq=" + std::to_string(s.Hq) +
                        " is not a multiple of Hkv=" + std::to_string(s.Hkv));
                  shapes.push_back(s);
                }
    // Is one of the specs dense itself? (Then it is the baseline.)
    int denseSpec = -1;
    for (size_t i = 0; i < opt.specs.size(); ++i) {
      std::string error;
      attn::Kernel *k = bench.kernel({opt.specs[i], opt.params}, error);
      if (k && std::string(k->desc().name) == "dense" && denseSpec < 0)
        denseSpec = static_cast<int>(i);
    }
    for (const Shape &s : shapes) {
      std::string g =
          "B=" + std::to_string(s.B) + ", Hq=" + std::to_string(s.Hq) +
          ", Hkv=" + std::to_string(s.Hkv) + ", N=" + std::to_string(s.N) +
          (s.M != s.N ? ", M=" + std::to_string(s.M) : "") +
          ", D=" + std::to_string(s.Dqk) +
          (s.Dv != s.Dqk ? "/" + std::to_string(s.Dv) : "");
      int base = -1;
      if (denseSpec < 0 && !opt.noBaseline) {
        base = static_cast<int>(jobs.size());
        jobs.push_back({g, {dense, {}}, s});
      }
      size_t first = jobs.size();
      for (size_t i = 0; i < opt.specs.size(); ++i)
        jobs.push_back({g, {opt.specs[i], opt.params}, s});
      if (denseSpec >= 0)
        base = static_cast<int>(first) + denseSpec;
      for (size_t i = first; i < jobs.size(); ++i)
        if (static_cast<int>(i) != base)
          jobs[i].baseline = base;
    }
    for (const std::string &p : opt.specs)
      compileSpecs.push_back({p, opt.params});
  }

  std::printf(
      "# attn-bench (%s)\n\n",
      opt.suite.empty()
          ? "--spec"
          : ("--suite " + opt.suite + (opt.quick ? " --quick" : "")).c_str());
  std::printf("threads=%d, target=%s, peak=%.0f GFLOP/s (fp32 FMA), "
              "min-time=%g s, min-runs=%d, warm-up 1 run per row\n",
              threads, opt.target.c_str(), opt.peak, opt.minTime, opt.minRuns);
  std::printf("GFLOP/s = dense-equivalent 2*B*Hq*N*M*(Dqk+Dv) / median time "
              "(masked variants: effective rate); time / dense = median / "
              "median of dense at the same shape; ideal = fraction of the "
              "N x M score matrix the mask keeps\n");
  std::fflush(stdout);

  if (!opt.noThroughput)
    bench.runJobs(jobs, extraDims);
  if (!opt.noCompile)
    bench.compileLatency(compileSpecs);

  std::printf("\ntotal wall time %.1f s%s\n", secondsSince(start),
              bench.failures ? "; SOME MEASUREMENTS FAILED (see stderr)" : "");
  return bench.failures ? 1 : 0;
}
