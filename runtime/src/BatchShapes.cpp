//===- BatchShapes.cpp - the shapes of a ragged or paged batch ------------===//

#include "BatchShapes.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

using namespace attn::runtime;

namespace {
const DLDataType kF32 = {kDLFloat, 32, 1};
} // namespace

attn_status_t attn::runtime::checkRank(const char *name, const DLTensor *t,
                                       int rank, const char *decl) {
  if (t->ndim != rank)
    return fail(ATTN_ERROR_SHAPE, std::string(name) + ": ndim is " +
                                      str(t->ndim) + ", expected " + str(rank) +
                                      " " + decl);
  if (!t->shape)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                std::string(name) + ": shape is NULL");
  return ATTN_OK;
}

attn_status_t attn::runtime::checkPointers(const char *kernelName,
                                           int32_t hasLse, int32_t numInputs,
                                           const attn_input_desc_t *descs,
                                           const DLTensor *const *inputs,
                                           const DLTensor *o,
                                           const DLTensor *lse) {
  if (attn_status_t st = checkCallPointers(kernelName, hasLse, inputs, o, lse))
    return st;
  for (int32_t i = 0; i < numInputs; ++i)
    if (!inputs[i])
      return fail(ATTN_ERROR_INVALID_ARGUMENT, std::string(descs[i].name) +
                                                   ": tensor is NULL (inputs[" +
                                                   str(i) + "])");
  return ATTN_OK;
}

attn_status_t BatchShapes::readFlags(const attn_batch_layout_t &layout) {
  raggedQ = layout.cu_seqlens_q;
  raggedK = layout.cu_seqlens_k;
  paged = layout.block_table || layout.kv_lens;
  if (paged && !(layout.block_table && layout.kv_lens))
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                std::string("layout: ") +
                    (layout.block_table ? "block_table without kv_lens"
                                        : "kv_lens without block_table") +
                    "; a paged KV cache needs both");
  if (paged && raggedK)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                "layout: cu_seqlens_k and block_table both given; keys are "
                "either packed or paged");
  return ATTN_OK;
}

attn_status_t BatchShapes::readDims(const DLTensor *const *inputs) {
  q = inputs[0];
  k = inputs[1];
  v = inputs[2];
  qDecl = raggedQ ? "[total_q, Hq, Dqk]" : "[B, Hq, N, Dqk]";
  kDecl = raggedK ? "[total_k, Hkv, Dqk]"
          : paged ? "[pages, page_size, Hkv, Dqk]"
                  : "[B, Hkv, M, Dqk]";
  vDecl = raggedK ? "[total_k, Hkv, Dv]"
          : paged ? "[pages, page_size, Hkv, Dv]"
                  : "[B, Hkv, M, Dv]";
  if (attn_status_t st = checkRank("q", q, raggedQ ? 3 : 4, qDecl))
    return st;
  if (attn_status_t st = checkRank("k", k, raggedK ? 3 : 4, kDecl))
    return st;
  if (attn_status_t st = checkRank("v", v, raggedK ? 3 : 4, vDecl))
    return st;
  Hq = q->shape[1];
  Dqk = q->shape[q->ndim - 1];
  Hkv = k->shape[k->ndim - 2];
  Dv = v->shape[v->ndim - 1];
  return ATTN_OK;
}

attn_status_t BatchShapes::setB(const char *name, int64_t b) {
  if (B >= 0 && b != B)
    return fail(ATTN_ERROR_SHAPE, std::string(name) + " describes " + str(b) +
                                      " sequences, the rest of the layout " +
                                      str(B));
  B = b;
  return ATTN_OK;
}

attn_status_t BatchShapes::setDenseB() {
  if (!raggedQ)
    if (attn_status_t st = setB("q (dim 0)", q->shape[0]))
      return st;
  if (!raggedK && !paged)
    if (attn_status_t st = setB("k (dim 0)", k->shape[0]))
      return st;
  if (B <= 0)
    return fail(ATTN_ERROR_SHAPE, "layout: the batch has no sequences");
  return ATTN_OK;
}

attn_status_t BatchShapes::bindDims(const attn::Signature &sig,
                                    int32_t numInputs,
                                    const attn_input_desc_t *descs,
                                    const DLTensor *const *inputs, int64_t maxN,
                                    int64_t maxM,
                                    attn::DimBinding &dims) const {
  std::map<std::string, std::vector<int64_t>> shapes;
  shapes["q"] = {B, Hq, maxN, Dqk};
  shapes["k"] = {B, Hkv, maxM, Dqk};
  shapes["v"] = {B, Hkv, maxM, Dv};
  for (int32_t i = 3; i < numInputs; ++i) {
    const DLTensor *t = inputs[i];
    if (!t->shape && t->ndim > 0)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  std::string(descs[i].name) + ": shape is NULL");
    shapes[descs[i].name] =
        std::vector<int64_t>(t->shape, t->shape + std::max(t->ndim, 0));
  }
  if (std::string err = attn::bindShapes(sig, shapes, dims); !err.empty())
    return fail(ATTN_ERROR_SHAPE, err);
  return ATTN_OK;
}

attn_status_t BatchShapes::checkEach(const attn::Signature &sig,
                                     const attn::DimBinding &dims,
                                     int32_t numInputs,
                                     const attn_input_desc_t *descs,
                                     const DLTensor *const *inputs,
                                     const DLTensor *o, const DLTensor *lse,
                                     int64_t maxN, MemoryKind memory) const {
  const DLDevice *ref = nullptr;
  for (int32_t i = 0; i < numInputs; ++i) {
    const DLTensor *t = inputs[i];
    std::vector<int64_t> shape(t->shape, t->shape + t->ndim);
    std::string decl = i == 0   ? qDecl
                       : i == 1 ? kDecl
                       : i == 2 ? vDecl
                                : declString(descs[i]);
    if (i >= 3)
      shape = attn::shapeOf(sig.inputs[i], dims);
    if (attn_status_t st =
            checkExtraTensor(descs[i].name, t, shape, decl, false, memory, ref,
                             dlTypeOf(descs[i].type)))
      return st;
    ref = &q->device;
  }
  int64_t totalQ = raggedQ ? q->shape[0] : 0;
  std::vector<int64_t> oShape = raggedQ ? std::vector<int64_t>{totalQ, Hq, Dv}
                                        : std::vector<int64_t>{B, Hq, maxN, Dv};
  if (attn_status_t st = checkExtraTensor(
          "o", o, oShape, raggedQ ? "[total_q, Hq, Dv]" : "[B, Hq, N, Dv]",
          true, memory, ref, kF32))
    return st;
  if (!lse)
    return ATTN_OK;
  std::vector<int64_t> lseShape = raggedQ ? std::vector<int64_t>{Hq, totalQ}
                                          : std::vector<int64_t>{B, Hq, maxN};
  return checkExtraTensor("lse", lse, lseShape,
                          raggedQ ? "[Hq, total_q]" : "[B, Hq, N]", true,
                          memory, ref, kF32);
}

int64_t attn::runtime::tableSpan(const DLTensor *t) {
  std::vector<int64_t> strides = stridesOf(t);
  int64_t span = 1;
  for (int d = 0; d < t->ndim; ++d) {
    if (t->shape[d] == 0)
      return 0;
    span += (t->shape[d] - 1) * strides[d];
  }
  return span;
}

void attn::runtime::gatherTable(const DLTensor *t, const int32_t *base,
                                std::vector<int64_t> &values) {
  std::vector<int64_t> strides = stridesOf(t);
  int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
  int64_t colStride = t->ndim == 2 ? strides[1] : 0;
  values.resize(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      values[r * cols + c] = base[r * strides[0] + c * colStride];
}

attn_status_t attn::runtime::checkOffsets(const char *name,
                                          const std::vector<int64_t> &cu,
                                          int64_t rows, const char *tensor) {
  if (cu.empty() || cu[0] != 0)
    return fail(ATTN_ERROR_SHAPE,
                std::string(name) + ": entry 0 is " +
                    (cu.empty() ? std::string("missing") : str(cu[0])) +
                    ", expected 0 (cumulative offsets start at 0)");
  for (size_t b = 1; b < cu.size(); ++b)
    if (cu[b] < cu[b - 1])
      return fail(ATTN_ERROR_SHAPE,
                  std::string(name) + ": entry " + str(int64_t(b)) + " (" +
                      str(cu[b]) + ") is less than entry " +
                      str(int64_t(b - 1)) + " (" + str(cu[b - 1]) +
                      "); sequence lengths cannot be negative");
  if (cu.back() != rows)
    return fail(ATTN_ERROR_SHAPE, std::string(name) + ": the last entry is " +
                                      str(cu.back()) + ", expected " +
                                      str(rows) + ", the rows of " + tensor);
  return ATTN_OK;
}

attn_status_t attn::runtime::checkPageTable(const std::vector<int64_t> &table,
                                            const std::vector<int64_t> &kvLens,
                                            int64_t maxPages, int64_t pageSize,
                                            int64_t numPages) {
  int64_t capacity;
  if (__builtin_mul_overflow(maxPages, pageSize, &capacity))
    return fail(ATTN_ERROR_SHAPE,
                "block_table: max_pages * page_size overflows");
  for (int64_t b = 0, B = int64_t(kvLens.size()); b < B; ++b) {
    int64_t len = kvLens[b];
    if (len < 0 || len > capacity)
      return fail(ATTN_ERROR_SHAPE,
                  "kv_lens: sequence " + str(b) + " has " + str(len) +
                      " keys, outside [0, max_pages * page_size = " +
                      str(capacity) + "]");
    for (int64_t p = 0; p < (len + pageSize - 1) / pageSize; ++p) {
      int64_t id = table[b * maxPages + p];
      if (id < 0 || id >= numPages)
        return fail(ATTN_ERROR_SHAPE,
                    "block_table: sequence " + str(b) + ", entry " + str(p) +
                        " is page " + str(id) + ", outside [0, " +
                        str(numPages) + ") (the pages k and v hold)");
    }
  }
  return ATTN_OK;
}
