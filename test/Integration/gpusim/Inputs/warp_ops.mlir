// A hand-written single-warp kernel (not from the generator) that pins the
// simulator's PTX semantics against numpy: cp.async with src-size (zero
// fill), ldmatrix .x4 with and without .trans, mma.sync m16n8k16 row.col
// (bf16, accumulating into a non-zero C) and gpu.shuffle xor.
//
//   q, k, v: [1, 1, 16, 16] bf16;  k's columns 12..15 are zero-filled by the
//   copy (src-size 4 of 8 for the second chunk of each row).
//   o[i][j]  = sum_d q[i][d] * k0[j][d] + sum_d q[i][d] * v[d][j]
//   lse[i]   = sum_j o[i][j]           (quad reduction with shuffles)
// Shared memory: Qs, Ks, Vs row-major 16x16 each (no swizzle).
module attributes {gpu.container_module} {
  gpu.module @warp_ops {
    gpu.func @warp_ops(%q: memref<?x?x?x?xbf16>, %k: memref<?x?x?x?xbf16>,
                       %v: memref<?x?x?x?xbf16>, %o: memref<?x?x?x?xf32>,
                       %lse: memref<?x?x?xf32>) kernel
        attributes {attn.block_q = 16 : i64, attn.num_threads = 32 : i64,
                    attn.shared_bytes = 1536 : i64, attn.max_head_dim = 16 : i64} {
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c2 = arith.constant 2 : index
      %c4 = arith.constant 4 : index
      %c8 = arith.constant 8 : index
      %c16 = arith.constant 16 : index
      %c512 = arith.constant 512 : index
      %c1024 = arith.constant 1024 : index
      %c1_i32 = arith.constant 1 : i32
      %c2_i32 = arith.constant 2 : i32
      %c32_i32 = arith.constant 32 : i32
      %zero = arith.constant 0.0 : f32
      %smem = gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
      %qs = memref.view %smem[%c0][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<256xbf16, #gpu.address_space<workgroup>>
      %ks = memref.view %smem[%c512][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<256xbf16, #gpu.address_space<workgroup>>
      %vs = memref.view %smem[%c1024][] : memref<?xi8, #gpu.address_space<workgroup>> to memref<256xbf16, #gpu.address_space<workgroup>>
      %lane = gpu.thread_id x
      // One 8-element chunk per thread and tensor: row lane/2, col 8*(lane%2).
      %row = arith.divui %lane, %c2 : index
      %half = arith.remui %lane, %c2 : index
      %col = arith.muli %half, %c8 : index
      %rowOff = arith.muli %row, %c16 : index
      %soff = arith.addi %rowOff, %col : index
      %isHi = arith.cmpi eq, %half, %c1 : index
      %kn = arith.select %isHi, %c4, %c8 : index
      %t0 = nvgpu.device_async_copy %q[%c0, %c0, %row, %col], %qs[%soff], 8 : memref<?x?x?x?xbf16> to memref<256xbf16, #gpu.address_space<workgroup>>
      %t1 = nvgpu.device_async_copy %k[%c0, %c0, %row, %col], %ks[%soff], 8, %kn : memref<?x?x?x?xbf16> to memref<256xbf16, #gpu.address_space<workgroup>>
      %t2 = nvgpu.device_async_copy %v[%c0, %c0, %row, %col], %vs[%soff], 8 : memref<?x?x?x?xbf16> to memref<256xbf16, #gpu.address_space<workgroup>>
      %grp = nvgpu.device_async_create_group %t0, %t1, %t2
      nvgpu.device_async_wait %grp {numGroups = 0 : i32}
      gpu.barrier
      // Lanes 8i..8i+7 address row r = lane % 8 of matrix i = lane / 8.
      %mi = arith.divui %lane, %c8 : index
      %r = arith.remui %lane, %c8 : index
      %mlo = arith.remui %mi, %c2 : index
      %mhi = arith.divui %mi, %c2 : index
      %lo8 = arith.muli %mlo, %c8 : index
      %hi8 = arith.muli %mhi, %c8 : index
      // A (q): matrix i = rows r + 8 (i % 2), cols 8 (i / 2).
      %ar = arith.addi %r, %lo8 : index
      %ar16 = arith.muli %ar, %c16 : index
      %aoff = arith.addi %ar16, %hi8 : index
      %af = nvgpu.ldmatrix %qs[%aoff] {numTiles = 4 : i32, transpose = false} : memref<256xbf16, #gpu.address_space<workgroup>> -> vector<4x2xbf16>
      // B = kᵀ (k rows are n): matrix i = k rows r + 8 (i / 2), cols 8 (i % 2).
      %kr = arith.addi %r, %hi8 : index
      %kr16 = arith.muli %kr, %c16 : index
      %koff = arith.addi %kr16, %lo8 : index
      %kf = nvgpu.ldmatrix %ks[%koff] {numTiles = 4 : i32, transpose = false} : memref<256xbf16, #gpu.address_space<workgroup>> -> vector<4x2xbf16>
      // B = v (v rows are k), transposed load: matrix i = v rows r + 8 (i % 2), cols 8 (i / 2).
      %vf = nvgpu.ldmatrix %vs[%aoff] {numTiles = 4 : i32, transpose = true} : memref<256xbf16, #gpu.address_space<workgroup>> -> vector<4x2xbf16>
      %a0v = vector.extract %af[0] : vector<2xbf16> from vector<4x2xbf16>
      %a1v = vector.extract %af[1] : vector<2xbf16> from vector<4x2xbf16>
      %a2v = vector.extract %af[2] : vector<2xbf16> from vector<4x2xbf16>
      %a3v = vector.extract %af[3] : vector<2xbf16> from vector<4x2xbf16>
      %k0v = vector.extract %kf[0] : vector<2xbf16> from vector<4x2xbf16>
      %k1v = vector.extract %kf[1] : vector<2xbf16> from vector<4x2xbf16>
      %k2v = vector.extract %kf[2] : vector<2xbf16> from vector<4x2xbf16>
      %k3v = vector.extract %kf[3] : vector<2xbf16> from vector<4x2xbf16>
      %v0v = vector.extract %vf[0] : vector<2xbf16> from vector<4x2xbf16>
      %v1v = vector.extract %vf[1] : vector<2xbf16> from vector<4x2xbf16>
      %v2v = vector.extract %vf[2] : vector<2xbf16> from vector<4x2xbf16>
      %v3v = vector.extract %vf[3] : vector<2xbf16> from vector<4x2xbf16>
      %a0 = llvm.bitcast %a0v : vector<2xbf16> to i32
      %a1 = llvm.bitcast %a1v : vector<2xbf16> to i32
      %a2 = llvm.bitcast %a2v : vector<2xbf16> to i32
      %a3 = llvm.bitcast %a3v : vector<2xbf16> to i32
      %k0 = llvm.bitcast %k0v : vector<2xbf16> to i32
      %k1 = llvm.bitcast %k1v : vector<2xbf16> to i32
      %k2 = llvm.bitcast %k2v : vector<2xbf16> to i32
      %k3 = llvm.bitcast %k3v : vector<2xbf16> to i32
      %v0 = llvm.bitcast %v0v : vector<2xbf16> to i32
      %v1 = llvm.bitcast %v1v : vector<2xbf16> to i32
      %v2 = llvm.bitcast %v2v : vector<2xbf16> to i32
      %v3 = llvm.bitcast %v3v : vector<2xbf16> to i32
      // n-tile 0 (columns 0..7) and 1 (8..15): q kᵀ, then + q v on top.
      %s0 = nvvm.mma.sync A[%a0, %a1, %a2, %a3] B[%k0, %k1] C[%zero, %zero, %zero, %zero] {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>} : (i32, i32, f32) -> !llvm.struct<(f32, f32, f32, f32)>
      %s1 = nvvm.mma.sync A[%a0, %a1, %a2, %a3] B[%k2, %k3] C[%zero, %zero, %zero, %zero] {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>} : (i32, i32, f32) -> !llvm.struct<(f32, f32, f32, f32)>
      %s00 = llvm.extractvalue %s0[0] : !llvm.struct<(f32, f32, f32, f32)>
      %s01 = llvm.extractvalue %s0[1] : !llvm.struct<(f32, f32, f32, f32)>
      %s02 = llvm.extractvalue %s0[2] : !llvm.struct<(f32, f32, f32, f32)>
      %s03 = llvm.extractvalue %s0[3] : !llvm.struct<(f32, f32, f32, f32)>
      %s10 = llvm.extractvalue %s1[0] : !llvm.struct<(f32, f32, f32, f32)>
      %s11 = llvm.extractvalue %s1[1] : !llvm.struct<(f32, f32, f32, f32)>
      %s12 = llvm.extractvalue %s1[2] : !llvm.struct<(f32, f32, f32, f32)>
      %s13 = llvm.extractvalue %s1[3] : !llvm.struct<(f32, f32, f32, f32)>
      %d0 = nvvm.mma.sync A[%a0, %a1, %a2, %a3] B[%v0, %v1] C[%s00, %s01, %s02, %s03] {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>} : (i32, i32, f32) -> !llvm.struct<(f32, f32, f32, f32)>
      %d1 = nvvm.mma.sync A[%a0, %a1, %a2, %a3] B[%v2, %v3] C[%s10, %s11, %s12, %s13] {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>} : (i32, i32, f32) -> !llvm.struct<(f32, f32, f32, f32)>
      %d00 = llvm.extractvalue %d0[0] : !llvm.struct<(f32, f32, f32, f32)>
      %d01 = llvm.extractvalue %d0[1] : !llvm.struct<(f32, f32, f32, f32)>
      %d02 = llvm.extractvalue %d0[2] : !llvm.struct<(f32, f32, f32, f32)>
      %d03 = llvm.extractvalue %d0[3] : !llvm.struct<(f32, f32, f32, f32)>
      %d10 = llvm.extractvalue %d1[0] : !llvm.struct<(f32, f32, f32, f32)>
      %d11 = llvm.extractvalue %d1[1] : !llvm.struct<(f32, f32, f32, f32)>
      %d12 = llvm.extractvalue %d1[2] : !llvm.struct<(f32, f32, f32, f32)>
      %d13 = llvm.extractvalue %d1[3] : !llvm.struct<(f32, f32, f32, f32)>
      // Accumulator layout: (g, 2t..2t+1) and (g + 8, 2t..2t+1).
      %g = arith.divui %lane, %c4 : index
      %t = arith.remui %lane, %c4 : index
      %g8 = arith.addi %g, %c8 : index
      %c0c = arith.muli %t, %c2 : index
      %c1c = arith.addi %c0c, %c1 : index
      %c8c = arith.addi %c0c, %c8 : index
      %c9c = arith.addi %c1c, %c8 : index
      memref.store %d00, %o[%c0, %c0, %g, %c0c] : memref<?x?x?x?xf32>
      memref.store %d01, %o[%c0, %c0, %g, %c1c] : memref<?x?x?x?xf32>
      memref.store %d02, %o[%c0, %c0, %g8, %c0c] : memref<?x?x?x?xf32>
      memref.store %d03, %o[%c0, %c0, %g8, %c1c] : memref<?x?x?x?xf32>
      memref.store %d10, %o[%c0, %c0, %g, %c8c] : memref<?x?x?x?xf32>
      memref.store %d11, %o[%c0, %c0, %g, %c9c] : memref<?x?x?x?xf32>
      memref.store %d12, %o[%c0, %c0, %g8, %c8c] : memref<?x?x?x?xf32>
      memref.store %d13, %o[%c0, %c0, %g8, %c9c] : memref<?x?x?x?xf32>
      // Row sums over the quad of four lanes that share g.
      %p0 = arith.addf %d00, %d01 : f32
      %p1 = arith.addf %d10, %d11 : f32
      %rs0 = arith.addf %p0, %p1 : f32
      %p2 = arith.addf %d02, %d03 : f32
      %p3 = arith.addf %d12, %d13 : f32
      %rs1 = arith.addf %p2, %p3 : f32
      %x0, %ok0 = gpu.shuffle xor %rs0, %c1_i32, %c32_i32 : f32
      %y0 = arith.addf %rs0, %x0 : f32
      %x1, %ok1 = gpu.shuffle xor %y0, %c2_i32, %c32_i32 : f32
      %z0 = arith.addf %y0, %x1 : f32
      %x2, %ok2 = gpu.shuffle xor %rs1, %c1_i32, %c32_i32 : f32
      %y1 = arith.addf %rs1, %x2 : f32
      %x3, %ok3 = gpu.shuffle xor %y1, %c2_i32, %c32_i32 : f32
      %z1 = arith.addf %y1, %x3 : f32
      %first = arith.cmpi eq, %t, %c0 : index
      scf.if %first {
        memref.store %z0, %lse[%c0, %c0, %g] : memref<?x?x?xf32>
        memref.store %z1, %lse[%c0, %c0, %g8] : memref<?x?x?xf32>
      }
      gpu.return
    }
  }
}
