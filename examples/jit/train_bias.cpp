//===- train_bias.cpp - learn a relative-bias table with attnc gradients --===//
//
//   jit_train_bias
//
// Gradient descent through the JIT's forward and backward kernels: a
// causal attention with a learnable T5-style relative-position bias table
//
//   score = score + rpb[h, clamp(q_idx - kv_idx, -8, 8) + 8]
//
// starts from a zero table and learns the table of a "teacher" (the same
// spec with a hidden random table) from the teacher's outputs, minimizing
// L = 0.5 * sum((o - o_teacher)^2). Each step runs the forward (o, lse),
// then the backward with dout = o - o_teacher, and updates the table with
// its gradient drpb. q, k and v stay fixed. The program fails unless the
// loss falls below 5 % of its start: it is the training smoke test of
// the backward pass (issue 12) as well as an example of Kernel::backward.
//
//===----------------------------------------------------------------------===//

#include "attn/JIT/Compiler.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr int64_t B = 1, Hq = 4, Hkv = 2, N = 48, M = 48, Dqk = 16, Dv = 16;
constexpr int64_t TableSize = 17;

const char *kSpec = "attention rpb {\n"
                    "  input rpb : f32[Hq, 17]\n"
                    "  let rel = max(-8, min(q_idx - kv_idx, 8))\n"
                    "  mask = causal\n"
                    "  score = score + rpb[h, rel + 8]\n"
                    "}\n";

/// A compact float32 host tensor.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  DLTensor dl;
  explicit Tensor(std::vector<int64_t> s) : shape(std::move(s)) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    data.assign(size_t(n), 0.0f);
    std::memset(&dl, 0, sizeof dl);
    dl.data = data.data();
    dl.device = {kDLCPU, 0};
    dl.ndim = int32_t(shape.size());
    dl.dtype = {kDLFloat, 32, 1};
    dl.shape = shape.data();
  }
};

int fail(const std::string &what) {
  std::fprintf(stderr, "jit_train_bias: %s: %s\n", what.c_str(),
               attn_last_error());
  return 1;
}

} // namespace

int main() {
  attn::Compiler compiler;
  attn::CompileOptions opts;
  std::string err;
  auto forward = compiler.compile(kSpec, opts, err);
  opts.backward = true;
  auto backward = forward ? compiler.compile(kSpec, opts, err) : nullptr;
  if (!forward || !backward) {
    std::fprintf(stderr, "jit_train_bias: %s\n", err.c_str());
    return 1;
  }

  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor q({B, Hq, N, Dqk}), k({B, Hkv, M, Dqk}), v({B, Hkv, M, Dv});
  Tensor table({Hq, TableSize}), teacherTable({Hq, TableSize});
  for (Tensor *t : {&q, &k, &v})
    for (float &x : t->data)
      x = normal(rng);
  for (float &x : teacherTable.data)
    x = 2.0f * normal(rng);

  Tensor o({B, Hq, N, Dv}), lse({B, Hq, N}), target({B, Hq, N, Dv});
  Tensor dout({B, Hq, N, Dv}), dq({B, Hq, N, Dqk}), dk({B, Hkv, M, Dqk}),
      dv({B, Hkv, M, Dv}), dtable({Hq, TableSize});
  DLTensor *daux[] = {&dtable.dl};
  const DLTensor *teacherIn[] = {&q.dl, &k.dl, &v.dl, &teacherTable.dl};
  const DLTensor *in[] = {&q.dl, &k.dl, &v.dl, &table.dl};
  if (forward->run(teacherIn, &target.dl, nullptr) != ATTN_OK)
    return fail("teacher forward");

  const float lr = 0.02f;
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    if (forward->run(in, &o.dl, &lse.dl) != ATTN_OK)
      return fail("forward");
    double loss = 0;
    for (size_t i = 0; i < o.data.size(); ++i) {
      dout.data[i] = o.data[i] - target.data[i];
      loss += 0.5 * double(dout.data[i]) * dout.data[i];
    }
    if (backward->backward(in, &o.dl, &lse.dl, &dout.dl, nullptr, &dq.dl,
                           &dk.dl, &dv.dl, daux) != ATTN_OK)
      return fail("backward");
    for (size_t i = 0; i < table.data.size(); ++i)
      table.data[i] -= lr * dtable.data[i];
    if (step == 0)
      first = loss;
    last = loss;
    if (step % 10 == 0)
      std::printf("step %2d: loss %.6f\n", step, loss);
  }
  std::printf("loss %.6f -> %.6f (%.1f%% of the start)\n", first, last,
              100.0 * last / first);
  if (!(last < 0.05 * first)) {
    std::fprintf(stderr, "jit_train_bias: the loss did not fall below 5%% of "
                         "its start\n");
    return 1;
  }
  return 0;
}
