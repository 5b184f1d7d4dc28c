// convert-attn-to-nvvm: each tiled softmax-family attn.spec becomes a
// gpu.module with one FlashAttention-2-style kernel per head-dim variant.
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-nvvm='head-dims=64' | FileCheck %s
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-nvvm | FileCheck %s --check-prefix=VARIANTS
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-nvvm='head-dims=64' | FileCheck %s --check-prefix=F16
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-nvvm='head-dims=64' | FileCheck %s --check-prefix=SIG
// The output is valid input for the rest of the CUDA pipeline:
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention),convert-attn-to-nvvm{head-dims=64},canonicalize,cse,nvvm-attach-target{chip=sm_90 features=+ptx80},gpu.module(convert-nvgpu-to-nvvm,convert-vector-to-llvm,convert-scf-to-cf,convert-gpu-to-nvvm,convert-nvvm-to-llvm),reconcile-unrealized-casts)' | FileCheck %s --check-prefix=NVVM

// CHECK: module attributes {gpu.container_module}
// CHECK-LABEL: gpu.module @attn_causal_cuda
// q, k, v keep a unit inner stride (16-byte cp.async chunks); o and lse are
// any strided f32 memrefs; the launch contract rides on attributes.
// CHECK: gpu.func @attn_causal_d64(
// CHECK-SAME: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>
// CHECK-SAME: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// CHECK-SAME: memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>
// CHECK-SAME: kernel attributes {attn.block_q = 64 : i64, attn.max_head_dim = 64 : i64, attn.num_threads = 128 : i64, attn.shared_bytes = 40960 : i64, known_block_size = array<i32: 128, 1, 1>, nvvm.minctasm = 1 : i32}
// One CTA per (q tile, b * Hq + h):
// CHECK: gpu.thread_id x
// CHECK: gpu.block_id x
// CHECK: gpu.block_id y
// Dynamic shared memory holds Q [64x64], K [2][64x64] and V [2][64x64]:
// CHECK: gpu.dynamic_shared_memory
// CHECK: memref.view {{.*}} to memref<4096xbf16, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<8192xbf16, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<8192xbf16, #gpu.address_space<workgroup>>
// Q tile: 16-byte cp.async chunks with a zero-filling source count:
// CHECK: nvgpu.device_async_copy %arg0[{{.*}}], %{{.*}}[%{{.*}}], 8, %{{.*}} {bypassL1}
// CHECK: nvgpu.device_async_create_group
// The first visible kv tile is found by the interval classifier:
// CHECK: scf.while
// CHECK: nvgpu.device_async_copy %arg1
// CHECK: nvgpu.device_async_copy %arg2
// CHECK: %[[G0:.*]] = nvgpu.device_async_create_group
// CHECK: nvgpu.device_async_wait %[[G0]] {numGroups = 1 : i32}
// CHECK: gpu.barrier
// The kv loop carries (tile, stage, m0, m1, l0, l1) and 32 O registers:
// CHECK: scf.while ({{.*}}) : (index, index, f32, f32, f32, f32, f32
// The next visible tile is prefetched into the other stage, then this
// tile's group is awaited:
// CHECK: scf.while
// CHECK: nvgpu.device_async_copy %arg1
// CHECK: %[[G1:.*]] = nvgpu.device_async_create_group
// CHECK-NEXT: nvgpu.device_async_wait %[[G1]] {numGroups = 1 : i32}
// CHECK-NEXT: gpu.barrier
// S = Q K^T on tensor cores, Q (A) and K (B) fragments by ldmatrix.x4:
// CHECK: nvgpu.ldmatrix {{.*}}transpose = false
// CHECK: nvgpu.ldmatrix {{.*}}transpose = false
// CHECK: llvm.bitcast %{{.*}} : vector<2xbf16> to i32
// CHECK: nvvm.mma.sync A[{{.*}}] B[{{.*}}] C[{{.*}}] {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>}
// Partial tiles (mask or past M) take the masked branch:
// CHECK: scf.if
// CHECK: arith.cmpi sle
// Online softmax: row max across the 4 lanes of a row, exp2 with log2(e):
// CHECK: gpu.shuffle  xor %{{.*}}, %c1_i32{{.*}}, %c32_i32{{.*}} : f32
// CHECK: gpu.shuffle  xor %{{.*}}, %c2_i32{{.*}}, %c32_i32{{.*}} : f32
// CHECK: math.exp2
// P V: P rounded to bf16 in registers, V through ldmatrix.trans:
// CHECK: arith.truncf %{{.*}} : vector<2xf32> to vector<2xbf16>
// CHECK: nvgpu.ldmatrix {{.*}}transpose = true
// CHECK: nvvm.mma.sync
// CHECK: gpu.barrier
// Store: 1/l (0 for an empty row), lse = m + log l, masked by row < N,
// col < Dv:
// CHECK: math.log
// CHECK: memref.store %{{.*}}, %arg3
// CHECK: memref.store %{{.*}}, %arg4
// CHECK: gpu.return

// VARIANTS: gpu.func @attn_causal_d64(
// VARIANTS-SAME: attn.max_head_dim = 64 : i64, attn.num_threads = 128 : i64, attn.shared_bytes = 40960
// VARIANTS: gpu.func @attn_causal_d128(
// VARIANTS-SAME: attn.max_head_dim = 128 : i64, attn.num_threads = 128 : i64, attn.shared_bytes = 81920

// F16: gpu.func @attn_dense_f16_d64(
// F16-SAME: memref<?x?x?x?xf16, strided<[?, ?, ?, 1], offset: ?>>
// F16-SAME: attn.block_q = 32 : i64
// F16-SAME: attn.num_threads = 64 : i64
// F16-NOT: llvm.bitcast
// F16: nvvm.mma.sync {{.*}} : (vector<2xf16>, vector<2xf16>, f32) -> !llvm.struct<(f32, f32, f32, f32)>
// F16: gpu.return

// Sigmoid: no row statistics (no shuffles before the P V product):
// SIG-LABEL: gpu.func @attn_sig_d64(
// SIG-NOT: gpu.shuffle
// SIG: math.exp
// SIG: arith.divf
// SIG: nvgpu.ldmatrix {{.*}}transpose = true
// SIG: gpu.return

// NVVM: llvm.func @attn_causal_d64(
// NVVM: nvvm.cp.async.shared.global
// NVVM: nvvm.ldmatrix
// NVVM: nvvm.mma.sync
// NVVM: nvvm.shfl.sync bfly

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

attn.spec @dense_f16 {
  attn.input @q : f16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : f16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : f16 ["B", "Hkv", "M", "Dv"]
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 32, tile_kv = 32, vector_width = 16, block_skip = "none">} scale {
  } mask {
  } score {
  } bias {
  }
}

attn.spec @sig {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : bf16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : bf16 ["B", "Hkv", "M", "Dv"]
  attn.attention normalizer = <sigmoid> attributes {schedule = #attn.schedule<tile_q = 64, tile_kv = 64, vector_width = 16, block_skip = "none">} scale {
  } mask {
  } score {
  } bias {
    %c = arith.constant -2.0 : f64
    attn.yield %c : f64
  }
}
