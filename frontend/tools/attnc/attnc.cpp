//===- attnc.cpp - the attnc command line ---------------------------------===//
//
//   attnc SPEC.attn [--emit=ast|attn] [--param NAME=VALUE]... [-o FILE]
//   attnc run SPEC.attn [--input NAME=FILE.npy]... [--shape B=1,N=...]
//                       [--param NAME=VALUE]... [--output o=FILE.npy]...
//                       [--seed S] [--reference]
//
// A thin main over the frontend driver: each stage can be printed so tests can
// FileCheck it.
//
//===----------------------------------------------------------------------===//

#include "attn/Frontend/Driver.h"
#include "attn/Frontend/MLIRGen.h"
#include "attn/Frontend/RunSpec.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"

using namespace mlir;
using namespace mlir::attn;
namespace cl = llvm::cl;

static cl::OptionCategory attncCategory("attnc options");

static cl::SubCommand runCmd(
    "run", "Run a spec on .npy (or random) inputs and report the result");

static cl::opt<std::string> inputFilename(cl::Positional,
                                          cl::desc("<spec.attn>"),
                                          cl::sub(cl::SubCommand::getTopLevel()),
                                          cl::sub(runCmd), cl::Required);

enum class EmitAction { AST, Attn };
static cl::opt<EmitAction> emitAction(
    "emit", cl::desc("Stop after a stage and print it:"),
    cl::init(EmitAction::Attn),
    cl::values(clEnumValN(EmitAction::AST, "ast", "the parsed syntax tree"),
               clEnumValN(EmitAction::Attn, "attn",
                          "the attn dialect (params bound, verified)")),
    cl::cat(attncCategory));

static cl::opt<std::string> outputFilename("o", cl::desc("Output file"),
                                           cl::value_desc("file"),
                                           cl::init("-"),
                                           cl::cat(attncCategory));

static cl::list<std::string>
    params("param",
           cl::desc("Override a param default: --param NAME=VALUE "
                    "(repeatable)"),
           cl::value_desc("NAME=VALUE"), cl::sub(cl::SubCommand::getTopLevel()),
           cl::sub(runCmd), cl::cat(attncCategory));

static cl::opt<bool> verifyDiagnostics(
    "verify-diagnostics",
    cl::desc("Check that emitted diagnostics match expected-* lines in the "
             "spec (for tests)"),
    cl::init(false), cl::cat(attncCategory));

// `attnc run` options.
static cl::list<std::string>
    runInputs("input", cl::desc("An input tensor: --input NAME=FILE.npy"),
              cl::value_desc("NAME=FILE.npy"), cl::sub(runCmd));
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
             cl::value_desc("DIM=SIZE,..."), cl::sub(runCmd));
static cl::opt<uint64_t> runSeed("seed",
                                 cl::desc("Seed for random inputs (default 0)"),
                                 cl::init(0), cl::sub(runCmd));
static cl::opt<bool>
    runReference("reference",
                 cl::desc("Compute with the float64 reference evaluator"),
                 cl::init(false), cl::sub(runCmd));

static int fail(const llvm::Twine &msg) {
  llvm::WithColor::error(llvm::errs(), "attnc") << msg << "\n";
  return 1;
}

int main(int argc, char **argv) {
  llvm::InitLLVM y(argc, argv);
  mlir::registerAsmPrinterCLOptions();
  mlir::registerMLIRContextCLOptions();

  std::string overview =
      "attnc: a compiler for attention variants\n\n"
      "  attnc SPEC.attn [--emit=ast|attn] [--param NAME=VALUE]... [-o FILE]\n"
      "      parse and verify a spec, print a stage\n"
      "  attnc run SPEC.attn [--input NAME=FILE.npy]... [--shape DIM=N,...]\n"
      "      [--param NAME=VALUE]... [--output o=FILE.npy] [--output "
      "lse=FILE.npy] [--seed S] [--reference]\n"
      "      run a spec on .npy inputs (random ones where not given)\n"
      "      (`attnc run --help` lists its options)\n\n"
      "Library mask patterns:";
  for (const std::string &p : libraryPatternSignatures())
    overview += "\n  " + p;
  overview += "\n\nThe language is documented in docs/language.md.\n";
  cl::HideUnrelatedOptions({&attncCategory});
  cl::ParseCommandLineOptions(argc, argv, overview);

  MLIRContext context;
  loadAttnDialects(context);

  std::string errorMessage;
  std::unique_ptr<llvm::MemoryBuffer> file =
      mlir::openInputFile(inputFilename, &errorMessage);
  if (!file)
    return fail(errorMessage);
  llvm::SourceMgr sourceMgr;
  unsigned bufferID = sourceMgr.AddNewSourceBuffer(std::move(file),
                                                   llvm::SMLoc());

  std::unique_ptr<SourceMgrDiagnosticHandler> handler;
  SourceMgrDiagnosticVerifierHandler *verifier = nullptr;
  if (verifyDiagnostics) {
    auto v = std::make_unique<SourceMgrDiagnosticVerifierHandler>(
        sourceMgr, &context);
    verifier = v.get();
    handler = std::move(v);
  } else {
    handler =
        std::make_unique<SourceMgrDiagnosticHandler>(sourceMgr, &context);
  }

  if (!runCmd && emitAction == EmitAction::AST) {
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
  OwningOpRef<ModuleOp> module =
      loadSpec(context, sourceMgr, bufferID, paramList, paramError);
  if (verifier)
    return failed(verifier->verify()) ? 1 : 0;
  if (!module)
    return paramError.empty() ? 1 : fail(paramError);

  if (runCmd) {
    RunOptions opts;
    opts.inputs.assign(runInputs.begin(), runInputs.end());
    opts.outputs.assign(runOutputs.begin(), runOutputs.end());
    opts.shape = runShape;
    opts.seed = runSeed;
    opts.reference = runReference;
    opts.specPath = inputFilename;
    std::string err = runSpec(getSpec(*module), opts, llvm::outs());
    if (!err.empty())
      return fail(err);
    return 0;
  }

  auto output = mlir::openOutputFile(outputFilename, &errorMessage);
  if (!output)
    return fail(errorMessage);
  module->print(output->os());
  output->keep();
  return 0;
}
