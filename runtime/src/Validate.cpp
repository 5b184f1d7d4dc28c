//===- Validate.cpp - DLPack validation shared by the CPU and CUDA runs ---===//
//
// Validation happens in full before anything is launched, so a failing call
// writes nothing to o or lse. Shapes bind through attn::bindShapes, the same
// binding the reference evaluator and `attnc run` use.
//
//===----------------------------------------------------------------------===//

#include "Validate.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

using namespace attn::runtime;

static_assert(sizeof(void *) == sizeof(int64_t),
              "memref descriptors are built for 64-bit targets");

namespace {

const char *const kQKVNames[3] = {"q", "k", "v"};
const char *const kQKVDims[3][4] = {
    {"B", "Hq", "N", "Dqk"}, {"B", "Hkv", "M", "Dqk"}, {"B", "Hkv", "M", "Dv"}};

/// Pinned host memory is host memory: it is readable and writable here.
bool isHostMemory(int32_t d) {
  return d == kDLCPU || d == kDLCUDAHost || d == kDLROCMHost;
}

bool isCudaDeviceMemory(int32_t d) {
  return d == kDLCUDA || d == kDLCUDAManaged;
}

bool isRocmDeviceMemory(int32_t d) { return d == kDLROCM; }

/// A GPU's device memory: which DLPack types it accepts and how messages
/// name it.
struct DeviceMemory {
  bool (*accepts)(int32_t type);
  const char *expected; // "CUDA device memory (kDLCUDA or kDLCUDAManaged)"
  const char *api;      // "CUDA", in "tensor is on CUDA device 1"
};

/// The device id of a GPU tensor: >= 0 and, when \p ref is given (q's
/// device; NULL when checking q itself), the same as q's.
attn_status_t checkDeviceMemory(const TensorSpec &s, const DeviceMemory &m,
                                const DLDevice *ref) {
  const DLTensor *t = s.t;
  int32_t type = deviceTypeOf(t->device);
  if (!m.accepts(type))
    return fail(ATTN_ERROR_DEVICE, s.name + ": tensor is on " +
                                       deviceString(type) + ", expected " +
                                       m.expected);
  if (t->device.device_id < 0)
    return fail(ATTN_ERROR_DEVICE, s.name + ": device_id is " +
                                       str(t->device.device_id) +
                                       ", expected >= 0");
  if (ref && t->device.device_id != ref->device_id)
    return fail(ATTN_ERROR_DEVICE,
                s.name + ": tensor is on " + m.api + " device " +
                    str(t->device.device_id) + ", expected device " +
                    str(ref->device_id) +
                    " (the device of q); all tensors must be on one device");
  return ATTN_OK;
}

/// The tensor's memory kind; for a GPU's, also the device id of \p ref
/// (q's device; NULL when checking q itself).
attn_status_t checkDevice(const TensorSpec &s, MemoryKind memory,
                          const DLDevice *ref) {
  static const DeviceMemory cuda = {
      isCudaDeviceMemory, "CUDA device memory (kDLCUDA or kDLCUDAManaged)",
      "CUDA"};
  static const DeviceMemory rocm = {isRocmDeviceMemory,
                                    "ROCm device memory (kDLROCM)", "ROCm"};
  switch (memory) {
  case MemoryKind::Host: {
    int32_t type = deviceTypeOf(s.t->device);
    if (!isHostMemory(type))
      return fail(ATTN_ERROR_DEVICE, s.name + ": tensor is on " +
                                         deviceString(type) +
                                         ", expected host memory (kDLCPU)");
    return ATTN_OK;
  }
  case MemoryKind::CudaDevice:
    return checkDeviceMemory(s, cuda, ref);
  case MemoryKind::RocmDevice:
    return checkDeviceMemory(s, rocm, ref);
  }
  return fail(ATTN_ERROR_INTERNAL, s.name + ": unknown memory kind");
}

/// Device, dtype, ndim, NULL pointers, negative strides and alignment: what
/// can be checked before shapes are bound.
attn_status_t checkBasics(const TensorSpec &s, MemoryKind memory,
                          const DLDevice *ref) {
  const DLTensor *t = s.t;
  if (attn_status_t st = checkDevice(s, memory, ref))
    return st;
  if (t->dtype.code != s.type.code || t->dtype.bits != s.type.bits ||
      t->dtype.lanes != 1)
    return fail(
        ATTN_ERROR_DTYPE,
        s.name + ": dtype is " + dtypeString(t->dtype) + ", expected " +
            dtypeString(s.type) +
            (s.typeDecl.empty() ? "" : " (declared " + s.typeDecl + ")"));
  if (t->ndim != s.ndim)
    return fail(ATTN_ERROR_SHAPE, s.name + ": ndim is " + str(t->ndim) +
                                      ", expected " + str(s.ndim) + " " +
                                      s.dimsDecl);
  if (s.ndim > 0 && !t->shape)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, s.name + ": shape is NULL");
  if (!t->data)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, s.name + ": data is NULL");
  if (t->strides)
    for (int d = 0; d < s.ndim; ++d)
      if (t->strides[d] < 0)
        return fail(ATTN_ERROR_LAYOUT,
                    s.name + ": dim " + str(d) + " has stride " +
                        str(t->strides[d]) +
                        "; negative strides are not supported");
  uintptr_t addr = reinterpret_cast<uintptr_t>(t->data) +
                   static_cast<uintptr_t>(t->byte_offset);
  unsigned elemBytes = s.type.bits / 8;
  if (elemBytes > 1 && addr % elemBytes != 0)
    return fail(ATTN_ERROR_LAYOUT, s.name + ": data + byte_offset (" +
                                       str(int64_t(t->byte_offset)) +
                                       ") is not aligned to the " +
                                       str(elemBytes) + "-byte element size");
  return ATTN_OK;
}

/// Checks that every element offset of \p t (sizes already known positive)
/// and the byte address of its last element fit in 64 bits.
attn_status_t checkExtent(const TensorSpec &s) {
  const DLTensor *t = s.t;
  std::vector<int64_t> strides = stridesOf(t);
  int64_t numel = 1, last = 0;
  for (int d = 0; d < t->ndim; ++d) {
    int64_t span;
    if (__builtin_mul_overflow(numel, t->shape[d], &numel) ||
        __builtin_mul_overflow(t->shape[d] - 1, strides[d], &span) ||
        __builtin_add_overflow(last, span, &last))
      return fail(ATTN_ERROR_SHAPE, s.name + ": shape " +
                                        shapeString(t->shape, t->ndim) +
                                        " overflows 64-bit indexing");
  }
  int64_t count, bytes;
  if (t->byte_offset > uint64_t(INT64_MAX) ||
      __builtin_add_overflow(last, int64_t(1), &count) ||
      __builtin_mul_overflow(count, int64_t(s.type.bits / 8), &bytes) ||
      __builtin_add_overflow(bytes, int64_t(t->byte_offset), &bytes))
    return fail(ATTN_ERROR_SHAPE, s.name + ": shape " +
                                      shapeString(t->shape, t->ndim) +
                                      " overflows 64-bit byte addressing");
  return ATTN_OK;
}

/// An output must not overlap itself: sorted by stride, each dim of size > 1
/// must step past everything the smaller dims reach (a sufficient condition
/// for distinct elements; zero strides fail it).
attn_status_t checkNoSelfOverlap(const TensorSpec &s,
                                 const char *const *dimNames) {
  const DLTensor *t = s.t;
  if (!t->strides)
    return ATTN_OK;
  std::vector<int> dims;
  for (int d = 0; d < t->ndim; ++d) {
    if (t->shape[d] <= 1)
      continue;
    if (t->strides[d] == 0)
      return fail(ATTN_ERROR_LAYOUT,
                  s.name + ": dim " + str(d) + " (" + dimNames[d] +
                      ") has stride 0; an output must not overlap itself");
    dims.push_back(d);
  }
  std::sort(dims.begin(), dims.end(), [&](int a, int b) {
    return t->strides[a] != t->strides[b] ? t->strides[a] < t->strides[b]
                                          : a > b;
  });
  int64_t reach = 0; // largest offset the smaller dims reach
  for (int d : dims) {
    if (t->strides[d] <= reach)
      return fail(ATTN_ERROR_LAYOUT,
                  s.name + ": strides " + shapeString(t->strides, t->ndim) +
                      " for shape " + shapeString(t->shape, t->ndim) +
                      " make dim " + str(d) + " (" + dimNames[d] +
                      ") overlap other elements; an output must not overlap "
                      "itself");
    reach += (t->shape[d] - 1) * t->strides[d]; // no overflow: checkExtent
  }
  return ATTN_OK;
}

/// Checks an output's shape against the bound dims:
/// "o: dim 2 (N) is 36, expected 37".
attn_status_t checkOutputShape(const TensorSpec &s,
                               const attn::DimBinding &dims,
                               const char *const *dimNames) {
  for (int d = 0; d < s.ndim; ++d) {
    int64_t want = dims.at(dimNames[d]);
    if (s.t->shape[d] != want)
      return fail(ATTN_ERROR_SHAPE,
                  s.name + ": dim " + str(d) + " (" + dimNames[d] + ") is " +
                      str(s.t->shape[d]) + ", expected " + str(want) +
                      " (shape " + shapeString(s.t->shape, s.ndim) +
                      ", expected " + s.dimsDecl + ")");
  }
  return ATTN_OK;
}

int64_t pointerWord(const void *p) {
  int64_t w;
  std::memcpy(&w, &p, sizeof(w));
  return w;
}

} // namespace

const char *const attn::runtime::kODims[4] = {"B", "Hq", "N", "Dv"};

std::string attn::runtime::str(int64_t v) { return std::to_string(v); }

std::string attn::runtime::shapeString(const int64_t *shape, int ndim) {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i)
    s += (i ? ", " : "") + str(shape[i]);
  return s + "]";
}

const char *attn::runtime::elemTypeName(attn_elem_type_t t) {
  switch (t) {
  case ATTN_F32:
    return "f32";
  case ATTN_BF16:
    return "bf16";
  case ATTN_F16:
    return "f16";
  case ATTN_I32:
    return "i32";
  }
  return "?";
}

DLDataType attn::runtime::dlTypeOf(attn_elem_type_t t) {
  switch (t) {
  case ATTN_F32:
    return {kDLFloat, 32, 1};
  case ATTN_BF16:
    return {kDLBfloat, 16, 1};
  case ATTN_F16:
    return {kDLFloat, 16, 1};
  case ATTN_I32:
    return {kDLInt, 32, 1};
  }
  return {kDLOpaqueHandle, 0, 0};
}

std::string attn::runtime::dtypeString(DLDataType t) {
  std::string base;
  switch (t.code) {
  case kDLInt:
    base = "int";
    break;
  case kDLUInt:
    base = "uint";
    break;
  case kDLFloat:
    base = "float";
    break;
  case kDLBfloat:
    base = "bfloat";
    break;
  case kDLComplex:
    base = "complex";
    break;
  case kDLOpaqueHandle:
    base = "opaque";
    break;
  default:
    base = "code" + std::to_string(t.code) + "_";
    break;
  }
  base += std::to_string(t.bits);
  if (t.lanes != 1)
    base += "x" + std::to_string(t.lanes);
  return base;
}

int32_t attn::runtime::deviceTypeOf(const DLDevice &device) {
  static_assert(sizeof(device.device_type) == sizeof(int32_t),
                "DLDeviceType is a 32-bit enum");
  int32_t type;
  std::memcpy(&type, &device.device_type, sizeof(type));
  return type;
}

int32_t attn::runtime::elemTypeOf(const attn_input_desc_t &in) {
  static_assert(sizeof(in.type) == sizeof(int32_t),
                "attn_elem_type_t is a 32-bit enum");
  int32_t type;
  std::memcpy(&type, &in.type, sizeof(type));
  return type;
}

std::string attn::runtime::deviceString(int32_t d) {
  switch (d) {
  case kDLCPU:
    return "kDLCPU";
  case kDLCUDA:
    return "kDLCUDA";
  case kDLCUDAHost:
    return "kDLCUDAHost";
  case kDLOpenCL:
    return "kDLOpenCL";
  case kDLVulkan:
    return "kDLVulkan";
  case kDLMetal:
    return "kDLMetal";
  case kDLVPI:
    return "kDLVPI";
  case kDLROCM:
    return "kDLROCM";
  case kDLROCMHost:
    return "kDLROCMHost";
  case kDLExtDev:
    return "kDLExtDev";
  case kDLCUDAManaged:
    return "kDLCUDAManaged";
  default:
    return "device type " + std::to_string(d);
  }
}

std::string attn::runtime::declString(const attn_input_desc_t &in) {
  std::string s = "[";
  for (int32_t d = 0; d < in.rank; ++d) {
    s += d ? ", " : "";
    s += in.dims[d] ? std::string(in.dims[d]) : str(in.fixed_sizes[d]);
  }
  return s + "]";
}

std::vector<int64_t> attn::runtime::stridesOf(const DLTensor *t) {
  std::vector<int64_t> strides(static_cast<size_t>(t->ndim));
  if (t->strides) {
    std::copy(t->strides, t->strides + t->ndim, strides.begin());
    return strides;
  }
  // Saturate rather than wrap: checkExtent rejects such a shape (its element
  // count overflows too), and until then no stride may be computed with
  // signed overflow.
  int64_t s = 1;
  for (int d = t->ndim - 1; d >= 0; --d) {
    strides[d] = s;
    if (__builtin_mul_overflow(s, t->shape[d], &s))
      s = INT64_MAX;
  }
  return strides;
}

attn_status_t attn::runtime::checkInputDescs(const std::string &kname,
                                             int32_t numInputs,
                                             const attn_input_desc_t *inputs,
                                             attn::Signature &sig) {
  if (numInputs < 3 || numInputs > kMaxInputs)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": num_inputs is " + str(numInputs) +
                    ", expected q, k, v and at most " + str(kMaxInputs - 3) +
                    " aux inputs");
  if (!inputs)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, kname + ": inputs is NULL");
  sig.inputs.clear();
  std::set<std::string> names = {"o", "lse"};
  for (int32_t i = 0; i < numInputs; ++i) {
    const attn_input_desc_t &in = inputs[i];
    std::string where = kname + ": inputs[" + str(i) + "]";
    if (!in.name || !*in.name)
      return fail(ATTN_ERROR_INVALID_ARGUMENT, where + " has no name");
    where += " '" + std::string(in.name) + "'";
    if (!names.insert(in.name).second)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  where + ": the name is used twice (or is 'o'/'lse')");
    // Read the type as an integer: a value outside the enum must be reported,
    // and loading it as attn_elem_type_t would be undefined behaviour.
    int32_t type = elemTypeOf(in);
    if (type != ATTN_F32 && type != ATTN_BF16 && type != ATTN_F16 &&
        type != ATTN_I32)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  where + ": unknown element type " + str(type));
    if (in.rank < 0 || in.rank > kMaxRank)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  where + ": rank " + str(in.rank) + " is not in [0, " +
                      str(kMaxRank) + "]");
    if (in.rank > 0 && !in.dims)
      return fail(ATTN_ERROR_INVALID_ARGUMENT, where + ": dims is NULL");
    attn::InputSig is;
    is.name = in.name;
    is.type = type == ATTN_F32    ? attn::ElemType::F32
              : type == ATTN_BF16 ? attn::ElemType::BF16
              : type == ATTN_F16  ? attn::ElemType::F16
                                  : attn::ElemType::I32;
    for (int32_t d = 0; d < in.rank; ++d) {
      attn::DimRef ref;
      if (in.dims[d]) {
        if (!*in.dims[d])
          return fail(ATTN_ERROR_INVALID_ARGUMENT,
                      where + ": dim " + str(d) + " has an empty name");
        ref.symbol = in.dims[d];
      } else {
        if (!in.fixed_sizes || in.fixed_sizes[d] <= 0)
          return fail(ATTN_ERROR_INVALID_ARGUMENT,
                      where + ": dim " + str(d) +
                          " is fixed but has no positive fixed_sizes entry");
        ref.size = in.fixed_sizes[d];
      }
      is.dims.push_back(ref);
    }
    if (i < 3) {
      bool canonical = std::string(in.name) == kQKVNames[i] && in.rank == 4 &&
                       in.type != ATTN_I32;
      // k and v of a causal linear attention have N rows (its keys are its
      // queries): [.., N, ..] instead of [.., M, ..].
      for (int32_t d = 0; canonical && d < 4; ++d)
        canonical = is.dims[d].symbol == kQKVDims[i][d] ||
                    (i > 0 && d == 2 && is.dims[d].symbol == "N");
      if (!canonical)
        return fail(ATTN_ERROR_INVALID_ARGUMENT,
                    where + ": expected " + kQKVNames[i] + " : f32|bf16|f16[" +
                        kQKVDims[i][0] + ", " + kQKVDims[i][1] + ", " +
                        kQKVDims[i][2] + (i > 0 ? " or N" : "") + ", " +
                        kQKVDims[i][3] + "], got " + elemTypeName(in.type) +
                        declString(in));
    }
    sig.inputs.push_back(std::move(is));
  }
  return ATTN_OK;
}

attn_status_t attn::runtime::checkCallPointers(const char *kernelName,
                                               int32_t hasLse,
                                               const DLTensor *const *inputs,
                                               const DLTensor *o,
                                               const DLTensor *lse) {
  if (!inputs)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "inputs: array is NULL");
  if (!o)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "o: tensor is NULL");
  if (lse && !hasLse)
    return fail(ATTN_ERROR_UNSUPPORTED,
                std::string("lse: kernel '") + (kernelName ? kernelName : "?") +
                    "' cannot write lse (its normalizer is not softmax); "
                    "pass NULL");
  return ATTN_OK;
}

attn_status_t attn::runtime::checkTensors(
    const attn::Signature &sig, const attn_input_desc_t *descs,
    const DLTensor *const *inputs, const DLTensor *o, const DLTensor *lse,
    MemoryKind memory, attn::DimBinding &dims) {
  // Inputs: everything but shapes, then bind the shapes. q's device is the
  // reference for the others (checked first, so it is valid after q).
  const DLDevice *ref = nullptr;
  std::vector<TensorSpec> specs;
  for (size_t i = 0; i < sig.inputs.size(); ++i) {
    const attn_input_desc_t &in = descs[i];
    if (!inputs[i])
      return fail(ATTN_ERROR_INVALID_ARGUMENT, std::string(in.name) +
                                                   ": tensor is NULL (inputs[" +
                                                   str(int64_t(i)) + "])");
    specs.push_back({in.name, inputs[i], dlTypeOf(in.type),
                     elemTypeName(in.type), in.rank, declString(in)});
    if (attn_status_t st = checkBasics(specs.back(), memory, ref))
      return st;
    ref = &inputs[0]->device;
  }
  int64_t hq = inputs[0]->shape[1], hkv = inputs[1]->shape[1];
  if (hq > 0 && hkv > 0 && hq % hkv != 0)
    return fail(ATTN_ERROR_SHAPE,
                "k: dim 1 (Hkv) is " + str(hkv) +
                    ", which does not divide q dim 1 (Hq) = " + str(hq) +
                    " (query heads must be a multiple of key/value heads)");
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorSpec &s : specs)
    shapes[s.name] = std::vector<int64_t>(s.t->shape, s.t->shape + s.ndim);
  std::string err = attn::bindShapes(sig, shapes, dims);
  if (!err.empty())
    return fail(ATTN_ERROR_SHAPE, err);
  // bindShapes derives G = Hq / Hkv after binding; an aux dim named G must
  // agree with it.
  for (const TensorSpec &s : specs) {
    const attn::InputSig *in = sig.find(s.name);
    for (int d = 0; d < s.ndim; ++d)
      if (in->dims[d].symbol == "G" && s.t->shape[d] != dims["G"])
        return fail(ATTN_ERROR_SHAPE,
                    s.name + ": dim " + str(d) + " (G) is " +
                        str(s.t->shape[d]) +
                        ", expected Hq / Hkv = " + str(dims["G"]));
  }
  for (const TensorSpec &s : specs)
    if (attn_status_t st = checkExtent(s))
      return st;

  // Outputs.
  DLDataType f32 = {kDLFloat, 32, 1};
  TensorSpec oSpec{"o", o, f32, "", 4, "[B, Hq, N, Dv]"};
  if (attn_status_t st = checkBasics(oSpec, memory, ref))
    return st;
  if (attn_status_t st = checkOutputShape(oSpec, dims, kODims))
    return st;
  if (attn_status_t st = checkExtent(oSpec))
    return st;
  if (attn_status_t st = checkNoSelfOverlap(oSpec, kODims))
    return st;
  TensorSpec lseSpec{"lse", lse, f32, "", 3, "[B, Hq, N]"};
  if (lse) {
    if (attn_status_t st = checkBasics(lseSpec, memory, ref))
      return st;
    if (attn_status_t st = checkOutputShape(lseSpec, dims, kODims))
      return st;
    if (attn_status_t st = checkExtent(lseSpec))
      return st;
    if (attn_status_t st = checkNoSelfOverlap(lseSpec, kODims))
      return st;
  }
  return ATTN_OK;
}

attn_status_t attn::runtime::checkExtraTensor(
    const std::string &name, const DLTensor *t,
    const std::vector<int64_t> &shape, const std::string &decl, bool isOutput,
    MemoryKind memory, const DLDevice *ref, DLDataType type) {
  int ndim = static_cast<int>(shape.size());
  TensorSpec spec{name, t, type, "", ndim, decl};
  if (attn_status_t st = checkBasics(spec, memory, ref))
    return st;
  for (int d = 0; d < ndim; ++d)
    if (t->shape[d] != shape[d])
      return fail(ATTN_ERROR_SHAPE,
                  name + ": dim " + str(d) + " is " + str(t->shape[d]) +
                      ", expected " + str(shape[d]) + " (shape " +
                      shapeString(t->shape, ndim) + ", expected " +
                      shapeString(shape.data(), ndim) + " " + decl + ")");
  if (attn_status_t st = checkExtent(spec))
    return st;
  if (isOutput) {
    std::vector<std::string> names;
    for (int d = 0; d < ndim; ++d)
      names.push_back("dim " + str(d));
    std::vector<const char *> ptrs;
    for (const std::string &n : names)
      ptrs.push_back(n.c_str());
    if (attn_status_t st = checkNoSelfOverlap(spec, ptrs.data()))
      return st;
  }
  return ATTN_OK;
}

ByteRange attn::runtime::byteRange(const DLTensor *t) {
  std::vector<int64_t> strides = stridesOf(t);
  int64_t last = 0;
  for (int d = 0; d < t->ndim; ++d)
    last += (t->shape[d] - 1) * strides[d]; // checkExtent: no overflow
  uintptr_t base = reinterpret_cast<uintptr_t>(t->data) +
                   static_cast<uintptr_t>(t->byte_offset);
  uintptr_t bytes = static_cast<uintptr_t>(t->dtype.bits / 8);
  ByteRange r;
  r.first = base;
  r.last = base + static_cast<uintptr_t>(last) * bytes + bytes - 1;
  return r;
}

void Descriptors::add(const void *allocated, const void *aligned,
                      const std::vector<int64_t> &sizes,
                      const std::vector<int64_t> &strides) {
  starts.push_back(words.size());
  words.push_back(pointerWord(allocated));
  words.push_back(pointerWord(aligned));
  words.push_back(0); // offset: folded into `aligned`
  words.insert(words.end(), sizes.begin(), sizes.end());
  words.insert(words.end(), strides.begin(), strides.end());
}

void Descriptors::addTensor(const DLTensor *t) {
  std::vector<int64_t> sizes(t->shape, t->shape + t->ndim);
  add(t->data, static_cast<const char *>(t->data) + t->byte_offset, sizes,
      stridesOf(t));
}

std::vector<void *> Descriptors::args() {
  std::vector<void *> out;
  for (size_t start : starts)
    out.push_back(&words[start]);
  return out;
}

std::vector<void *> Descriptors::wordPointers() {
  std::vector<void *> out;
  for (int64_t &w : words)
    out.push_back(&w);
  return out;
}

void attn::runtime::addCallDescriptors(Descriptors &desc, int32_t numInputs,
                                       const DLTensor *const *inputs,
                                       const DLTensor *o, const DLTensor *lse,
                                       const attn::DimBinding &dims) {
  for (int i = 0; i < 3; ++i)
    desc.addTensor(inputs[i]);
  desc.addTensor(o);
  if (lse) {
    desc.addTensor(lse);
  } else {
    int64_t B = dims.at("B"), Hq = dims.at("Hq"), N = dims.at("N");
    desc.add(nullptr, nullptr, {B, Hq, N}, {Hq * N, N, 1});
  }
  for (int32_t i = 3; i < numInputs; ++i)
    desc.addTensor(inputs[i]);
}

int attn::runtime::forcedSchedule(const char *name) {
  const char *env = std::getenv(name);
  if (!env)
    return -1;
  if (std::strcmp(env, "decode") == 0)
    return 1;
  return std::strcmp(env, "prefill") == 0 ? 0 : -1;
}

attn_status_t attn::runtime::resolveThreads(const attn_run_options_t *options,
                                            int &numThreads) {
  numThreads = options ? options->num_threads : 0;
  if (numThreads < 0)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                "options: num_threads is " + str(numThreads) +
                    ", expected >= 0 (0 = all cores)");
  if (numThreads == 0)
    numThreads = attn_cpu_num_threads();
  return ATTN_OK;
}
