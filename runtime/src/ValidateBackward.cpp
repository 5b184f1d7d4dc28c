//===- ValidateBackward.cpp - the checks of a backward call ---------------===//
//
// What attn_cpu_run_backward and attn_cuda_run_backward share: the
// descriptor's gradient inputs, the call's pointers and tensors (the
// forward's checks for the inputs, o and lse, then dout, dlse and the
// gradients), outputs that must not alias anything, and the kernels'
// argument order.
//
//===----------------------------------------------------------------------===//

#include "Validate.h"

using namespace attn::runtime;

attn_status_t attn::runtime::checkGradInputs(const std::string &kname,
                                             int32_t numInputs,
                                             const attn_input_desc_t *inputs,
                                             int32_t numGrads,
                                             const int32_t *gradInputs) {
  if (numGrads < 0 || numGrads > numInputs - 3 || (numGrads > 0 && !gradInputs))
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                kname + ": num_grads is " + str(numGrads) + " with " +
                    str(numInputs - 3) + " aux inputs");
  for (int32_t i = 0; i < numGrads; ++i) {
    int32_t idx = gradInputs[i];
    if (idx < 3 || idx >= numInputs || (i > 0 && idx <= gradInputs[i - 1]) ||
        inputs[idx].type != ATTN_F32)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  kname + ": grad_inputs[" + str(i) + "] = " + str(idx) +
                      " is not an ascending index of an f32 aux input");
  }
  return ATTN_OK;
}

/// NULL pointers, and lse / dlse against whether the kernel has an lse.
static attn_status_t checkBackwardPointers(const BackwardKernel &k,
                                           const DLTensor *const *inputs,
                                           const BackwardTensors &t) {
  if (!inputs)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "inputs: array is NULL");
  struct Named {
    const char *name;
    const DLTensor *t;
  };
  for (Named n : {Named{"o (the forward's output)", t.o}, Named{"dout", t.dout},
                  Named{"dq", t.dq}, Named{"dk", t.dk}, Named{"dv", t.dv}})
    if (!n.t)
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  std::string(n.name) + ": tensor is NULL");
  if (k.needsLse && !t.lse)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                "lse: tensor is NULL; the softmax backward needs the "
                "forward's lse (run the forward with an lse output)");
  if (t.dlse && !k.needsLse)
    return fail(ATTN_ERROR_INVALID_ARGUMENT,
                std::string("dlse: '") + (k.name ? k.name : "?") +
                    "' has no lse (only the softmax normalizer has one), so "
                    "there is no lse gradient; pass NULL");
  if (k.numGrads > 0 && !t.daux)
    return fail(ATTN_ERROR_INVALID_ARGUMENT, "daux: array is NULL, expected " +
                                                 str(k.numGrads) +
                                                 " gradient tensors");
  for (int32_t i = 0; i < k.numGrads; ++i)
    if (!t.daux[i])
      return fail(ATTN_ERROR_INVALID_ARGUMENT,
                  std::string("d") + k.inputs[k.gradInputs[i]].name +
                      ": tensor is NULL (daux[" + str(i) + "])");
  return ATTN_OK;
}

attn_status_t attn::runtime::checkBackwardCall(
    const BackwardKernel &k, const attn::Signature &sig,
    const DLTensor *const *inputs, const BackwardTensors &t, MemoryKind memory,
    DLDataType doutType, attn::DimBinding &dims) {
  if (attn_status_t st = checkBackwardPointers(k, inputs, t))
    return st;
  // Inputs (with o and lse), then the gradients' tensors.
  if (attn_status_t st =
          checkTensors(sig, k.inputs, inputs, t.o, t.lse, memory, dims))
    return st;
  const DLDevice *ref = &inputs[0]->device;
  int64_t B = dims.at("B"), Hq = dims.at("Hq"), Hkv = dims.at("Hkv"),
          N = dims.at("N"), M = dims.at("M"), Dqk = dims.at("Dqk"),
          Dv = dims.at("Dv");
  DLDataType f32 = {kDLFloat, 32, 1};
  struct Extra {
    std::string name;
    const DLTensor *t;
    std::vector<int64_t> shape;
    std::string decl;
    bool output;
    DLDataType type;
  };
  std::vector<Extra> extras = {
      {"dout", t.dout, {B, Hq, N, Dv}, "[B, Hq, N, Dv]", false, doutType},
      {"dq", t.dq, {B, Hq, N, Dqk}, "[B, Hq, N, Dqk]", true, f32},
      {"dk", t.dk, {B, Hkv, M, Dqk}, "[B, Hkv, M, Dqk]", true, f32},
      {"dv", t.dv, {B, Hkv, M, Dv}, "[B, Hkv, M, Dv]", true, f32}};
  if (t.dlse)
    extras.push_back({"dlse", t.dlse, {B, Hq, N}, "[B, Hq, N]", false, f32});
  for (int32_t i = 0; i < k.numGrads; ++i) {
    int32_t idx = k.gradInputs[i];
    const DLTensor *in = inputs[idx];
    extras.push_back({std::string("d") + k.inputs[idx].name, t.daux[i],
                      std::vector<int64_t>(in->shape, in->shape + in->ndim),
                      declString(k.inputs[idx]), true, f32});
  }
  for (const Extra &e : extras)
    if (attn_status_t st = checkExtraTensor(e.name, e.t, e.shape, e.decl,
                                            e.output, memory, ref, e.type))
      return st;
  // No output may overlap another tensor of the call.
  std::vector<std::pair<std::string, const DLTensor *>> all;
  for (int32_t i = 0; i < k.numInputs; ++i)
    all.push_back({k.inputs[i].name, inputs[i]});
  all.push_back({"o", t.o});
  if (t.lse)
    all.push_back({"lse", t.lse});
  for (const Extra &e : extras)
    all.push_back({e.name, e.t});
  size_t first = all.size() - extras.size();
  for (size_t x = 0; x < extras.size(); ++x) {
    const Extra &e = extras[x];
    if (!e.output)
      continue;
    ByteRange r = byteRange(e.t);
    for (size_t a = 0; a < all.size(); ++a)
      if (a != first + x && byteRange(all[a].second).overlaps(r))
        return fail(ATTN_ERROR_LAYOUT, e.name + ": overlaps " + all[a].first +
                                           "; gradients must not alias the "
                                           "call's other tensors");
  }
  return ATTN_OK;
}

void attn::runtime::addBackwardDescriptors(Descriptors &desc,
                                           const BackwardKernel &k,
                                           const DLTensor *const *inputs,
                                           const BackwardTensors &t,
                                           const attn::DimBinding &dims) {
  int64_t B = dims.at("B"), Hq = dims.at("Hq"), N = dims.at("N");
  addCallDescriptors(desc, k.numInputs, inputs, t.o, t.lse, dims);
  desc.addTensor(t.dout);
  if (t.dlse)
    desc.addTensor(t.dlse);
  else
    desc.add(nullptr, nullptr, {B, Hq, N}, {Hq * N, N, 1});
  for (const DLTensor *g : {t.dq, t.dk, t.dv})
    desc.addTensor(g);
  for (int32_t i = 0; i < k.numGrads; ++i)
    desc.addTensor(t.daux[i]);
}
