/*===- attn/runtime.h - attnc host runtime, C ABI -------------------------===*
 *
 * The binary contract between compiled attention kernels and their callers.
 * Pure C (C99 and C++), no MLIR/LLVM: the compiler includes this header, never
 * the reverse, and AOT users link it with no compiler at run time.
 *
 * A compiled CPU kernel is a function `cpu_fn(args, begin, end)` that
 * processes work items [begin, end) of one launch. Item
 *   item = (b * Hq + h) * numQTiles + qt,   numQTiles = ceil(N / tile_q)
 * computes rows [qt*tile_q, min(N, (qt+1)*tile_q)) of head h of batch b.
 * Items write disjoint rows of o and lse, so any split across threads is
 * valid. `args[i]` points to a standard MLIR ranked memref descriptor
 *   struct { T *allocated; T *aligned; int64_t offset;
 *            int64_t sizes[R]; int64_t strides[R]; }
 * (offset and strides in elements), in this order: q, k, v (rank 4),
 * o (rank 4, f32), lse (rank 3, f32), then each auxiliary input in signature
 * order with its declared rank. When the caller wants no lse, the lse
 * descriptor's allocated/aligned pointers are NULL (sizes [B, Hq, N]); the
 * kernel checks the aligned pointer.
 *
 * attn_cpu_run() validates DLPack tensors against a kernel descriptor, builds
 * the memref descriptors and runs the items on a persistent thread pool.
 *
 *===----------------------------------------------------------------------===*/

#ifndef ATTN_RUNTIME_H
#define ATTN_RUNTIME_H

#include <dlpack/dlpack.h>
#include <stdint.h>

#if defined(_WIN32)
#define ATTN_RUNTIME_API
#else
#define ATTN_RUNTIME_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Version of attn_kernel_desc_t and of the kernel calling convention. */
#define ATTN_ABI_VERSION 1

/*===--- Status -----------------------------------------------------------===*/

typedef enum attn_status {
  ATTN_OK = 0,
  ATTN_ERROR_INVALID_ARGUMENT = 1, /* NULL pointer, malformed kernel desc */
  ATTN_ERROR_SHAPE = 2,            /* ndim or sizes do not bind */
  ATTN_ERROR_DTYPE = 3,            /* element type or lanes */
  ATTN_ERROR_DEVICE = 4,           /* tensor not in host memory */
  ATTN_ERROR_LAYOUT = 5,           /* strides, alignment, overlapping output */
  ATTN_ERROR_UNSUPPORTED = 6,      /* lse without softmax, ABI version */
  ATTN_ERROR_INTERNAL = 7
} attn_status_t;

/* "ATTN_OK", "ATTN_ERROR_SHAPE", ...; "ATTN_ERROR_UNKNOWN" for other values.
   The string is static. */
ATTN_RUNTIME_API const char *attn_status_string(attn_status_t status);

/* The message of the last failed call on this thread: one line, no trailing
   newline, "" when none. Every runtime entry point that returns a status
   clears it first, so after ATTN_OK it is "". Valid until the next runtime
   call on the same thread. */
ATTN_RUNTIME_API const char *attn_last_error(void);

/*===--- Kernel descriptors (emitted by the compiler) ---------------------===*/

typedef void (*attn_cpu_kernel_fn)(void **args, int64_t begin, int64_t end);

typedef enum attn_elem_type {
  ATTN_F32 = 0,
  ATTN_BF16 = 1,
  ATTN_F16 = 2,
  ATTN_I32 = 3
} attn_elem_type_t;

typedef struct attn_input_desc {
  const char *name;            /* "q", "k", "v", or the aux name */
  attn_elem_type_t type;       /* q/k/v: F32, BF16 or F16 */
  int32_t rank;
  const char *const *dims;     /* rank entries: symbol name, or NULL where fixed */
  const int64_t *fixed_sizes;  /* rank entries: the size where dims[i]==NULL
                                  (may be NULL when no dim is fixed) */
} attn_input_desc_t;

typedef struct attn_kernel_desc {
  uint32_t abi_version;        /* ATTN_ABI_VERSION */
  const char *name;            /* spec name */
  int32_t tile_q;              /* query rows per work item, > 0 */
  int32_t num_inputs;          /* q, k, v + aux, in args order */
  const attn_input_desc_t *inputs;
  int32_t has_lse;             /* kernel can write lse (softmax) */
  attn_cpu_kernel_fn cpu_fn;
} attn_kernel_desc_t;

typedef struct attn_run_options {
  int32_t num_threads; /* 0 = attn_cpu_num_threads(); 1 = calling thread only */
} attn_run_options_t;

/*===--- CPU execution ----------------------------------------------------===*/

/* Runs `kernel` on `inputs` (num_inputs tensors in args order: q, k, v, aux),
   writing o (float32 [B, Hq, N, Dv]) and, when non-NULL, lse (float32
   [B, Hq, N]).

   Validates everything before launching; on failure returns the code, sets
   attn_last_error() to a one-line message naming the tensor (and dim), and
   writes nothing to o or lse:
   - INVALID_ARGUMENT: NULL kernel/cpu_fn/inputs/inputs[i]/o/data/shape,
     malformed kernel desc (q, k, v not first with their canonical dims
     [B,Hq,N,Dqk], [B,Hkv,M,Dqk], [B,Hkv,M,Dv]; tile_q <= 0; duplicate
     names ...), negative num_threads.
   - DEVICE: a tensor not in host memory (kDLCPU; kDLCUDAHost and kDLROCMHost
     pinned host memory are accepted too).
   - DTYPE: q/k/v/aux: F32 -> kDLFloat/32, BF16 -> kDLBfloat/16,
     F16 -> kDLFloat/16, I32 -> kDLInt/32; o and lse kDLFloat/32; lanes == 1.
   - SHAPE: ndim, sizes not binding consistently (fixed dims, one value per
     symbol, all sizes positive), Hq not a multiple of Hkv, size overflow.
   - LAYOUT: negative strides; data + byte_offset not aligned to the element
     size; o or lse overlapping itself (a zero stride on a dim of size > 1,
     or strides that do not nest).
   - UNSUPPORTED: lse != NULL while !kernel->has_lse; abi_version mismatch.
   Strides NULL means compact row-major; otherwise any non-negative element
   strides are accepted for q, k, v and aux (zero = broadcast). byte_offset
   is honoured. o and lse must not alias each other or an input (unchecked).

   Thread safety: concurrent calls from any number of threads are allowed and
   run concurrently (per-call state; the pool's workers are shared), and a
   kernel may itself call attn_cpu_run. */
ATTN_RUNTIME_API attn_status_t attn_cpu_run(const attn_kernel_desc_t *kernel,
                                            const DLTensor *const *inputs,
                                            DLTensor *o, DLTensor *lse,
                                            const attn_run_options_t *options);

/* The thread count num_threads = 0 means: the ATTN_NUM_THREADS environment
   variable if set to a positive integer (read once), else the number of CPUs
   this process may run on. Always >= 1. */
ATTN_RUNTIME_API int32_t attn_cpu_num_threads(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ATTN_RUNTIME_H */
