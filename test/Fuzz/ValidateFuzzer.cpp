//===- ValidateFuzzer.cpp - libFuzzer target: DLTensor validation ---------===//
//
// Hostile calls into the runtime's validation, as a C caller could make them:
// starting from a valid call (q, k, v compact float32 on the CPU, o and lse,
// one kernel descriptor), the input is a list of edits, each replacing one
// field with a raw value: device types and ids, dtypes, ndim, shapes,
// strides, byte offsets, data pointers, NULL tensors, kernel descriptors
// (names, element types, ranks, dims, fixed sizes, num_inputs up to past
// kMaxInputs, ABI version, tile_q), and consistent but huge dim values. An
// empty input is the valid call, so the fuzzer starts on the success path.
//
// Two entry points: the public attn_cpu_run (host memory), whose cpu_fn is a
// stub that runs only when validation passed; and the shared validation
// functions of runtime/src/Validate.h with CUDA device memory, followed by
// addCallDescriptors (no driver is loaded). Checks:
//  - no crash or sanitizer report (enum values outside their range are read
//    through memcpy here, as a C caller's int would be);
//  - a failure has a known status and a one-line attn_last_error(), and the
//    kernel never runs;
//  - a success clears the error and hands the kernel memref descriptors it
//    can trust: positive sizes, non-negative strides, every element offset
//    and the last byte address within 64 bits, aligned = data + byte_offset,
//    and o and lse that do not overlap themselves (checked element by
//    element when small).
//
// The harness keeps to the API contract: a tensor's shape and strides hold
// ndim entries, a descriptor's dims and fixed_sizes hold rank entries, and
// the inputs array num_inputs entries; data pointers are never dereferenced
// by validation, so they are fake addresses. Runs use num_threads = 1 (or a
// negative value, an error): valid calls may have billions of work items,
// which one stub call covers but the multi-threaded dispatch would walk.
//
//===----------------------------------------------------------------------===//

#include "FuzzCommon.h"

#include "../../runtime/src/Validate.h"
#include "attn/runtime.h"

#include <fuzzer/FuzzedDataProvider.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <deque>
#include <set>
#include <string>
#include <vector>

using namespace attn::runtime;
using ::attn::fuzz::invariantFailed;
using ::attn::fuzz::isOneLine;

namespace {

/// A fake, 64-byte aligned address for tensor data (never dereferenced).
constexpr uintptr_t kFakeData = uintptr_t(1) << 40;
/// Largest ndim / rank the harness builds arrays for (kMaxRank is 16).
constexpr int32_t kMaxHarnessRank = 40;

const char *const kSymbols[] = {"B",  "Hq", "Hkv", "N", "M", "Dqk",
                                "Dv", "G",  "X",   "Y", "",  nullptr};
const char *const kNames[] = {"q", "k", "v",   "o", "lse",
                              "a", "b", "doc", "",  nullptr};
const char *const kQKV[3][4] = {
    {"B", "Hq", "N", "Dqk"}, {"B", "Hkv", "M", "Dqk"}, {"B", "Hkv", "M", "Dv"}};
const char *const kODimNames[4] = {"B", "Hq", "N", "Dv"};

/// One input descriptor, with storage for what attn_input_desc_t points to.
struct Desc {
  const char *name = "";
  int32_t type = ATTN_F32; // raw: may be outside attn_elem_type_t
  std::vector<const char *> dims;
  std::vector<int64_t> fixed;
  int32_t rank = 0;
  bool dimsNull = false, fixedNull = false;
};

/// One DLTensor, with storage for shape and strides.
struct Tensor {
  bool present = true;
  int32_t deviceType = kDLCPU; // raw: may be outside DLDeviceType
  int32_t deviceId = 0;
  DLDataType dtype = {kDLFloat, 32, 1};
  int32_t ndim = 0;
  std::vector<int64_t> shape, strides;
  bool shapeNull = false, hasStrides = false;
  uint64_t byteOffset = 0;
  uintptr_t data = kFakeData;
  DLTensor dl;

  void setNdim(int32_t n) {
    ndim = n;
    size_t entries = n > 0 ? static_cast<size_t>(n) : 0;
    shape.resize(entries, 1);
    strides.resize(entries, 1);
  }
  DLTensor *get() {
    if (!present)
      return nullptr;
    std::memset(&dl, 0, sizeof(dl));
    dl.data = reinterpret_cast<void *>(data);
    std::memcpy(&dl.device.device_type, &deviceType, sizeof(deviceType));
    dl.device.device_id = deviceId;
    dl.ndim = ndim;
    dl.dtype = dtype;
    dl.shape = shapeNull ? nullptr : shape.data();
    dl.strides = hasStrides ? strides.data() : nullptr;
    dl.byte_offset = byteOffset;
    return &dl;
  }
};

/// A whole call: the kernel descriptor and every tensor.
struct Call {
  uint32_t abiVersion = ATTN_ABI_VERSION;
  const char *kernelName = "fuzz";
  int32_t tileQ = 16;
  int32_t hasLse = 1;
  std::vector<Desc> descs;
  std::vector<Tensor> inputs; // same length as descs
  Tensor o, lse;
  bool inputsNull = false;
  int32_t numThreads = 1;
  bool cuda = false;

  Call() {
    for (int i = 0; i < 3; ++i) {
      Desc d;
      d.name = kNames[i];
      d.rank = 4;
      d.dims.assign(kQKV[i], kQKV[i] + 4);
      d.fixed.assign(4, 0);
      descs.push_back(d);
    }
    const int64_t qShape[4] = {1, 2, 3, 5}, kShape[4] = {1, 1, 4, 5},
                  vShape[4] = {1, 1, 4, 6};
    const int64_t *shapes[3] = {qShape, kShape, vShape};
    for (int i = 0; i < 3; ++i) {
      Tensor t;
      t.setNdim(4);
      t.shape.assign(shapes[i], shapes[i] + 4);
      inputs.push_back(t);
    }
    o.setNdim(4);
    o.shape = {1, 2, 3, 6};
    lse.setNdim(3);
    lse.shape = {1, 2, 3};
  }
};

//===----------------------------------------------------------------------===//
// Edits
//===----------------------------------------------------------------------===//

/// A dim value: mostly small, sometimes any int64.
int64_t pickSize(FuzzedDataProvider &in) {
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
  case 0:
    return in.ConsumeIntegralInRange<int64_t>(1, 8);
  case 1:
    return in.ConsumeIntegralInRange<int64_t>(-2, 2);
  case 2:
    return int64_t(1) << in.ConsumeIntegralInRange<int>(0, 62);
  default:
    return in.ConsumeIntegral<int64_t>();
  }
}

int32_t pickRank(FuzzedDataProvider &in) {
  if (in.ConsumeBool())
    return in.ConsumeIntegralInRange<int32_t>(-3, kMaxHarnessRank);
  return INT32_MIN;
}

template <typename T, size_t N> T pick(FuzzedDataProvider &in, T (&pool)[N]) {
  return pool[in.ConsumeIntegralInRange<size_t>(0, N - 1)];
}

/// Resizes descs and inputs to max(n, 0) entries: num_inputs is always the
/// length of both arrays, as the API requires. New entries are distinct,
/// valid aux inputs of shape [N].
void setNumInputs(Call &c, int32_t n, std::deque<std::string> &auxNames) {
  size_t want = n > 0 ? static_cast<size_t>(n) : 0;
  while (c.descs.size() > want) {
    c.descs.pop_back();
    c.inputs.pop_back();
  }
  while (c.descs.size() < want) {
    auxNames.push_back("aux" + std::to_string(c.descs.size()));
    Desc d;
    d.name = auxNames.back().c_str();
    d.rank = 1;
    d.dims = {"N"};
    d.fixed = {0};
    c.descs.push_back(d);
    Tensor t;
    t.setNdim(1);
    t.shape = {c.inputs.size() > 0 && c.inputs[0].ndim >= 3
                   ? c.inputs[0].shape[2]
                   : 1};
    c.inputs.push_back(t);
  }
}

Tensor &pickTensor(FuzzedDataProvider &in, Call &c) {
  size_t i = in.ConsumeIntegralInRange<size_t>(0, c.inputs.size() + 1);
  if (i == c.inputs.size())
    return c.o;
  if (i == c.inputs.size() + 1)
    return c.lse;
  return c.inputs[i];
}

void editTensor(FuzzedDataProvider &in, Tensor &t) {
  switch (in.ConsumeIntegralInRange<int>(0, 9)) {
  case 0: {
    const int32_t devices[] = {
        kDLCPU, kDLCUDA, kDLCUDAHost, kDLROCMHost, kDLCUDAManaged, 0, 999, -1};
    t.deviceType =
        in.ConsumeBool() ? pick(in, devices) : in.ConsumeIntegral<int32_t>();
    break;
  }
  case 1:
    t.deviceId = in.ConsumeIntegral<int32_t>();
    break;
  case 2:
    t.dtype.code = in.ConsumeIntegral<uint8_t>();
    t.dtype.bits = in.ConsumeIntegral<uint8_t>();
    t.dtype.lanes = in.ConsumeIntegral<uint16_t>();
    break;
  case 3:
    t.setNdim(pickRank(in));
    break;
  case 4:
    if (!t.shape.empty())
      t.shape[in.ConsumeIntegralInRange<size_t>(0, t.shape.size() - 1)] =
          pickSize(in);
    break;
  case 5:
    t.hasStrides = true;
    if (!t.strides.empty())
      t.strides[in.ConsumeIntegralInRange<size_t>(0, t.strides.size() - 1)] =
          pickSize(in);
    break;
  case 6: {
    // Compact strides, written out (equal to NULL strides).
    t.hasStrides = true;
    int64_t s = 1;
    for (size_t d = t.strides.size(); d-- > 0;) {
      t.strides[d] = s;
      s = static_cast<int64_t>(static_cast<uint64_t>(s) *
                               static_cast<uint64_t>(t.shape[d]));
    }
    break;
  }
  case 7:
    if (in.ConsumeBool())
      t.shapeNull = !t.shapeNull;
    else
      t.hasStrides = !t.hasStrides;
    break;
  case 8:
    t.byteOffset = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint64_t>(0, 65)
                                    : in.ConsumeIntegral<uint64_t>();
    break;
  default:
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      t.data = 0;
      break;
    case 1:
      t.data = kFakeData + in.ConsumeIntegralInRange<uintptr_t>(0, 7);
      break;
    case 2:
      t.data = in.ConsumeIntegral<uintptr_t>();
      break;
    default:
      t.present = !t.present;
    }
  }
}

void editDesc(FuzzedDataProvider &in, Desc &d) {
  switch (in.ConsumeIntegralInRange<int>(0, 5)) {
  case 0:
    d.name = pick(in, kNames);
    break;
  case 1:
    d.type = in.ConsumeBool() ? in.ConsumeIntegralInRange<int32_t>(-1, 4)
                              : in.ConsumeIntegral<int32_t>();
    break;
  case 2: {
    d.rank = pickRank(in);
    size_t entries = d.rank > 0 ? static_cast<size_t>(d.rank) : 0;
    d.dims.resize(entries, "N");
    d.fixed.resize(entries, 0);
    break;
  }
  case 3:
    if (!d.dims.empty())
      d.dims[in.ConsumeIntegralInRange<size_t>(0, d.dims.size() - 1)] =
          pick(in, kSymbols);
    break;
  case 4:
    if (!d.fixed.empty())
      d.fixed[in.ConsumeIntegralInRange<size_t>(0, d.fixed.size() - 1)] =
          pickSize(in);
    break;
  default:
    if (in.ConsumeBool())
      d.dimsNull = !d.dimsNull;
    else
      d.fixedNull = !d.fixedNull;
  }
}

/// Sets symbol \p sym to \p value in every tensor that declares it (o and
/// lse by their canonical dims), keeping the binding consistent so that
/// validation gets past shape binding with extreme sizes.
void setSymbol(Call &c, const char *sym, int64_t value) {
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const Desc &d = c.descs[i];
    Tensor &t = c.inputs[i];
    for (size_t k = 0; k < d.dims.size() && k < t.shape.size(); ++k)
      if (d.dims[k] && std::strcmp(d.dims[k], sym) == 0)
        t.shape[k] = value;
  }
  for (Tensor *t : {&c.o, &c.lse})
    for (size_t k = 0; k < t->shape.size() && k < 4; ++k)
      if (std::strcmp(kODimNames[k], sym) == 0)
        t->shape[k] = value;
}

void editCall(FuzzedDataProvider &in, Call &c,
              std::deque<std::string> &auxNames) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
  case 0:
  case 1:
  case 2:
    editTensor(in, pickTensor(in, c));
    break;
  case 3:
    if (!c.descs.empty())
      editDesc(
          in,
          c.descs[in.ConsumeIntegralInRange<size_t>(0, c.descs.size() - 1)]);
    break;
  case 4: {
    const char *sym = pick(in, kSymbols);
    if (sym && *sym)
      setSymbol(c, sym, pickSize(in));
    break;
  }
  case 5: {
    // Around kMaxInputs only now and then: such calls are slow (thousands
    // of tensors), and one size check covers them.
    const int32_t small[] = {-1, 0, 2, 3, 4, 5}, large[] = {1023, 1024, 1025};
    setNumInputs(c,
                 in.ConsumeIntegralInRange<int>(0, 7) ? pick(in, small)
                                                      : pick(in, large),
                 auxNames);
    break;
  }
  case 6:
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      c.abiVersion = in.ConsumeIntegral<uint32_t>();
      break;
    case 1:
      c.tileQ = in.ConsumeBool() ? in.ConsumeIntegralInRange<int32_t>(-1, 64)
                                 : in.ConsumeIntegral<int32_t>();
      break;
    case 2:
      c.hasLse = !c.hasLse;
      break;
    default:
      c.kernelName = c.kernelName ? nullptr : "fuzz";
    }
    break;
  default:
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      c.inputsNull = !c.inputsNull;
      break;
    case 1:
      c.numThreads = in.ConsumeBool()
                         ? 1
                         : in.ConsumeIntegralInRange<int32_t>(INT32_MIN, -1);
      break;
    case 2:
      c.cuda = !c.cuda;
      break;
    default:
      c.lse.present = !c.lse.present;
    }
  }
}

//===----------------------------------------------------------------------===//
// What the kernel is handed
//===----------------------------------------------------------------------===//

/// The call being run, for the stub kernel (single-threaded runs only).
struct Expect {
  std::vector<int32_t> ranks;
  std::vector<int64_t> elemBytes;
  std::vector<const DLTensor *> tensors; // NULL for an absent lse
  int calls = 0;
} expect;

int64_t elemBytesOf(int32_t type) {
  return type == ATTN_BF16 || type == ATTN_F16 ? 2 : 4;
}

/// Brute force: every element of a small output has its own offset.
void checkDistinct(const int64_t *sizes, const int64_t *strides, int rank,
                   const char *what) {
  int64_t numel = 1;
  for (int d = 0; d < rank; ++d)
    numel *= sizes[d];
  if (numel > 4096)
    return;
  std::set<int64_t> seen;
  std::vector<int64_t> idx(rank, 0);
  for (int64_t e = 0; e < numel; ++e) {
    int64_t off = 0;
    for (int d = 0; d < rank; ++d)
      off += idx[d] * strides[d];
    if (!seen.insert(off).second)
      invariantFailed(std::string(what) + " overlaps itself but was accepted");
    for (int d = rank - 1; d >= 0; --d) {
      if (++idx[d] < sizes[d])
        break;
      idx[d] = 0;
    }
  }
}

/// Checks one memref descriptor { allocated, aligned, offset, sizes[R],
/// strides[R] } against the tensor it was built from.
void checkDescriptor(const int64_t *w, int rank, int64_t elemBytes,
                     const DLTensor *t, size_t index) {
  std::string what = "descriptor " + std::to_string(index);
  const int64_t *sizes = w + 3, *strides = w + 3 + rank;
  int64_t last = 0;
  for (int d = 0; d < rank; ++d) {
    int64_t span;
    if (sizes[d] <= 0)
      invariantFailed(what + ": a size <= 0 was accepted");
    if (strides[d] < 0)
      invariantFailed(what + ": a negative stride was accepted");
    if (__builtin_mul_overflow(sizes[d] - 1, strides[d], &span) ||
        __builtin_add_overflow(last, span, &last))
      invariantFailed(what + ": element offsets overflow int64");
  }
  if (w[2] != 0)
    invariantFailed(what + ": offset is not 0");
  if (!t) // the absent lse: NULL pointers
    return;
  int64_t bytes;
  if (__builtin_mul_overflow(last + 1, elemBytes, &bytes) ||
      __builtin_add_overflow(bytes, static_cast<int64_t>(t->byte_offset),
                             &bytes))
    invariantFailed(what + ": the last byte address overflows int64");
  uintptr_t aligned = reinterpret_cast<uintptr_t>(t->data) + t->byte_offset;
  if (static_cast<uintptr_t>(w[1]) != aligned)
    invariantFailed(what + ": aligned != data + byte_offset");
  if (index == 3 || index == 4) // o, lse
    checkDistinct(sizes, strides, rank, index == 3 ? "o" : "lse");
}

void checkDescriptors(void **args) {
  for (size_t i = 0; i < expect.ranks.size(); ++i)
    checkDescriptor(static_cast<const int64_t *>(args[i]), expect.ranks[i],
                    expect.elemBytes[i], expect.tensors[i], i);
}

void stubKernel(void **args, int64_t begin, int64_t end) {
  ++expect.calls;
  if (begin < 0 || end <= begin)
    invariantFailed("the kernel was called with an empty or negative range");
  checkDescriptors(args);
}

void checkFailure(attn_status_t st, const char *entry) {
  const char *msg = attn_last_error();
  if (static_cast<int>(st) < 0 || static_cast<int>(st) > ATTN_ERROR_DRIVER)
    invariantFailed(std::string(entry) + " returned an unknown status");
  if (!msg || !*msg)
    invariantFailed(std::string(entry) + " failed without a message");
  if (!isOneLine(msg))
    invariantFailed(std::string(entry) + ": the message is not one line", msg);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzedDataProvider in(data, size);
  Call c;
  std::deque<std::string> auxNames; // descs point into these strings
  for (int edits = 0; in.remaining_bytes() > 0 && edits < 64; ++edits)
    editCall(in, c, auxNames);

  // Materialize the C structures.
  std::vector<attn_input_desc_t> descs(c.descs.size());
  for (size_t i = 0; i < c.descs.size(); ++i) {
    const Desc &d = c.descs[i];
    descs[i].name = d.name;
    std::memcpy(&descs[i].type, &d.type, sizeof(d.type));
    descs[i].rank = d.rank;
    descs[i].dims = d.dimsNull ? nullptr : d.dims.data();
    descs[i].fixed_sizes = d.fixedNull ? nullptr : d.fixed.data();
  }
  std::vector<const DLTensor *> inputs;
  for (Tensor &t : c.inputs)
    inputs.push_back(t.get());
  const DLTensor *const *inputArray = c.inputsNull ? nullptr : inputs.data();
  DLTensor *o = c.o.get(), *lse = c.lse.get();
  int32_t numInputs = static_cast<int32_t>(c.descs.size());

  expect = Expect();
  for (size_t i = 0; i < inputs.size() + 2; ++i) {
    bool isInput = i < 3 || i >= 5;
    size_t idx = i < 3 ? i : i - 2;
    if (isInput && idx >= inputs.size())
      break;
    expect.ranks.push_back(isInput ? c.descs[idx].rank : i == 3 ? 4 : 3);
    expect.elemBytes.push_back(isInput ? elemBytesOf(c.descs[idx].type) : 4);
    expect.tensors.push_back(isInput ? inputs[idx] : i == 3 ? o : lse);
  }

  if (!c.cuda) {
    attn_kernel_desc_t kernel{}; // no decode schedule
    kernel.abi_version = c.abiVersion;
    kernel.name = c.kernelName;
    kernel.tile_q = c.tileQ;
    kernel.num_inputs = numInputs;
    kernel.inputs = descs.data();
    kernel.has_lse = c.hasLse;
    kernel.cpu_fn = stubKernel;
    attn_run_options_t options = {c.numThreads};
    attn_status_t st = attn_cpu_run(&kernel, inputArray, o, lse, &options);
    if (st == ATTN_OK) {
      if (expect.calls != 1)
        invariantFailed("attn_cpu_run succeeded but ran the kernel " +
                        std::to_string(expect.calls) + " times");
      if (*attn_last_error())
        invariantFailed("attn_cpu_run succeeded with an error message");
    } else {
      if (expect.calls != 0)
        invariantFailed("attn_cpu_run failed after running the kernel");
      checkFailure(st, "attn_cpu_run");
    }
    return 0;
  }

  // The CUDA half of validation, called directly (as attn_cuda_run does
  // before it needs the driver).
  clearLastError();
  attn::Signature sig;
  attn::DimBinding dims;
  attn_status_t st =
      checkInputDescs("kernel 'fuzz'", numInputs, descs.data(), sig);
  if (st == ATTN_OK)
    st = checkCallPointers(c.kernelName, c.hasLse, inputArray, o, lse);
  if (st == ATTN_OK)
    st = checkTensors(sig, descs.data(), inputArray, o, lse,
                      MemoryKind::CudaDevice, dims);
  if (st != ATTN_OK) {
    checkFailure(st, "CUDA validation");
    return 0;
  }
  Descriptors desc;
  addCallDescriptors(desc, numInputs, inputArray, o, lse, dims);
  std::vector<void *> args = desc.args();
  if (args.size() != expect.ranks.size())
    invariantFailed("addCallDescriptors built " + std::to_string(args.size()) +
                    " descriptors, expected " +
                    std::to_string(expect.ranks.size()));
  checkDescriptors(args.data());
  return 0;
}
