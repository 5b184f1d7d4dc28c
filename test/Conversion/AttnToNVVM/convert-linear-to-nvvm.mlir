// convert-attn-to-nvvm on attn.linear_attention: one kernel per head-dim
// variant that runs a whole sequence of one (b, h) per CTA. Causal specs
// without the delta rule take the chunked form (state in shared memory, 32
// steps a chunk, 64 features a block, register-tiled f32 FMA products); the
// delta rule takes the recurrent form (state in registers).
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-nvvm='head-dims=64' --canonicalize --cse | FileCheck %s
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-nvvm --canonicalize --cse | FileCheck %s --check-prefix=VARIANTS
// The output is valid input for the rest of the CUDA pipeline:
// RUN: attn-opt %s --pass-pipeline='builtin.module(attn.spec(attn-tile-attention),convert-attn-to-nvvm{head-dims=64},canonicalize,cse,nvvm-attach-target{chip=sm_90 features=+ptx80},gpu.module(convert-nvgpu-to-nvvm,convert-vector-to-llvm,convert-scf-to-cf,convert-gpu-to-nvvm,convert-nvvm-to-llvm),reconcile-unrealized-casts)' | FileCheck %s --check-prefix=NVVM

// CHECK: module attributes {gpu.container_module}
// CHECK-LABEL: gpu.module @attn_gla_cuda
// The softmax kernels' parameters (q, k, v, o, lse) then the aux inputs; the
// whole sequence in one CTA: block_q = 2^30, so grid.x = 1.
// CHECK: gpu.func @attn_gla_d64(
// CHECK-SAME: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>
// CHECK-SAME: %arg3: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// CHECK-SAME: %arg4: memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>
// CHECK-SAME: %arg5: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>)
// CHECK-SAME: kernel attributes {attn.block_q = 1073741824 : i64, attn.max_head_dim = 64 : i64, attn.num_threads = 256 : i64, attn.shared_bytes = 70912 : i64, known_block_size = array<i32: 256, 1, 1>, nvvm.minctasm = 1 : i32}
// CHECK-NOT: gpu.block_id x
// CHECK: gpu.block_id y
// Shared memory: phi(q), phi(k), cumulative log gates [32 x 65], A [32 x 33],
// V [32 x 64], the state [Dphi x (W + 1)] in 8320 floats (+ 64 of padding):
// CHECK: %[[PQ:.*]] = memref.view {{.*}} to memref<2080xf32, #gpu.address_space<workgroup>>
// CHECK: %[[PK:.*]] = memref.view {{.*}} to memref<2080xf32, #gpu.address_space<workgroup>>
// CHECK: %[[LG:.*]] = memref.view {{.*}} to memref<2080xf32, #gpu.address_space<workgroup>>
// CHECK: %[[AM:.*]] = memref.view {{.*}} to memref<1056xf32, #gpu.address_space<workgroup>>
// CHECK: %[[VB:.*]] = memref.view {{.*}} to memref<2048xf32, #gpu.address_space<workgroup>>
// CHECK: %[[SB:.*]] = memref.view {{.*}} to memref<8384xf32, #gpu.address_space<workgroup>>
// More features than the state buffer holds: o is NaN.
// CHECK: scf.if
// CHECK: memref.store %{{.*}}, %arg3
// Slabs of value columns; the state starts at zero:
// CHECK: scf.for
// CHECK: memref.store %{{.*}}, %[[SB]]
// CHECK: gpu.barrier
// Chunks of 32 steps; v rows (bf16, widened) into V:
// CHECK: scf.for
// CHECK: memref.load %arg2
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: memref.store %{{.*}}, %[[VB]]
// CHECK: gpu.barrier
// Feature blocks carry the A (2x2) and O (2x4) register tiles:
// CHECK: scf.for {{.*}} iter_args({{.*}}) -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32)
// CHECK: memref.store %{{.*}}, %[[PQ]]
// CHECK: memref.store %{{.*}}, %[[PK]]
// The log gate per (t, d), clamped at -80:
// CHECK: memref.load %arg5
// CHECK: arith.maximumf %{{.*}}, %{{.*}} : f32
// CHECK: memref.store %{{.*}}, %[[LG]]
// CHECK: gpu.barrier
// Cumulative along t, one feature per thread:
// CHECK: scf.for %{{.*}} = %c0 to %c32 step %c1 iter_args
// CHECK: arith.addf
// CHECK: memref.store %{{.*}}, %[[LG]]
// CHECK: gpu.barrier
// A += phi(q) phi(k)^T exp(s <= t ? L[t] - L[s] : 0) (masked entries zeroed
// later; exact decays of either sign), unrolled by 4:
// CHECK: scf.for %{{.*}} = %c0 to %c64 step %c4 iter_args
// CHECK-NOT: arith.minimumf
// CHECK: arith.select
// CHECK: math.exp
// CHECK: math.fma
// CHECK: gpu.barrier
// Decayed features in place: phi(q) exp(L), phi(k) exp(L[last] - L):
// CHECK: math.exp
// CHECK: memref.store %{{.*}}, %[[PQ]]
// CHECK: math.exp
// CHECK: memref.store %{{.*}}, %[[PK]]
// CHECK: gpu.barrier
// O += phi(q) S (inter-chunk):
// CHECK: scf.for %{{.*}} = %c0 to %c64 step %c4 iter_args
// CHECK: memref.load %[[SB]]
// CHECK: math.fma
// CHECK: gpu.barrier
// S = exp(L[last]) S + phi(k)^T V, stores guarded to the slab:
// CHECK: math.exp
// CHECK: scf.if %{{.*}} -> (f32)
// CHECK: memref.load %[[SB]]
// CHECK: scf.for %{{.*}} = %c0 to %c32 step %c4 iter_args
// CHECK: memref.load %[[PK]]
// CHECK: memref.load %[[VB]]
// CHECK: scf.if
// CHECK: memref.store %{{.*}}, %[[SB]]
// CHECK: gpu.barrier
// A masked causally into shared memory, then O += A V and the store of o:
// CHECK: arith.cmpi ule
// CHECK: memref.store %{{.*}}, %[[AM]]
// CHECK: gpu.barrier
// CHECK: scf.for %{{.*}} = %c0 to %c32 step %c4 iter_args
// CHECK: memref.load %[[AM]]
// CHECK: gpu.barrier
// CHECK: memref.store %{{.*}}, %arg3
// CHECK: gpu.barrier
// CHECK: gpu.return

// The delta rule: the recurrent form, 4 lanes per state column (256
// threads for D = 64), 16 state rows per thread in registers.
// CHECK-LABEL: gpu.module @attn_gated_deltanet_cuda
// CHECK: gpu.func @attn_gated_deltanet_d64(
// CHECK-SAME: attn.block_q = 1073741824 : i64, attn.max_head_dim = 64 : i64, attn.num_threads = 256 : i64, attn.shared_bytes = 25088 : i64
// CHECK: scf.for {{.*}} -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32)
// l2norm: row norms by 8 lanes a row:
// CHECK: gpu.shuffle  xor %{{.*}}, %c4_i32
// CHECK: math.sqrt
// CHECK: gpu.barrier
// Staged gate exp(alpha) and beta:
// CHECK: math.exp
// CHECK: gpu.barrier
// Barrier-free steps: w = S^T (g phi_k) over the 4 lanes of a column, the
// update, the readout, and one lane stores o:
// CHECK: scf.for {{.*}} -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32)
// CHECK-NOT: gpu.barrier
// CHECK: gpu.shuffle  xor %{{.*}}, %c1_i32
// CHECK: gpu.shuffle  xor %{{.*}}, %c2_i32
// CHECK: arith.subf
// CHECK: gpu.shuffle  xor %{{.*}}, %c1_i32
// CHECK: gpu.shuffle  xor %{{.*}}, %c2_i32
// CHECK: scf.if
// CHECK: memref.store %{{.*}}, %arg3
// CHECK: gpu.barrier
// CHECK: gpu.return

// Non-causal and normalized: every key into the state first (z is column W
// of the state buffer), then every query chunk reads it; no A matrix.
// CHECK-LABEL: gpu.module @attn_elu_noncausal_cuda
// CHECK: gpu.func @attn_elu_noncausal_d64(
// CHECK-SAME: memref<?x?x?x?xf16, strided<[?, ?, ?, 1], offset: ?>>
// CHECK-SAME: attn.shared_bytes = 58496 : i64
// CHECK: scf.for
// CHECK: scf.for
// CHECK: memref.load %arg1
// CHECK: arith.cmpf ogt
// CHECK: math.exp
// CHECK: gpu.barrier
// CHECK: scf.for
// CHECK: memref.load %arg0
// CHECK: gpu.barrier
// 1 / den, 0 where the denominator is 0:
// CHECK: arith.cmpf une
// CHECK: arith.divf
// CHECK: memref.store %{{.*}}, %arg3
// CHECK: gpu.return

// VARIANTS: gpu.func @attn_gla_d64(
// VARIANTS-SAME: attn.max_head_dim = 64 : i64, attn.num_threads = 256 : i64, attn.shared_bytes = 70912
// VARIANTS: gpu.func @attn_gla_d128(
// VARIANTS-SAME: attn.max_head_dim = 128 : i64, attn.num_threads = 256 : i64, attn.shared_bytes = 112128
// VARIANTS: gpu.func @attn_gated_deltanet_d64(
// VARIANTS-SAME: attn.num_threads = 256
// VARIANTS: gpu.func @attn_gated_deltanet_d128(
// VARIANTS-SAME: attn.num_threads = 512
// VARIANTS: gpu.func @attn_elu_noncausal_d128(

// NVVM: gpu.module @attn_gla_cuda [#nvvm.target<chip = "sm_90", features = "+ptx80">]
// NVVM: llvm.func @attn_gla_d64(
// NVVM: nvvm.barrier
// NVVM: llvm.func @attn_gated_deltanet_d64(
// NVVM: nvvm.shfl.sync bfly

attn.spec @gla {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : bf16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : bf16 ["B", "Hkv", "M", "Dv"]
  attn.input @g : f32 ["B", "Hq", "N", "Dqk"]
  attn.linear_attention feature_map = <identity>, <identity> scale {
  } gate {
  ^bb0(%b: i64, %h: i64, %t: i64, %d: i64):
    %x = attn.load @g[%b, %h, %t, %d] : f32
    %y = arith.extf %x : f32 to f64
    attn.yield %y : f64
  } beta {
  } bonus {
  }
}

attn.spec @gated_deltanet {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : bf16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : bf16 ["B", "Hkv", "M", "Dv"]
  attn.input @alpha : f32 ["B", "Hq", "N"]
  attn.input @beta : f32 ["B", "Hq", "N"]
  attn.linear_attention feature_map = <l2norm>, <l2norm> scale {
  } gate {
  ^bb0(%b: i64, %h: i64, %t: i64, %d: i64):
    %x = attn.load @alpha[%b, %h, %t] : f32
    %y = arith.extf %x : f32 to f64
    attn.yield %y : f64
  } beta {
  ^bb0(%b: i64, %h: i64, %t: i64):
    %x = attn.load @beta[%b, %h, %t] : f32
    %y = arith.extf %x : f32 to f64
    attn.yield %y : f64
  } bonus {
  }
}

attn.spec @elu_noncausal {
  attn.input @q : f16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : f16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : f16 ["B", "Hkv", "M", "Dv"]
  attn.linear_attention feature_map = <elu_plus_one>, <elu_plus_one> attributes {normalize, noncausal} scale {
  } gate {
  } beta {
  } bonus {
  }
}
