//===- Signature.h - a spec's inputs and their symbolic shapes --*- C++ -*-===//
//
// The runtime's view of a spec: which tensors it takes and how their shapes
// relate. Binding checks a set of concrete shapes against it before anything
// runs, so a wrong shape is a message, never an out-of-bounds access. No MLIR.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_RUNTIME_SIGNATURE_H
#define ATTN_RUNTIME_SIGNATURE_H

#include "attn/npy.h"
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace attn {

/// One dim of a declared shape: a symbol (`N`) or a fixed size.
struct DimRef {
  std::string symbol;
  int64_t size = 0;
};

/// Element types a spec may declare.
enum class ElemType { F32, BF16, F16, I32 };
const char *elemTypeName(ElemType);

struct InputSig {
  std::string name;
  ElemType type = ElemType::F32;
  std::vector<DimRef> dims;
};

/// q, k, v (always first, in that order) and the auxiliary inputs.
struct Signature {
  std::vector<InputSig> inputs;
  /// Returns the input named `name` or nullptr.
  const InputSig *find(const std::string &name) const;
  /// Adds q, k and v with their canonical shapes and type f32.
  static Signature withQKV();
};

/// Concrete sizes of every symbolic dim, including the derived `G`.
using DimBinding = std::map<std::string, int64_t>;

/// Binds every symbolic dim from `shapes` (which must hold every input of
/// `sig`, and nothing else) and checks consistency: ranks, fixed sizes, one
/// value per symbol, positive sizes, Hq a multiple of Hkv; M = N where
/// `sig` binds no M (causal linear attention). Returns "" or a
/// one-line message naming the input and dim.
std::string bindShapes(const Signature &sig,
                       const std::map<std::string, std::vector<int64_t>> &shapes,
                       DimBinding &dims);

/// Checks that a .npy array's dtype can feed an input of type `t`: q/k/v and
/// f32 aux take float32/float64; i32 aux takes int32 (int64 also accepted
/// when every value fits). Returns "" or a message.
std::string checkDType(const InputSig &in, const HostArray &a);

/// The shape of input `in` under `dims` (all symbols must be bound).
std::vector<int64_t> shapeOf(const InputSig &in, const DimBinding &dims);

/// "[B, Hq, N, Dqk]".
std::string dimsString(const InputSig &in);

} // namespace attn

#endif // ATTN_RUNTIME_SIGNATURE_H
