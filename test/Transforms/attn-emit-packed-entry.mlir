// attn-emit-packed-entry: for each C-interface kernel wrapper
// _mlir_ciface_attn_<name>_tiles(memref descriptors..., i64 begin, i64 end)
// -> i32 add `llvm.func @attn_<name>(!llvm.ptr args, i64 begin, i64 end)` that
// loads descriptor pointer i from args[i] and calls the wrapper: the one C
// signature the runtime calls, whatever the number of aux inputs. A nonzero
// status goes to the status word args[numDescriptors] points to, by an
// atomic store.
// RUN: attn-opt %s --attn-emit-packed-entry | FileCheck %s

llvm.func @_mlir_ciface_attn_causal_tiles(!llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64) -> i32
// q, k, v, o, lse and one aux tensor:
llvm.func @_mlir_ciface_attn_document_tiles(!llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64) -> i32
// Not kernel wrappers: left alone.
llvm.func @_mlir_ciface_attn_helper(!llvm.ptr, i64, i64)
llvm.func @attn_other_tiles(!llvm.ptr, i64, i64)

// CHECK-NOT: llvm.func @attn_helper
// CHECK-NOT: llvm.func @attn_other(

// CHECK-LABEL: llvm.func @attn_causal(
// CHECK-SAME: %[[ARGS:[^:]*]]: !llvm.ptr, %[[BEGIN:[^:]*]]: i64, %[[END:[^:]*]]: i64) {
// CHECK: %[[S0:.*]] = llvm.getelementptr %[[ARGS]][0] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[P0:.*]] = llvm.load %[[S0]] : !llvm.ptr -> !llvm.ptr
// CHECK: %[[S1:.*]] = llvm.getelementptr %[[ARGS]][1] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[P1:.*]] = llvm.load %[[S1]] : !llvm.ptr -> !llvm.ptr
// CHECK: %[[S2:.*]] = llvm.getelementptr %[[ARGS]][2] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[P2:.*]] = llvm.load %[[S2]] : !llvm.ptr -> !llvm.ptr
// CHECK: %[[S3:.*]] = llvm.getelementptr %[[ARGS]][3] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[P3:.*]] = llvm.load %[[S3]] : !llvm.ptr -> !llvm.ptr
// CHECK: %[[S4:.*]] = llvm.getelementptr %[[ARGS]][4] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[P4:.*]] = llvm.load %[[S4]] : !llvm.ptr -> !llvm.ptr
// CHECK-NOT: llvm.getelementptr
// CHECK: %[[ST:.*]] = llvm.call @_mlir_ciface_attn_causal_tiles(%[[P0]], %[[P1]], %[[P2]], %[[P3]], %[[P4]], %[[BEGIN]], %[[END]]) : (!llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64) -> i32
// CHECK: %[[ZERO:.*]] = llvm.mlir.constant(0 : i32) : i32
// CHECK: %[[FAILED:.*]] = llvm.icmp "ne" %[[ST]], %[[ZERO]] : i32
// CHECK: llvm.cond_br %[[FAILED]], ^[[FAIL:.*]], ^[[DONE:.*]]
// CHECK: ^[[FAIL]]:
// CHECK: %[[SLOT:.*]] = llvm.getelementptr %[[ARGS]][5] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[WORD:.*]] = llvm.load %[[SLOT]] : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.store %[[ST]], %[[WORD]] atomic monotonic {alignment = 4 : i64} : i32, !llvm.ptr
// CHECK: llvm.br ^[[DONE]]
// CHECK: ^[[DONE]]:
// CHECK-NEXT: llvm.return

// CHECK-LABEL: llvm.func @attn_document(
// CHECK-SAME: %[[ARGS:[^:]*]]: !llvm.ptr, %[[BEGIN:[^:]*]]: i64, %[[END:[^:]*]]: i64) {
// CHECK: llvm.getelementptr %[[ARGS]][5] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
// CHECK: %[[AUX:.*]] = llvm.load
// CHECK: llvm.call @_mlir_ciface_attn_document_tiles(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[AUX]], %[[BEGIN]], %[[END]])
// With one aux tensor the status word is args[6]:
// CHECK: llvm.getelementptr %[[ARGS]][6]
// CHECK: llvm.store {{.*}} atomic monotonic
// CHECK: llvm.return

// CHECK-NOT: llvm.func @attn_helper
// CHECK-NOT: llvm.func @attn_other(
