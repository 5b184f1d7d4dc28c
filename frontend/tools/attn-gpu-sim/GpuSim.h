//===- GpuSim.h - CTA-level SIMT interpreter of gpu.func kernels -*- C++
//-*-===//
//
// Executes a `gpu.func` kernel (gpu / nvgpu / NVVM / amdgpu / arith / math /
// memref / scf / vector ops, as convert-attn-to-nvvm and convert-attn-to-rocdl
// emit them) on the CPU, one CTA
// at a time. Every SSA value is an array over the CTA's threads, so the CTA
// runs in lockstep: gpu.barrier is trivially satisfied, and warp-wide ops
// (gpu.shuffle, nvgpu.ldmatrix, nvvm.mma.sync) are cross-lane operations on
// the 32 lanes of each warp, implemented from the PTX ISA (amdgpu.mfma on
// the 64 lanes of an AMD wave, from AMD's layouts). scf.if with a
// non-uniform condition runs both branches under a lane mask; loop bounds and
// while conditions must be uniform. Every global and shared memory access is
// bounds checked, and so is the alignment of cp.async and ldmatrix addresses.
// memref.atomic_rmw addf / addi (global or shared memory) applies the active
// threads' updates one after the other; atomics to the same bytes never race
// with each other, but do with plain accesses: in shared memory within one
// barrier interval, in global memory (a plain store and an atomic add to the
// same bytes, in either order, anywhere in the launch) always.
//
// Errors are fatal: they print `attn-gpu-sim: error: ...` (with the op, its
// location, the CTA and the thread) and exit with status 1.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_GPU_SIM_GPUSIM_H
#define ATTN_GPU_SIM_GPUSIM_H

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "llvm/ADT/SmallVector.h"
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace attn::gpusim {

/// Element kinds of scalar and vector values and of memory.
enum class EK : uint8_t { I1, I8, I16, I32, I64, Idx, F16, BF16, F32, F64 };

/// A flat byte buffer: a global tensor or the shared memory of a CTA.
struct Buffer {
  std::string name;
  std::vector<uint8_t> bytes;
  bool shared = false;
  /// Fake device address of byte 0 (what extract_aligned_pointer gives).
  uint64_t fakeBase = 0;
};

/// A strided memref over a Buffer (buf == -1: a null pointer).
struct MemDesc {
  int buf = -1;
  EK ek = EK::F32;
  unsigned eltBytes = 4;
  int64_t offset = 0; // elements
  llvm::SmallVector<int64_t, 4> sizes, strides;
  /// A raw buffer (amdgpu.fat_raw_buffer_cast): the element offset of its
  /// base and its extent in bytes (num_records); fatBase < 0: a plain
  /// memref.
  int64_t fatBase = -1, fatBytes = 0;
};

enum class AsyncMode { Immediate, Deferred };

struct LaunchConfig {
  int64_t grid[3] = {1, 1, 1};
  int64_t block[3] = {1, 1, 1};
  int64_t sharedBytes = 0;
  /// When cp.async copies land: at issue, or at the issuing thread's
  /// nvgpu.device_async_wait that retires their group (the latest point the
  /// PTX memory model allows).
  AsyncMode async = AsyncMode::Deferred;
  /// Report shared-memory accesses by different threads to the same bytes
  /// between two barriers where one of them is a write.
  bool raceCheck = true;
  /// Threads of a warp (wave), for the warp-level ops: 32 on NVIDIA GPUs,
  /// 64 on AMD's CDNA (the kernel's attn.wave_size).
  int waveSize = 32;
};

struct Program;

class Simulator {
public:
  /// Compiles `fn`; fatal error on unsupported ops or types.
  explicit Simulator(mlir::gpu::GPUFuncOp fn);
  ~Simulator();

  /// Runs every CTA of the grid (sequentially). `args` are the kernel's
  /// memref arguments (in order), over `buffers`.
  void launch(const LaunchConfig &cfg, std::vector<Buffer> &buffers,
              llvm::ArrayRef<MemDesc> args);

  uint64_t opsExecuted() const { return ops; }
  uint64_t ctasRun() const { return ctas; }

  /// Element kind and size of a memref element type; fatal if unsupported.
  static EK elementKind(mlir::Type t, unsigned *bytes = nullptr);

private:
  std::unique_ptr<Program> prog;
  uint64_t ops = 0, ctas = 0;
};

/// Float helpers shared with the driver.
uint16_t f32ToBf16(float f);
float bf16ToF32(uint16_t h);
uint16_t f32ToF16(float f);
float f16ToF32(uint16_t h);
/// Rounds a double to `ek` (F16, BF16, F32, F64) with one round to nearest
/// even; returns the raw bits.
uint64_t roundDouble(double d, EK ek);
/// The value of raw bits of kind `ek` (a float kind) as a double.
double rawToDouble(uint64_t raw, EK ek);

[[noreturn]] void fatal(const std::string &msg);

} // namespace attn::gpusim

#endif
