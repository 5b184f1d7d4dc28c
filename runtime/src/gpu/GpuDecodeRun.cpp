//===- GpuDecodeRun.cpp - the split-KV decode schedule on a GPU -----------===//
//
// attn_cuda_run's decode schedule and attn_cuda_run_batch (runtime.h): a
// decode launch into stream-ordered partials, then a merge launch into o
// and lse, over a dense call or a ragged/paged batch (the kernels' side:
// AttnToNVVM.cpp, emitDecodePrologue; MergeToNVVM.cpp). A batch's tables
// stay on the device and are not read here: their shapes, dtypes and
// devices are checked, their values clamped by the kernels.
//
//===----------------------------------------------------------------------===//

#include "GpuRun.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

using namespace attn::runtime;
using namespace attn::runtime::gpu;

View View::of(const DLTensor *t) {
  View v;
  v.allocated = t->data;
  v.aligned = static_cast<const char *>(t->data) + t->byte_offset;
  v.sizes.assign(t->shape, t->shape + t->ndim);
  v.strides = stridesOf(t);
  return v;
}

View View::null(std::vector<int64_t> sizes) {
  View v;
  v.strides = compactStrides(sizes);
  v.sizes = std::move(sizes);
  return v;
}

namespace {

/// The NULL batch tables of a dense call.
void nullTables(View (&tables)[4]) {
  tables[0] = View::null({0});
  tables[1] = View::null({0});
  tables[2] = View::null({0, 0});
  tables[3] = View::null({0});
}

} // namespace

DecodeTensors DecodeTensors::dense(const DLTensor *const *inputs,
                                   const DLTensor *o, const DLTensor *lse,
                                   const attn::DimBinding &dims) {
  DecodeTensors t;
  t.q = View::of(inputs[0]);
  t.k = View::of(inputs[1]);
  t.v = View::of(inputs[2]);
  t.o = View::of(o);
  t.lse = lse ? View::of(lse)
              : View::null({dims.at("B"), dims.at("Hq"), dims.at("N")});
  nullTables(t.tables);
  return t;
}

attn_status_t gpu::runDecode(Api &api, const attn_cuda_kernel_desc_t *kernel,
                             const KernelImage &image,
                             const attn_cuda_kernel_variant_t &dec,
                             const DecodeTensors &t,
                             const DLTensor *const *inputs,
                             const attn::DimBinding &dims, void *stream) {
  const attn_cuda_kernel_variant_t &merge = *kernel->merge_variant;
  if (attn_status_t st = checkShared(api, &image, dec))
    return st;
  int64_t B = dims.at("B"), Hq = dims.at("Hq"), Hkv = dims.at("Hkv");
  int64_t N = dims.at("N"), M = dims.at("M"), Dv = dims.at("Dv");
  // No overflow: B * Hq * N is bounded by q's checked extent (a batch's N
  // by decode_max_n, B * Hq by the grid's y limit, checked first).
  int64_t rows = dec.block_q;
  int64_t chunks = ((Hq / Hkv) * N + rows - 1) / rows;
  int64_t ctas = B * Hkv * chunks;
  int64_t mergeX;
  if (attn_status_t st =
          gridOf(api, merge, N, B * Hq, "q", "B * Hq", "N", mergeX))
    return st;

  int deviceId = inputs[0]->device.device_id;
  void *decFn = nullptr, *mergeFn = nullptr;
  if (attn_status_t st = api.prepare(image, dec, deviceId, decFn))
    return st;
  if (attn_status_t st = api.prepare(image, merge, deviceId, mergeFn))
    return st;
  int64_t slots = 0;
  if (attn_status_t st = api.slots(decFn, dec, deviceId, slots))
    return st;
  int64_t splits = attn_cuda_decode_splits(ctas, M, slots);
  Limits limits = api.limits();
  if (ctas > limits.maxGridX / splits)
    return fail(ATTN_ERROR_SHAPE,
                "q: the decode schedule's B * Hkv * ceil(G * N / " + str(rows) +
                    ") * splits = " + str(ctas) + " * " + str(splits) +
                    " CTAs are more than " + str(limits.maxGridX) + " (the " +
                    api.name() + " grid's x dimension)");

  // The partials: o_part [B, Hkv, S, C * rows, Dv], then lse_part
  // [B, Hkv, S, C * rows], in one allocation.
  std::vector<int64_t> oSizes = {B, Hkv, splits, chunks * rows, Dv};
  std::vector<int64_t> lseSizes = {B, Hkv, splits, chunks * rows};
  int64_t lseFloats = ctas * splits * rows, oFloats;
  if (__builtin_mul_overflow(lseFloats, Dv, &oFloats) ||
      oFloats > (int64_t(1) << 60) / 4 - lseFloats)
    return fail(ATTN_ERROR_OUT_OF_MEMORY,
                kernelName(&image) + ": the decode partials of " +
                    str(ctas * splits) + " CTAs do not fit in 64-bit sizes");
  size_t bytes = size_t(oFloats + lseFloats) * 4;
  uintptr_t part = 0;
  if (attn_status_t st = api.allocAsync(bytes, stream, part,
                                        str(int64_t(bytes)) +
                                            " bytes of decode partials for " +
                                            kernelName(&image)))
    return st;
  auto *oPart = reinterpret_cast<const void *>(part);
  auto *lsePart = reinterpret_cast<const void *>(part + size_t(oFloats) * 4);

  Descriptors decDesc;
  for (const View *v : {&t.q, &t.k, &t.v})
    v->addTo(decDesc);
  decDesc.add(oPart, oPart, oSizes, compactStrides(oSizes));
  decDesc.add(lsePart, lsePart, lseSizes, compactStrides(lseSizes));
  for (int32_t i = 3; i < kernel->num_inputs; ++i)
    decDesc.addTensor(inputs[i]);
  for (const View &table : t.tables)
    table.addTo(decDesc);
  Descriptors mergeDesc;
  mergeDesc.add(oPart, oPart, oSizes, compactStrides(oSizes));
  mergeDesc.add(lsePart, lsePart, lseSizes, compactStrides(lseSizes));
  for (const View *v : {&t.o, &t.lse, &t.tables[0]})
    v->addTo(mergeDesc);

  std::vector<void *> decParams = decDesc.wordPointers();
  attn_status_t st =
      api.launch(decFn, image, dec, ctas * splits, 1, decParams.data(), stream);
  if (st == ATTN_OK) {
    std::vector<void *> mergeParams = mergeDesc.wordPointers();
    st = api.launch(mergeFn, image, merge, mergeX, B * Hq, mergeParams.data(),
                    stream);
  }
  // Freed after the launches on the stream, whether or not they launched.
  attn_status_t freed = api.freeAsync(
      part, stream, "the decode partials of " + kernelName(&image));
  return st != ATTN_OK ? st : freed;
}

extern "C" int64_t attn_cuda_decode_splits(int64_t ctas, int64_t M,
                                           int64_t slots) {
  constexpr int64_t kMaxSplits = 128;
  if (const char *env = std::getenv("ATTN_DECODE_SPLITS")) {
    char *endp = nullptr;
    long long v = std::strtoll(env, &endp, 10);
    if (endp != env && *endp == '\0' && v > 0)
      return std::min<int64_t>(v, kMaxSplits);
  }
  if (ctas <= 0 || M <= 0 || slots <= 0 || 5 * ctas >= 4 * slots)
    return 1;
  int64_t most = std::min<int64_t>(kMaxSplits, (M + 127) / 128);
  auto efficiency = [&](int64_t s) {
    int64_t n = ctas * s, waves = (n + slots - 1) / slots;
    return double(n) / double(waves * slots);
  };
  double best = 0;
  for (int64_t s = 1; s <= most; ++s)
    best = std::max(best, efficiency(s));
  for (int64_t s = 1; s <= most; ++s)
    if (efficiency(s) >= 0.85 * best)
      return s;
  return 1;
}
