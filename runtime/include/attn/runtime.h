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
 * After the descriptors, args[num_inputs + 2] points to the launch's
 * int32_t status word, 0 when the launch starts (ABI version 2). A kernel
 * allocates its scratch (sized by the head dims and tiles) on the heap once
 * per call, never on the stack; when an allocation fails it computes nothing
 * and stores ATTN_KERNEL_OUT_OF_MEMORY to the status word (an atomic store:
 * every thread of a launch shares the word). A kernel never stores 0, so the
 * word stays nonzero once any call failed. attn_cpu_run() then skips the
 * items not started yet and returns ATTN_ERROR_OUT_OF_MEMORY.
 *
 * attn_cpu_run() validates DLPack tensors against a kernel descriptor, builds
 * the memref descriptors and runs the items on a persistent thread pool.
 *
 * A compiled CUDA kernel is an image (fatbin or cubin) holding one or more
 * variants (`.entry` functions), each specialized for a padded head dim. A
 * variant's kernel parameters are the same memref descriptors, in the same
 * order, with every field a separate 8-byte parameter: for each tensor
 *   void *allocated, void *aligned, int64_t offset, int64_t sizes[R],
 *   int64_t strides[R]
 * (11 parameters for a rank-4 tensor, 9 for lse; as for the CPU, a tensor's
 * byte_offset is folded into `aligned` and offset is 0; no lse: NULL
 * pointers, sizes [B, Hq, N], compact strides). Grid (ceil(N / block_q),
 * B * Hq, 1), block (num_threads, 1, 1), shared_mem_bytes of dynamic shared
 * memory. attn_cuda_run() validates the tensors, picks the variant, and
 * launches it through the CUDA driver API, which the runtime loads with
 * dlopen at the first CUDA call: the runtime neither includes nor links
 * anything of CUDA, and works unchanged on machines without it.
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

/* Version of attn_kernel_desc_t and of the kernel calling convention.
   2: CPU kernels take the status word args[num_inputs + 2] and report a
      failed scratch allocation there (version 1 kernels had no status and
      put their scratch on the stack).
   3: CUDA variants declare the global scratch their kernels take as their
      last argument (attn_cuda_kernel_variant_t's scratch fields).
   4: CPU kernel descriptors carry the decode schedule (decode_fn,
      decode_lanes).
   5: ... and the paged-KV kernels (paged_fn, paged_decode_fn).
   6: CUDA kernel descriptors carry the split-KV decode schedule
      (decode_max_n, decode_variants, merge_variant).
   7: the CUDA decode variants take the batch tables after the aux inputs
      (cu_seqlens_q, cu_seqlens_k, block_table, kv_lens) and the merge
      variant cu_seqlens_q after lse; NULL descriptors for a dense call
      (attn_cuda_run_batch).
   8: CPU kernel descriptors carry the wide decode kernels (decode_wide_fn,
      decode_wide_lanes, paged_decode_wide_fn).
   9: CUDA kernel descriptors carry the batch prefill variants
      (num_batch_variants, batch_variants), which attn_cuda_run_batch runs
      for sequences of more than decode_max_n queries. */
#define ATTN_ABI_VERSION 9

/* The largest head dim (Dqk and Dv) attn_cpu_run() accepts. MLA needs
   Dqk = 576, Dv = 512; a kernel's scratch grows with tile x head dim. */
#define ATTN_MAX_HEAD_DIM 1024

/* Codes a CPU kernel stores to its status word (never ATTN_KERNEL_OK). */
#define ATTN_KERNEL_OK 0
#define ATTN_KERNEL_OUT_OF_MEMORY 1

/*===--- Status -----------------------------------------------------------===*/

typedef enum attn_status {
  ATTN_OK = 0,
  ATTN_ERROR_INVALID_ARGUMENT = 1, /* NULL pointer, malformed kernel desc */
  ATTN_ERROR_SHAPE = 2,            /* ndim or sizes do not bind */
  ATTN_ERROR_DTYPE = 3,            /* element type or lanes */
  ATTN_ERROR_DEVICE = 4,           /* tensor not in the backend's memory */
  ATTN_ERROR_LAYOUT = 5,           /* strides, alignment, overlapping output */
  ATTN_ERROR_UNSUPPORTED = 6,      /* lse without softmax, ABI version,
                                      head dim past ATTN_MAX_HEAD_DIM */
  ATTN_ERROR_INTERNAL = 7,
  ATTN_ERROR_DRIVER = 8,           /* GPU driver missing or a driver call
                                      failed */
  ATTN_ERROR_OUT_OF_MEMORY = 9     /* a kernel could not allocate its
                                      scratch memory */
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

/* Processes work items [begin, end); args as described at the top of this
   file, including the status word args[num_inputs + 2]. */
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
  /* The decode schedule (ABI 4; NULL and 0 when the kernel has none, as for
     every normalizer but softmax): attn_cpu_run uses it when N <=
     decode_lanes. Its items are
       item = ((b * Hkv + hk) * chunks + chunk) * splits + split,
       chunks = ceil(G * N / decode_lanes),
     each the lanes [chunk * L, (chunk + 1) * L) (L = decode_lanes) of the
     G * N queries of KV head hk's group, flat lane f being query f % N of
     head hk * G + f / N, against kv tiles [split * T, (split + 1) * T) of
     the ceil(M / tile_kv) tiles (T = ceil(tiles / splits)). Its args are
     the forward's with o and lse replaced by the partial results
     o_part float32 [B, Hkv, splits, chunks * L, Dv] and lse_part float32
     [B, Hkv, splits, chunks * L] (never NULL): each item writes its
     lanes' normalized o and lse (-inf where it saw no visible key), and
     the runtime merges the splits (lse = logsumexp, o weighted by
     exp(lse_s - lse)). */
  attn_cpu_kernel_fn decode_fn;
  int32_t decode_lanes;
  /* The paged-KV kernels (ABI 5; NULL unless compiled with attnc
     --paged-kv): paged_fn has cpu_fn's items, paged_decode_fn decode_fn's
     (NULL without a decode schedule). Their k and v are page pools
     [pages, page_size, Hkv, D] and two more descriptors follow the aux
     inputs: block_table int32 [B, max_pages] and kv_lens int32 [B]; the
     status word is args[num_inputs + 4]. Key j of sequence b is row
     j % page_size of page block_table[b][j / page_size], for j <
     kv_lens[b] (M, per sequence). attn_cpu_run_batch() validates the
     tables before calling them. */
  attn_cpu_kernel_fn paged_fn;
  attn_cpu_kernel_fn paged_decode_fn;
  /* The wide decode kernels (ABI 8; NULL and 0 when the kernel has none):
     decode_fn's items, args and partials with L = decode_wide_lanes lanes
     per item. The runtime takes them instead of decode_fn (and
     paged_decode_fn) when a group's G * N exceeds decode_lanes
     (attn_cpu_decode_lanes), so each K and V row is read once per
     decode_wide_lanes queries instead of once per decode_lanes.
     paged_decode_wide_fn is set exactly when paged_fn and decode_wide_fn
     are. */
  attn_cpu_kernel_fn decode_wide_fn;
  int32_t decode_wide_lanes;
  attn_cpu_kernel_fn paged_decode_wide_fn;
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
   - UNSUPPORTED: lse != NULL while !kernel->has_lse; abi_version mismatch;
     Dqk or Dv larger than ATTN_MAX_HEAD_DIM.
   Once launched, a call fails only with
   - OUT_OF_MEMORY: a kernel call could not allocate its scratch (the
     message names the kernel, Dqk and Dv). The items already
     computed have been written, the others not: o and lse are then
     partially written.
   Strides NULL means compact row-major; otherwise any non-negative element
   strides are accepted for q, k, v and aux (zero = broadcast). byte_offset
   is honoured. o and lse must not alias each other or an input (unchecked).

   Thread safety: concurrent calls from any number of threads are allowed and
   run concurrently (per-call state; the pool's workers are shared), and a
   kernel may itself call attn_cpu_run. Kernels keep nothing that grows with
   the head dims or tiles on the stack, so any thread may call (tested with
   a 256 KiB stack and Dqk = Dv = ATTN_MAX_HEAD_DIM). */
ATTN_RUNTIME_API attn_status_t attn_cpu_run(const attn_kernel_desc_t *kernel,
                                            const DLTensor *const *inputs,
                                            DLTensor *o, DLTensor *lse,
                                            const attn_run_options_t *options);

/* Which schedule attn_cpu_run(kernel, ...) runs for these dims with
   num_threads threads (0: attn_cpu_num_threads()): 0 for the prefill
   schedule (items over query tiles), else the decode schedule
   (kernel->decode_fn) with that many kv splits per (b, kv head, lane
   chunk). attn_cpu_run takes the decode schedule when the kernel has one
   and N <= decode_lanes; the environment variable ATTN_CPU_SCHEDULE =
   prefill or decode (read per call) forces one, and ATTN_DECODE_SPLITS = n
   the split count (at most 4096); both are for tests and benchmarks. Without
   them a call splits the kv length only to give every thread about four
   items, each of at least 512 keys. 0 as well for a NULL kernel or dims that
   do not form a valid call. */
ATTN_RUNTIME_API int64_t
attn_cpu_decode_splits(const attn_kernel_desc_t *kernel, int64_t B, int64_t Hq,
                       int64_t Hkv, int64_t N, int64_t M, int32_t num_threads);

/* The query lanes per work item of the decode schedule for a call with these
   heads and N: decode_wide_lanes (the wide decode kernels) when the kernel
   has them and G * N = (Hq / Hkv) * N exceeds decode_lanes, else
   decode_lanes; 0 for a kernel without a decode schedule, a NULL kernel or
   dims that do not form a valid call. Whether the call takes the decode
   schedule at all is attn_cpu_decode_splits()'s answer. */
ATTN_RUNTIME_API int32_t attn_cpu_decode_lanes(const attn_kernel_desc_t *kernel,
                                               int64_t Hq, int64_t Hkv,
                                               int64_t N);

/*===--- Ragged batches and paged KV caches (CPU)
 * ---------------------------===*/

/* How the sequences of a batch are laid out (attn_cpu_run_batch). A NULL
   field keeps attn_cpu_run's dense layout for that side. All tables are
   int32 host tensors (any non-negative strides).

   Queries, ragged (cu_seqlens_q int32 [B + 1], the FlashAttention varlen
   convention): q is packed [total_q, Hq, Dqk], o [total_q, Hq, Dv] and lse
   [Hq, total_q]; sequence b's queries are rows cu_seqlens_q[b] ..
   cu_seqlens_q[b + 1] - 1. cu_seqlens_q[0] = 0, non-decreasing,
   cu_seqlens_q[B] = total_q. Dense (NULL): q [B, Hq, N, Dqk], o, lse as
   for attn_cpu_run.

   Keys, ragged (cu_seqlens_k int32 [B + 1]): k packed [total_k, Hkv, Dqk],
   v [total_k, Hkv, Dv], with the rules of cu_seqlens_q.
   Keys, paged (block_table int32 [B, max_pages] and kv_lens int32 [B]; the
   kernel needs paged_fn): k [pages, page_size, Hkv, Dqk] and v [pages,
   page_size, Hkv, Dv], vLLM's and FlashInfer's NHD page layout; sequence b
   has kv_lens[b] keys (0 <= kv_lens[b] <= max_pages * page_size), key j in
   row j % page_size of page block_table[b][j / page_size], which must lie
   in [0, pages) for every page the sequence uses (entries past them are
   ignored: -1 padding is fine).
   Keys, dense (all three NULL): k [B, Hkv, M, Dqk], v [B, Hkv, M, Dv].
   cu_seqlens_k and block_table are exclusive.

   Masks and scores see each sequence on its own: b its index, q_idx and
   kv_idx positions within it, N and M its lengths (a bottom-right causal
   mask aligns each sequence's last query with its last key). Aux inputs
   are indexed as for a padded batch: their dims bind B = the number of
   sequences, N = the longest query run, M = the longest key run. A
   sequence with no keys gives o = 0 and lse = -inf. */
typedef struct attn_batch_layout {
  const DLTensor *cu_seqlens_q; /* int32 [B + 1], or NULL */
  const DLTensor *cu_seqlens_k; /* int32 [B + 1], or NULL */
  const DLTensor *block_table;  /* int32 [B, max_pages], or NULL */
  const DLTensor *kv_lens;      /* int32 [B], with block_table */
} attn_batch_layout_t;

/* attn_cpu_run over a ragged and/or paged batch (attn_batch_layout_t). Every
   sequence takes the schedule attn_cpu_run would give it alone (decode for
   N <= decode_lanes), all in one launch. Validates everything, the tables'
   values included, before writing anything, with attn_cpu_run's codes, and:
   - INVALID_ARGUMENT: NULL layout; kv_lens without block_table or the
     reverse; cu_seqlens_k with block_table.
   - SHAPE: a table's rank or size, B disagreeing between them; offsets
     not starting at 0, decreasing, or not ending at the packed tensor's
     rows; a kv_lens entry outside [0, max_pages * page_size]; a page id
     outside [0, pages) (the message names the sequence and entry).
   - DTYPE: a table not int32.
   - UNSUPPORTED: a paged layout for a kernel without paged_fn.
   Thread safety as attn_cpu_run. */
ATTN_RUNTIME_API attn_status_t attn_cpu_run_batch(
    const attn_kernel_desc_t *kernel, const DLTensor *const *inputs,
    const attn_batch_layout_t *layout, DLTensor *o, DLTensor *lse,
    const attn_run_options_t *options);

/* The thread count num_threads = 0 means: the ATTN_NUM_THREADS environment
   variable if set to a positive integer (read once), else the number of CPUs
   this process may run on. Always >= 1. */
ATTN_RUNTIME_API int32_t attn_cpu_num_threads(void);

/*===--- CPU gradients (the backward pass) -------------------------------===*/
/* A compiled CPU backward kernel (attnc --backward): `cpu_fn(args, begin,
   end)` processes work items item = b * Hkv + hk, each the kv tiles of one
   KV head, which own the dq rows of their group's query heads. args are
   memref descriptors as for the forward, in this order: q, k, v, o, lse
   (the forward's outputs), each aux input, then do, dlse (NULL pointers
   when absent), dq, dk, dv (rank 4, f32), then d<aux> (f32, the aux
   input's rank) for each entry of grad_inputs; args[num_inputs + 7 +
   num_grads] points to the status word (as for the forward). */
typedef struct attn_backward_desc {
  uint32_t abi_version; /* ATTN_ABI_VERSION */
  const char *name;     /* spec name */
  int32_t num_inputs;   /* q, k, v + aux, as the forward's */
  const attn_input_desc_t *inputs;
  int32_t needs_lse;          /* softmax: the forward's lse is an input */
  int32_t num_grads;          /* aux inputs with a gradient */
  const int32_t *grad_inputs; /* their indices in inputs, ascending, >= 3 */
  attn_cpu_kernel_fn cpu_fn;
} attn_backward_desc_t;

/* Computes dq, dk, dv (float32, the shapes of q, k, v) and, for each aux
   input the spec's score reads as a float, its gradient daux[i] (float32,
   the input's shape; i indexes grad_inputs) of the loss
   L = sum(o * dout) + sum(lse * dlse) (docs/language.md section 15), from
   the forward's inputs and its outputs o (float32 [B, Hq, N, Dv]) and lse
   (float32 [B, Hq, N]; required when needs_lse). dout is float32
   [B, Hq, N, Dv]; dlse (optional, NULL: 0) float32 [B, Hq, N]. GQA: dk and
   dv sum over the query heads of a group.
   Validates everything before writing anything, with the rules and codes of
   attn_cpu_run() for the inputs, plus:
   - INVALID_ARGUMENT: NULL kernel/cpu_fn/inputs/o/dout/dq/dk/dv, lse NULL
     while needs_lse ("the forward's lse"), dlse non-NULL while !needs_lse
     (no lse, no lse gradient), daux NULL or a NULL entry while
     num_grads > 0, grad_inputs not ascending indices of f32 aux inputs.
   - DTYPE, SHAPE, DEVICE: o, lse, dout, dlse, dq, dk, dv and daux as
     declared above, in host memory.
   - LAYOUT: an output (dq, dk, dv, daux) overlapping itself, another
     output, or any input (q, k, v, aux, o, lse, dout, dlse).
   Once launched, only OUT_OF_MEMORY (a kernel's scratch) can fail; the
   outputs are then partially written. The daux tensors are zeroed before
   the launch (the kernels add to them). */
ATTN_RUNTIME_API attn_status_t attn_cpu_run_backward(
    const attn_backward_desc_t *kernel, const DLTensor *const *inputs,
    const DLTensor *o, const DLTensor *lse, const DLTensor *dout,
    const DLTensor *dlse, DLTensor *dq, DLTensor *dk, DLTensor *dv,
    DLTensor *const *daux, const attn_run_options_t *options);

/*===--- CUDA execution ---------------------------------------------------===*/

/* One compiled variant of a CUDA kernel. */
typedef struct attn_cuda_kernel_variant {
  const char *function;     /* kernel symbol in the image */
  int32_t max_head_dim;     /* handles Dqk, Dv <= max_head_dim */
  int32_t block_q;          /* query rows per CTA: grid.x = ceil(N / block_q) */
  int32_t num_threads;      /* threads per CTA */
  int32_t shared_mem_bytes; /* dynamic shared memory per CTA */
  /* Global scratch (0, 0: none): a kernel that takes it gets one more
     argument after the gradients, a 1-D byte buffer of
     attn_cuda_scratch_floats_per_cta() * 4 bytes per CTA, which the runtime
     allocates on the stream and frees after the launch. */
  int64_t scratch_state_floats;
  int64_t scratch_fixed_floats;
} attn_cuda_kernel_variant_t;

/* The floats of scratch one CTA of `v` needs for N query rows: the linear
   family's CUDA backward keeps one state per chunk of r = ceil(sqrt(N))
   steps and one chunk's states, so (ceil(n / r) + r + 2) states of
   scratch_state_floats plus scratch_fixed_floats, n = max(N, 1). */
static inline uint64_t
attn_cuda_scratch_floats_per_cta(const attn_cuda_kernel_variant_t *v,
                                 int64_t N) {
  uint64_t n = N > 1 ? (uint64_t)N : 1, r = n, next = (n + 1) / 2;
  if (v->scratch_state_floats <= 0 && v->scratch_fixed_floats <= 0)
    return 0;
  while (next < r) { /* Newton: r ends as floor(sqrt(n)) */
    r = next;
    next = (r + n / r) / 2;
  }
  if (r * r < n)
    ++r;
  return ((n + r - 1) / r + r + 2) * (uint64_t)v->scratch_state_floats +
         (uint64_t)v->scratch_fixed_floats;
}

typedef struct attn_cuda_kernel_desc {
  uint32_t abi_version;     /* ATTN_ABI_VERSION */
  const char *name;         /* spec name */
  const void *image;        /* fatbin or cubin (cuModuleLoadData) */
  uint64_t image_size;
  int32_t num_variants;     /* sorted by max_head_dim ascending */
  const attn_cuda_kernel_variant_t *variants;
  int32_t num_inputs;       /* q, k, v + aux, in args order */
  const attn_input_desc_t *inputs;
  int32_t has_lse;
  /* The split-KV decode schedule (ABI 6; 0 / NULL: none, as for ROCm and
     non-softmax specs). attn_cuda_run takes it for N <= decode_max_n: a
     decode variant (attn_<name>_decode_d<D>, chosen by max_head_dim as the
     forward's; block_q = the (query head, query) rows of a GQA group per
     CTA) writes per-split partials, then merge_variant (attn_<name>_merge;
     block_q = output rows per CTA) combines them by their lse. */
  int32_t decode_max_n;
  int32_t num_decode_variants; /* sorted by max_head_dim ascending */
  const attn_cuda_kernel_variant_t *decode_variants;
  const attn_cuda_kernel_variant_t *merge_variant; /* NULL iff no decode */
  /* The batch prefill variants (ABI 9; 0 / NULL: none, as for ROCm, linear
     attention and kernels compiled without attnc --paged-kv):
     attn_cuda_run_batch runs them when max_seqlen_q > decode_max_n. A variant
     (attn_<name>_batch_d<D>, chosen by max_head_dim as the forward's) takes the
     forward's parameters (q, k, v, o, lse, aux) then the decode variants' batch
     tables, and runs on grid (ceil(max_seqlen_q / block_q), B * Hq), one CTA
     per q tile of a (sequence, head). */
  int32_t num_batch_variants; /* sorted by max_head_dim ascending */
  const attn_cuda_kernel_variant_t *batch_variants;
} attn_cuda_kernel_desc_t;

/* The kv splits attn_cuda_run's decode schedule uses when `ctas` CTAs
   (B * Hkv * ceil(G * N / block_q)) cover one split each, for M keys, on a
   device running `slots` such CTAs at once (SMs x CTAs per SM, from the
   driver's occupancy calculator): 1 when ctas fill at least 80 % of the
   slots; else the smallest count, at most 128 and at most ceil(M / 128),
   whose wave efficiency ctas * S / (ceil(ctas * S / slots) * slots) is
   within 85 % of the best such count's (FlashAttention-2's rule). The
   environment variable ATTN_DECODE_SPLITS = n (read per call; tests,
   benchmarks) forces min(n, 128). 1 for non-positive arguments. */
ATTN_RUNTIME_API int64_t attn_cuda_decode_splits(int64_t ctas, int64_t M,
                                                 int64_t slots);

/* Launches `kernel` on `inputs` (num_inputs tensors in args order: q, k, v,
   aux), writing o (float32 [B, Hq, N, Dv]) and, when non-NULL, lse (float32
   [B, Hq, N]), on `stream` (a CUstream; NULL = the legacy default stream).
   Asynchronous: returns once the launch is queued; errors the kernel meets
   while running surface at the caller's next synchronization, as with any
   CUDA library.

   Validates everything before touching the driver, with the rules, codes and
   messages of attn_cpu_run() except:
   - INVALID_ARGUMENT: also NULL image, image_size 0, no variants, a variant
     with a NULL/empty function, max_head_dim/block_q/num_threads <= 0,
     num_threads > 1024, shared_mem_bytes < 0, variants not sorted by
     max_head_dim.
   - UNSUPPORTED: q, k, v not declared BF16 or F16; max(Dqk, Dv) larger than
     every variant's max_head_dim (the variant used is the one with the
     smallest max_head_dim >= max(Dqk, Dv)).
   - DEVICE: a tensor (input, o or lse) not on kDLCUDA or kDLCUDAManaged, or
     on another device_id than q; the calling thread's current CUDA context
     on another device than the tensors; a device_id the driver lacks.
   - LAYOUT: q, k, v need innermost stride 1, the other strides multiples of
     8 elements (dims of size 1 are exempt) and data + byte_offset aligned to
     16 bytes: the kernels copy 16-byte chunks.
   - SHAPE: B * Hq > 65535 (grid.y) or ceil(N / block_q) > 2^31 - 1.
   - INVALID_ARGUMENT: decode_max_n < 0, or decode_max_n > 0 without decode
     variants, or decode variants without a merge variant, or a decode or
     merge variant malformed as the forward's; num_batch_variants < 0, or
     > 0 with batch_variants NULL, or a batch variant malformed as the
     forward's (attn_cuda_run does not launch them, but checks them).
   Decode (N <= decode_max_n, or ATTN_GPU_SCHEDULE = decode; = prefill turns
   it off; read per call): two launches on `stream`, the decode variant on
   grid (B * Hkv * C * S, 1), C = ceil(G * N / block_q) row chunks and S =
   attn_cuda_decode_splits() kv splits, into partials o_part float32
   [B, Hkv, S, C * block_q, Dv] and lse_part [B, Hkv, S, C * block_q] that it
   allocates on the stream (cuMemAllocAsync) and frees after the merge
   variant's launch on grid (ceil(N / block_q), B * Hq), even when a launch
   fails; OUT_OF_MEMORY when the allocation fails.
   - DRIVER: the driver library cannot be loaded (its name is the
     ATTN_CUDA_DRIVER environment variable when set, else "libcuda.so.1"; read
     once, at the first CUDA call of the process) or a driver call fails
     ("cuLaunchKernel failed: <the driver's error string>").
   When no CUDA context is current on the calling thread, the primary context
   of the tensors' device is retained and made current (and stays current).
   The module loaded from `image` is cached per (context, image pointer,
   image_size) for the life of the process, so the image must stay valid and
   unchanged as long as it may be launched.

   Thread safety: concurrent calls from any number of threads are allowed. */
ATTN_RUNTIME_API attn_status_t attn_cuda_run(
    const attn_cuda_kernel_desc_t *kernel, const DLTensor *const *inputs,
    DLTensor *o, DLTensor *lse, void *stream);

/* A ragged and/or paged batch on a CUDA device (attn_cuda_run_batch): the
   tables and their meanings are attn_batch_layout_t's, as int32 tensors on
   q's device. The longest runs are given, not read from the tables: reading
   device tables would need a synchronous copy (a stall, and no CUDA-graph
   capture). They size the grids and the kv splits, and the aux inputs bind
   B = the number of sequences, N = max_seqlen_q, M = max_seqlen_k. */
typedef struct attn_gpu_batch_layout {
  attn_batch_layout_t tables;
  int64_t max_seqlen_q; /* >= every sequence's query count, >= 1 */
  int64_t max_seqlen_k; /* >= every sequence's key count, >= 1 */
} attn_gpu_batch_layout_t;

/* attn_cuda_run over a ragged and/or paged batch, each sequence with its
   own N and M (masks and scores see each sequence on its own, as for
   attn_cpu_run_batch), in one of two schedules:
   - decode (max_seqlen_q <= decode_max_n): one launch of the decode variant
     and one of the merge variant, as attn_cuda_run's decode schedule;
   - batch prefill (max_seqlen_q > decode_max_n): one launch of the batch
     variant (num_batch_variants) on grid (ceil(max_seqlen_q / block_q),
     B * Hq), writing o and lse directly; no partials.
   A packed q, o, lse (and packed k, v) reach both as views [B, H, rows, D]
   ([B, Hq, total_q] for lse) with a zero batch stride, page pools as they
   are, then the tables (NULL descriptors where absent). The environment
   variable ATTN_GPU_SCHEDULE (read per call) = prefill takes the batch
   prefill variant whatever max_seqlen_q (when the kernel has one), =
   decode the decode schedule (UNSUPPORTED when max_seqlen_q >
   decode_max_n; when the kernel has no decode variants it is ignored).
   Validates with attn_cuda_run's rules and attn_cpu_run_batch's for the
   layout (shapes, int32 tables, B agreeing), except that the tables must be
   on q's CUDA device and their values are not read: the kernels clamp every
   offset, length and page id, so a wrong table gives wrong rows of o and
   lse but no access outside q, k, v, o, lse and the tables. With the
   environment variable ATTN_GPU_CHECK_TABLES=1 (read per call; a debug
   mode that stalls the stream) the tables are copied back on `stream`,
   waited for and checked as attn_cpu_run_batch checks them, and every
   sequence's query and key counts against max_seqlen_q and max_seqlen_k:
   SHAPE before any launch (DRIVER when the copy fails). Also:
   - INVALID_ARGUMENT: NULL layout; max_seqlen_q or max_seqlen_k < 1.
   - SHAPE: a block table without a column; page_size >= 2^31; the batch
     prefill's ceil(max_seqlen_q / block_q) > 2^31 - 1 (grid.x).
   - UNSUPPORTED: a kernel with neither decode nor batch prefill variants
     (ROCm, linear attention, non-softmax specs without --paged-kv);
     max_seqlen_q > decode_max_n and no batch prefill variants (compile
     with attnc --paged-kv).
   A max_seqlen_q smaller than a sequence's query count leaves some of its
   rows unwritten (it sizes the grids); max_seqlen_k sizes only the kv
   splits and the aux inputs' M (aux lookups past it read their last
   entry). */
ATTN_RUNTIME_API attn_status_t attn_cuda_run_batch(
    const attn_cuda_kernel_desc_t *kernel, const DLTensor *const *inputs,
    const attn_gpu_batch_layout_t *layout, DLTensor *o, DLTensor *lse,
    void *stream);

/* A compiled CUDA backward kernel (attnc --target=cuda --backward): the
   variants are attn_<name>_bwd_d<D> kernels, whose block_q field holds the
   kv rows per CTA (grid.x = ceil(M / block_q), grid.y = B * Hkv). Their
   parameters are the memref descriptors (every field a separate 8-byte
   parameter, as for the forward) of q, k, v, o, lse, each aux input, dout,
   dlse, dq, dk, dv, then d<aux> for each entry of grad_inputs. */
typedef struct attn_cuda_backward_desc {
  uint32_t abi_version; /* ATTN_ABI_VERSION */
  const char *name;     /* spec name */
  const void *image;    /* fatbin or cubin (cuModuleLoadData) */
  uint64_t image_size;
  int32_t num_variants; /* sorted by max_head_dim ascending */
  const attn_cuda_kernel_variant_t *variants;
  int32_t num_inputs; /* q, k, v + aux, as the forward's */
  const attn_input_desc_t *inputs;
  int32_t needs_lse;          /* softmax: the forward's lse is an input */
  int32_t num_grads;          /* aux inputs with a gradient */
  const int32_t *grad_inputs; /* their indices in inputs, ascending, >= 3 */
} attn_cuda_backward_desc_t;

/* The gradients on a CUDA device: attn_cpu_run_backward's semantics
   (dq, dk, dv and daux of L = sum(o * dout) + sum(lse * dlse)) for tensors
   in CUDA memory, queued on `stream` (a CUstream; NULL: the legacy default
   stream) without synchronizing. dout has q's element type (bf16 or f16:
   the kernels feed it to tensor cores) and the layout rules of q, k and v;
   o, lse, dlse, dq, dk, dv and daux are float32. dq and every daux are
   zeroed on the stream before the launch (the kernels add to them
   atomically), so they must be compact (row-major without gaps: one
   memset each).
   Validates everything before touching the driver, with the rules of
   attn_cpu_run_backward() for the call (NULL pointers, lse and dlse,
   daux, shapes, dtypes, outputs overlapping anything) and of
   attn_cuda_run() for the descriptor, devices, variants and the layout of
   q, k, v (and dout), plus:
   - LAYOUT: dq or a daux not compact.
   - SHAPE: B * Hkv > 65535 (grid.y) or ceil(M / block_q) > 2^31 - 1.
   - DRIVER: as attn_cuda_run, also "cuMemsetD32Async failed: ...". */
ATTN_RUNTIME_API attn_status_t attn_cuda_run_backward(
    const attn_cuda_backward_desc_t *kernel, const DLTensor *const *inputs,
    const DLTensor *o, const DLTensor *lse, const DLTensor *dout,
    const DLTensor *dlse, DLTensor *dq, DLTensor *dk, DLTensor *dv,
    DLTensor *const *daux, void *stream);

/* 1 when the CUDA driver loads, initializes and reports at least one device;
   else 0, and attn_last_error() says why. */
ATTN_RUNTIME_API int32_t attn_cuda_available(void);

/*===--- ROCm ----------------------------------------------------------===*/

/* A compiled ROCm kernel has the CUDA kernel's form: `image` is an AMD code
   object (hsaco) or a clang offload bundle of them, as hipModuleLoadData
   takes it; each variant's fields mean what they mean for CUDA (function,
   max_head_dim, block_q, num_threads, shared_mem_bytes: LDS per workgroup,
   the scratch fields), and its kernel parameters are the same memref
   descriptors, every field a separate 8-byte parameter. Grid
   (ceil(N / block_q), B * Hq, 1) for the forward, (ceil(M / block_q),
   B * Hkv, 1) for the backward; block (num_threads, 1, 1). */
typedef attn_cuda_kernel_variant_t attn_rocm_kernel_variant_t;
typedef attn_cuda_kernel_desc_t attn_rocm_kernel_desc_t;
typedef attn_cuda_backward_desc_t attn_rocm_backward_desc_t;

/* attn_cuda_run() on an AMD GPU: launches `kernel` on `inputs` (q, k, v,
   aux), writing o and, when non-NULL, lse, on `stream` (a hipStream_t;
   NULL = the null stream), through the HIP runtime, which is loaded with
   dlopen at the first ROCm call ($ATTN_HIP_LIBRARY when set, else the
   first of libamdhip64.so, .so.6 and .so.5 that loads; read once).
   Asynchronous, as attn_cuda_run().

   Validates everything before touching HIP, with the rules, codes and
   messages of attn_cuda_run() except:
   - DEVICE: a tensor (input, o or lse) not on kDLROCM (kDLROCMHost is host
     memory: attn_run gives it to the CPU code), or on another device_id
     than q; a device_id HIP does not report.
   - SHAPE: ceil(N / block_q) * num_threads > 2^32 - 1 or B * Hq >
     2^32 - 1: hipModuleLaunchKernel takes the grid in blocks but computes
     the global size (blocks * threads per block) in 32 bits.
   - UNSUPPORTED: the chosen variant's shared_mem_bytes > 65536 (AMD GPUs
     have 64 KiB of LDS per workgroup).
   - DRIVER: HIP cannot be loaded or initialized, or a HIP call fails
     ("hipModuleLaunchKernel failed: <hipGetErrorString> (HIP error N)").
   HIP has a current device per thread rather than contexts: when the
   calling thread's current device (hipGetDevice) is not the tensors', the
   call makes it current (hipSetDevice) and puts the caller's back before
   returning, on every path; a failure to put it back is a DRIVER error
   when the call had otherwise succeeded (the kernel is then queued). The
   module loaded from `image` is cached per (device, image pointer,
   image_size) for the life of the process, so the image must stay valid
   and unchanged as long as it may be launched.

   Thread safety: concurrent calls from any number of threads are allowed. */
ATTN_RUNTIME_API attn_status_t attn_rocm_run(
    const attn_rocm_kernel_desc_t *kernel, const DLTensor *const *inputs,
    DLTensor *o, DLTensor *lse, void *stream);

/* attn_cuda_run_backward() on an AMD GPU: the same gradients, validation
   and order on `stream` (a hipStream_t; NULL: the null stream), with the
   devices, limits and HIP of attn_rocm_run(): dq and every daux zeroed
   with hipMemsetD32Async before the launch, a variant's global scratch
   allocated with hipMallocAsync (out of memory: OUT_OF_MEMORY, nothing
   launched), passed as the last parameter and freed with hipFreeAsync
   after the launch, even when the launch failed.
   - SHAPE: ceil(M / block_q) * num_threads > 2^32 - 1 or B * Hkv >
     2^32 - 1.
   - DRIVER: as attn_rocm_run, also "hipMemsetD32Async failed: ...". */
ATTN_RUNTIME_API attn_status_t attn_rocm_run_backward(
    const attn_rocm_backward_desc_t *kernel, const DLTensor *const *inputs,
    const DLTensor *o, const DLTensor *lse, const DLTensor *dout,
    const DLTensor *dlse, DLTensor *dq, DLTensor *dk, DLTensor *dv,
    DLTensor *const *daux, void *stream);

/* 1 when the HIP runtime (libamdhip64, loaded with dlopen:
   $ATTN_HIP_LIBRARY, else libamdhip64.so, .so.6 or .so.5) loads,
   initializes and reports at least one AMD GPU; else 0, and
   attn_last_error() says why in one line. */
ATTN_RUNTIME_API int32_t attn_rocm_available(void);

/*===--- Merging partial results (the LSE merge) -------------------------===*/

/* Softmax attention over keys split into P parts, from each part's
   normalized output o_p and log-sum-exp lse_p (a softmax kernel's o and
   lse over that part's keys):
     lse = log sum_p exp(lse_p),   o = sum_p exp(lse_p - lse) o_p
   per row: split-KV decode, cascade (shared-prefix) attention, context
   parallelism. A part with lse_p = -inf saw no key and has weight 0 (its
   o_p is not read); a row whose parts are all empty gets o = 0 and
   lse = -inf, never NaN. Sums run in double.

   o_parts: float32 [P, d1, ..., dR] (R >= 1; dR is Dv, e.g.
   [P, B, Hq, N, Dv]); lse_parts: float32 [P, d1, ..., d(R-1)]; o: float32
   [d1, ..., dR]; lse: float32 [d1, ..., d(R-1)], or NULL when not wanted.
   P >= 1 (P = 1 copies). Rows (the d1..d(R-1) indices) run in parallel on
   the CPU thread pool (options->num_threads as for attn_cpu_run; options
   may be NULL). Sizes d1..dR may be 0: an empty o or lse is not touched
   (Dv = 0 still gives lse).

   Validates everything before writing anything; on failure returns the
   code, sets attn_last_error() to a one-line message naming the tensor
   (and dim), and writes nothing to o or lse:
   - INVALID_ARGUMENT: NULL o_parts/lse_parts/o, NULL data or shape,
     negative num_threads.
   - DTYPE: a tensor that is not kDLFloat/32 with lanes == 1.
   - SHAPE: o_parts' ndim not in [2, 16], P = 0 or a negative size; another
     tensor's ndim or sizes not the ones above; size overflow.
   - DEVICE: a tensor not in host memory (kDLCPU, kDLCUDAHost, kDLROCMHost).
   - LAYOUT: negative strides; data + byte_offset not 4-byte aligned; o or
     lse overlapping itself (a zero stride on a dim of size > 1, or strides
     that do not nest), each other, o_parts or lse_parts (the byte ranges
     they span; an empty tensor overlaps nothing).
   Strides NULL means compact row-major; otherwise any non-negative element
   strides (zero on the inputs: broadcast); byte_offset is honoured. Safe to
   call from any number of threads. */
ATTN_RUNTIME_API attn_status_t attn_merge_states(
    const DLTensor *o_parts, const DLTensor *lse_parts, DLTensor *o,
    DLTensor *lse, const attn_run_options_t *options);

/*===--- Any device: one kernel, code for several backends ---------------===*/

/* The code of one kernel for one kind of device: `desc` points to an
   attn_kernel_desc_t when device_type is kDLCPU, to an
   attn_cuda_kernel_desc_t when it is kDLCUDA, to an attn_rocm_kernel_desc_t
   when it is kDLROCM. */
typedef struct attn_kernel_target {
  int32_t device_type; /* a DLDeviceType: kDLCPU, kDLCUDA or kDLROCM */
  const void *desc;
} attn_kernel_target_t;

/* A kernel with code for one or more device types (at most one entry per
   device type). */
typedef struct attn_kernel {
  uint32_t abi_version;     /* ATTN_ABI_VERSION */
  const char *name;         /* spec name */
  int32_t num_targets;
  const attn_kernel_target_t *targets;
} attn_kernel_t;

/* Runs `kernel` where the tensors are: q's device picks the entry of
   `kernel->targets` (kDLCPU for kDLCPU, kDLCUDAHost and kDLROCMHost memory;
   kDLCUDA for kDLCUDA and kDLCUDAManaged; kDLROCM for kDLROCM) and the call
   is that backend's attn_cpu_run(desc, inputs, o, lse, options),
   attn_cuda_run(desc, inputs, o, lse, stream) or
   attn_rocm_run(desc, inputs, o, lse, stream), with its rules and codes.
   `options` is read by the CPU backend only, `stream` by the GPU backends
   only (a CUstream for CUDA, a hipStream_t for ROCm; NULL: the default
   stream).
   - INVALID_ARGUMENT: NULL kernel, inputs or inputs[0], num_targets < 0,
     NULL targets or a NULL desc, two entries for one device type.
   - UNSUPPORTED: abi_version mismatch.
   - DEVICE: the kernel has no code for q's device (the message names the
     device types it has code for). */
ATTN_RUNTIME_API attn_status_t attn_run(const attn_kernel_t *kernel,
                                        const DLTensor *const *inputs,
                                        DLTensor *o, DLTensor *lse,
                                        const attn_run_options_t *options,
                                        void *stream);

/* "cpu", "cuda", "rocm", ... for a DLDeviceType; "unknown" otherwise. The
   string is static. */
ATTN_RUNTIME_API const char *attn_device_type_name(int32_t device_type);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ATTN_RUNTIME_H */
