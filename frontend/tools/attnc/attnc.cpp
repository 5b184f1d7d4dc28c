//===- attnc.cpp - the attnc command line ---------------------------------===//
//
//   attnc SPEC.attn [--emit=STAGE] [--target=cpu[:NAME]] [--param N=V]...
//                   [-o FILE] [--header FILE.h]
//   attnc run SPEC.attn [--input NAME=FILE.npy]... [--shape B=1,N=...]
//                       [--param NAME=VALUE]... [--output o=FILE.npy]...
//                       [--seed S] [--reference] [--repeat R]
//                       [--max-memory SIZE]
//   attnc show-mask SPEC.attn [--shape ...] [--tile-q T] [--png FILE]
//                             [--max-memory SIZE]
//   attnc merge O1.npy LSE1.npy [O2.npy LSE2.npy]... -o O.npy
//               [--lse-out LSE.npy] [--threads T] [--max-memory SIZE]
//
// A thin main over the frontend driver: each stage can be printed so tests can
// FileCheck it.
//
//===----------------------------------------------------------------------===//

#include "attn/Dialect/Attn/Transforms/Passes.h"
#include "attn/Frontend/Driver.h"
#include "attn/Frontend/MLIRGen.h"
#include "attn/Frontend/RunCompiled.h"
#include "attn/Frontend/RunSpec.h"
#include "attn/Frontend/ShowMask.h"
#include "attn/JIT/Compiler.h"
#include "attn/Target/Backend.h"
#include "attn/npy.h"
#include "attn/runtime.h"
#include "attn/version.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Signals.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"
#include <algorithm>
#include <csignal>
#include <optional>

using namespace mlir;
using namespace mlir::attn;
namespace cl = llvm::cl;

static cl::OptionCategory attncCategory("attnc options");

static cl::SubCommand
    runCmd("run",
           "Run a spec on .npy (or random) inputs and report the result");
static cl::SubCommand
    showMaskCmd("show-mask", "Show the block classification of a spec's mask");
static cl::SubCommand mergeCmd(
    "merge",
    "Merge partial softmax attention results over parts of the keys (split-KV, "
    "cascade, context parallelism):\n  lse = log sum_p exp(lse_p),  "
    "o = sum_p exp(lse_p - lse) o_p\n  (a part with lse_p = -inf is empty, "
    "weight 0; a row with every part empty gives o = 0, lse = -inf).\n"
    "Each part is a pair of .npy files, o [..., Dv] and lse [...] (e.g. "
    "[B, Hq, N, Dv] and [B, Hq, N]; float32 or float64, as `attnc run "
    "--output` writes them); the merge is written as float32");

static cl::opt<std::string>
    inputFilename(cl::Positional, cl::desc("<spec.attn>"),
                  cl::sub(cl::SubCommand::getTopLevel()), cl::sub(runCmd),
                  cl::sub(showMaskCmd), cl::Required);

/// Stages every backend has (the IR of the pipeline's stops), one alias per
/// backend kernel stage (cpu, gpu), and formats a backend emits.
enum class EmitAction {
  Auto,
  AST,
  Attn,
  Tiled,
  Kernel,
  CPU,
  GPU,
  LLVM,
  LLVMIR,
  PTX,
  Cubin,
  Fatbin,
  ROCDL,
  AMDGCN,
  Hsaco,
  Hipfb,
  Obj
};
static cl::opt<EmitAction> emitAction(
    "emit",
    cl::desc("Stop after a stage and print it (default: obj when -o ends in "
             ".o, else attn):"),
    cl::init(EmitAction::Auto),
    cl::values(
        clEnumValN(EmitAction::AST, "ast", "the parsed syntax tree"),
        clEnumValN(EmitAction::Attn, "attn",
                   "the attn dialect (params bound, verified)"),
        clEnumValN(EmitAction::Tiled, "tiled",
                   "the tile-level IR: the schedule and the algorithm as "
                   "attn.tile ops"),
        clEnumValN(EmitAction::Kernel, "kernel",
                   "the kernels in upstream dialects (the target's cpu or "
                   "gpu stage)"),
        clEnumValN(EmitAction::CPU, "cpu",
                   "the CPU kernel in scf/vector/memref"),
        clEnumValN(EmitAction::GPU, "gpu",
                   "the GPU kernels in gpu/nvgpu/NVVM (--target=cuda) or "
                   "gpu/amdgpu/ROCDL (--target=rocm)"),
        clEnumValN(EmitAction::LLVM, "llvm",
                   "the LLVM dialect (GPUs: NVVM or ROCDL gpu.modules, first "
                   "chip)"),
        clEnumValN(EmitAction::PTX, "ptx",
                   "PTX for each chip (--target=cuda; --verbose adds the "
                   "ptxas report)"),
        clEnumValN(EmitAction::Cubin, "cubin",
                   "the cubin of the first chip (--target=cuda)"),
        clEnumValN(EmitAction::Fatbin, "fatbin",
                   "a fatbin: a cubin per chip plus PTX (--target=cuda)"),
        clEnumValN(EmitAction::ROCDL, "rocdl",
                   "the ROCDL gpu.modules of each chip (--target=rocm; "
                   "--verbose adds the kernels' registers, LDS and scratch)"),
        clEnumValN(EmitAction::AMDGCN, "amdgcn",
                   "AMDGCN assembly for each chip (--target=rocm)"),
        clEnumValN(EmitAction::Hsaco, "hsaco",
                   "the code object of the first chip (--target=rocm)"),
        clEnumValN(EmitAction::Hipfb, "hipfb",
                   "an offload bundle: a code object per chip "
                   "(--target=rocm)"),
        clEnumValN(EmitAction::LLVMIR, "llvm-ir", "optimized LLVM IR"),
        clEnumValN(EmitAction::Obj, "obj",
                   "an object file (with --header: its C header)")),
    cl::cat(attncCategory));

// Its description lists the registered backends (set in main).
static cl::opt<std::string> targetName("target", cl::init("cpu"),
                                       cl::sub(cl::SubCommand::getTopLevel()),
                                       cl::sub(runCmd), cl::cat(attncCategory));
static cl::opt<std::string>
    dtype("dtype",
          cl::desc("GPU targets: element type of q, k, v where the spec leaves "
                   "them undeclared: bf16 (default) or f16"),
          cl::init(""), cl::cat(attncCategory));
static cl::list<int64_t>
    headDims("head-dims",
             cl::desc("GPU targets: padded head dims to build kernel "
                      "variants for (default 64,128)"),
             cl::CommaSeparated, cl::cat(attncCategory));
static cl::opt<bool> verbose(
    "verbose",
    cl::desc("Print each kernel's resource use (CUDA: the ptxas report of "
             "registers and spills; ROCm: VGPRs, AGPRs, SGPRs, spills, LDS "
             "and scratch from the code objects' metadata)"),
    cl::init(false), cl::cat(attncCategory));
static cl::opt<std::string>
    headerFilename("header",
                   cl::desc("With an object: also write its C header here"),
                   cl::value_desc("file.h"), cl::cat(attncCategory));
static cl::opt<int64_t>
    tileQ("tile-q", cl::desc("Query tile rows (0: heuristic)"), cl::init(0),
          cl::sub(cl::SubCommand::getTopLevel()), cl::sub(runCmd),
          cl::sub(showMaskCmd), cl::cat(attncCategory));
static cl::opt<int64_t> linearChunk(
    "linear-chunk",
    cl::desc("Linear attention: time steps per chunk of the chunked form "
             "(default 64); 0 selects the step-by-step recurrence"),
    cl::init(64), cl::sub(cl::SubCommand::getTopLevel()), cl::sub(runCmd),
    cl::cat(attncCategory));
static cl::opt<bool> linearState(
    "linear-state",
    cl::desc("Linear attention: add inputs `state` [B, Hq, Dphi, Dv] (and "
             "`zstate` [B, Hq, Dphi] when normalized) that the kernel starts "
             "from and writes back (decoding a step at a time)"),
    cl::init(false), cl::cat(attncCategory));
static cl::opt<bool> pagedKV(
    "paged-kv",
    cl::desc("Softmax family: also compile the kernels for ragged and paged "
             "batches. CPU: attn_<name>_paged (and _paged_decode), which "
             "read K and V from a paged cache: page pools [pages, page_size, "
             "Hkv, D] with a block table and per-sequence lengths, run by "
             "attn_cpu_run_batch. CUDA: attn_<name>_batch_d<D>, which "
             "attn_cuda_run_batch runs for sequences of more than 16 "
             "queries (docs/language.md, \"Ragged batches and paged KV "
             "caches\")"),
    cl::init(false), cl::cat(attncCategory));
static cl::opt<bool> noDecodeKernels(
    "no-decode-kernels",
    cl::desc("Softmax specs: leave out the decode schedule's kernels (CPU: "
             "attn_<name>_decode*; CUDA: the split-KV decode and merge "
             "kernels), which cost compile time; every N then runs the "
             "prefill kernels (a CUDA batch needs --paged-kv's)"),
    cl::init(false), cl::cat(attncCategory));
static cl::opt<bool> backward(
    "backward",
    cl::desc("The gradients (dq, dk, dv and the aux gradients; "
             "docs/language.md section 15): compile the backward kernel "
             "instead of the forward (--emit=tiled shows its tile program; "
             "-o/--header declare attn_backward_<name>, or "
             "attn_cuda_backward_<name> / attn_rocm_backward_<name> on "
             "GPUs); with `run` (CPU), run forward and backward, check "
             "every gradient against the reference and write them with "
             "--output dq=... (--input do=FILE.npy, else a random do)"),
    cl::init(false), cl::sub(cl::SubCommand::getTopLevel()), cl::sub(runCmd),
    cl::cat(attncCategory));
static cl::opt<int64_t>
    tileKV("tile-kv", cl::desc("Key/value tile rows (0: heuristic)"),
           cl::init(0), cl::sub(cl::SubCommand::getTopLevel()), cl::sub(runCmd),
           cl::sub(showMaskCmd), cl::cat(attncCategory));

static cl::opt<std::string> outputFilename("o", cl::desc("Output file"),
                                           cl::value_desc("file"),
                                           cl::init("-"),
                                           cl::cat(attncCategory));

static cl::list<std::string>
    params("param",
           cl::desc("Override a param default: --param NAME=VALUE "
                    "(repeatable)"),
           cl::value_desc("NAME=VALUE"), cl::sub(cl::SubCommand::getTopLevel()),
           cl::sub(runCmd), cl::sub(showMaskCmd), cl::cat(attncCategory));

static cl::opt<bool> verifyDiagnostics(
    "verify-diagnostics",
    cl::desc("Check that emitted diagnostics match expected-* lines in the "
             "spec (for tests)"),
    cl::init(false), cl::cat(attncCategory));

// `attnc run` options.
static cl::list<std::string>
    runInputs("input", cl::desc("An input tensor: --input NAME=FILE.npy"),
              cl::value_desc("NAME=FILE.npy"), cl::sub(runCmd),
              cl::sub(showMaskCmd));
static cl::list<std::string>
    runOutputs("output",
               cl::desc("Write an output: --output o=FILE.npy, --output "
                        "lse=FILE.npy (float64 from the reference)"),
               cl::value_desc("NAME=FILE.npy"), cl::sub(runCmd));
static cl::opt<std::string>
    runShape("shape",
             cl::desc("Sizes for inputs not given as files, e.g. "
                      "B=1,Hq=8,Hkv=2,N=1000,M=1000,Dqk=64,Dv=64 (defaults: "
                      "B=1 Hq=4 Hkv=Hq N=128 M=N Dqk=64 Dv=Dqk)"),
             cl::value_desc("DIM=SIZE,..."), cl::sub(runCmd),
             cl::sub(showMaskCmd));
static cl::opt<uint64_t> runSeed("seed",
                                 cl::desc("Seed for random inputs (default 0)"),
                                 cl::init(0), cl::sub(runCmd),
                                 cl::sub(showMaskCmd));
static cl::opt<bool> runReference(
    "reference",
    cl::desc("Compute with the float64 reference evaluator only (default: the "
             "compiled kernel, checked against the reference)"),
    cl::init(false), cl::sub(runCmd));
static cl::opt<int> runRepeat("repeat",
                              cl::desc("Timed runs of the compiled kernel; the "
                                       "median is reported (default 5)"),
                              cl::init(5), cl::sub(runCmd));
static cl::opt<int> runThreads("threads",
                               cl::desc("Threads (default 0: all cores, or "
                                        "$ATTN_NUM_THREADS)"),
                               cl::init(0), cl::sub(runCmd), cl::sub(mergeCmd));
static cl::opt<std::string> runMaxMemory(
    "max-memory",
    cl::desc("What inputs, outputs and the reference may allocate, e.g. 8G, "
             "512M (K, M, G, T: powers of 1024; default: half the physical "
             "memory, less under a cgroup limit or ulimit -v); larger shapes "
             "are an error before anything is allocated"),
    cl::value_desc("SIZE"), cl::sub(runCmd), cl::sub(showMaskCmd),
    cl::sub(mergeCmd));
static cl::opt<std::string> runSeqlens(
    "seqlens",
    cl::desc("Run a batch of sequences of different lengths through "
             "attn_cpu_run_batch: QUERIES:KEYS per sequence, e.g. "
             "--seqlens 1:4096,16:300,70:70 (q packed with cu_seqlens_q, k "
             "and v packed with cu_seqlens_k, or paged with --page-size); "
             "inputs are the padded batch [B, H, longest run, D], so --shape "
             "sets only Hq, Hkv, Dqk, Dv; each sequence is checked against "
             "the reference alone; o is written packed [total_q, Hq, Dv], "
             "lse [Hq, total_q]"),
    cl::value_desc("N:M,..."), cl::sub(runCmd));
static cl::opt<int64_t> runPageSize(
    "page-size",
    cl::desc("With --seqlens: k and v in a paged KV cache of pages of this "
             "many rows (NHD pools, pages shuffled, a block table with -1 "
             "padding, kv_lens; the kernel is compiled with --paged-kv)"),
    cl::init(0), cl::sub(runCmd));
static cl::opt<bool>
    runNoCheck("no-check",
               cl::desc("Skip the comparison with the reference (for large "
                        "shapes, where the reference is slow)"),
               cl::init(false), cl::sub(runCmd));

// `attnc show-mask` options.
static cl::opt<int64_t> maskB("b", cl::desc("Batch index to show"), cl::init(0),
                              cl::sub(showMaskCmd));
static cl::opt<int64_t> maskH("h", cl::desc("Query head to show"), cl::init(0),
                              cl::sub(showMaskCmd));
static cl::opt<std::string> maskPng("png",
                                    cl::desc("Also write a PNG picture here"),
                                    cl::value_desc("file.png"),
                                    cl::sub(showMaskCmd));

// `attnc merge` options.
static cl::list<std::string>
    mergeFiles(cl::Positional,
               cl::desc("<O1.npy LSE1.npy [O2.npy LSE2.npy]...>"),
               cl::sub(mergeCmd));
static cl::opt<std::string>
    mergeOut("o", cl::desc("Write the merged o here (float32 [..., Dv])"),
             cl::value_desc("FILE.npy"), cl::sub(mergeCmd));
static cl::opt<std::string>
    mergeLseOut("lse-out",
                cl::desc("Also write the merged lse here (float32 [...])"),
                cl::value_desc("FILE.npy"), cl::sub(mergeCmd));

static int fail(const llvm::Twine &msg) {
  llvm::WithColor::error(llvm::errs(), "attnc") << msg << "\n";
  return 1;
}

/// The format --emit names past the IR stages ("" for an IR stage).
static llvm::StringRef emitFormat(EmitAction action) {
  switch (action) {
  case EmitAction::LLVMIR:
    return "llvm-ir";
  case EmitAction::PTX:
    return "ptx";
  case EmitAction::Cubin:
    return "cubin";
  case EmitAction::Fatbin:
    return "fatbin";
  case EmitAction::ROCDL:
    return "rocdl";
  case EmitAction::AMDGCN:
    return "amdgcn";
  case EmitAction::Hsaco:
    return "hsaco";
  case EmitAction::Hipfb:
    return "hipfb";
  default:
    return "";
  }
}

/// The pipeline stop of an IR stage.
static Stage emitStage(EmitAction action) {
  switch (action) {
  case EmitAction::Attn:
    return Stage::Attn;
  case EmitAction::Tiled:
    return Stage::Tiled;
  case EmitAction::Kernel:
  case EmitAction::CPU:
  case EmitAction::GPU:
    return Stage::Kernel;
  default:
    return Stage::LLVM;
  }
}

/// "" when `target` has the stage or format `action` names, else why not.
static std::string checkEmit(const BackendTarget &target, EmitAction action) {
  const Backend &backend = target.backend();
  if (action == EmitAction::CPU || action == EmitAction::GPU) {
    llvm::StringRef alias = action == EmitAction::CPU ? "cpu" : "gpu";
    if (alias != backend.kernelStageName())
      return ("--emit=" + alias + " is not a stage of --target=" + targetName +
              ": its kernels are --emit=" + backend.kernelStageName() +
              " (or --emit=kernel)")
          .str();
  }
  llvm::StringRef format = emitFormat(action);
  if (format.empty() || llvm::is_contained(target.emitFormats(), format))
    return "";
  std::string formats;
  for (llvm::StringRef f : target.emitFormats())
    formats += (formats.empty() ? "" : ", ") + f.str();
  return ("--emit=" + format + " is not a format of the " + backend.name() +
          " backend (it emits " + formats + "; and the stages attn, tiled, " +
          backend.kernelStageName() + ", llvm and obj)")
      .str();
}

/// The schedule the command line sets.
static Schedule commandLineSchedule() {
  Schedule schedule;
  schedule.tileQ = tileQ;
  schedule.tileKV = tileKV;
  schedule.linearChunk = linearChunk;
  schedule.linearState = linearState;
  schedule.pagedKV = pagedKV;
  schedule.decodeKernels = !noDecodeKernels;
  schedule.backward = backward;
  schedule.elementType = dtype;
  schedule.headDims.assign(headDims.begin(), headDims.end());
  return schedule;
}

/// Writes `bytes` to -o (and keeps it).
static int writeOutput(llvm::StringRef bytes) {
  std::string err;
  auto output = mlir::openOutputFile(outputFilename, &err);
  if (!output)
    return fail(err);
  output->os() << bytes;
  output->keep();
  return 0;
}

/// The object and its header (AOT).
static int writeObject(ModuleOp module, const BackendTarget &target,
                       const Schedule &schedule) {
  if (outputFilename == "-" && !headerFilename.empty())
    return fail("give the object a file name with -o");
  std::string err, headerText, report;
  KernelInfo info;
  llvm::SmallVector<char> object;
  if (failed(target.emitObject(module, schedule, info, object, headerText,
                               report, err)))
    return err.empty() ? 1 : fail(err);
  if (verbose)
    llvm::errs() << report;
  auto output = mlir::openOutputFile(outputFilename, &err);
  if (!output)
    return fail(err);
  output->os().write(object.data(), object.size());
  if (!headerFilename.empty()) {
    auto header = mlir::openOutputFile(headerFilename, &err);
    if (!header)
      return fail(err);
    header->os() << headerText;
    header->keep();
  }
  output->keep();
  return 0;
}

/// The compile path: print a stage, emit a format, or write an object.
static int compileForTarget(ModuleOp module, EmitAction action) {
  std::string err;
  std::unique_ptr<BackendTarget> target = parseTarget(targetName, err);
  if (!target)
    return fail(err);
  const Schedule schedule = commandLineSchedule();
  if (std::string e = target->checkSchedule(schedule); !e.empty())
    return fail(e);
  if (std::string e = checkEmit(*target, action); !e.empty())
    return fail(e);
  if (action == EmitAction::Obj)
    return writeObject(module, *target, schedule);
  if (llvm::StringRef format = emitFormat(action); !format.empty()) {
    std::string out, report;
    if (failed(target->emit(module, schedule, format, out, report, err)))
      return err.empty() ? 1 : fail(err);
    if (verbose)
      llvm::errs() << report;
    return writeOutput(out);
  }
  KernelInfo info;
  if (failed(target->lower(module, schedule, emitStage(action), info, err)))
    return err.empty() ? 1 : fail(err);
  std::string text;
  llvm::raw_string_ostream os(text);
  module.print(os);
  return writeOutput(text);
}

/// The text `attnc --help` starts with.
static std::string usageOverview() {
  std::string overview =
      "attnc: a compiler for attention variants\n\n"
      "  attnc SPEC.attn [--emit=ast|attn] [--param NAME=VALUE]... [-o FILE]\n"
      "      parse and verify a spec, print a stage\n"
      "  attnc run SPEC.attn [--input NAME=FILE.npy]... [--shape DIM=N,...]\n"
      "      [--param NAME=VALUE]... [--output o=FILE.npy] [--output "
      "lse=FILE.npy] [--seed S] [--reference]\n"
      "      run a spec on .npy inputs (random ones where not given)\n"
      "      (`attnc run --help` lists its options)\n"
      "  attnc run SPEC.attn --seqlens 1:4096,16:300,... [--page-size 16]\n"
      "      a batch of sequences of different lengths (ragged, or paged "
      "keys),\n"
      "      each sequence checked against the reference\n"
      "  attnc SPEC.attn --target=cpu -o k.o --header k.h\n"
      "      compile ahead of time: an object and a C header with one entry\n"
      "  attnc SPEC.attn --target=cuda:sm_80,sm_90 -o k.o --header k.h "
      "[--verbose]\n"
      "      the same for NVIDIA GPUs: the object embeds a fatbin; "
      "--emit=ptx prints PTX\n"
      "  attnc SPEC.attn --target=rocm:gfx90a,gfx942 -o k.o --header k.h "
      "[--verbose]\n"
      "      the same for AMD GPUs (linear family so far): the object embeds "
      "an\n"
      "      offload bundle; --emit=amdgcn prints the assembly\n"
      "  attnc show-mask SPEC.attn [--shape ...] [--tile-q T --tile-kv T] "
      "[--png FILE]\n"
      "      picture the mask's tiles: empty (skipped), full, partial\n"
      "  attnc merge O1.npy LSE1.npy [O2.npy LSE2.npy]... -o O.npy "
      "[--lse-out LSE.npy]\n"
      "      merge attention over parts of the keys from each part's o and "
      "lse\n"
      "      (`attnc merge --help` gives the formula)\n\n"
      "Library mask patterns:";
  for (const std::string &p : libraryPatternSignatures())
    overview += "\n  " + p;
  overview += "\n\nThe language is documented in docs/language.md.\n";
  return overview;
}

/// `attnc run`: the compiled kernel checked against the reference, or the
/// reference alone.
static int runCommand(ModuleOp module,
                      const std::vector<std::string> &paramList,
                      uint64_t maxMemory) {
  RunOptions opts;
  opts.inputs.assign(runInputs.begin(), runInputs.end());
  opts.outputs.assign(runOutputs.begin(), runOutputs.end());
  opts.shape = runShape;
  opts.seed = runSeed;
  opts.reference = runReference;
  opts.backward = backward;
  opts.specPath = inputFilename;
  opts.params = paramList;
  opts.target = targetName;
  opts.tileQ = tileQ;
  opts.tileKV = tileKV;
  opts.linearChunk = linearChunk;
  opts.decodeKernels = !noDecodeKernels;
  opts.repeat = runRepeat;
  opts.threads = runThreads;
  opts.check = !runNoCheck;
  opts.maxMemory = maxMemory;
  opts.seqlens = runSeqlens;
  opts.pageSize = runPageSize;
  bool batch = runSeqlens.getNumOccurrences() > 0;
  if (runPageSize.getNumOccurrences() && !batch)
    return fail("--page-size needs --seqlens (the batch whose keys it pages)");
  if (runPageSize.getNumOccurrences() && runPageSize <= 0)
    return fail("--page-size must be positive (" + std::to_string(runPageSize) +
                " given)");
  if (batch && (backward || runReference))
    return fail(
        std::string("--seqlens runs the compiled forward kernel, not ") +
        (backward ? "--backward" : "--reference"));
  std::string err =
      batch          ? runBatchSpec(getSpec(module), opts, llvm::outs())
      : backward     ? runBackwardSpec(getSpec(module), opts, llvm::outs())
      : runReference ? runSpec(getSpec(module), opts, llvm::outs())
                     : runCompiledSpec(getSpec(module), opts, llvm::outs());
  return err.empty() ? 0 : fail(err);
}

/// `attnc show-mask`: the mask's tiles, as the kernels classify them.
static int showMaskCommand(ModuleOp module, uint64_t maxMemory) {
  ShowMaskOptions opts;
  opts.inputs.assign(runInputs.begin(), runInputs.end());
  opts.shape = runShape;
  opts.seed = runSeed;
  opts.b = maskB;
  opts.h = maskH;
  if (tileQ > 0)
    opts.tileQ = tileQ;
  if (tileKV > 0)
    opts.tileKv = tileKV;
  opts.png = maskPng;
  opts.maxMemory = maxMemory;
  opts.specPath = inputFilename;
  std::string err = showMask(getSpec(module), opts, llvm::outs());
  return err.empty() ? 0 : fail(err);
}

/// The most dims a part's o may have: the stack adds P, and
/// attn_merge_states takes o_parts of at most 16.
constexpr size_t kMaxMergeRank = 15;

/// Reads one file of `attnc merge` (float32 or float64): at most `left`
/// bytes, what --max-memory (`budget`) leaves.
static std::string readPart(const std::string &path, ::attn::HostArray &a,
                            uint64_t left, uint64_t budget, const char *what) {
  std::string budgetText =
      left >= budget ? "--max-memory=" + ::attn::formatBytes(budget)
                     : "the " + ::attn::formatBytes(left) +
                           " that --max-memory=" + ::attn::formatBytes(budget) +
                           " leaves after the merge's other arrays";
  if (std::string err =
          ::attn::readNpy(path, a, std::max<uint64_t>(left, 1), budgetText);
      !err.empty())
    return err;
  if (a.dtype != ::attn::DType::F32 && a.dtype != ::attn::DType::F64)
    return path + ": dtype is " + ::attn::dtypeName(a.dtype) +
           ", expected float32 or float64 (" + what + ")";
  return "";
}

/// Copies `part` (float32 or float64, C order) into slice `p` of `stack`
/// (float32 [P, <part's shape>]).
static void stackPart(const ::attn::HostArray &part, int64_t p,
                      ::attn::HostArray &stack) {
  int64_t n = part.numel();
  float *dst = stack.data<float>() + p * n;
  if (part.dtype == ::attn::DType::F32)
    std::copy_n(part.data<float>(), n, dst);
  else
    for (int64_t i = 0; i < n; ++i)
      dst[i] = static_cast<float>(part.data<double>()[i]);
}

/// A compact float32 host array as a DLTensor (its shape stays in the array).
static DLTensor hostTensor(::attn::HostArray &a) {
  DLTensor t{};
  t.data = a.bytes.data();
  t.device = {kDLCPU, 0};
  t.ndim = static_cast<int32_t>(a.shape.size());
  t.dtype = DLDataType{kDLFloat, 32, 1};
  t.shape = a.shape.data();
  return t;
}

/// `attnc merge`: stacks the parts' o and lse and merges them through the
/// runtime (attn::mergeStates), writing the outputs the way `attnc run`
/// does: checked before anything is read, published together or not at all.
static int mergeCommand() {
  using ::attn::DType;
  using ::attn::HostArray;
  size_t numFiles = mergeFiles.size();
  if (numFiles == 0 || numFiles % 2 != 0)
    return fail("merge: expected pairs O.npy LSE.npy, one per part (got " +
                std::to_string(numFiles) + " file" +
                (numFiles == 1 ? "" : "s") + ")");
  if (mergeOut.empty())
    return fail("merge: give the merged o a file name with -o FILE.npy");
  if (runThreads < 0)
    return fail("--threads must be >= 0 (0: all cores)");
  uint64_t maxMemory = 0;
  if (runMaxMemory.getNumOccurrences())
    if (std::string err = parseMaxMemory(runMaxMemory, maxMemory); !err.empty())
      return fail(err);
  uint64_t budget = memoryBudget(maxMemory);

  RunOutputs outputs;
  std::vector<std::pair<std::string, std::string>> dests = {{"o", mergeOut}};
  if (!mergeLseOut.empty())
    dests.push_back({"lse", mergeLseOut});
  for (auto &[name, path] : dests) {
    if (std::string err = outputs.files.add(path); !err.empty())
      return fail((name == "o" ? "-o: " : "--lse-out: ") + err);
    outputs.temporaries.push_back(
        outputs.files.temporaryPath(outputs.files.size() - 1));
    llvm::sys::RemoveFileOnSignal(outputs.temporaries.back());
    outputs.names.push_back(name);
    outputs.paths.push_back(path);
  }

  // The first part fixes the shapes; the stacks and the outputs are checked
  // against the budget before they are allocated.
  int64_t numParts = static_cast<int64_t>(numFiles / 2);
  HostArray o0, lse0;
  if (std::string err = readPart(mergeFiles[0], o0, budget, budget, "o");
      !err.empty())
    return fail(err);
  if (o0.shape.empty() || o0.shape.size() > kMaxMergeRank)
    return fail(mergeFiles[0] + ": shape " + o0.shapeString() +
                ", expected o [..., Dv] of rank 1 to " +
                std::to_string(kMaxMergeRank));
  std::vector<int64_t> lseShape(o0.shape.begin(), o0.shape.end() - 1);
  uint64_t held = o0.bytes.size();
  if (std::string err =
          readPart(mergeFiles[1], lse0, budget > held ? budget - held : 0,
                   budget, "lse");
      !err.empty())
    return fail(err);
  if (lse0.shape != lseShape)
    return fail(mergeFiles[1] + ": shape " + lse0.shapeString() +
                " does not match its o part " + mergeFiles[0] + " " +
                o0.shapeString() + " (expected o's shape without Dv)");
  std::vector<int64_t> oStackShape = o0.shape, lseStackShape = lseShape;
  oStackShape.insert(oStackShape.begin(), numParts);
  lseStackShape.insert(lseStackShape.begin(), numParts);
  MemoryNeed need;
  need.inputs = ::attn::saturatingAdd(::attn::arrayBytes(oStackShape, 4),
                                      ::attn::arrayBytes(lseStackShape, 4));
  need.outputs = ::attn::arrayBytes(o0.shape, 4);
  if (!mergeLseOut.empty())
    need.outputs =
        ::attn::saturatingAdd(need.outputs, ::attn::arrayBytes(lseShape, 4));
  need.other = ::attn::saturatingAdd(o0.bytes.size(), lse0.bytes.size());
  need.otherName = "the first part as read";
  if (std::string err = checkMemory(need, maxMemory); !err.empty())
    return fail("merge: " + err);
  HostArray oStack, lseStack, o, lse;
  for (auto [array, shape] :
       {std::pair{&oStack, &oStackShape}, std::pair{&lseStack, &lseStackShape},
        std::pair{&o, &o0.shape}, std::pair{&lse, &lseShape}}) {
    if (array == &lse && mergeLseOut.empty())
      continue;
    if (std::string err = HostArray::allocate(DType::F32, *shape, *array);
        !err.empty())
      return fail("merge: " + err);
  }

  // Each later part is read, checked, stacked and dropped in turn.
  uint64_t fixed = ::attn::saturatingAdd(need.inputs, need.outputs);
  uint64_t left = budget > fixed ? budget - fixed : 0;
  for (int64_t p = 0; p < numParts; ++p) {
    const std::string &oPath = mergeFiles[2 * p];
    const std::string &lsePath = mergeFiles[2 * p + 1];
    HostArray oPart, lsePart;
    if (p > 0) {
      if (std::string err = readPart(oPath, oPart, left, budget, "o");
          !err.empty())
        return fail(err);
      if (oPart.shape != o0.shape)
        return fail(oPath + ": shape " + oPart.shapeString() +
                    " differs from the first part's " + mergeFiles[0] + " " +
                    o0.shapeString() + "; all parts must have one shape");
      held = oPart.bytes.size();
      if (std::string err = readPart(
              lsePath, lsePart, left > held ? left - held : 0, budget, "lse");
          !err.empty())
        return fail(err);
      if (lsePart.shape != lseShape)
        return fail(lsePath + ": shape " + lsePart.shapeString() +
                    " does not match its o part " + oPath + " " +
                    oPart.shapeString() + " (expected o's shape without Dv)");
    }
    stackPart(p ? oPart : o0, p, oStack);
    stackPart(p ? lsePart : lse0, p, lseStack);
    if (p == 0) { // the stacks hold it now
      std::vector<uint8_t>().swap(o0.bytes);
      std::vector<uint8_t>().swap(lse0.bytes);
    }
  }

  DLTensor oParts = hostTensor(oStack), lseParts = hostTensor(lseStack),
           oOut = hostTensor(o), lseOut = hostTensor(lse);
  attn_run_options_t options{runThreads};
  if (attn_status_t st = ::attn::mergeStates(
          &oParts, &lseParts, &oOut, mergeLseOut.empty() ? nullptr : &lseOut,
          &options))
    return fail(std::string("merge: ") + attn_last_error() + " (" +
                attn_status_string(st) + ")");
  llvm::outs() << "merged " << numParts << " part" << (numParts == 1 ? "" : "s")
               << ": o " << o.shapeString() << "\n";
  std::string err =
      writeOutputs(outputs, {{"o", &o}, {"lse", &lse}}, nullptr, llvm::outs());
  return err.empty() ? 0 : fail(err);
}

int main(int argc, char **argv) {
  llvm::InitLLVM y(argc, argv);
  // Past a file size limit (ulimit -f), a write fails with EFBIG instead of
  // killing the process, so that output files are cleaned up and reported.
  std::signal(SIGXFSZ, SIG_IGN);
  mlir::registerAsmPrinterCLOptions();
  mlir::registerMLIRContextCLOptions();

  std::string overview = usageOverview();
  // cl::opt keeps a StringRef: the text must outlive parsing.
  static const std::string targetDesc =
      "Where the kernel runs: " + targetHelp();
  targetName.setDescription(targetDesc);
  cl::HideUnrelatedOptions({&attncCategory});
  // attnc's own version, not only LLVM's: the project version, the commit
  // it was configured from, the kernel ABI its objects carry and the
  // LLVM/MLIR it was built with.
  cl::SetVersionPrinter([](llvm::raw_ostream &os) {
    os << "attnc " ATTN_VERSION_STRING " (commit " ATTN_GIT_COMMIT ")\n"
       << "  kernel ABI version " << ATTN_ABI_VERSION << "\n"
       << "  built with LLVM/MLIR " LLVM_VERSION_STRING "\n";
  });
  cl::ParseCommandLineOptions(argc, argv, overview);
  if (mergeCmd)
    return mergeCommand();

  MLIRContext context;
  // Spec errors point at the spec; a dump of the failing op is noise there.
  context.printOpOnDiagnostic(false);
  loadAttnDialects(context);

  std::string errorMessage;
  std::unique_ptr<llvm::MemoryBuffer> file =
      mlir::openInputFile(inputFilename, &errorMessage);
  if (!file)
    return fail(errorMessage);
  llvm::SourceMgr sourceMgr;
  unsigned bufferID =
      sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());

  // One of two handlers, each held as its own type: SourceMgrDiagnosticHandler
  // has no virtual destructor, so neither may be deleted through it.
  std::optional<SourceMgrDiagnosticVerifierHandler> verifierStorage;
  std::optional<SpecDiagnosticHandler> specHandler;
  SourceMgrDiagnosticVerifierHandler *verifier = nullptr;
  if (verifyDiagnostics) {
    verifierStorage.emplace(sourceMgr, &context);
    verifier = &*verifierStorage;
  } else {
    // Located errors with long names and lines cut, CR-only files right.
    specHandler.emplace(sourceMgr, &context);
  }

  if (!runCmd && !showMaskCmd && emitAction == EmitAction::AST) {
    std::unique_ptr<ast::Spec> spec =
        parseSpecBuffer(context, sourceMgr, bufferID);
    if (verifier)
      return failed(verifier->verify()) ? 1 : 0;
    if (!spec)
      return 1;
    auto output = mlir::openOutputFile(outputFilename, &errorMessage);
    if (!output)
      return fail(errorMessage);
    ast::dump(*spec, sourceMgr, output->os());
    output->keep();
    return 0;
  }

  std::string paramError;
  std::vector<std::string> paramList(params.begin(), params.end());
  if (tileQ < 0 || tileKV < 0)
    return fail("--tile-q and --tile-kv must be positive (0: heuristic)");
  if (tileQ > kMaxTileRows || tileKV > kMaxTileRows)
    return fail("--tile-q and --tile-kv must be at most " +
                std::to_string(kMaxTileRows) + " rows (got " +
                std::to_string(tileQ) + " and " + std::to_string(tileKV) + ")");
  if (linearChunk < 0 || linearChunk > kMaxTileRows)
    return fail("--linear-chunk must be in 0.." + std::to_string(kMaxTileRows) +
                " (0: the recurrent form)");
  OwningOpRef<ModuleOp> module =
      loadSpec(context, sourceMgr, bufferID, paramList, paramError);
  if (verifier)
    return failed(verifier->verify()) ? 1 : 0;
  if (!module)
    return paramError.empty() ? 1 : fail(paramError);

  uint64_t maxMemory = 0; // the default budget
  if ((runCmd || showMaskCmd) && runMaxMemory.getNumOccurrences())
    if (std::string err = parseMaxMemory(runMaxMemory, maxMemory); !err.empty())
      return fail(err);

  if (runCmd)
    return runCommand(*module, paramList, maxMemory);
  if (showMaskCmd)
    return showMaskCommand(*module, maxMemory);

  EmitAction action = emitAction;
  if (action == EmitAction::Auto)
    action = llvm::StringRef(outputFilename).ends_with(".o") ? EmitAction::Obj
                                                             : EmitAction::Attn;
  if (!headerFilename.empty() && action != EmitAction::Obj)
    return fail("--header needs an object output (--emit=obj or -o FILE.o)");
  return compileForTarget(*module, action);
}
