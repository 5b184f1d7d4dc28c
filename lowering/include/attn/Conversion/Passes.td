//===- Passes.td - attn lowering passes --------------------*- tablegen -*-===//

#ifndef ATTN_CONVERSION_PASSES_TD
#define ATTN_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def ConvertAttnToCPU : Pass<"convert-attn-to-cpu", "ModuleOp"> {
  let summary = "Lower tiled attn specs to vectorized CPU kernels";
  let description = [{
    Replaces each `attn.spec` (whose attention carries an `#attn.schedule`)
    with a `func.func @attn_<name>_tiles` over strided memrefs
    `(q, k, v, o, lse, aux..., begin, end) -> i32` that computes work items
    `[begin, end)`, item = `(b * Hq + h) * ceil(N / tile_q) + q_tile`.

    Scratch buffers (the transposed Q tile, the O accumulator, S, row
    statistics; the state and chunk buffers of linear attention) are
    allocated once per call on the heap (`memref.alloc`, 64-byte aligned),
    never on the stack, since their size scales with the head dims and
    tiles. The items run only when every allocation succeeded; the result
    is 0, or 1 (ATTN_KERNEL_OUT_OF_MEMORY) when one failed. Tiles and the
    linear chunk are at most 512 rows.

    For a softmax spec it also emits the decode schedule,
    `func.func @attn_<name>_decode_tiles` with the same arguments except o
    and lse, which are the partial results `[B, Hkv, splits, chunks * vl,
    Dv]` and `[B, Hkv, splits, chunks * vl]`: item = `((b * Hkv + hk) *
    chunks + chunk) * splits + split`, chunks = `ceil(G * N / vl)`. Its q
    tile is one vector whose lane `f` (of the group's `G * N` queries) is
    query `f % N` of head `hk * G + f / N`, so K and V are read once per
    GQA group; split `s` visits kv tiles `[s * T, (s + 1) * T)`, `T =
    ceil(ceil(M / tile_kv) / splits)`, and writes its normalized o and lse
    (-inf when it saw no key), which the runtime merges
    (runtime/src/Merge.h).

    Queries of a tile live in SIMD lanes: Q is transposed once per tile, so
    `S = Q Kᵀ` and `O += P V` are broadcast-FMA micro-kernels (keys and
    values are read as scalars, any stride), and the online softmax, score
    and mask regions are elementwise vector code. Each (q-tile, kv-tile) is
    classified by evaluating the mask over index intervals: empty tiles are
    skipped, full tiles skip the mask, partial tiles evaluate it per lane.

    With `bf16-dot` and bf16 q and k, S = Q Kᵀ uses AVX512-BF16 dot
    products (`x86vector.avx512.dot`, two d-steps per instruction on Q in
    bf16 pairs and K rows packed per kv tile); with a bf16 v also O += P V
    (P rounded to bf16, V packed in pairs of rows). The rest of the pipeline
    must then lower x86vector (`convert-vector-to-llvm{enable-x86vector}`).

    ```mlir
    func.func @attn_causal_tiles(%q: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>, ...,
                                 %begin: i64, %end: i64) -> i32 attributes {llvm.emit_c_interface}
    ```
  }];
  let options = [
    Option<"vectorWidth", "vector-width", "int64_t", "16",
           "f32 lanes for linear-attention kernels (softmax kernels take it "
           "from their #attn.schedule)">,
    Option<"linearChunk", "linear-chunk", "int64_t", "64",
           "time steps per chunk of the chunked linear-attention form; 0 "
           "selects the step-by-step recurrence">,
    Option<"bf16Dot", "bf16-dot", "bool", "false",
           "softmax-family kernels with bf16 q and k: S = Q Kᵀ by AVX512-BF16 "
           "dot products (x86vector.avx512.dot); needs a CPU with "
           "avx512bf16">,
    Option<"bf16DotPV", "bf16-dot-pv", "bool", "true",
           "with bf16-dot and a bf16 v, also O += P V by dot products (P "
           "rounded to bf16)">,
    Option<"debugTileStats", "debug-tile-stats", "bool", "false",
           "debugging: every work item writes `attn-tile B H QT KT PARTIAL` "
           "to stderr for each kv tile it visits (test/Integration/cpu/"
           "tile-visits.test compares them with show-mask)">,
    Option<"decodeKernel", "decode-kernel", "bool", "true",
           "softmax specs: also emit the decode schedule "
           "`attn_<name>_decode_tiles` (query heads of a GQA group packed "
           "into the lanes, the kv tiles split across work items, partial "
           "(o, lse) for the runtime's merge)">,
    Option<"pagedKV", "paged-kv", "bool", "false",
           "also emit `attn_<name>_paged_tiles` (and, with decode-kernel, "
           "`attn_<name>_paged_decode_tiles`): k and v as page pools "
           "[pages, page_size, Hkv, D] read through block_table i32 "
           "[B, max_pages] and kv_lens i32 [B] (docs/language.md, paged KV "
           "cache)">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect",
    "::mlir::x86vector::X86VectorDialect"
  ];
}

def ConvertAttnToNVVM : Pass<"convert-attn-to-nvvm", "ModuleOp"> {
  let summary = "Lower tiled attn specs to tensor-core GPU kernels (gpu + nvgpu + NVVM)";
  let description = [{
    Replaces each softmax-family `attn.spec` (with an `#attn.schedule`) by a
    `gpu.module @attn_<name>_cuda` holding one FlashAttention-2-style forward
    kernel per head-dim variant, `gpu.func @attn_<name>_d<D>`:

    * one CTA per (query tile, b * Hq + h); `tile_q / 16` warps, each owning
      16 query rows; K/V tiles of `tile_kv` rows;
    * Q, K and V tiles staged in (dynamic, XOR-swizzled) shared memory with
      `cp.async` (`nvgpu.device_async_copy`, zero-filled past N, M and the
      head dim), K/V double-buffered: the copy of the next visible tile is
      in flight while the current one is computed;
    * `S = Q Kᵀ` and `O += P V` on tensor cores: `nvgpu.ldmatrix` fragments
      and `mma.sync.m16n8k16` with bf16 or f16 operands and f32
      accumulators (P is rounded to the input type, as in FlashAttention);
    * online softmax in registers: row max and sum across the 4 lanes of a
      row with `gpu.shuffle xor`; sigmoid / relu / none without statistics;
    * score and mask regions inlined per accumulator element; each (q-tile,
      kv-tile) is classified by the same interval evaluation of the mask as
      on the CPU: empty tiles are never loaded, full tiles skip the mask.

    Head dims are padded to the variant's `D` (zero-filled), so the variant
    with D = 128 serves any Dqk, Dv <= 128. Kernel arguments are the memrefs
    `(q, k, v, o, lse, aux...)`; the runtime passes their descriptors.

    With `decode-kernels`, softmax specs also get a split-KV decode kernel
    per variant: one single-warp CTA per (b, kv head, 16-row chunk of the G * N
    (query head, query) rows of the GQA group, kv split), so each K/V tile is
    read once for the whole group, writing a normalized partial o and its lse
    per split; and a merge kernel combining the splits by their lse.

    With `batch-kernels`, every spec also gets a batch prefill kernel per
    variant, `attn_<name>_batch_d<D>`: the forward kernel whose arguments
    end with the batch tables (cu_seqlens_q, cu_seqlens_k, block_table,
    kv_lens; null memrefs where absent), so one launch covers sequences of
    different lengths, packed or in a page pool; each CTA binds its
    sequence's N and M, and masks see positions within the sequence.

    ```mlir
    gpu.module @attn_causal_cuda {
      gpu.func @attn_causal_d128(%q: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>, ...) kernel
    }
    ```
  }];
  let options = [
    ListOption<"headDims", "head-dims", "int64_t",
               "padded head dims to generate a kernel variant for (64, 128)">,
    Option<"sharedLimit", "shared-limit", "int64_t", "232448",
           "dynamic shared memory per CTA the target's chips allow (bytes; "
           "the default is sm_90's 227 KiB): the linear kernels size their "
           "state for it, and a kernel needing more is an error">,
    Option<"decodeKernels", "decode-kernels", "bool", "false",
           "also generate, for softmax specs, the split-KV decode kernel "
           "attn_<name>_decode_d<D> per head-dim variant and the merge kernel "
           "attn_<name>_merge (attribute attn.role = \"decode\" / "
           "\"merge\"; attn_cuda_run launches them for N <= 16)">,
    Option<"batchKernels", "batch-kernels", "bool", "false",
           "also generate the batch prefill kernel attn_<name>_batch_d<D> "
           "per head-dim variant (attribute attn.role = \"batch\"): the "
           "forward kernel over a ragged or paged batch, reading the batch "
           "tables (attn_cuda_run_batch runs it for sequences of more than "
           "16 queries)">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::gpu::GPUDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::nvgpu::NVGPUDialect", "::mlir::NVVM::NVVMDialect",
    "::mlir::LLVM::LLVMDialect", "::mlir::scf::SCFDialect",
    "::mlir::vector::VectorDialect"
  ];
}

def ConvertAttnToROCDL : Pass<"convert-attn-to-rocdl", "ModuleOp"> {
  let summary = "Lower tiled attn specs to AMD GPU kernels (gpu + ROCDL)";
  let description = [{
    Replaces each `attn.spec` (with an `#attn.schedule`) by a
    `gpu.module @attn_<name>_rocm` holding one kernel per head-dim variant,
    with the launch contract the CUDA kernels carry (`attn.block_q`,
    `attn.num_threads`, `attn.shared_bytes` (LDS), `attn.max_head_dim`,
    `known_block_size`, and the backward's scratch attributes), which the
    ROCm target reads back into the runtime's variant table.

    The linear family (forward and backward) is the SIMT kernels CUDA runs
    (LinearGpuKernels.h): f32 code over gpu, memref, arith, math and scf
    ops, whose 32-lane warp steps run on each half of a 64-lane wavefront.
    Each kernel gets `rocdl.waves_per_eu` = the waves one work-group puts
    on each of a compute unit's four SIMDs (one work-group per CU at least,
    as `nvvm.minctasm = 1` asks on CUDA); `known_block_size` becomes
    `amdgpu-flat-work-group-size` = the block size in convert-gpu-to-rocdl,
    so the register budget is not cut to fit 1024-thread groups.

    The softmax family's forward is a FlashAttention-2-style kernel on
    `amdgpu.mfma` 32x32x8 (bf16/f16, f32 accumulators), wave64, tile_q / 32
    waves of 32 query rows: S^T = K Q^T so that P^T feeds O^T = V^T P^T
    straight from the accumulators, the mask's tile classification and
    block skipping, every normalizer (MfmaAttention.cpp). Its gradients
    are not built yet: such a spec is an error saying so. Every kernel
    carries `attn.wave_size = 64` (attn-gpu-sim runs its warp-level ops on
    64 lanes).

    ```mlir
    gpu.module @attn_gla_rocm {
      gpu.func @attn_gla_d64(%q: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>, ...) kernel
    }
    ```
  }];
  let options = [
    ListOption<"headDims", "head-dims", "int64_t",
               "padded head dims to generate a kernel variant for (64, 128)">,
    Option<"sharedLimit", "shared-limit", "int64_t", "65536",
           "LDS per work-group (bytes; gfx90a and gfx942 have 64 KiB): the "
           "linear kernels size their state for it, and a kernel needing "
           "more is an error">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::gpu::GPUDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::ROCDL::ROCDLDialect", "::mlir::scf::SCFDialect",
    "::mlir::amdgpu::AMDGPUDialect", "::mlir::vector::VectorDialect"
  ];
}

#endif // ATTN_CONVERSION_PASSES_TD
