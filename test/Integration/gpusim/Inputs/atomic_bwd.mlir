// A hand-written backward-style kernel (not from the generator) that pins
// the simulator's backward launch and its atomics against numpy
// (atomic_bwd_check.py). Shapes: q [B, 2, 4, 4], k, v [B, 1, 8, 4] (so Hkv =
// 1, M = 8), o, do [B, 2, 4, 4], lse, g [B, 2, 4]; attn.block_kv = 4 gives a
// grid of (2, B) CTAs of 16 threads. Thread t of CTA (j, b) has row r = t / 4
// of the CTA's kv block, column c = t % 4, and kv row m = 4 j + r.
//   dv[b, 0, m, c] = v[b, 0, m, c] + do[b, 0, r, c] * o[b, 1, r, c] + lse[b, 0, r]
//   dq[b, h, r, c] += (h + 1) * k[b, 0, m, c]      (atomic; both CTAs of b)
//   dg[b, 0, 0]    += 1                            (atomic counter; dk[b, 0, m, c]
//                                                   = the value it replaced)
//   dg[b, 1, r]    += g[b, 1, r] * k[b, 0, m, c]   (atomic; 4 lanes at once)
//   dg[b, 0, 1 + j] = sum over threads of t + 1 = 136  (shared-memory addi
//                                                   counter, stored by thread 0)
module attributes {gpu.container_module} {
  gpu.module @atomic_bwd {
    gpu.func @atomic_bwd(%q: memref<?x?x?x?xbf16>, %k: memref<?x?x?x?xbf16>,
                         %v: memref<?x?x?x?xbf16>, %o: memref<?x?x?x?xf32>,
                         %lse: memref<?x?x?xf32>, %g: memref<?x?x?xf32>,
                         %do: memref<?x?x?x?xbf16>, %dlse: memref<?x?x?xf32>,
                         %dq: memref<?x?x?x?xf32>, %dk: memref<?x?x?x?xf32>,
                         %dv: memref<?x?x?x?xf32>, %dg: memref<?x?x?xf32>) kernel
        attributes {attn.backward, attn.block_kv = 4 : i64, attn.block_q = 4 : i64,
                    attn.num_threads = 16 : i64, attn.shared_bytes = 64 : i64,
                    attn.max_head_dim = 16 : i64, attn.gradient_inputs = ["g"]} {
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c4 = arith.constant 4 : index
      %one = arith.constant 1.0 : f32
      %zero_i32 = arith.constant 0 : i32
      %t = gpu.thread_id x
      %j = gpu.block_id x
      %bh = gpu.block_id y
      %hkv = memref.dim %k, %c1 : memref<?x?x?x?xbf16>
      %b = arith.divui %bh, %hkv : index
      %hk = arith.remui %bh, %hkv : index
      %r = arith.divui %t, %c4 : index
      %c = arith.remui %t, %c4 : index
      %j4 = arith.muli %j, %c4 : index
      %m = arith.addi %j4, %r : index
      // dv: one plain store per element.
      %vb = memref.load %v[%b, %hk, %m, %c] : memref<?x?x?x?xbf16>
      %vf = arith.extf %vb : bf16 to f32
      %dob = memref.load %do[%b, %c0, %r, %c] : memref<?x?x?x?xbf16>
      %dof = arith.extf %dob : bf16 to f32
      %of = memref.load %o[%b, %c1, %r, %c] : memref<?x?x?x?xf32>
      %lf = memref.load %lse[%b, %c0, %r] : memref<?x?x?xf32>
      %p = arith.mulf %dof, %of : f32
      %s1 = arith.addf %vf, %p : f32
      %dvx = arith.addf %s1, %lf : f32
      memref.store %dvx, %dv[%b, %hk, %m, %c] : memref<?x?x?x?xf32>
      // dq: every q head, both CTAs of a batch add into each element.
      %kb = memref.load %k[%b, %hk, %m, %c] : memref<?x?x?x?xbf16>
      %kf = arith.extf %kb : bf16 to f32
      %hq = memref.dim %dq, %c1 : memref<?x?x?x?xf32>
      scf.for %h = %c0 to %hq step %c1 {
        %h1 = arith.addi %h, %c1 : index
        %hi = arith.index_cast %h1 : index to i32
        %hf = arith.sitofp %hi : i32 to f32
        %x = arith.mulf %kf, %hf : f32
        %old = memref.atomic_rmw addf %x, %dq[%b, %h, %r, %c] : (f32, memref<?x?x?x?xf32>) -> f32
      }
      // The counter: all 16 lanes hit one element in one instruction.
      %cnt = memref.atomic_rmw addf %one, %dg[%b, %c0, %c0] : (f32, memref<?x?x?xf32>) -> f32
      memref.store %cnt, %dk[%b, %hk, %m, %c] : memref<?x?x?x?xf32>
      %gf = memref.load %g[%b, %c1, %r] : memref<?x?x?xf32>
      %gk = arith.mulf %gf, %kf : f32
      %old2 = memref.atomic_rmw addf %gk, %dg[%b, %c1, %r] : (f32, memref<?x?x?xf32>) -> f32
      // Shared memory: thread 0 zeroes a counter, every thread adds t + 1.
      %smem = gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
      %ss = memref.view %smem[%c0][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<16xi32, #gpu.address_space<workgroup>>
      %first = arith.cmpi eq, %t, %c0 : index
      scf.if %first {
        memref.store %zero_i32, %ss[%c0] : memref<16xi32, #gpu.address_space<workgroup>>
      }
      // (the barrier before the shared atomics)
      gpu.barrier
      %t1 = arith.addi %t, %c1 : index
      %ti = arith.index_cast %t1 : index to i32
      %old3 = memref.atomic_rmw addi %ti, %ss[%c0] : (i32, memref<16xi32, #gpu.address_space<workgroup>>) -> i32
      // (the barrier after the shared atomics)
      gpu.barrier
      scf.if %first {
        %tot = memref.load %ss[%c0] : memref<16xi32, #gpu.address_space<workgroup>>
        %totf = arith.sitofp %tot : i32 to f32
        %j1 = arith.addi %j, %c1 : index
        memref.store %totf, %dg[%b, %c0, %j1] : memref<?x?x?xf32>
      }
      gpu.return
    }
  }
}
