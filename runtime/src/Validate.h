//===- Validate.h - validation shared by the CPU and CUDA runs -*- C++ -*-===//
//
// Private to runtime/src. The checks attn_cpu_run and attn_cuda_run share:
// the kernel descriptor's inputs, the call's pointers, each tensor's device,
// dtype, ndim, strides and alignment, shape binding through attn::bindShapes,
// 64-bit extents and outputs that must not overlap themselves; and the memref
// descriptor words both backends pass to kernels. Every check reports through
// fail(), so messages name the tensor (and dim). Plain C++17, no MLIR/LLVM.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_RUNTIME_VALIDATE_H
#define ATTN_RUNTIME_VALIDATE_H

#include "RuntimeInternal.h"

#include "attn/Signature.h"

#include <cstdint>
#include <string>
#include <vector>

namespace attn::runtime {

/// Highest rank an input may declare.
constexpr int32_t kMaxRank = 16;
/// Most inputs a kernel may declare.
constexpr int32_t kMaxInputs = 1024;

/// The canonical dims of o (and, first three, of lse).
extern const char *const kODims[4];

std::string str(int64_t v);
/// "[2, 4, 128, 64]".
std::string shapeString(const int64_t *shape, int ndim);
/// "f32", "bf16", "f16", "i32".
const char *elemTypeName(attn_elem_type_t t);
/// The DLPack dtype an element type is passed as.
DLDataType dlTypeOf(attn_elem_type_t t);
/// NumPy-style name: "float32", "bfloat16", "int32", "uint8", "float32x4".
std::string dtypeString(DLDataType t);
/// "kDLCPU", "kDLCUDA", ...; "device type 999" for values DLPack does not
/// define.
std::string deviceString(int32_t d);
/// The device type of \p device as its underlying integer. A caller may pass
/// any value; loading one outside DLDeviceType's enumerators as the enum is
/// undefined behaviour, so validation reads and compares integers only.
int32_t deviceTypeOf(const DLDevice &device);
/// The element type of a kernel descriptor's input as an integer, for the
/// same reason (kernel descriptors may come from anywhere).
int32_t elemTypeOf(const attn_input_desc_t &in);
/// The declared dims of an input as "[B, Hq, N, Dqk]".
std::string declString(const attn_input_desc_t &in);

/// Where the tensors of a call must live.
enum class MemoryKind {
  /// kDLCPU, or pinned host memory (kDLCUDAHost, kDLROCMHost).
  Host,
  /// kDLCUDA or kDLCUDAManaged, all on one device_id (that of q).
  CudaDevice,
  /// kDLROCM, all on one device_id (that of q). kDLROCMHost is host memory:
  /// ROCm kernels read device memory only.
  RocmDevice,
};

/// One tensor to check: its name in messages, the tensor, and what it must be.
struct TensorSpec {
  std::string name;
  const DLTensor *t;
  DLDataType type;
  std::string typeDecl; // "f32" etc., for messages; "" for o and lse
  int ndim;
  std::string dimsDecl; // "[B, Hq, N, Dqk]"
};

/// The strides of \p t in elements (compact row-major when NULL).
std::vector<int64_t> stridesOf(const DLTensor *t);

/// The schedule environment variable `name` forces (ATTN_CPU_SCHEDULE,
/// ATTN_GPU_SCHEDULE; read per call): 1 for "decode", 0 for "prefill", -1
/// when unset or anything else.
int forcedSchedule(const char *name);

/// A CPU call's thread count: options->num_threads, 0 (or no options)
/// meaning attn_cpu_num_threads(); negative is INVALID_ARGUMENT.
attn_status_t resolveThreads(const attn_run_options_t *options,
                             int &numThreads);

/// Checks the inputs of a kernel descriptor (names, types, ranks, dims; q, k,
/// v first with their canonical dims) and converts them to \p sig. \p kname
/// is "kernel 'name'" for messages.
attn_status_t checkInputDescs(const std::string &kname, int32_t numInputs,
                              const attn_input_desc_t *inputs,
                              attn::Signature &sig);

/// The call's pointers: inputs, o, and lse only when the kernel can write it.
attn_status_t checkCallPointers(const char *kernelName, int32_t hasLse,
                                const DLTensor *const *inputs,
                                const DLTensor *o, const DLTensor *lse);

/// Checks every tensor of a call against the kernel's inputs (already checked
/// by checkInputDescs, the call's pointers by checkCallPointers): devices,
/// dtypes, ndim, NULL data/shape, negative strides, element alignment, shape
/// binding (into \p dims, G included), 64-bit extents, o and lse shapes and
/// that they do not overlap themselves.
attn_status_t checkTensors(const attn::Signature &sig,
                           const attn_input_desc_t *descs,
                           const DLTensor *const *inputs, const DLTensor *o,
                           const DLTensor *lse, MemoryKind memory,
                           attn::DimBinding &dims);

/// Checks one more float32 tensor of a call (o, lse, do, a gradient):
/// device, dtype, ndim, shape == `shape` ("[B, Hq, N, Dv]" in `decl` for
/// messages), 64-bit extents, and, for an output, that it does not overlap
/// itself. `ref` is q's device.
attn_status_t checkExtraTensor(const std::string &name, const DLTensor *t,
                               const std::vector<int64_t> &shape,
                               const std::string &decl, bool isOutput,
                               MemoryKind memory, const DLDevice *ref,
                               DLDataType type = DLDataType{kDLFloat, 32, 1});

/// The bytes [first, last] a tensor can touch (its shape is valid).
struct ByteRange {
  uintptr_t first = 0, last = 0;
  bool overlaps(const ByteRange &o) const {
    return first <= o.last && o.first <= last;
  }
};
ByteRange byteRange(const DLTensor *t);

/// Builds the memref descriptors: one run of int64 words per argument,
/// { allocated, aligned, offset, sizes[R], strides[R] }. A tensor's
/// byte_offset is folded into `aligned` (offset 0), its strides are in
/// elements (compact row-major when NULL).
class Descriptors {
public:
  void add(const void *allocated, const void *aligned,
           const std::vector<int64_t> &sizes,
           const std::vector<int64_t> &strides);
  void addTensor(const DLTensor *t);
  /// The args array (one pointer per descriptor); valid while this object
  /// lives and add() is not called.
  std::vector<void *> args();
  /// One pointer per word: the kernel parameters of a GPU launch, where every
  /// descriptor field is a separate 8-byte parameter. Same validity.
  std::vector<void *> wordPointers();

private:
  std::vector<int64_t> words;
  std::vector<size_t> starts;
};

/// The descriptors of a call, in kernel order: q, k, v, o, lse (NULL
/// pointers, sizes [B, Hq, N] and compact strides when \p lse is NULL), then
/// each aux input.
void addCallDescriptors(Descriptors &desc, int32_t numInputs,
                        const DLTensor *const *inputs, const DLTensor *o,
                        const DLTensor *lse, const attn::DimBinding &dims);

//===----------------------------------------------------------------------===//
// The backward pass (ValidateBackward.cpp)
//===----------------------------------------------------------------------===//

/// num_grads and grad_inputs of a backward descriptor: ascending indices
/// (>= 3) of f32 aux inputs.
attn_status_t checkGradInputs(const std::string &kname, int32_t numInputs,
                              const attn_input_desc_t *inputs, int32_t numGrads,
                              const int32_t *gradInputs);

/// What a backward call passes besides the inputs.
struct BackwardTensors {
  const DLTensor *o, *lse, *dout, *dlse;
  DLTensor *dq, *dk, *dv;
  DLTensor *const *daux;
};

/// What a backward descriptor says (the CPU's and CUDA's alike).
struct BackwardKernel {
  const char *name;
  int32_t numInputs;
  const attn_input_desc_t *inputs;
  int32_t needsLse;
  int32_t numGrads;
  const int32_t *gradInputs;
};

/// Checks a backward call (the descriptor already checked into \p sig): its
/// pointers, the inputs with o and lse (checkTensors), dout (of element type
/// \p doutType), dlse, dq, dk, dv and daux (devices, dtypes, shapes), and
/// that no output overlaps another tensor of the call. Binds \p dims.
attn_status_t checkBackwardCall(const BackwardKernel &k,
                                const attn::Signature &sig,
                                const DLTensor *const *inputs,
                                const BackwardTensors &t, MemoryKind memory,
                                DLDataType doutType, attn::DimBinding &dims);

/// The backward kernels' descriptors, in order: q, k, v, o, lse, aux, dout,
/// dlse (NULL pointers, sizes [B, Hq, N] and compact strides when absent),
/// dq, dk, dv, daux.
void addBackwardDescriptors(Descriptors &desc, const BackwardKernel &k,
                            const DLTensor *const *inputs,
                            const BackwardTensors &t,
                            const attn::DimBinding &dims);

} // namespace attn::runtime

#endif // ATTN_RUNTIME_VALIDATE_H
