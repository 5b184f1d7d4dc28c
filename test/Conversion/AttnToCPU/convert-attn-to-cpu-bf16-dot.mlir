// convert-attn-to-cpu=bf16-dot: with bf16 q and k, S = Q K^T is a
// vdpbf16ps micro-kernel (x86vector.avx512.dot: each f32 lane adds the
// products of one bf16 pair). Q is kept unscaled in bf16 pairs along d
// (Qp [ceil(Dqk/2) x 2*tile_q]), each kv tile's K rows are copied into
// Kp [tile_kv x 2*ceil(Dqk/2)] (vector copies when k has a unit innermost
// stride, scalar ones otherwise), and a dot with the broadcast 32-bit pair
// (k[j][d], k[j][d+1]) does two d-steps; S is scaled in f32 afterwards.
// With a bf16 v, O += P V too: P rounded to bf16 and interleaved in pairs of
// kv rows (Pp), V rows interleaved in pairs (Vp), an odd tile padded with a
// zero row (S gets tile_kv + 1 rows when tile_kv is odd).
// The option is off by default; f32 specs and bf16-dot-pv=false keep the
// fp32 FMA micro-kernels where they apply.
//
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-cpu=bf16-dot=true | FileCheck %s
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-cpu=bf16-dot=true --canonicalize --cse | FileCheck %s --check-prefix=CANON
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-cpu="bf16-dot=true bf16-dot-pv=false" | FileCheck %s --check-prefix=QKONLY
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-cpu | FileCheck %s --check-prefix=OFF
// The whole CPU pipeline lowers the dot to its LLVM intrinsic:
// RUN: attn-opt %s --attn-tile-attention --convert-attn-to-cpu=bf16-dot=true --canonicalize --cse --loop-invariant-code-motion --attn-approximate-math --expand-strided-metadata --lower-affine --convert-scf-to-cf --convert-vector-to-llvm=enable-x86vector --finalize-memref-to-llvm --convert-math-to-llvm --convert-arith-to-llvm --convert-cf-to-llvm --convert-func-to-llvm --reconcile-unrealized-casts | FileCheck %s --check-prefix=LLVM

// CHECK-LABEL: func.func @attn_dense_bf16_tiles(
// CHECK-SAME: memref<?x?x?x?xbf16, strided<[?, ?, ?, ?], offset: ?>>,
// Qp, Kp, and a unit-stride view of k used only when k's innermost stride
// is 1:
// CHECK: memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x64xbf16>
// CHECK: memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<7x?xbf16>
// CHECK: %[[KMETA:.*]], %{{.*}}, %{{.*}}:4, %[[KSTRIDES:.*]]:4 = memref.extract_strided_metadata %arg1
// CHECK: %[[KUNIT:.*]] = arith.cmpi eq, %[[KSTRIDES]]#3, %{{.*}} : index
// CHECK: %[[KU:.*]] = memref.reinterpret_cast %[[KMETA]]{{.*}}strides: [%[[KSTRIDES]]#0, %[[KSTRIDES]]#1, %[[KSTRIDES]]#2, 1]
// Pp, Vp and the view of v:
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<4x64xbf16>
// CHECK: memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<4x?xbf16>
// CHECK: memref.extract_strided_metadata %arg2
// S has one more row for the odd tile_kv = 7:
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<8x32xf32>
// Q in pairs, unscaled (no mulf before the stores):
// CHECK: scf.for
// CHECK: memref.load %arg0
// CHECK-NOT: arith.mulf
// CHECK: memref.store %{{.*}}, %{{.*}} : memref<?x64xbf16>
// Per kv tile, K rows into Kp: 32 bf16 at a time and a masked tail (the pad
// lane of an odd Dqk stored as zero), or scalars:
// CHECK: scf.if %[[KUNIT]] {
// CHECK: vector.create_mask %{{.*}} : vector<32xi1>
// CHECK: vector.load %[[KU]]{{.*}} vector<32xbf16>
// CHECK: vector.store %{{.*}} : memref<7x?xbf16>, vector<32xbf16>
// CHECK: vector.maskedload %[[KU]]
// CHECK: vector.maskedstore
// CHECK: } else {
// CHECK: memref.load %arg1
// CHECK: memref.store %{{.*}} : memref<7x?xbf16>
// Pass 1: the d-pair loop: Qp vectors, the broadcast K pair, dots; then
// the scale:
// CHECK: scf.for %{{.*}} iter_args
// CHECK: %[[QV:.*]] = vector.load %{{.*}} : memref<?x64xbf16>, vector<32xbf16>
// CHECK: %[[PAIR:.*]] = vector.load %{{.*}} : memref<7x?xbf16>, vector<2xbf16>
// CHECK: %[[W:.*]] = vector.bitcast %[[PAIR]] : vector<2xbf16> to vector<1xi32>
// CHECK: %[[E:.*]] = vector.extract %[[W]][0] : i32 from vector<1xi32>
// CHECK: %[[B:.*]] = vector.broadcast %[[E]] : i32 to vector<16xi32>
// CHECK: %[[KB:.*]] = vector.bitcast %[[B]] : vector<16xi32> to vector<32xbf16>
// CHECK: x86vector.avx512.dot %{{.*}}, %[[QV]], %[[KB]] : vector<32xbf16> -> vector<16xf32>
// CHECK: scf.yield
// CHECK: arith.mulf %{{.*}}, %{{.*}} : vector<16xf32>
// Pass 2: P = exp(S - m) rounded to bf16 (the row sum adds rounded values):
// CHECK: math.exp
// CHECK: arith.truncf %{{.*}} : vector<16xf32> to vector<16xbf16>
// CHECK: arith.extf %{{.*}} : vector<16xbf16> to vector<16xf32>
// Pass 3: P and V interleaved in pairs of kv rows, then the dots:
// CHECK: arith.truncf %{{.*}} : vector<16xf32> to vector<16xbf16>
// CHECK: vector.shuffle %{{.*}}, %{{.*}} [0, 16, 1, 17, 2, 18
// CHECK: vector.store %{{.*}} : memref<4x64xbf16>, vector<32xbf16>
// CHECK: vector.shuffle
// CHECK: vector.store %{{.*}} : memref<4x?xbf16>, vector<32xbf16>
// CHECK: vector.maskedstore %{{.*}} : memref<4x?xbf16>, vector<32xi1>, vector<32xbf16>
// CHECK: vector.load %{{.*}} : memref<4x64xbf16>, vector<32xbf16>
// CHECK: vector.load %{{.*}} : memref<4x?xbf16>, vector<2xbf16>
// CHECK: x86vector.avx512.dot
// The f32 spec in the same module keeps the FMA kernel:
// CHECK-LABEL: func.func @attn_dense_f32_tiles(
// CHECK-NOT: x86vector
// CHECK: vector.fma
// CHECK-NOT: x86vector
// CHECK: return

// After canonicalization the view is still only loaded from (the cast is
// not folded into the loads, which would then not verify):
// CANON-LABEL: func.func @attn_dense_bf16_tiles(
// CANON: memref.reinterpret_cast
// CANON: x86vector.avx512.dot

// bf16-dot-pv=false: dots only in pass 1; P V by FMAs on widened v.
// QKONLY-LABEL: func.func @attn_dense_bf16_tiles(
// QKONLY-NOT: memref<4x64xbf16>
// QKONLY: x86vector.avx512.dot
// QKONLY-NOT: arith.truncf %{{.*}} : vector<16xf32> to vector<16xbf16>
// QKONLY: arith.extf %{{.*}} : bf16 to f32
// QKONLY: vector.fma
// QKONLY-LABEL: func.func @attn_dense_f32_tiles(

// Without bf16-dot no kernel uses x86vector; the prefill kernels need no
// unit-stride view, the decode kernels' head-dim-in-lanes micro-kernel
// loads K and V rows through one.
// OFF-LABEL: func.func @attn_dense_bf16_tiles(
// OFF-NOT: x86vector
// OFF-NOT: memref.reinterpret_cast
// OFF-LABEL: func.func @attn_dense_bf16_decode_tiles(
// OFF-NOT: x86vector
// OFF: memref.reinterpret_cast
// OFF-NOT: x86vector
// OFF-LABEL: func.func @attn_dense_f32_tiles(
// OFF-NOT: x86vector
// OFF-NOT: memref.reinterpret_cast
// OFF-LABEL: func.func @attn_dense_f32_decode_tiles(
// OFF-NOT: x86vector

// LLVM: llvm.call_intrinsic "llvm.x86.avx512bf16.dpbf16ps.512"

attn.spec @dense_bf16 {
  attn.input @q : bf16 ["B", "Hq", "N", "Dqk"]
  attn.input @k : bf16 ["B", "Hkv", "M", "Dqk"]
  attn.input @v : bf16 ["B", "Hkv", "M", "Dv"]
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 32, tile_kv = 7, vector_width = 16, block_skip = "none">} scale {
  } mask {
  } score {
  } bias {
  }
}

attn.spec @dense_f32 {
  attn.attention normalizer = <softmax> attributes {schedule = #attn.schedule<tile_q = 32, tile_kv = 7, vector_width = 16, block_skip = "none">} scale {
  } mask {
  } score {
  } bias {
  }
}
