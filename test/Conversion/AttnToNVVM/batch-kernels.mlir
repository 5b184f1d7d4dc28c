// convert-attn-to-nvvm{batch-kernels}: besides the forward kernel, a batch
// prefill kernel per head-dim variant, the same tile program whose
// arguments end with runtime.h's batch tables (cu_seqlens_q, cu_seqlens_k,
// block_table, kv_lens), marked attn.role = "batch" for the runtime. Its
// behaviour (ragged, paged and dense batches against the reference) is
// test/Integration/gpusim/batch-prefill.test's.
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-nvvm='head-dims=64 batch-kernels=1' | FileCheck %s
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-nvvm='head-dims=64' | FileCheck %s --check-prefix=OFF
// The output is valid input for the rest of the CUDA pipeline:
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention),convert-attn-to-nvvm{head-dims=64 batch-kernels=1},canonicalize,cse,nvvm-attach-target{chip=sm_90 features=+ptx80},gpu.module(convert-nvgpu-to-nvvm,convert-vector-to-llvm,convert-scf-to-cf,convert-gpu-to-nvvm,convert-nvvm-to-llvm),reconcile-unrealized-casts)' | FileCheck %s --check-prefix=NVVM

// CHECK-LABEL: gpu.module @attn_causal_cuda
// CHECK: gpu.func @attn_causal_d64(
// CHECK: gpu.func @attn_causal_batch_d64(
// q, k, v, o, lse as the forward's, then the four int32 tables:
// CHECK-SAME: memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>,
// CHECK-SAME: memref<?xi32, strided<[?], offset: ?>>, %{{.*}}: memref<?xi32, strided<[?], offset: ?>>, %{{.*}}: memref<?x?xi32, strided<[?, ?], offset: ?>>, %{{.*}}: memref<?xi32, strided<[?], offset: ?>>)
// CHECK-SAME: kernel attributes {attn.block_q = 64 : i64, attn.max_head_dim = 64 : i64, attn.num_threads = 128 : i64, attn.role = "batch", attn.shared_bytes = 40960 : i64
// A paged call (block_table present) reads the kv heads from the pool's
// dim 2; the CTA is q tile gridDim.x - 1 - blockIdx.x of (b, h) =
// blockIdx.y / Hq, % Hq:
// CHECK: memref.extract_aligned_pointer_as_index
// CHECK: gpu.grid_dim x
// CHECK: gpu.block_id x
// CHECK: gpu.block_id y
// The sequence's rows from cu_seqlens_q when it is present:
// CHECK: scf.if
// CHECK: memref.load
// CHECK: gpu.return

// OFF-NOT: attn_causal_batch_d64

// NVVM: llvm.func @attn_causal_batch_d64(
// NVVM-SAME: nvvm.kernel

attn.spec @causal {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : bf16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : bf16 ["B", "Hkv", "M", "Dv"]
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "interval">} scale {
  } mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    %c = arith.cmpi sle, %j, %i : i64
    attn.yield %c : i1
  } score {
  } bias {
  }
}
