//===- GpuBatchRun.cpp - attn_cuda_run_batch: ragged and paged batches ----===//
//
// A ragged or paged batch on a GPU is a fixed number of launches whatever
// the sequences' lengths: a decode launch and a merge launch
// (GpuDecodeRun.cpp) when every sequence has at most decode_max_n queries,
// else one launch of the batch prefill variant; the kernels read the batch
// tables themselves. This file checks the call: the layout, the ranks and
// shapes of the packed or pooled tensors, the tables' shapes, dtypes and
// devices. Unlike attn_cpu_run_batch it does not read the tables' values,
// which live on the device (a synchronous copy would stall the stream and
// break CUDA-graph capture); the kernels clamp them instead.
// ATTN_GPU_CHECK_TABLES=1 (a debug mode, read per call) does read them
// back, in stream order, and checks them as the CPU does.
//
//===----------------------------------------------------------------------===//

#include "../BatchShapes.h"
#include "GpuRun.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

using namespace attn::runtime;
using namespace attn::runtime::gpu;

namespace {

const DLDataType kI32 = {kDLInt, 32, 1};

bool hasDecode(const attn_cuda_kernel_desc_t *k) {
  return k->num_decode_variants > 0 && k->decode_variants;
}

bool hasBatch(const attn_cuda_kernel_desc_t *k) {
  return k->num_batch_variants > 0 && k->batch_variants;
}

/// The InputSig of a packed or pooled q, k or v, for checkChunkLayout's
/// messages (which name each dim).
attn::InputSig layoutSig(const char *name, std::vector<const char *> dims) {
  attn::InputSig in;
  in.name = name;
  for (const char *d : dims)
    in.dims.push_back({d, 0});
  return in;
}

/// One attn_<api>_run_batch call, checked in stages, then run.
class GpuBatchCall : BatchShapes {
public:
  GpuBatchCall(Api &api, const attn_cuda_kernel_desc_t *kernel,
               const DLTensor *const *inputs,
               const attn_gpu_batch_layout_t *layout, DLTensor *o,
               DLTensor *lse)
      : api(api), kernel(kernel), inputs(inputs), layout(layout), o(o),
        lse(lse) {}

  attn_status_t run(void *stream) {
    for (attn_status_t (GpuBatchCall::*stage)() :
         {&GpuBatchCall::checkCall, &GpuBatchCall::readLayout,
          &GpuBatchCall::chooseSchedule, &GpuBatchCall::checkTables,
          &GpuBatchCall::checkTensors})
      if (attn_status_t st = (this->*stage)())
        return st;
    const attn_cuda_kernel_variant_t *variant = nullptr;
    if (attn_status_t st = selectVariant(variant))
      return st;
    if (const char *e = std::getenv("ATTN_GPU_CHECK_TABLES");
        e && !std::strcmp(e, "1"))
      if (attn_status_t st = checkTableValues(*variant, stream))
        return st;
    if (prefill)
      return runPrefill(*variant, stream);
    return runDecode(api, kernel, image, *variant, views(), inputs, dims,
                     stream);
  }

private:
  /// The descriptors, the pointers, the layout's flags and lengths.
  attn_status_t checkCall();
  /// q, k, v's ranks and dims, and B from every side that gives it.
  attn_status_t readLayout();
  /// Decode or batch prefill, from maxN, the kernel's variants and
  /// ATTN_GPU_SCHEDULE.
  attn_status_t chooseSchedule();
  /// The schedule's variant for max(Dqk, Dv).
  attn_status_t selectVariant(const attn_cuda_kernel_variant_t *&variant);
  /// The batch prefill: one launch of `variant` writing o and lse.
  attn_status_t runPrefill(const attn_cuda_kernel_variant_t &variant,
                           void *stream);
  /// The tables' shapes, dtypes and devices; a page pool's sizes.
  attn_status_t checkTables();
  /// Binds the dims as for a padded batch, then checks every tensor.
  attn_status_t checkTensors();
  /// ATTN_GPU_CHECK_TABLES=1: the tables' values, read back on `stream`,
  /// checked as attn_cpu_run_batch checks them, and every sequence within
  /// the layout's longest runs. `variant` (the one to be launched) makes
  /// the device current.
  attn_status_t checkTableValues(const attn_cuda_kernel_variant_t &variant,
                                 void *stream);
  /// A table's values in row-major order (a copy of the span its strides
  /// reach).
  attn_status_t readTable(const char *name, const DLTensor *t, void *stream,
                          std::vector<int64_t> &values);
  /// What the kernels take: views of the packed tensors, the tables.
  DecodeTensors views() const;

  Api &api;
  const attn_cuda_kernel_desc_t *kernel;
  const DLTensor *const *inputs;
  const attn_gpu_batch_layout_t *layout;
  DLTensor *o, *lse;

  KernelImage image{};
  attn::Signature sig;
  attn::DimBinding dims;
  int64_t maxN = 0, maxM = 0;
  /// The batch prefill variant runs, not decode and merge.
  bool prefill = false;
};

attn_status_t GpuBatchCall::checkCall() {
  if (!kernel)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "kernel: descriptor is NULL");
  image = imageOf(kernel);
  if (attn_status_t st = checkKernel(api, &image, sig))
    return st;
  if (attn_status_t st = checkDecodeFields(kernel, kernelName(&image)))
    return st;
  if (!layout)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "layout: pointer is NULL");
  if (attn_status_t st =
          checkPointers(kernel->name, kernel->has_lse, kernel->num_inputs,
                        kernel->inputs, inputs, o, lse))
    return st;
  if (attn_status_t st = readFlags(layout->tables))
    return st;
  if (layout->max_seqlen_q < 1 || layout->max_seqlen_k < 1)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                "layout: max_seqlen_q = " + str(layout->max_seqlen_q) +
                    ", max_seqlen_k = " + str(layout->max_seqlen_k) +
                    "; both must be >= 1");
  if (!hasDecode(kernel) && !hasBatch(kernel))
    return fail(ATTN_ERROR_UNSUPPORTED,
                kernelName(&image) +
                    " has no decode variants and no batch prefill variants; "
                    "a " +
                    api.name() +
                    " batch runs those kernels (softmax specs compiled for "
                    "CUDA have the decode ones; attnc --paged-kv adds the "
                    "batch prefill ones)");
  return ATTN_OK;
}

attn_status_t GpuBatchCall::readLayout() {
  if (attn_status_t st = readDims(inputs))
    return st;
  // A packed or paged side has the layout's longest run, a dense one its
  // tensor's.
  maxN = raggedQ ? layout->max_seqlen_q : q->shape[2];
  maxM = raggedK || paged ? layout->max_seqlen_k : k->shape[2];

  const attn_batch_layout_t &t = layout->tables;
  struct Side {
    const char *name;
    const DLTensor *table;
    int rank;
    const char *decl;
    int64_t extra; // the table's dim 0 is B + extra
  };
  for (const Side &s :
       {Side{"cu_seqlens_q", t.cu_seqlens_q, 1, "[B + 1]", 1},
        Side{"cu_seqlens_k", t.cu_seqlens_k, 1, "[B + 1]", 1},
        Side{"block_table", t.block_table, 2, "[B, max_pages]", 0},
        Side{"kv_lens", t.kv_lens, 1, "[B]", 0}}) {
    if (!s.table)
      continue;
    if (attn_status_t st = checkRank(s.name, s.table, s.rank, s.decl))
      return st;
    if (attn_status_t st = setB(s.name, s.table->shape[0] - s.extra))
      return st;
  }
  return setDenseB();
}

attn_status_t GpuBatchCall::chooseSchedule() {
  bool fits = hasDecode(kernel) && maxN <= kernel->decode_max_n;
  // As attn_cuda_run's useDecode: the variable picks between the schedules
  // the kernel has, and forcing decode on a kernel without it is ignored.
  int forced = forcedSchedule("ATTN_GPU_SCHEDULE");
  if (forced == 1 && hasDecode(kernel)) {
    prefill = false;
    if (fits)
      return ATTN_OK;
    return fail(ATTN_ERROR_UNSUPPORTED,
                kernelName(&image) + ": sequences of up to " + str(maxN) +
                    " queries; ATTN_GPU_SCHEDULE=decode runs the decode "
                    "schedule, for at most decode_max_n = " +
                    str(kernel->decode_max_n));
  }
  prefill = hasBatch(kernel) && (forced == 0 || !fits);
  if (prefill || fits)
    return ATTN_OK;
  return fail(ATTN_ERROR_UNSUPPORTED,
              kernelName(&image) + ": sequences of up to " + str(maxN) +
                  " queries, more than the decode schedule's decode_max_n = " +
                  str(kernel->decode_max_n) +
                  ", and the kernel has no batch prefill variants (compile "
                  "it with attnc --paged-kv, CompileOptions::pagedKV, for "
                  "them); or run those sequences with attn_" +
                  api.infix() + "_run");
}

attn_status_t
GpuBatchCall::selectVariant(const attn_cuda_kernel_variant_t *&variant) {
  if (prefill)
    return gpu::selectVariant(api, &image, kernel->num_batch_variants,
                              kernel->batch_variants, "batch prefill", dims,
                              variant);
  return gpu::selectVariant(api, &image, kernel->num_decode_variants,
                            kernel->decode_variants, "decode", dims, variant);
}

attn_status_t GpuBatchCall::checkTables() {
  const attn_batch_layout_t &t = layout->tables;
  auto check = [&](const char *name, const DLTensor *table,
                   std::vector<int64_t> shape, const char *decl) {
    return checkExtraTensor(name, table, shape, decl, false, api.memory(),
                            &q->device, kI32);
  };
  if (raggedQ)
    if (attn_status_t st =
            check("cu_seqlens_q", t.cu_seqlens_q, {B + 1}, "[B + 1]"))
      return st;
  if (raggedK)
    if (attn_status_t st =
            check("cu_seqlens_k", t.cu_seqlens_k, {B + 1}, "[B + 1]"))
      return st;
  if (!paged)
    return ATTN_OK;
  int64_t maxPages = t.block_table->shape[1];
  if (attn_status_t st =
          check("block_table", t.block_table, {B, maxPages}, "[B, max_pages]"))
    return st;
  if (attn_status_t st = check("kv_lens", t.kv_lens, {B}, "[B]"))
    return st;
  // The kernels' page arithmetic: a table row to read, 32-bit slots.
  if (maxPages < 1)
    return fail(ATTN_ERROR_SHAPE, "block_table: max_pages is 0; every "
                                  "sequence needs a table row of at least "
                                  "one page");
  int64_t pages = k->shape[0], pageSize = k->shape[1];
  if (pages < 1 || pageSize < 1 || pageSize >= (int64_t(1) << 31))
    return fail(ATTN_ERROR_SHAPE,
                "k: a page pool needs pages >= 1 and page_size in [1, 2^31) "
                "(shape " +
                    shapeString(k->shape, 4) + ")");
  return ATTN_OK;
}

attn_status_t GpuBatchCall::checkTensors() {
  if (attn_status_t st = bindDims(sig, kernel->num_inputs, kernel->inputs,
                                  inputs, maxN, maxM, dims))
    return st;
  // The merge grid's B * Hq, checked before anything multiplies it.
  Limits limits = api.limits();
  if (Hq > limits.maxGridY || B > limits.maxGridY / Hq)
    return fail(ATTN_ERROR_SHAPE, "q: B * Hq = " + str(B) + " * " + str(Hq) +
                                      " is more than " + str(limits.maxGridY) +
                                      " (the " + api.name() +
                                      " grid's y dimension)");
  if (attn_status_t st =
          checkEach(sig, dims, kernel->num_inputs, kernel->inputs, inputs, o,
                    lse, maxN, api.memory()))
    return st;
  const char *kvRows = raggedK ? "total_k" : paged ? "page_size" : "M";
  attn::InputSig qSig =
      raggedQ ? layoutSig("q", {"total_q", "Hq", "Dqk"}) : sig.inputs[0];
  attn::InputSig kSig = raggedK ? layoutSig("k", {kvRows, "Hkv", "Dqk"})
                        : paged
                            ? layoutSig("k", {"pages", kvRows, "Hkv", "Dqk"})
                            : sig.inputs[1];
  attn::InputSig vSig = raggedK ? layoutSig("v", {kvRows, "Hkv", "Dv"})
                        : paged ? layoutSig("v", {"pages", kvRows, "Hkv", "Dv"})
                                : sig.inputs[2];
  for (auto [t, s] : {std::pair{q, &qSig}, {k, &kSig}, {v, &vSig}})
    if (attn_status_t st = checkChunkLayout(api, t, *s))
      return st;
  return ATTN_OK;
}

attn_status_t GpuBatchCall::readTable(const char *name, const DLTensor *t,
                                      void *stream,
                                      std::vector<int64_t> &values) {
  values.clear();
  int64_t span = tableSpan(t);
  if (span == 0)
    return ATTN_OK;
  std::vector<int32_t> host(size_t(span), 0);
  uintptr_t src = reinterpret_cast<uintptr_t>(t->data) + t->byte_offset;
  if (attn_status_t st =
          api.copyToHost(host.data(), src, size_t(span) * sizeof(int32_t),
                         stream, std::string("reading ") + name))
    return st;
  gatherTable(t, host.data(), values);
  return ATTN_OK;
}

attn_status_t
GpuBatchCall::checkTableValues(const attn_cuda_kernel_variant_t &variant,
                               void *stream) {
  void *fn = nullptr;
  if (attn_status_t st = api.prepare(image, variant, q->device.device_id, fn))
    return st;
  const attn_batch_layout_t &t = layout->tables;
  // Each run of a table within the layout's longest (the grids and the
  // partials are sized by those).
  auto within = [&](const char *table, const char *what, int64_t len, int64_t b,
                    int64_t longest, const char *field) {
    if (len <= longest)
      return ATTN_OK;
    return fail(ATTN_ERROR_SHAPE, std::string(table) + ": sequence " + str(b) +
                                      " has " + str(len) + " " + what +
                                      ", more than layout " + field + " = " +
                                      str(longest));
  };
  std::vector<int64_t> cu, table, lens;
  for (auto [name, x, rows, tensor, what, longest, field] :
       {std::tuple{"cu_seqlens_q", t.cu_seqlens_q, q->shape[0], "q (total_q)",
                   "queries", layout->max_seqlen_q, "max_seqlen_q"},
        std::tuple{"cu_seqlens_k", t.cu_seqlens_k, k->shape[0], "k (total_k)",
                   "keys", layout->max_seqlen_k, "max_seqlen_k"}}) {
    if (!x)
      continue;
    if (attn_status_t st = readTable(name, x, stream, cu))
      return st;
    if (attn_status_t st = checkOffsets(name, cu, rows, tensor))
      return st;
    for (size_t b = 0; b + 1 < cu.size(); ++b)
      if (attn_status_t st =
              within(name, what, cu[b + 1] - cu[b], int64_t(b), longest, field))
        return st;
  }
  if (!paged)
    return ATTN_OK;
  if (attn_status_t st = readTable("block_table", t.block_table, stream, table))
    return st;
  if (attn_status_t st = readTable("kv_lens", t.kv_lens, stream, lens))
    return st;
  if (attn_status_t st = checkPageTable(table, lens, t.block_table->shape[1],
                                        k->shape[1], k->shape[0]))
    return st;
  for (size_t b = 0; b < lens.size(); ++b)
    if (attn_status_t st = within("kv_lens", "keys", lens[b], int64_t(b),
                                  layout->max_seqlen_k, "max_seqlen_k"))
      return st;
  return ATTN_OK;
}

/// A packed [rows, H, D] tensor as [B, H, rows, D] with a zero batch
/// stride, or a packed lse [H, rows] as [B, H, rows] (the kernels index
/// row qBase + i of "batch" b).
View batchView(const DLTensor *t, int64_t B) {
  View v = View::of(t);
  if (t->ndim == 3) {
    v.sizes = {B, v.sizes[1], v.sizes[0], v.sizes[2]};
    v.strides = {0, v.strides[1], v.strides[0], v.strides[2]};
  } else {
    v.sizes = {B, v.sizes[0], v.sizes[1]};
    v.strides = {0, v.strides[0], v.strides[1]};
  }
  return v;
}

DecodeTensors GpuBatchCall::views() const {
  DecodeTensors d = DecodeTensors::dense(inputs, o, lse, dims);
  if (raggedQ) {
    d.q = batchView(q, B);
    d.o = batchView(o, B);
    d.lse = lse ? batchView(lse, B) : View::null({B, Hq, q->shape[0]});
  }
  if (raggedK) {
    d.k = batchView(k, B);
    d.v = batchView(v, B);
  }
  const attn_batch_layout_t &t = layout->tables;
  const DLTensor *tables[4] = {t.cu_seqlens_q, t.cu_seqlens_k, t.block_table,
                               t.kv_lens};
  for (int i = 0; i < 4; ++i)
    if (tables[i])
      d.tables[i] = View::of(tables[i]);
  return d;
}

attn_status_t
GpuBatchCall::runPrefill(const attn_cuda_kernel_variant_t &variant,
                         void *stream) {
  if (variant.scratch_state_floats || variant.scratch_fixed_floats)
    return fail(ATTN_ERROR_UNSUPPORTED,
                kernelName(&image) + ": batch variant '" + variant.function +
                    "' declares global scratch, which only gradients' "
                    "kernels take");
  // One CTA per q tile of the longest sequence, for each (sequence, head);
  // the kernel skips the tiles past its own sequence's queries.
  int64_t gridY = B * Hq, gridX;
  if (attn_status_t st = gridOf(api, variant, maxN, gridY, "q", "B * Hq",
                                raggedQ ? "max_seqlen_q" : "N", gridX))
    return st;
  // The forward's parameters, o and lse as views like q, then the tables.
  DecodeTensors t = views();
  Descriptors desc;
  for (const View *x : {&t.q, &t.k, &t.v, &t.o, &t.lse})
    x->addTo(desc);
  for (int32_t i = 3; i < kernel->num_inputs; ++i)
    desc.addTensor(inputs[i]);
  for (const View &table : t.tables)
    table.addTo(desc);
  void *fn = nullptr;
  if (attn_status_t st = api.prepare(image, variant, q->device.device_id, fn))
    return st;
  std::vector<void *> params = desc.wordPointers();
  return api.launch(fn, image, variant, gridX, gridY, params.data(), stream);
}

} // namespace

attn_status_t gpu::runBatch(Api &api, const attn_cuda_kernel_desc_t *kernel,
                            const DLTensor *const *inputs,
                            const attn_gpu_batch_layout_t *layout, DLTensor *o,
                            DLTensor *lse, void *stream) {
  clearLastError();
  return GpuBatchCall(api, kernel, inputs, layout, o, lse).run(stream);
}
