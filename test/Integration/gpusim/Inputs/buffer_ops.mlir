// Hand-written wave64 kernels (not from the generator) that pin the
// simulator's raw-buffer and LDS-vector semantics against numpy:
//
//   @buffer_rows: k[0, 0, 0:12, :] as a raw buffer (memref.subview, then
//   amdgpu.fat_raw_buffer_cast resetOffset): its range ends with row 11.
//   Thread t reads 16 bytes of row t / 2 (rows 0..31: rows 12..15 are in
//   the tensor but outside the buffer, rows 16..31 outside both) into LDS
//   (vector.store, 16-byte aligned), and after a barrier thread t writes
//   LDS row t / 4, columns 4 (t % 4) .. + 3 (vector.load, 8-byte aligned),
//   to o[0, 0, t / 4, ...] as f32:  o = k with rows 12..15 zero.
//   @buffer_partial: a 16-byte read that starts in row 11's last 8 bytes
//   and ends past the buffer: partly out of range (an error).
//   @lds_misaligned: a vector.store claiming 16-byte alignment at byte 8.
//
//   q, k, v: [1, 1, 16, 16] bf16; o: [1, 1, 16, 16] f32.
module attributes {gpu.container_module} {
  gpu.module @buffer_ops {
    gpu.func @buffer_rows(%q: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>,
                          %k: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>,
                          %v: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>,
                          %o: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>,
                          %lse: memref<?x?x?xf32>) kernel
        attributes {attn.block_q = 16 : i64, attn.num_threads = 64 : i64,
                    attn.wave_size = 64 : i64, attn.shared_bytes = 1024 : i64,
                    attn.max_head_dim = 16 : i64} {
      %c0 = arith.constant 0 : index
      %c2 = arith.constant 2 : index
      %c4 = arith.constant 4 : index
      %c8 = arith.constant 8 : index
      %c12 = arith.constant 12 : index
      %c16 = arith.constant 16 : index
      %t = gpu.thread_id x
      %sv = memref.subview %k[0, 0, 0, 0] [1, 1, %c12, %c16] [1, 1, 1, 1]
          : memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>
          to memref<?x?xbf16, strided<[?, 1], offset: ?>>
      %buf = amdgpu.fat_raw_buffer_cast %sv resetOffset
          : memref<?x?xbf16, strided<[?, 1], offset: ?>>
          to memref<?x?xbf16, strided<[?, 1]>, #amdgpu.address_space<fat_raw_buffer>>
      %row = arith.divui %t, %c2 : index
      %half = arith.remui %t, %c2 : index
      %col = arith.muli %half, %c8 : index
      %x = vector.load %buf[%row, %col]
          : memref<?x?xbf16, strided<[?, 1]>, #amdgpu.address_space<fat_raw_buffer>>, vector<8xbf16>
      %smem = gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
      %lds = memref.view %smem[%c0][] : memref<?xi8, #gpu.address_space<workgroup>>
          to memref<512xbf16, #gpu.address_space<workgroup>>
      %w = arith.muli %t, %c8 : index
      vector.store %x, %lds[%w] {alignment = 16 : i64}
          : memref<512xbf16, #gpu.address_space<workgroup>>, vector<8xbf16>
      gpu.barrier
      %r2 = arith.divui %t, %c4 : index
      %q4 = arith.remui %t, %c4 : index
      %c2x = arith.muli %q4, %c4 : index
      %rbase = arith.muli %r2, %c16 : index
      %roff = arith.addi %rbase, %c2x : index
      %y = vector.load %lds[%roff] {alignment = 8 : i64}
          : memref<512xbf16, #gpu.address_space<workgroup>>, vector<4xbf16>
      %yf = arith.extf %y : vector<4xbf16> to vector<4xf32>
      vector.store %yf, %o[%c0, %c0, %r2, %c2x]
          : memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>, vector<4xf32>
      gpu.return
    }
    gpu.func @buffer_partial(%q: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>,
                             %k: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>,
                             %v: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>,
                             %o: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>,
                             %lse: memref<?x?x?xf32>) kernel
        attributes {attn.block_q = 16 : i64, attn.num_threads = 64 : i64,
                    attn.wave_size = 64 : i64, attn.shared_bytes = 1024 : i64,
                    attn.max_head_dim = 16 : i64} {
      %c11 = arith.constant 11 : index
      %c12 = arith.constant 12 : index
      %c16 = arith.constant 16 : index
      %sv = memref.subview %k[0, 0, 0, 0] [1, 1, %c12, %c16] [1, 1, 1, 1]
          : memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>
          to memref<?x?xbf16, strided<[?, 1], offset: ?>>
      %buf = amdgpu.fat_raw_buffer_cast %sv resetOffset
          : memref<?x?xbf16, strided<[?, 1], offset: ?>>
          to memref<?x?xbf16, strided<[?, 1]>, #amdgpu.address_space<fat_raw_buffer>>
      %x = vector.load %buf[%c11, %c12]
          : memref<?x?xbf16, strided<[?, 1]>, #amdgpu.address_space<fat_raw_buffer>>, vector<8xbf16>
      gpu.return
    }
    gpu.func @lds_misaligned(%q: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>,
                             %k: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>,
                             %v: memref<?x?x?x?xbf16, strided<[?, ?, ?, 1], offset: ?>>,
                             %o: memref<?x?x?x?xf32, strided<[?, ?, ?, 1], offset: ?>>,
                             %lse: memref<?x?x?xf32>) kernel
        attributes {attn.block_q = 16 : i64, attn.num_threads = 64 : i64,
                    attn.wave_size = 64 : i64, attn.shared_bytes = 1024 : i64,
                    attn.max_head_dim = 16 : i64} {
      %c0 = arith.constant 0 : index
      %c4 = arith.constant 4 : index
      %zero = arith.constant dense<0.0> : vector<8xbf16>
      %smem = gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>
      %lds = memref.view %smem[%c0][] : memref<?xi8, #gpu.address_space<workgroup>>
          to memref<512xbf16, #gpu.address_space<workgroup>>
      vector.store %zero, %lds[%c4] {alignment = 16 : i64}
          : memref<512xbf16, #gpu.address_space<workgroup>>, vector<8xbf16>
      gpu.return
    }
  }
}
