// convert-attn-to-cpu: each tiled attn.spec becomes
// func.func @attn_<name>_tiles(q, k, v, o, lse, aux..., begin, end) over
// strided memrefs, computing work items [begin, end). Queries live in SIMD
// lanes (vector<16xf32> = vector_width), so S = Q K^T is a broadcast-FMA
// micro-kernel; each kv tile is classified by evaluating the mask over index
// intervals (i64 compares) into "compute" (not empty) and "partial" (not
// full); only partial tiles evaluate the mask per lane.
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-cpu | FileCheck %s
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-cpu | FileCheck %s --check-prefix=HOIST
// The output is valid input for the rest of the pipeline:
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-cpu | attn-opt --canonicalize --cse | FileCheck %s --check-prefix=CANON

// CHECK-LABEL: func.func @attn_causal_tiles(
// CHECK-SAME: %[[Q:[^:]*]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[K:[^:]*]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[V:[^:]*]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[O:[^:]*]]: memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[LSE:[^:]*]]: memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[BEGIN:[^:]*]]: i64, %[[END:[^:]*]]: i64)
// CHECK-SAME: -> i32 attributes {llvm.emit_c_interface}
// Dims come from the operands (q: B, Hq, N, Dqk; k: Hkv, M; v: Dv):
// CHECK-DAG: memref.dim %[[Q]], %{{.*}}
// CHECK-DAG: memref.dim %[[K]], %{{.*}}
// CHECK-DAG: memref.dim %[[V]], %{{.*}}
// The default scale Dqk^-1/2, and lse is optional (null pointer check):
// CHECK: math.rsqrt %{{.*}} : f64
// CHECK: memref.extract_aligned_pointer_as_index %[[LSE]]
// Scratch, on the heap (64-byte aligned) once per call: Qt [Dqk x tile_q],
// S [tile_kv x tile_q], Ot [Dv x tile_q], and four row vectors (m, l, alpha,
// 1/l).
// CHECK: %[[QT:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x16xf32>
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<16x16xf32>
// CHECK: memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x16xf32>
// CHECK-COUNT-4: memref.alloc() {alignment = 64 : i64} : memref<16xf32>
// CHECK: %[[LB:.*]] = arith.index_cast %[[BEGIN]] : i64 to index
// CHECK: %[[UB:.*]] = arith.index_cast %[[END]] : i64 to index
// The items run only when no allocation returned a null pointer:
// CHECK: %[[P0:.*]] = memref.extract_aligned_pointer_as_index %[[QT]]
// CHECK: arith.cmpi ne, %[[P0]], %{{.*}} : index
// CHECK-COUNT-6: memref.extract_aligned_pointer_as_index
// CHECK: %[[OK:.*]] = arith.andi
// CHECK: scf.if %[[OK]] {
// The item loop over [begin, end):
// CHECK: scf.for %{{.*}} = %[[LB]] to %[[UB]] step
// Q is loaded scaled and transposed:
// CHECK: memref.load %[[Q]]
// CHECK: arith.mulf
// Row state reset (m = -inf):
// CHECK: arith.constant dense<0xFF800000> : vector<16xf32>
// The kv-tile loop and its classification: causal kv_idx <= q_idx + M - N
// over the box [q0, q1] x [k0, k1]: always (k1 <= q0 + M - N), never
// (k0 > q1 + M - N).
// CHECK: scf.for
// CHECK: %[[ALWAYS:.*]] = arith.cmpi sle, %{{.*}}, %{{.*}} : i64
// CHECK: %[[NEVER:.*]] = arith.cmpi sgt, %{{.*}}, %{{.*}} : i64
// CHECK: %[[LO:.*]] = arith.extui %[[ALWAYS]] : i1 to i64
// CHECK: %[[HI:.*]] = arith.select %[[NEVER]], %{{.*}}, %{{.*}} : i64
// CHECK: %[[COMPUTE:.*]] = arith.cmpi ne, %[[HI]], %{{.*}} : i64
// CHECK: %[[PARTIAL:.*]] = arith.cmpi ne, %[[LO]], %{{.*}} : i64
// CHECK: scf.if %[[COMPUTE]] {
// Query indices per lane:
// CHECK: vector.step : vector<16xindex>
// Pass 1: blocks of 8 kv rows, each an accumulator over the Dqk loop.
// CHECK: scf.for %{{.*}} iter_args(%{{.*}}) -> (vector<16xf32>) {
// CHECK: scf.for %{{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>) {
// CHECK: vector.load %{{.*}} : memref<?x16xf32>, vector<16xf32>
// CHECK: memref.load %[[K]]
// CHECK: vector.broadcast %{{.*}} : f32 to vector<16xf32>
// CHECK: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK-COUNT-7: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK: scf.yield
// Score and mask run in one row loop after the accumulators are stored; the
// per-lane mask only in the version of that loop for partial tiles:
// CHECK: scf.if %[[PARTIAL]] -> (vector<16xf32>
// CHECK: arith.cmpi sle, %{{.*}}, %{{.*}} : vector<16xi64>
// CHECK: arith.select %{{.*}}, %{{.*}}, %{{.*}} : vector<16xi1>, vector<16xf32>
// CHECK: arith.maximumf %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK: } else {
// CHECK: arith.maximumf %{{.*}}, %{{.*}} : vector<16xf32>
// Pass 2, online softmax (exact math.exp until attn-approximate-math):
// CHECK: math.exp %{{.*}} : vector<16xf32>
// CHECK: math.exp %{{.*}} : vector<16xf32>
// Pass 3, O += P V with V read as scalars:
// CHECK: memref.load %[[V]]
// CHECK: vector.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<16xf32>
// Store: o = Ot / l, lse = m + log l (-inf for empty rows), if lse is given.
// CHECK: math.log %{{.*}} : vector<16xf32>
// CHECK: memref.store %{{.*}}, %[[O]]
// CHECK: memref.store %{{.*}}, %[[LSE]]
// Then the scratch is freed and the status returned: 0, or 1
// (ATTN_KERNEL_OUT_OF_MEMORY) when an allocation failed.
// CHECK-COUNT-7: memref.dealloc
// CHECK: %[[ST:.*]] = arith.select %[[OK]], %{{.*}}, %{{.*}} : i32
// CHECK: return %[[ST]] : i32

// All scratch is allocated once per call, never inside the item loop, and
// nothing on the stack.
// HOIST-LABEL: func.func @attn_causal_tiles(
// HOIST-NOT: memref.alloca
// HOIST-COUNT-7: memref.alloc(
// HOIST: scf.for
// HOIST-NOT: memref.alloc
// HOIST: memref.dealloc
// HOIST-NOT: memref.alloc
// HOIST: return
attn.spec @causal {
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "interval">} scale {
  } mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    %m = attn.dim "M" : i64
    %t = arith.addi %i, %m : i64
    %n = attn.dim "N" : i64
    %pos = arith.subi %t, %n : i64
    %c = arith.cmpi sle, %j, %pos : i64
    attn.yield %c : i1
  } score {
  } bias {
  }
}

// Without a mask nothing is classified: every tile is computed and no mask
// is evaluated. With tile_q = 32 two lane vectors per row (8 / 2 = 4 kv rows
// per pass-1 block: 8 accumulators).
// CHECK-LABEL: func.func @attn_dense_tiles(
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<7x32xf32>
// CHECK: scf.for
// CHECK-NOT: arith.cmpi {{.*}} : i64
// CHECK: scf.if %true{{.*}} {
// CHECK-NOT: -> (vector<16xi1>)
// CHECK: scf.for %{{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>) {
// CHECK-NOT: -> (vector<16xi1>)
// CHECK: return
attn.spec @dense {
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 32, tile_kv = 7, vector_width = 16, block_skip = "none">} scale {
  } mask {
  } score {
  } bias {
  }
}

// An aux tensor read in the mask: it becomes an extra operand after lse; the
// tile classification scans lim over the tile's index box (a loop nest
// carrying (min, max) as i64), and per lane lim[b, q_idx] (q_idx varies
// across the lanes) is a vector.gather through a flat view.
// CHECK-LABEL: func.func @attn_qlookup_tiles(
// CHECK-SAME: memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>,
// CHECK-SAME: %[[LIM:[^:]*]]: memref<?x?xi32, strided<[?, ?], offset: ?>>,
// CHECK-SAME: %{{[^:]*}}: i64, %{{[^:]*}}: i64)
// CHECK: scf.for
// Classification by a scan:
// CHECK: scf.if %{{.*}} -> (i64, i64) {
// CHECK: scf.for %{{.*}} iter_args(%{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) -> (i64, i64) {
// CHECK: memref.load %[[LIM]][%{{.*}}, %{{.*}}] : memref<?x?xi32, strided<[?, ?], offset: ?>>
// CHECK: arith.extsi %{{.*}} : i32 to i64
// CHECK: } else {
// CHECK: arith.cmpi sle, %{{.*}}, %{{.*}} : i64
// CHECK: %[[COMPUTE:.*]] = arith.cmpi ne, %{{.*}}, %{{.*}} : i64
// CHECK: %[[PARTIAL:.*]] = arith.cmpi ne, %{{.*}}, %{{.*}} : i64
// CHECK: scf.if %[[COMPUTE]] {
// CHECK: scf.if %[[PARTIAL]] -> (vector<16xf32>
// CHECK: memref.extract_strided_metadata %[[LIM]]
// CHECK: %[[FLAT:.*]] = memref.reinterpret_cast %[[LIM]] to offset: [%{{.*}}], sizes: [%{{.*}}], strides: [1]
// CHECK: %[[G:.*]] = vector.gather %[[FLAT]][%{{.*}}] [%{{.*}}], %{{.*}}, %{{.*}} : memref<?xi32, strided<[1], offset: ?>>, vector<16xindex>, vector<16xi1>, vector<16xi32> into vector<16xi32>
// CHECK: arith.extsi %[[G]] : vector<16xi32> to vector<16xi64>
// CHECK: arith.cmpi sle, %{{.*}}, %{{.*}} : vector<16xi64>
// CHECK: return
attn.spec @qlookup {
  attn.input @lim : i32 ["B", "N"]
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "interval+scan">} scale {
  } mask {
  ^bb0(%b: i64, %h: i64, %i: i64, %j: i64):
    %l = attn.load @lim[%b, %i] : i32
    %l64 = arith.extsi %l : i32 to i64
    %c = arith.cmpi sle, %j, %l64 : i64
    attn.yield %c : i1
  } score {
  } bias {
  }
}

// Sigmoid: no row statistics (no max, no lse store), P = 1 / (1 + exp(-(s + bias))).
// CHECK-LABEL: func.func @attn_sig_tiles(
// CHECK: arith.constant -2.000000e+00 : f64
// CHECK: scf.for
// CHECK-NOT: arith.maximumf
// CHECK: arith.negf %{{.*}} : vector<16xf32>
// CHECK: math.exp %{{.*}} : vector<16xf32>
// CHECK: arith.divf %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK-NOT: math.log
// CHECK: return
attn.spec @sig {
  attn.attention normalizer = <sigmoid> attributes {schedule = #attn.schedule<tile_q = 16, tile_kv = 16, vector_width = 16, block_skip = "none">} scale {
  } mask {
  } score {
  } bias {
    %c = arith.constant -2.0 : f64
    attn.yield %c : f64
  }
}

// The specs are gone; only the kernels remain.
// CANON-NOT: attn.spec
// CANON: func.func @attn_causal_tiles(
// CANON: vector.fma
// CANON: func.func @attn_dense_tiles(
// CANON: func.func @attn_qlookup_tiles(
// CANON: vector.gather
// CANON: func.func @attn_sig_tiles(
// CANON-NOT: attn.
