//===- RunBatch.cpp - `attnc run --seqlens`: ragged and paged batches -----===//
//
// Runs a batch of sequences of different lengths through the runtime's
// attn_cpu_run_batch: the queries packed with cu_seqlens_q, the keys and
// values packed with cu_seqlens_k or, with --page-size, in a page pool
// (pages shuffled, a block table with -1 padding, unused slots NaN) --
// the layouts serving code hands the runtime. The inputs are made (or read)
// as a padded batch [B, H, longest run, D], packed from there, and each
// sequence is checked against the float64 reference on its own inputs
// (q, k, v and the aux inputs cut to its rows), as attention on a sequence
// alone is what a batch promises.
//
//===----------------------------------------------------------------------===//

#include "RunHelpers.h"
#include "attn/Frontend/RunCompiled.h"
#include "attn/JIT/Compiler.h"
#include "attn/Reference/ReferenceEvaluator.h"
#include "attn/Target/Backend.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Format.h"
#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <random>

using namespace mlir;
using namespace mlir::attn;
using ::attn::HostArray;
using namespace mlir::attn::run;

namespace {

/// At most this many sequences (tables stay small; the memory check bounds
/// the rest).
constexpr int64_t kMaxSequences = 1 << 16;

/// How far the kernel's outputs are from the reference's, over all
/// sequences.
struct Errors {
  double maxAbs = 0, maxRef = 0, maxLse = 0;
  int64_t bad = 0;
  double rel() const { return maxRef > 0 ? maxAbs / maxRef : maxAbs; }
  /// Whether x (the kernel's) and y (the reference's) are both finite; a
  /// non-finite value that is not sameNonFinite counts as bad.
  bool bothFinite(double x, double y) {
    if (sameNonFinite(x, y))
      return false;
    if (std::isfinite(x) && std::isfinite(y))
      return true;
    ++bad;
    return false;
  }
  void o(double x, double y) {
    if (!bothFinite(x, y))
      return;
    maxAbs = std::max(maxAbs, std::fabs(x - y));
    maxRef = std::max(maxRef, std::fabs(y));
  }
  void lse(double x, double y) {
    if (bothFinite(x, y))
      maxLse = std::max(maxLse, std::fabs(x - y) / std::max(1.0, std::fabs(y)));
  }
};

class BatchRun {
public:
  BatchRun(SpecOp spec, const RunOptions &opts)
      : spec(spec), opts(opts), sig(getSignature(spec)) {}
  std::string run(llvm::raw_ostream &os);

private:
  std::string checkRequest();
  std::string parseSeqlens();
  std::string planInputsAndMemory();
  std::string packBatch();
  std::string compileAndRun();
  void printSummary(llvm::raw_ostream &os);
  std::string checkAgainstReference(llvm::raw_ostream &os);
  std::string referenceOf(int64_t b, ReferenceOutputs &ref);

  SpecOp spec;
  const RunOptions &opts;
  ::attn::Signature sig;
  bool softmax = false;
  std::unique_ptr<BackendTarget> target;
  RunOutputs outputs;
  InputPlan plan;
  ::attn::DimBinding dims;
  std::unique_ptr<::attn::Kernel> kernel;

  // The batch: per sequence its query and key counts, and the offsets.
  std::vector<int64_t> n, m, cuQ, cuK;
  int64_t B = 0, maxN = 0, maxM = 0, pageSize = 0, pages = 0, maxPages = 0;
  // What the runtime gets: packed q, packed or paged k and v, the tables.
  HostArray q, k, v, cuQArr, cuKArr, tableArr, lensArr, o, lse;
  std::vector<double> times;
};

} // namespace

std::string BatchRun::checkRequest() {
  AttentionOp att = spec.getAttention();
  if (!att)
    return "--seqlens: ragged and paged batches are for the softmax family "
           "(softmax, sigmoid, relu, none); this spec is linear attention";
  softmax = att.getNormalizer() == NormalizerKind::softmax;
  std::string error;
  target = parseTarget(opts.target, error);
  if (!target)
    return error;
  if (target->backend().deviceType() != kDLCPU)
    return "--seqlens runs the batch on the CPU (attn_cpu_run_batch); for "
           "--target=" +
           opts.target +
           " compile with `attnc SPEC --target=... -o k.o --header k.h` and "
           "call attn_cuda_run_batch on device tensors";
  if (opts.pageSize < 0)
    return "--page-size must be positive (" + std::to_string(opts.pageSize) +
           " given)";
  pageSize = opts.pageSize;
  return "";
}

/// "n:m,n:m,...": the query and key count of each sequence.
std::string BatchRun::parseSeqlens() {
  llvm::SmallVector<llvm::StringRef> parts;
  llvm::StringRef(opts.seqlens).split(parts, ',');
  if (int64_t(parts.size()) > kMaxSequences)
    return "--seqlens: " + std::to_string(parts.size()) +
           " sequences, at most " + std::to_string(kMaxSequences);
  for (llvm::StringRef p : parts) {
    auto [ns, ms] = p.trim().split(':');
    int64_t ni, mi;
    if (ns.trim().getAsInteger(10, ni) || ms.trim().getAsInteger(10, mi) ||
        ni < 0 || mi < 0 || ni > INT32_MAX || mi > INT32_MAX)
      return "--seqlens: '" + p.trim().str() +
             "' is not QUERIES:KEYS (two non-negative integers, e.g. "
             "--seqlens 1:4096,16:300)";
    n.push_back(ni);
    m.push_back(mi);
  }
  B = int64_t(n.size());
  cuQ.assign(1, 0);
  cuK.assign(1, 0);
  for (int64_t b = 0; b < B; ++b) {
    cuQ.push_back(cuQ.back() + n[b]);
    cuK.push_back(cuK.back() + m[b]);
    maxN = std::max(maxN, n[b]);
    maxM = std::max(maxM, m[b]);
    if (pageSize)
      maxPages = std::max(maxPages, (m[b] + pageSize - 1) / pageSize);
    pages += pageSize ? (m[b] + pageSize - 1) / pageSize : 0;
  }
  // A pool and a table row of at least one page, even without keys.
  if (pageSize) {
    pages = std::max<int64_t>(pages, 1);
    maxPages = std::max<int64_t>(maxPages, 1);
  }
  if (maxN == 0)
    return "--seqlens: no sequence has queries (nothing to compute)";
  if (cuQ.back() > INT32_MAX || cuK.back() > INT32_MAX)
    return "--seqlens: more than 2^31 - 1 rows in all (the tables are int32)";
  return "";
}

/// The padded batch's inputs (B = sequences, N and M = the longest runs),
/// after the memory the run needs is checked: the padded inputs, their
/// packed copies, o and lse, the reference of one sequence.
std::string BatchRun::planInputsAndMemory() {
  for (llvm::StringRef kv : llvm::split(opts.shape, ',')) {
    llvm::StringRef name = kv.split('=').first.trim();
    if (name == "B" || name == "N" || name == "M")
      return "--shape " + name.str() +
             "=...: --seqlens gives the batch (B = the number of sequences, "
             "N and M each sequence's counts); set only the heads and head "
             "dims with --shape";
  }
  RunOptions padded = opts;
  padded.shape = (opts.shape.empty() ? "" : opts.shape + ",") +
                 "B=" + std::to_string(B) + ",N=" + std::to_string(maxN) +
                 ",M=" + std::to_string(std::max<int64_t>(maxM, 1));
  if (std::string err = prepareRun(spec, padded, outputs, plan); !err.empty())
    return err;
  if (std::string err = ::attn::bindShapes(sig, plan.shapes, dims);
      !err.empty())
    return err;
  if (std::string err = checkCpuHeadDims(dims); !err.empty())
    return err;
  int64_t Hq = dims["Hq"], Hkv = dims["Hkv"], Dqk = dims["Dqk"],
          Dv = dims["Dv"];
  MemoryNeed need;
  // The padded inputs as float32 (random) or read, and the packed q, k, v
  // (at most as large, plus the pool's partial last pages).
  uint64_t pool =
      ::attn::arrayBytes({pageSize ? pages * pageSize : 1, Hkv, Dqk + Dv}, 4);
  need.inputs = ::attn::saturatingAdd(
      ::attn::saturatingAdd(plan.bytes, plan.bytes), pool);
  need.outputs = ::attn::arrayBytes({cuQ.back(), Hq, Dv + 1}, 4);
  if (opts.check)
    need.reference = referenceMemory(spec, plan.shapes).total();
  if (std::string err = checkMemory(need, opts.maxMemory); !err.empty())
    return err;
  return makeRandomInputs(spec, opts.seed, plan);
}

/// q, k, v in the kernel's types, packed: q [total_q, Hq, Dqk], k and v
/// [total_k, Hkv, D] or pools [pages, page_size, Hkv, D]; and the tables.
std::string BatchRun::packBatch() {
  for (const ::attn::InputSig &in : sig.inputs) {
    ::attn::DType dt;
    DLDataType dl;
    kernelType(in.type, dt, dl);
    if (std::string err = convertInPlace(plan.inputs.at(in.name), dt);
        !err.empty())
      return "input '" + in.name + "': " + err;
  }
  int64_t Hq = dims["Hq"], Hkv = dims["Hkv"];
  auto alloc = [](HostArray &a, ::attn::DType dt, std::vector<int64_t> shape,
                  const char *what) -> std::string {
    std::string err = HostArray::allocate(dt, std::move(shape), a);
    return err.empty() ? "" : std::string(what) + ": " + err;
  };
  // Row h of query i of sequence b: padded [b, h, i, :] -> packed
  // [cuQ[b] + i, h, :]; the same for k and v rows.
  auto pack = [&](const HostArray &from, HostArray &to, int64_t H,
                  const std::vector<int64_t> &lens,
                  const std::function<int64_t(int64_t, int64_t)> &rowOf) {
    int64_t D = from.shape[3], esize = ::attn::dtypeSize(from.dtype);
    int64_t rows = from.shape[2], rowBytes = D * esize;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < lens[b]; ++i)
          std::memcpy(to.bytes.data() + (rowOf(b, i) * H + h) * rowBytes,
                      from.bytes.data() + ((b * H + h) * rows + i) * rowBytes,
                      rowBytes);
  };
  const HostArray &qd = plan.inputs.at("q"), &kd = plan.inputs.at("k"),
                  &vd = plan.inputs.at("v");
  if (std::string err =
          alloc(q, qd.dtype, {cuQ.back(), Hq, qd.shape[3]}, "packed q");
      !err.empty())
    return err;
  pack(qd, q, Hq, n, [&](int64_t b, int64_t i) { return cuQ[b] + i; });
  std::vector<int32_t> table;
  if (pageSize) {
    // Pages in a shuffled order; unused slots NaN (every NaN pattern of
    // 0xff bytes), which a kernel reading past kv_lens would spread.
    std::vector<int64_t> perm(pages);
    for (size_t i = 0; i < perm.size(); ++i)
      perm[i] = int64_t(i);
    std::shuffle(perm.begin(), perm.end(), std::mt19937_64(opts.seed + 1));
    table.assign(size_t(B * maxPages), -1);
    for (int64_t b = 0, next = 0; b < B; ++b)
      for (int64_t p = 0; p < (m[b] + pageSize - 1) / pageSize; ++p)
        table[b * maxPages + p] = int32_t(perm[next++]);
    for (auto [from, to, name] :
         {std::tuple(&kd, &k, "paged k"), std::tuple(&vd, &v, "paged v")}) {
      if (std::string err = alloc(*to, from->dtype,
                                  {pages, pageSize, Hkv, from->shape[3]}, name);
          !err.empty())
        return err;
      std::fill(to->bytes.begin(), to->bytes.end(), uint8_t(0xff));
      pack(*from, *to, Hkv, m, [&](int64_t b, int64_t j) {
        return table[b * maxPages + j / pageSize] * pageSize + j % pageSize;
      });
    }
    if (std::string err =
            alloc(tableArr, ::attn::DType::I32, {B, maxPages}, "table");
        !err.empty())
      return err;
    std::memcpy(tableArr.bytes.data(), table.data(), table.size() * 4);
    if (std::string err = alloc(lensArr, ::attn::DType::I32, {B}, "kv_lens");
        !err.empty())
      return err;
    for (int64_t b = 0; b < B; ++b)
      lensArr.data<int32_t>()[b] = int32_t(m[b]);
  } else {
    for (auto [from, to, name] :
         {std::tuple(&kd, &k, "packed k"), std::tuple(&vd, &v, "packed v")}) {
      if (std::string err =
              alloc(*to, from->dtype, {cuK.back(), Hkv, from->shape[3]}, name);
          !err.empty())
        return err;
      pack(*from, *to, Hkv, m,
           [&](int64_t b, int64_t j) { return cuK[b] + j; });
    }
    if (std::string err = alloc(cuKArr, ::attn::DType::I32, {B + 1}, "cu_k");
        !err.empty())
      return err;
    for (int64_t b = 0; b <= B; ++b)
      cuKArr.data<int32_t>()[b] = int32_t(cuK[b]);
  }
  if (std::string err = alloc(cuQArr, ::attn::DType::I32, {B + 1}, "cu_q");
      !err.empty())
    return err;
  for (int64_t b = 0; b <= B; ++b)
    cuQArr.data<int32_t>()[b] = int32_t(cuQ[b]);
  if (std::string err = alloc(o, ::attn::DType::F32,
                              {cuQ.back(), Hq, dims["Dv"]}, "output o");
      !err.empty())
    return err;
  if (softmax)
    if (std::string err =
            alloc(lse, ::attn::DType::F32, {Hq, cuQ.back()}, "output lse");
        !err.empty())
      return err;
  return "";
}

std::string BatchRun::compileAndRun() {
  ::attn::CompileOptions co = compileOptionsFor(opts);
  co.pagedKV = pageSize > 0;
  std::string error;
  kernel = ::attn::Compiler().compile(opts.specPath, co, error);
  if (!kernel)
    return error;
  std::vector<TensorView> views;
  views.reserve(sig.inputs.size());
  for (const ::attn::InputSig &in : sig.inputs) {
    ::attn::DType dt;
    DLDataType dl;
    kernelType(in.type, dt, dl);
    HostArray &a = in.name == "q"   ? q
                   : in.name == "k" ? k
                   : in.name == "v" ? v
                                    : plan.inputs.at(in.name);
    views.emplace_back(a, dl);
  }
  std::vector<const DLTensor *> ptrs;
  // An empty packed k and v (no sequence has keys) own no storage; the
  // runtime wants a data pointer all the same.
  static int32_t emptyStorage;
  for (TensorView &view : views) {
    if (!view.t.data)
      view.t.data = &emptyStorage;
    ptrs.push_back(&view.t);
  }
  DLDataType i32{kDLInt, 32, 1}, f32{kDLFloat, 32, 1};
  TensorView cuQView(cuQArr, i32), cuKView(cuKArr, i32),
      tableView(tableArr, i32), lensView(lensArr, i32), oView(o, f32),
      lseView(lse, f32);
  attn_batch_layout_t layout{&cuQView.t, pageSize ? nullptr : &cuKView.t,
                             pageSize ? &tableView.t : nullptr,
                             pageSize ? &lensView.t : nullptr};
  attn_run_options_t runOpts{opts.threads};
  for (int r = 0; r < std::max(1, opts.repeat); ++r) {
    auto t0 = std::chrono::steady_clock::now();
    attn_status_t st =
        kernel->runBatch(ptrs.data(), layout, &oView.t,
                         softmax ? &lseView.t : nullptr, &runOpts);
    auto t1 = std::chrono::steady_clock::now();
    if (st != ATTN_OK)
      return std::string("attn_cpu_run_batch: ") + attn_status_string(st) +
             ": " + attn_last_error();
    times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(times.begin(), times.end());
  return "";
}

void BatchRun::printSummary(llvm::raw_ostream &os) {
  int64_t Hq = dims["Hq"], Hkv = dims["Hkv"];
  os << "spec: " << spec.getSymName() << " (" << opts.specPath << ")\n"
     << "batch: " << B << " sequences (queries:keys";
  for (int64_t b = 0; b < std::min<int64_t>(B, 8); ++b)
    os << " " << n[b] << ":" << m[b];
  if (B > 8)
    os << " ...";
  os << "), q packed [" << cuQ.back() << ", " << Hq << ", " << dims["Dqk"]
     << "] with cu_seqlens_q, k and v ";
  if (pageSize)
    os << "paged: " << pages << " pages of " << pageSize
       << " rows (shuffled), block_table [" << B << ", " << maxPages
       << "], kv_lens\n";
  else
    os << "packed [" << cuK.back() << ", " << Hkv << ", D] with cu_seqlens_k\n";
  // The schedule each sequence takes (attn_cpu_run's rule for its N).
  std::map<std::string, int64_t> schedules;
  if (const attn_kernel_desc_t *desc = cpuDescOf(*kernel)) {
    for (int64_t b = 0; b < B; ++b) {
      if (n[b] == 0)
        continue;
      bool decode =
          attn_cpu_decode_splits(desc, 1, Hq, Hkv, n[b],
                                 std::max<int64_t>(m[b], 1), opts.threads) > 0;
      ++schedules[decode ? "decode(lanes=" +
                               std::to_string(
                                   attn_cpu_decode_lanes(desc, Hq, Hkv, n[b])) +
                               ")"
                         : std::string("prefill")];
    }
  }
  os << "kernel: " << kernel->name() << " tile_q=" << kernel->tileQ()
     << " schedules:";
  for (auto &[name, count] : schedules)
    os << " " << name << " x" << count;
  os << " target=" << opts.target << " ("
     << (kernel->cacheHit() ? "cache hit" : "compiled") << " in "
     << llvm::format("%.1f", kernel->compileSeconds() * 1e3) << " ms)\n";
  double flops = 0;
  for (int64_t b = 0; b < B; ++b)
    flops += 2.0 * Hq * n[b] * m[b] * (dims["Dqk"] + dims["Dv"]);
  double median = times[times.size() / 2];
  os << "time: median " << llvm::format("%.3f", median) << " ms over "
     << times.size() << " runs, threads="
     << (opts.threads ? opts.threads : attn_cpu_num_threads()) << ", "
     << llvm::format("%.1f", flops / (median * 1e-3) / 1e9)
     << " GFLOP/s (dense-equivalent 4*n*m*D summed over the sequences)\n";
}

/// The reference of sequence b alone: every input cut to its batch entry
/// (dim B), its queries (dim N) and keys (dim M).
std::string BatchRun::referenceOf(int64_t b, ReferenceOutputs &ref) {
  std::map<std::string, HostArray> cut;
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const ::attn::InputSig &in : sig.inputs) {
    const HostArray &a = plan.inputs.at(in.name);
    size_t rank = a.shape.size();
    std::vector<int64_t> lo(rank, 0), hi = a.shape;
    for (size_t d = 0; d < rank && d < in.dims.size(); ++d) {
      const std::string &s = in.dims[d].symbol;
      if (s == "B")
        lo[d] = b, hi[d] = b + 1;
      else if (s == "N")
        hi[d] = n[b];
      else if (s == "M")
        hi[d] = m[b];
    }
    std::vector<int64_t> shape(rank);
    for (size_t d = 0; d < rank; ++d)
      shape[d] = hi[d] - lo[d];
    HostArray &c = cut[in.name];
    if (std::string err = HostArray::allocate(a.dtype, shape, c); !err.empty())
      return "input '" + in.name + "': " + err;
    // Row-major walk of the cut, element by element (the reference's
    // float64 work per element is larger).
    int64_t esize = ::attn::dtypeSize(a.dtype);
    std::vector<int64_t> idx(rank, 0);
    for (int64_t i = 0, e = c.numel(); i < e; ++i) {
      int64_t src = 0;
      for (size_t d = 0; d < rank; ++d)
        src = src * a.shape[d] + lo[d] + idx[d];
      std::memcpy(c.bytes.data() + i * esize, a.bytes.data() + src * esize,
                  esize);
      for (size_t d = rank; d-- > 0;) {
        if (++idx[d] < shape[d])
          break;
        idx[d] = 0;
      }
    }
    shapes[in.name] = shape;
  }
  uint64_t held = ::attn::saturatingAdd(
      ::attn::saturatingAdd(plan.bytes, plan.bytes),
      ::attn::arrayBytes({cuQ.back(), dims["Hq"], dims["Dv"] + 1}, 4));
  uint64_t budget = memoryBudget(opts.maxMemory);
  return evaluateReference(spec, cut, ref, budget > held ? budget - held : 1);
}

std::string BatchRun::checkAgainstReference(llvm::raw_ostream &os) {
  int64_t Hq = dims["Hq"], Dv = dims["Dv"], total = cuQ.back();
  Errors e;
  for (int64_t b = 0; b < B; ++b) {
    if (n[b] == 0)
      continue;
    ReferenceOutputs ref;
    if (m[b] > 0)
      if (std::string err = referenceOf(b, ref); !err.empty())
        return "reference of sequence " + std::to_string(b) + ": " + err;
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < n[b]; ++i) {
        int64_t row = cuQ[b] + i;
        for (int64_t d = 0; d < Dv; ++d)
          e.o(o.data<float>()[(row * Hq + h) * Dv + d],
              m[b] ? ref.o.data<double>()[(h * n[b] + i) * Dv + d] : 0.0);
        if (softmax)
          e.lse(lse.data<float>()[h * total + row],
                m[b] ? ref.lse.data<double>()[h * n[b] + i]
                     : -std::numeric_limits<double>::infinity());
      }
  }
  KernelInfo info;
  info.name = kernel->name();
  info.signature = kernel->signature();
  info.hasLse = kernel->hasLse();
  const Tolerance tol = target->tolerance(info);
  bool pass = e.rel() <= tol.o && e.bad == 0 && e.maxLse <= tol.lse;
  os << "check vs float64 reference, each sequence alone: max abs err "
     << llvm::format("%.3g", e.maxAbs) << ", max rel err (to max|o|) "
     << llvm::format("%.3g", e.rel());
  if (softmax)
    os << ", lse max err (rel to max(1,|lse|)) "
       << llvm::format("%.3g", e.maxLse);
  os << ", non-finite " << e.bad << " -> " << (pass ? "PASS" : "FAIL") << " ("
     << tol.note << ")\n";
  if (pass)
    return "";
  (void)writeOutputs(outputs, {{"o", &o}, {"lse", &lse}},
                     "float32, packed rows", os);
  return "compiled kernel disagrees with the reference";
}

std::string BatchRun::run(llvm::raw_ostream &os) {
  for (auto step : {&BatchRun::checkRequest, &BatchRun::parseSeqlens,
                    &BatchRun::planInputsAndMemory, &BatchRun::packBatch,
                    &BatchRun::compileAndRun})
    if (std::string err = (this->*step)(); !err.empty())
      return err;
  printSummary(os);
  if (opts.check)
    if (std::string err = checkAgainstReference(os); !err.empty())
      return err;
  return writeOutputs(outputs, {{"o", &o}, {"lse", &lse}},
                      "float32, packed rows", os);
}

std::string mlir::attn::runBatchSpec(SpecOp spec, const RunOptions &opts,
                                     llvm::raw_ostream &os) {
  return BatchRun(spec, opts).run(os);
}
