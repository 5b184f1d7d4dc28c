//===- CudaBackwardTest.cpp - attn_cuda_run_backward with a fake driver ---===//
//
// Runs with ATTN_CUDA_DRIVER naming the fake driver (FakeCudaDriver.cpp), as
// CudaRunTest.cpp does for the forward: every validation error's code, that
// its message names the offending tensor and that the driver saw nothing;
// then the zeroing memsets of dq and each aux gradient (address, count,
// stream, before the launch), the one launch (variant, grid over kv tiles
// and B * Hkv, block, shared memory, stream) and every kernel parameter.
// Its own executable: the runtime loads the driver once per process, and a
// death test re-runs this binary to see a fresh process's invalid calls
// leave the driver unloaded.
//
//===----------------------------------------------------------------------===//

#include "BackwardTestUtil.h"
#include "CudaTestUtil.h"
#include "FakeCudaAccess.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <string>
#include <thread>
#include <vector>

#ifndef ATTN_FAKE_CUDA_DRIVER
#error "ATTN_FAKE_CUDA_DRIVER must name the fake driver library"
#endif

using namespace attn_test;

namespace {

bool isIdentChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

/// Whether \p msg mentions \p name as a whole word: "lse" in "lse: ..." but
/// not in "dlse: ...", so that a message about dq does not pass for q.
bool mentions(const std::string &msg, const std::string &name) {
  for (size_t p = msg.find(name); p != std::string::npos;
       p = msg.find(name, p + 1)) {
    size_t end = p + name.size();
    if ((p == 0 || !isIdentChar(msg[p - 1])) &&
        (end == msg.size() || !isIdentChar(msg[end])))
      return true;
  }
  return false;
}

#define EXPECT_MENTIONS(msg, name)                                             \
  EXPECT_TRUE(mentions((msg), (name)))                                         \
      << "expected \"" << (name) << "\" in \"" << (msg) << "\""


/// The launch's parameters [begin, begin + n).
Words params(int begin, int n) {
  const FakeCudaLaunch &l = lastLaunch();
  return Words(l.params + begin, l.params + begin + n);
}

/// Each test starts with no current context on this thread, no injected
/// failure, two devices, and no launch or memset counted (this executable
/// is the only user of the counters it resets).
class CudaBackward : public ::testing::Test {
protected:
  void SetUp() override {
    fake().setCurrent(nullptr);
    FakeCudaState &s = state();
    s.fail_code = 0;
    s.fail_function[0] = '\0';
    s.device_count = 2;
    s.launch_calls = 0;
    s.memset_calls = 0;
    std::memset(s.memsets, 0, sizeof(s.memsets));
  }
};

//===----------------------------------------------------------------------===//
// Validation: each error's code, the tensor its message names, and the
// driver untouched
//===----------------------------------------------------------------------===//

class CudaBackwardValidation : public CudaBackward {
protected:
  void SetUp() override {
    CudaBackward::SetUp();
    const FakeCudaState &s = state();
    before = {s.init_calls,           s.device_get_count_calls,
              s.primary_retain_calls, s.ctx_set_current_calls,
              s.module_load_calls,    s.get_function_calls,
              s.set_attribute_calls};
  }
  void TearDown() override {
    const FakeCudaState &s = state();
    std::vector<int> after = {s.init_calls,           s.device_get_count_calls,
                              s.primary_retain_calls, s.ctx_set_current_calls,
                              s.module_load_calls,    s.get_function_calls,
                              s.set_attribute_calls};
    EXPECT_EQ(after, before) << "a failed call reached the driver";
    EXPECT_EQ(s.launch_calls, 0);
    EXPECT_EQ(s.memset_calls, 0);
  }
  /// Expects \p code from \p a with a one-line message mentioning each of
  /// \p names.
  void expectArgsError(const BwdCall::Args &a, attn_status_t code,
                       const std::vector<std::string> &names) {
    attn_status_t st = BwdCall::invoke(a);
    EXPECT_EQ(st, code) << attn_status_string(st) << ": " << lastError();
    for (const std::string &n : names)
      EXPECT_MENTIONS(lastError(), n);
    EXPECT_EQ(lastError().find('\n'), std::string::npos);
  }
  void expectError(BwdCall &call, const attn_cuda_backward_desc_t *k,
                   attn_status_t code, const std::vector<std::string> &names) {
    expectArgsError(call.args(k), code, names);
  }
  std::vector<int> before;
};

TEST_F(CudaBackwardValidation, NullPointers) {
  BwdKernel k(backwardVariants());
  BwdCall call;
  expectError(call, nullptr, ATTN_ERROR_INVALID_ARGUMENT, {"kernel"});
  using A = BwdCall::Args;
  struct Case {
    void (*clear)(A &);
    const char *name;
  };
  const Case cases[] = {
      {[](A &a) { a.inputs = nullptr; }, "inputs"},
      {[](A &a) { a.o = nullptr; }, "o"},
      {[](A &a) { a.dout = nullptr; }, "dout"},
      {[](A &a) { a.dq = nullptr; }, "dq"},
      {[](A &a) { a.dk = nullptr; }, "dk"},
      {[](A &a) { a.dv = nullptr; }, "dv"},
      {[](A &a) { a.lse = nullptr; }, "lse"}, // needs_lse
      {[](A &a) { a.daux = nullptr; }, "daux"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    A a = call.args(&k.desc);
    c.clear(a);
    expectArgsError(a, ATTN_ERROR_INVALID_ARGUMENT, {c.name});
  }
  {
    // An input missing from the array.
    A a = call.args(&k.desc);
    const DLTensor *withNull[] = {a.inputs[0], a.inputs[1], nullptr,
                                  a.inputs[3], a.inputs[4], a.inputs[5]};
    a.inputs = withNull;
    expectArgsError(a, ATTN_ERROR_INVALID_ARGUMENT, {"v"});
  }
  {
    // One gradient missing from daux.
    A a = call.args(&k.desc);
    DLTensor *withNull[] = {a.daux[0], nullptr};
    a.daux = withNull;
    expectArgsError(a, ATTN_ERROR_INVALID_ARGUMENT, {"dslope"});
  }
  call.dq.t.data = nullptr;
  expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT, {"dq"});
  call.dq.t.data = reinterpret_cast<void *>(BwdCall::kDq);
  call.dout.t.data = nullptr;
  expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT, {"dout"});
}

TEST_F(CudaBackwardValidation, LseAndItsGradient) {
  // A kernel without lse (not softmax) has no lse gradient.
  BwdKernel k(backwardVariants());
  k.desc.needs_lse = 0;
  BwdCall call;
  call.withLse = false;
  expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT, {"dlse"});
  // The softmax backward needs the forward's lse, with or without dlse.
  BwdKernel soft(backwardVariants());
  call.withDlse = false;
  expectError(call, &soft.desc, ATTN_ERROR_INVALID_ARGUMENT, {"lse"});
}

TEST_F(CudaBackwardValidation, KernelDescriptor) {
  BwdCall call;
  {
    BwdKernel k(backwardVariants());
    k.desc.abi_version = ATTN_ABI_VERSION + 1;
    expectError(call, &k.desc, ATTN_ERROR_UNSUPPORTED, {"ABI", "test_bwd"});
  }
  {
    BwdKernel k(backwardVariants());
    k.desc.image = nullptr;
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT, {"image"});
  }
  {
    BwdKernel k(backwardVariants());
    k.desc.image_size = 0;
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT, {"image_size"});
  }
  {
    BwdKernel k(backwardVariants());
    k.desc.num_variants = 0;
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT, {"variants"});
    k.desc.num_variants = 3;
    k.desc.variants = nullptr;
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT, {"variants"});
  }
  {
    BwdKernel k(backwardVariants());
    k.variants[1].function = nullptr;
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT, {"variants"});
    k.variants[1].function = "";
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT, {"variants"});
  }
  for (int field = 0; field < 5; ++field) {
    SCOPED_TRACE(field);
    BwdKernel k(backwardVariants());
    attn_cuda_kernel_variant_t &v = k.variants[2];
    switch (field) {
    case 0:
      v.max_head_dim = 0;
      break;
    case 1:
      v.block_q = 0;
      break;
    case 2:
      v.num_threads = 0;
      break;
    case 3:
      v.num_threads = 2048;
      break;
    case 4:
      v.shared_mem_bytes = -1;
      break;
    }
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT,
                {"attn_test_bwd_d256"});
  }
  {
    BwdKernel k({{"a", 128, 64, 128, 0}, {"b", 64, 64, 128, 0}});
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT,
                {"b", "max_head_dim"});
  }
  {
    // Shared with every run: q, k, v first with their canonical dims.
    BwdKernel k(backwardVariants());
    std::swap(k.inputs[0], k.inputs[1]);
    expectError(call, &k.desc, ATTN_ERROR_INVALID_ARGUMENT, {"k"});
  }
}

TEST_F(CudaBackwardValidation, QKVMustBeHalfPrecision) {
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    BwdKernel k(backwardVariants());
    k.inputs[i].type = ATTN_F32;
    BwdCall call;
    expectError(call, &k.desc, ATTN_ERROR_UNSUPPORTED,
                {k.inputs[i].name, "f32", "bf16"});
  }
}

TEST_F(CudaBackwardValidation, GradInputs) {
  BwdCall call;
  struct Case {
    int32_t numGrads;
    std::vector<int32_t> grads; // empty: grad_inputs NULL
    const char *what;
  };
  const Case cases[] = {
      {-1, {4, 5}, "num_grads"},
      {4, {3, 4, 5, 6}, "num_grads"}, // 3 aux inputs
      {2, {}, "grad"},                // grad_inputs NULL
      {2, {5, 4}, "grad_inputs"},     // descending
      {2, {4, 4}, "grad_inputs"},     // repeated
      {2, {2, 4}, "grad_inputs"},     // v: not an aux input
      {2, {3, 4}, "grad_inputs"},     // doc: i32
      {2, {4, 6}, "grad_inputs"},     // past the inputs
      {1, {-1}, "grad_inputs"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(::testing::Message() << "num_grads " << c.numGrads << ", "
                                      << ::testing::PrintToString(c.grads));
    BwdKernel k(backwardVariants());
    std::vector<int32_t> grads = c.grads;
    k.desc.num_grads = c.numGrads;
    k.desc.grad_inputs = grads.empty() ? nullptr : grads.data();
    attn_status_t st = call.run(&k.desc);
    EXPECT_EQ(st, ATTN_ERROR_INVALID_ARGUMENT)
        << attn_status_string(st) << ": " << lastError();
    EXPECT_NE(lastError().find(c.what), std::string::npos) << lastError();
  }
}

TEST_F(CudaBackwardValidation, Devices) {
  BwdKernel k(backwardVariants());
  struct Case {
    Tensor BwdCall::*tensor;
    const char *name;
    DLDevice device;
  };
  const Case cases[] = {
      {&BwdCall::dout, "dout", {kDLCPU, 0}},
      {&BwdCall::dout, "dout", {kDLCUDA, 1}},
      {&BwdCall::dlse, "dlse", {kDLCUDAHost, 0}},
      {&BwdCall::dlse, "dlse", {kDLCUDA, 1}},
      {&BwdCall::dq, "dq", {kDLCPU, 0}},
      {&BwdCall::dq, "dq", {kDLCUDAManaged, 1}},
      {&BwdCall::dk, "dk", {kDLROCM, 0}},
      {&BwdCall::dk, "dk", {kDLCUDA, 1}},
      {&BwdCall::dv, "dv", {kDLCPU, 0}},
      {&BwdCall::dv, "dv", {kDLCUDA, -1}},
      {&BwdCall::dtable, "dtable", {kDLCPU, 0}},
      {&BwdCall::dslope, "dslope", {kDLCUDA, 1}},
      {&BwdCall::o, "o", {kDLCPU, 0}},
      {&BwdCall::lse, "lse", {kDLCUDA, 1}},
      {&BwdCall::table, "table", {kDLCUDAHost, 0}},
      {&BwdCall::k, "k", {kDLCUDA, 1}},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(::testing::Message()
                 << c.name << " on " << c.device.device_type << ":"
                 << c.device.device_id);
    BwdCall call;
    (call.*c.tensor).t.device = c.device;
    expectError(call, &k.desc, ATTN_ERROR_DEVICE, {c.name});
  }
}

TEST_F(CudaBackwardValidation, DTypes) {
  struct Case {
    Tensor BwdCall::*tensor;
    const char *name;
    DLDataType dtype;
  };
  const Case cases[] = {
      {&BwdCall::dout, "dout", f16()}, // q is bf16
      {&BwdCall::dout, "dout", f32()}, // the kernels take half dout
      {&BwdCall::dout, "dout", {kDLBfloat, 16, 2}},
      {&BwdCall::dlse, "dlse", bf16()},
      {&BwdCall::dq, "dq", bf16()},
      {&BwdCall::dk, "dk", f16()},
      {&BwdCall::dv, "dv", {kDLFloat, 64, 1}},
      {&BwdCall::dtable, "dtable", i32()},
      {&BwdCall::dslope, "dslope", {kDLFloat, 32, 2}},
      {&BwdCall::o, "o", bf16()},
      {&BwdCall::lse, "lse", f16()},
      {&BwdCall::table, "table", bf16()},
  };
  BwdKernel k(backwardVariants());
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    BwdCall call;
    (call.*c.tensor).t.dtype = c.dtype;
    expectError(call, &k.desc, ATTN_ERROR_DTYPE, {c.name});
  }
  // An f16 kernel's dout is f16.
  BwdKernel half(backwardVariants(), ATTN_F16);
  BwdCall call(f16());
  call.dout.t.dtype = bf16();
  expectError(call, &half.desc, ATTN_ERROR_DTYPE, {"dout"});
}

TEST_F(CudaBackwardValidation, Shapes) {
  BwdKernel k(backwardVariants());
  struct Case {
    Tensor BwdCall::*tensor;
    const char *name;
    std::vector<int64_t> shape; // B=2 Hq=4 Hkv=2 N=100 M=77 Dqk=64 Dv=48
  };
  const Case cases[] = {
      {&BwdCall::dout, "dout", {2, 4, 100, 40}},
      {&BwdCall::dout, "dout", {2, 4, 100}},
      {&BwdCall::dout, "dout", {2, 2, 100, 48}},
      {&BwdCall::dq, "dq", {2, 4, 100, 48}}, // Dv for Dqk
      {&BwdCall::dq, "dq", {2, 4, 77, 64}},  // M for N
      {&BwdCall::dk, "dk", {2, 4, 77, 64}},  // Hq for Hkv
      {&BwdCall::dk, "dk", {2, 2, 100, 64}}, // N for M
      {&BwdCall::dv, "dv", {2, 2, 77, 64}},  // Dqk for Dv
      {&BwdCall::dv, "dv", {1, 2, 77, 48}},
      {&BwdCall::dlse, "dlse", {2, 4, 99}},
      {&BwdCall::dlse, "dlse", {2, 4, 100, 1}},
      {&BwdCall::dtable, "dtable", {4, 16}}, // table is [Hq, 32]
      {&BwdCall::dtable, "dtable", {4, 32, 1}},
      {&BwdCall::dslope, "dslope", {2}},
      {&BwdCall::o, "o", {2, 4, 99, 48}},
      {&BwdCall::lse, "lse", {2, 4}},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(::testing::Message()
                 << c.name << " " << ::testing::PrintToString(c.shape));
    BwdCall call;
    Tensor &t = call.*c.tensor;
    t.shape = c.shape;
    t.t.ndim = static_cast<int32_t>(c.shape.size());
    expectError(call, &k.desc, ATTN_ERROR_SHAPE, {c.name});
  }
}

TEST_F(CudaBackwardValidation, GridYIsBTimesHkv) {
  // grid.y = B * Hkv = 80000. (B * Hq alone may pass 65535: see
  // CudaBackward.GridCoversKvTilesAndKvHeads.)
  BwdKernel k(backwardVariants());
  BwdCall call;
  call.B = 2;
  call.Hq = 40000;
  call.Hkv = 40000;
  call.N = 1;
  call.M = 1;
  call.reshape();
  expectError(call, &k.desc, ATTN_ERROR_SHAPE, {"Hkv"});
}

TEST_F(CudaBackwardValidation, HeadDimTooLarge) {
  BwdKernel k(backwardVariants());
  BwdCall call;
  call.Dqk = 264;
  call.reshape();
  expectError(call, &k.desc, ATTN_ERROR_UNSUPPORTED, {"test_bwd", "256"});
  call.Dqk = 64;
  call.Dv = 512;
  call.reshape();
  expectError(call, &k.desc, ATTN_ERROR_UNSUPPORTED, {"test_bwd", "256"});
}

TEST_F(CudaBackwardValidation, DoutChunkLayout) {
  // dout is read like q, k and v: 16-byte chunks.
  BwdKernel k(backwardVariants());
  auto padded = [](BwdCall &c, int64_t row, int64_t inner) {
    c.dout.strides = {c.Hq * c.N * row, c.N * row, row, inner};
  };
  {
    BwdCall call;
    padded(call, 96, 2);
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dout"});
  }
  {
    BwdCall call;
    padded(call, 52, 1); // rows 104 bytes apart
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dout"});
  }
  {
    BwdCall call;
    call.dout.strides = {4 * 100 * 48 + 4, 100 * 48, 48, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dout"});
  }
  {
    BwdCall call;
    call.dout.t.byte_offset = 8;
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dout"});
  }
  {
    BwdCall call;
    call.dout.t.data = reinterpret_cast<void *>(BwdCall::kDout + 2);
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dout"});
  }
  {
    // Not even element-aligned.
    BwdCall call;
    call.dout.t.byte_offset = 1;
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dout"});
  }
  {
    BwdCall call;
    padded(call, -64, 1);
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dout"});
  }
}

TEST_F(CudaBackwardValidation, ZeroedGradientsMustBeCompact) {
  // dq and each daux are zeroed by one memset each: row-major, no gaps.
  BwdKernel k(backwardVariants());
  {
    BwdCall call; // padded rows
    call.dq.strides = {4 * 100 * 72, 100 * 72, 72, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dq"});
  }
  {
    BwdCall call; // dense, but [B, N, Hq, Dqk] storage
    call.dq.strides = {100 * 4 * 64, 64, 4 * 64, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dq"});
  }
  {
    BwdCall call; // a gap between batches
    call.dq.strides = {4 * 100 * 64 + 64, 100 * 64, 64, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dq"});
  }
  {
    BwdCall call;
    call.dq.t.byte_offset = 2; // not float-aligned
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dq"});
  }
  {
    BwdCall call;
    call.dtable.strides = {64, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dtable"});
  }
  {
    BwdCall call;
    call.dtable.strides = {1, 4}; // column-major
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dtable"});
  }
  {
    BwdCall call;
    call.dslope.strides = {2};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dslope"});
  }
}

TEST_F(CudaBackwardValidation, OutputsMustNotOverlapThemselves) {
  BwdKernel k(backwardVariants());
  {
    BwdCall call;
    call.dk.strides = {2 * 77 * 64, 77 * 64, 0, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dk"});
  }
  {
    BwdCall call; // rows of 48 floats 8 apart
    call.dv.strides = {2 * 77 * 48, 77 * 48, 8, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dv"});
  }
  {
    BwdCall call;
    call.dq.strides = {0, 100 * 64, 64, 1};
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {"dq"});
  }
}

TEST_F(CudaBackwardValidation, OutputsMustNotOverlapOtherTensors) {
  BwdKernel k(backwardVariants());
  struct Case {
    Tensor BwdCall::*output;
    const char *name;
    uintptr_t address;
    const char *other;
  };
  const Case cases[] = {
      {&BwdCall::dq, "dq", BwdCall::kQ, "q"},
      {&BwdCall::dq, "dq", BwdCall::kO + 1024, "o"},
      {&BwdCall::dq, "dq", BwdCall::kDout - 16, "dout"},
      {&BwdCall::dk, "dk", BwdCall::kK, "k"},
      {&BwdCall::dk, "dk", BwdCall::kLse, "lse"},
      {&BwdCall::dk, "dk", BwdCall::kDv, "dv"},
      {&BwdCall::dv, "dv", BwdCall::kV + 64, "v"},
      {&BwdCall::dv, "dv", BwdCall::kDoc, "doc"},
      {&BwdCall::dv, "dv", BwdCall::kDq, "dq"},
      {&BwdCall::dtable, "dtable", BwdCall::kTable, "table"},
      {&BwdCall::dtable, "dtable", BwdCall::kDlse + 16, "dlse"},
      {&BwdCall::dslope, "dslope", BwdCall::kDtable + 16, "dtable"},
      {&BwdCall::dslope, "dslope", BwdCall::kSlope, "slope"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(::testing::Message() << c.name << " over " << c.other);
    BwdCall call;
    (call.*c.output).t.data = reinterpret_cast<void *>(c.address);
    expectError(call, &k.desc, ATTN_ERROR_LAYOUT, {c.name, c.other});
  }
}

//===----------------------------------------------------------------------===//
// A fresh process: invalid calls never load the driver
//===----------------------------------------------------------------------===//

/// Runs invalid calls in a process that has made no CUDA call yet; true
/// when each failed with its code and the driver was never initialized
/// (the runtime calls cuInit when it loads the driver).
bool invalidCallsLeaveTheDriverUnloaded() {
  BwdKernel k(backwardVariants());
  bool ok = true;
  auto expect = [&](BwdCall &call, attn_status_t code, const char *what) {
    attn_status_t st = call.run(&k.desc);
    if (st != code) {
      std::fprintf(stderr, "%s: got %s (%s)\n", what, attn_status_string(st),
                   attn_last_error());
      ok = false;
    }
  };
  {
    BwdCall call;
    call.dq.t.device = {kDLCPU, 0};
    expect(call, ATTN_ERROR_DEVICE, "dq on the CPU");
  }
  {
    BwdCall call;
    call.dout.t.dtype = f32();
    expect(call, ATTN_ERROR_DTYPE, "f32 dout");
  }
  {
    BwdCall call;
    call.dv.shape[2] = 100;
    expect(call, ATTN_ERROR_SHAPE, "dv of N rows");
  }
  {
    BwdCall call;
    call.dtable.strides = {64, 1};
    expect(call, ATTN_ERROR_LAYOUT, "padded dtable");
  }
  {
    BwdCall call;
    call.dk.t.data = reinterpret_cast<void *>(BwdCall::kK);
    expect(call, ATTN_ERROR_LAYOUT, "dk over k");
  }
  {
    BwdCall call;
    call.withLse = false;
    expect(call, ATTN_ERROR_INVALID_ARGUMENT, "no lse");
  }
  {
    BwdCall call;
    call.Dqk = 512;
    call.reshape();
    expect(call, ATTN_ERROR_UNSUPPORTED, "Dqk 512");
  }
  const FakeCudaState &s = state();
  if (s.init_calls != 0 || s.launch_calls != 0 || s.memset_calls != 0) {
    std::fprintf(stderr, "driver touched: %d cuInit, %d launches, %d memsets\n",
                 s.init_calls, s.launch_calls, s.memset_calls);
    ok = false;
  }
  return ok;
}

TEST(CudaBackwardFreshProcess, InvalidCallsDoNotLoadTheDriver) {
  // "threadsafe" re-executes this binary for this test alone, so no earlier
  // test has loaded the driver in the process that makes the calls.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::exit(invalidCallsLeaveTheDriverUnloaded() ? 0 : 1),
              ::testing::ExitedWithCode(0), "");
}

//===----------------------------------------------------------------------===//
// Memsets and the launch through the fake driver
//===----------------------------------------------------------------------===//

TEST_F(CudaBackward, PacksEveryDescriptorField) {
  BwdKernel k(backwardVariants());
  ASSERT_EQ(k.numParams(), PEnd);
  BwdCall call; // B=2 Hq=4 Hkv=2 N=100 M=77 Dqk=64 Dv=48
  // q: padded rows (72), sliced by byte_offset 32 (16 elements).
  call.q.strides = {4 * 100 * 72, 100 * 72, 72, 1};
  call.q.t.byte_offset = 32;
  // v: broadcast over B, heads interleaved. lse and dlse: [B, N, Hq].
  call.v.strides = {0, 48, 2 * 48, 1};
  call.lse.strides = {100 * 4, 1, 4};
  call.dlse.strides = {100 * 4, 1, 4};
  // doc: padded rows, 3 elements in.
  call.doc.strides = {128, 1};
  call.doc.t.byte_offset = 12;
  // dout: padded rows (64), 16 elements in.
  call.dout.strides = {4 * 100 * 64, 100 * 64, 64, 1};
  call.dout.t.byte_offset = 32;
  // dq compact 16 floats in; dk padded rows (only dq and daux are zeroed,
  // so only they must be compact); dtable with explicit compact strides;
  // dslope one float in.
  call.dq.t.byte_offset = 64;
  call.dk.strides = {2 * 77 * 72, 77 * 72, 72, 1};
  call.dtable.strides = {32, 1};
  call.dslope.t.byte_offset = 4;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_STREQ(attn_last_error(), "");

  const FakeCudaLaunch &l = lastLaunch();
  ASSERT_EQ(l.num_params, PEnd);
  const int64_t q = BwdCall::kQ, kk = BwdCall::kK, v = BwdCall::kV,
                o = BwdCall::kO, lse = BwdCall::kLse, doc = BwdCall::kDoc,
                table = BwdCall::kTable, slope = BwdCall::kSlope,
                dout = BwdCall::kDout, dlse = BwdCall::kDlse, dq = BwdCall::kDq,
                dk = BwdCall::kDk, dv = BwdCall::kDv, dtable = BwdCall::kDtable,
                dslope = BwdCall::kDslope;
  // { allocated, aligned (= data + byte_offset), offset 0, sizes, strides }
  EXPECT_EQ(params(PQ, 11),
            (Words{q, q + 32, 0, 2, 4, 100, 64, 28800, 7200, 72, 1}));
  EXPECT_EQ(params(PK, 11),
            (Words{kk, kk, 0, 2, 2, 77, 64, 2 * 77 * 64, 77 * 64, 64, 1}));
  EXPECT_EQ(params(PV, 11), (Words{v, v, 0, 2, 2, 77, 48, 0, 48, 96, 1}));
  EXPECT_EQ(params(PO, 11),
            (Words{o, o, 0, 2, 4, 100, 48, 4 * 100 * 48, 100 * 48, 48, 1}));
  EXPECT_EQ(params(PLse, 9), (Words{lse, lse, 0, 2, 4, 100, 400, 1, 4}));
  EXPECT_EQ(params(PDoc, 7), (Words{doc, doc + 12, 0, 2, 100, 128, 1}));
  EXPECT_EQ(params(PTable, 7), (Words{table, table, 0, 4, 32, 32, 1}));
  EXPECT_EQ(params(PSlope, 5), (Words{slope, slope, 0, 4, 1}));
  EXPECT_EQ(params(PDout, 11),
            (Words{dout, dout + 32, 0, 2, 4, 100, 48, 25600, 6400, 64, 1}));
  EXPECT_EQ(params(PDlse, 9), (Words{dlse, dlse, 0, 2, 4, 100, 400, 1, 4}));
  EXPECT_EQ(params(PDq, 11),
            (Words{dq, dq + 64, 0, 2, 4, 100, 64, 25600, 6400, 64, 1}));
  EXPECT_EQ(params(PDk, 11),
            (Words{dk, dk, 0, 2, 2, 77, 64, 11088, 5544, 72, 1}));
  EXPECT_EQ(params(PDv, 11),
            (Words{dv, dv, 0, 2, 2, 77, 48, 7392, 3696, 48, 1}));
  EXPECT_EQ(params(PDtable, 7), (Words{dtable, dtable, 0, 4, 32, 32, 1}));
  EXPECT_EQ(params(PDslope, 5), (Words{dslope, dslope + 4, 0, 4, 1}));
}

TEST_F(CudaBackward, ZeroesDqAndAuxGradientsBeforeTheLaunch) {
  BwdKernel k(backwardVariants());
  BwdCall call;
  call.dq.t.byte_offset = 64;
  call.dslope.t.byte_offset = 4;
  void *stream = reinterpret_cast<void *>(0xabc0);
  ASSERT_EQ(call.run(&k.desc, stream), ATTN_OK) << lastError();
  const FakeCudaState &s = state();
  ASSERT_EQ(s.memset_calls, 3);
  ASSERT_EQ(s.launch_calls, 1);
  struct Want {
    uint64_t dst, count;
  };
  const Want want[] = {{BwdCall::kDq + 64, 2 * 4 * 100 * 64},
                       {BwdCall::kDtable, 4 * 32},
                       {BwdCall::kDslope + 4, 4}};
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    const FakeCudaMemset &m = s.memsets[i];
    EXPECT_EQ(m.dst, want[i].dst);
    EXPECT_EQ(m.value, 0u);
    EXPECT_EQ(m.count, want[i].count);
    EXPECT_EQ(m.stream, stream);
    EXPECT_EQ(m.context, fake().primary(0));
    // On the launch's stream, queued before it (in dq, daux order).
    EXPECT_LT(m.sequence, lastLaunch().sequence);
    if (i > 0)
      EXPECT_LT(s.memsets[i - 1].sequence, m.sequence);
  }
  EXPECT_EQ(lastLaunch().stream, stream);

  // The NULL stream (legacy default) is passed through to both.
  state().memset_calls = 0;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  ASSERT_EQ(s.memset_calls, 3);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(s.memsets[i].stream, nullptr);
  EXPECT_EQ(lastLaunch().stream, nullptr);
}

TEST_F(CudaBackward, OneGradientOrNone) {
  // Only slope has a gradient: daux = {dslope}, one memset for it.
  BwdKernel one(backwardVariants(), ATTN_BF16, {5});
  BwdCall call;
  BwdCall::Args a = call.args(&one.desc);
  DLTensor *daux[] = {call.dslope.get()};
  a.daux = daux;
  ASSERT_EQ(BwdCall::invoke(a), ATTN_OK) << lastError();
  FakeCudaState &s = state();
  ASSERT_EQ(s.memset_calls, 2);
  EXPECT_EQ(s.memsets[0].dst, uint64_t(BwdCall::kDq));
  EXPECT_EQ(s.memsets[1].dst, uint64_t(BwdCall::kDslope));
  EXPECT_EQ(s.memsets[1].count, 4u);
  ASSERT_EQ(lastLaunch().num_params, one.numParams());
  EXPECT_EQ(params(PDtable, 5), compactDesc(BwdCall::kDslope, {4}));

  // No gradients: daux may be NULL; dq alone is zeroed.
  BwdKernel none(backwardVariants(), ATTN_BF16, {});
  a = call.args(&none.desc);
  a.daux = nullptr;
  s.memset_calls = 0;
  ASSERT_EQ(BwdCall::invoke(a), ATTN_OK) << lastError();
  ASSERT_EQ(s.memset_calls, 1);
  EXPECT_EQ(s.memsets[0].dst, uint64_t(BwdCall::kDq));
  EXPECT_EQ(s.memsets[0].count, uint64_t(2 * 4 * 100 * 64));
  ASSERT_EQ(lastLaunch().num_params, none.numParams());
  EXPECT_EQ(params(PDv, 11), compactDesc(BwdCall::kDv, {2, 2, 77, 48}));
  EXPECT_EQ(s.launch_calls, 2);
}

TEST_F(CudaBackward, NullDlsePassesNullPointersAndCompactStrides) {
  BwdKernel k(backwardVariants());
  BwdCall call;
  call.withDlse = false;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(params(PDlse, 9), (Words{0, 0, 0, 2, 4, 100, 400, 100, 1}));
  // Its neighbours are unmoved.
  EXPECT_EQ(params(PDout, 11), compactDesc(BwdCall::kDout, {2, 4, 100, 48}));
  EXPECT_EQ(params(PDq, 11), compactDesc(BwdCall::kDq, {2, 4, 100, 64}));
}

TEST_F(CudaBackward, KernelWithoutLse) {
  // Not softmax: no lse, no dlse; both descriptors NULL and compact.
  BwdKernel k(backwardVariants());
  k.desc.needs_lse = 0;
  BwdCall call;
  call.withLse = false;
  call.withDlse = false;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(params(PLse, 9), (Words{0, 0, 0, 2, 4, 100, 400, 100, 1}));
  EXPECT_EQ(params(PDlse, 9), (Words{0, 0, 0, 2, 4, 100, 400, 100, 1}));
  EXPECT_EQ(params(PDoc, 7), compactDesc(BwdCall::kDoc, {2, 100}));
  EXPECT_EQ(state().memset_calls, 3);
  EXPECT_EQ(state().launch_calls, 1);
}

TEST_F(CudaBackward, GridCoversKvTilesAndKvHeads) {
  BwdKernel k(backwardVariants());
  BwdCall call; // GQA: Hq 4, Hkv 2; M 77, N 100
  void *stream = reinterpret_cast<void *>(0xabc0);
  ASSERT_EQ(call.run(&k.desc, stream), ATTN_OK) << lastError();
  const FakeCudaLaunch &l = lastLaunch();
  EXPECT_STREQ(l.function, "attn_test_bwd_d64");
  EXPECT_EQ(l.image, k.desc.image);
  EXPECT_EQ(l.grid[0], 2u); // ceil(M = 77 / 64), not ceil(N = 100 / 64)
  EXPECT_EQ(l.grid[1], 4u); // B * Hkv, not B * Hq
  EXPECT_EQ(l.grid[2], 1u);
  EXPECT_EQ(l.block[0], 128u);
  EXPECT_EQ(l.block[1], 1u);
  EXPECT_EQ(l.block[2], 1u);
  EXPECT_EQ(l.shared_mem_bytes, 32768u);
  EXPECT_EQ(l.stream, stream);
  EXPECT_TRUE(l.extra_is_null);
  EXPECT_EQ(l.context, fake().primary(0));

  struct Case {
    int64_t B, Hq, Hkv, N, M;
    unsigned gridX, gridY;
  };
  const Case cases[] = {
      {2, 4, 2, 10, 200, 4, 4},          // more keys than queries
      {2, 4, 2, 300, 1, 1, 4},           // more queries than keys
      {3, 4, 4, 64, 64, 1, 12},          // MHA
      {3, 8, 1, 5, 129, 3, 3},           // MQA
      {1, 65535, 65535, 1, 1, 1, 65535}, // the largest grid.y
      {2, 40000, 1, 1, 1, 1, 2},         // B * Hq past 65535 is fine
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "B=" << c.B << " Hq=" << c.Hq << " Hkv=" << c.Hkv
                 << " N=" << c.N << " M=" << c.M);
    BwdCall g;
    g.B = c.B;
    g.Hq = c.Hq;
    g.Hkv = c.Hkv;
    g.N = c.N;
    g.M = c.M;
    g.reshape();
    ASSERT_EQ(g.run(&k.desc), ATTN_OK) << lastError();
    EXPECT_EQ(lastLaunch().grid[0], c.gridX);
    EXPECT_EQ(lastLaunch().grid[1], c.gridY);
    EXPECT_EQ(lastLaunch().grid[2], 1u);
    EXPECT_EQ(params(PK + 3, 4), (Words{c.B, c.Hkv, c.M, 64}));
    EXPECT_EQ(params(PDq + 3, 4), (Words{c.B, c.Hq, c.N, 64}));
  }
}

TEST_F(CudaBackward, SelectsTheSmallestVariantThatFits) {
  BwdKernel k(backwardVariants());
  struct Case {
    int64_t dqk, dv;
    const char *function;
    unsigned gridX, threads, shared;
  };
  // M = 77 kv rows: block_q 64, 32, 16.
  const Case cases[] = {
      {64, 48, "attn_test_bwd_d64", 2, 128, 32768},
      {8, 64, "attn_test_bwd_d64", 2, 128, 32768},
      {72, 64, "attn_test_bwd_d128", 3, 256, 65536},
      {128, 128, "attn_test_bwd_d128", 3, 256, 65536},
      {64, 136, "attn_test_bwd_d256", 5, 256, 100000},
      {256, 256, "attn_test_bwd_d256", 5, 256, 100000},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(::testing::Message() << "Dqk=" << c.dqk << " Dv=" << c.dv);
    BwdCall call;
    call.Dqk = c.dqk;
    call.Dv = c.dv;
    call.reshape();
    ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
    EXPECT_STREQ(lastLaunch().function, c.function);
    EXPECT_EQ(lastLaunch().grid[0], c.gridX);
    EXPECT_EQ(lastLaunch().block[0], c.threads);
    EXPECT_EQ(lastLaunch().shared_mem_bytes, c.shared);
    EXPECT_EQ(params(PDq + 3, 4), (Words{2, 4, 100, c.dqk}));
    EXPECT_EQ(params(PDv + 3, 4), (Words{2, 2, 77, c.dv}));
    EXPECT_EQ(state().memsets[state().memset_calls - 3].count,
              uint64_t(2 * 4 * 100 * c.dqk));
  }
}

TEST_F(CudaBackward, OptsInToMoreThan48KiBOfSharedMemory) {
  BwdKernel k(backwardVariants()); // a new image: nothing cached for it
  FakeCudaState &s = state();
  int sets = s.set_attribute_calls;
  BwdCall call;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError(); // 32 KiB
  EXPECT_EQ(s.set_attribute_calls, sets);
  call.Dqk = 128;
  call.reshape();
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError(); // 64 KiB
  EXPECT_EQ(s.set_attribute_calls, sets + 1);
  EXPECT_EQ(s.last_attribute, 8); // MAX_DYNAMIC_SHARED_SIZE_BYTES
  EXPECT_EQ(s.last_attribute_value, 65536);
  EXPECT_STREQ(s.last_attribute_function, "attn_test_bwd_d128");
  EXPECT_EQ(lastLaunch().shared_mem_bytes, 65536u);
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.set_attribute_calls, sets + 1); // once per function
}

TEST_F(CudaBackward, DriverErrorsBecomeDriverStatus) {
  BwdKernel k(backwardVariants());
  BwdCall call;
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  FakeCudaState &s = state();

  // A failed memset: nothing is launched on gradients that are not zero.
  s.launch_calls = 0;
  s.memset_calls = 0;
  failNext("cuMemsetD32Async", 1);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_NE(lastError().find("cuMemsetD32Async"), std::string::npos)
      << lastError();
  EXPECT_EQ(lastError().find('\n'), std::string::npos);
  EXPECT_EQ(s.memset_calls, 1);
  EXPECT_EQ(s.launch_calls, 0);
  // The next call works again.
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_STREQ(attn_last_error(), "");
  EXPECT_EQ(s.memset_calls, 4);
  EXPECT_EQ(s.launch_calls, 1);

  failNext("cuLaunchKernel", 700);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_NE(lastError().find("cuLaunchKernel"), std::string::npos)
      << lastError();
  EXPECT_NE(lastError().find("attn_test_bwd_d64"), std::string::npos)
      << lastError();
}

/// The linear family's kernels take global scratch: allocated on the
/// caller's stream before the launch, passed as the last parameter (a 1-D
/// byte buffer), freed on the stream after it.
TEST_F(CudaBackward, ScratchIsAllocatedAroundTheLaunchOnTheStream) {
  BwdKernel k({{"attn_test_bwd_d64", 64, 1 << 30, 96, 12, 6144, 1352}});
  BwdCall call; // B=2 Hkv=2 N=100: r = 10, 10 checkpoints
  void *stream = reinterpret_cast<void *>(0xabc0);
  FakeCudaState &s = state();
  int allocs = s.alloc_calls, frees = s.free_calls;
  ASSERT_EQ(call.run(&k.desc, stream), ATTN_OK) << lastError();
  const uint64_t perCta = (10 + 10 + 2) * 6144 + 1352;
  const uint64_t bytes = perCta * 4 * (1 * 2 * 2); // grid 1 x B * Hkv
  EXPECT_EQ(attn_cuda_scratch_floats_per_cta(&k.variants[0], 100), perCta);
  EXPECT_EQ(s.alloc_calls, allocs + 1);
  EXPECT_EQ(s.free_calls, frees + 1);
  EXPECT_EQ(s.live_allocs, 0);
  EXPECT_EQ(s.last_alloc_bytes, bytes);
  EXPECT_EQ(s.last_alloc_stream, stream);
  EXPECT_EQ(s.last_free_stream, stream);
  EXPECT_EQ(s.last_free_ptr, s.last_alloc_ptr);
  const FakeCudaLaunch &l = lastLaunch();
  EXPECT_LT(s.last_alloc_sequence, l.sequence);
  EXPECT_LT(l.sequence, s.last_free_sequence);
  EXPECT_EQ(l.grid[0], 1u);
  EXPECT_EQ(l.grid[1], 4u);
  ASSERT_EQ(l.num_params, k.numParams());
  const int64_t p = int64_t(s.last_alloc_ptr);
  EXPECT_EQ(params(PEnd, 5), (Words{p, p, 0, int64_t(bytes), 1}));
  // N = 1 still gets one checkpoint's worth: (1 + 1 + 2) states.
  EXPECT_EQ(attn_cuda_scratch_floats_per_cta(&k.variants[0], 1),
            4u * 6144 + 1352);
  EXPECT_EQ(attn_cuda_scratch_floats_per_cta(&k.variants[0], 0),
            4u * 6144 + 1352);
}

TEST_F(CudaBackward, ScratchFailures) {
  BwdKernel k({{"attn_test_bwd_d64", 64, 1 << 30, 96, 12, 6144, 1352}});
  BwdCall call;
  FakeCudaState &s = state();
  // Out of device memory: nothing is launched.
  int launches = s.launch_calls;
  failNext("cuMemAllocAsync", 2);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_OUT_OF_MEMORY);
  EXPECT_NE(lastError().find("scratch"), std::string::npos) << lastError();
  EXPECT_EQ(s.launch_calls, launches);
  EXPECT_EQ(s.live_allocs, 0);
  // A failed launch still frees it.
  failNext("cuLaunchKernel", 700);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_NE(lastError().find("cuLaunchKernel"), std::string::npos);
  EXPECT_EQ(s.live_allocs, 0);
  // A failed free is reported.
  failNext("cuMemFreeAsync", 1);
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_DRIVER);
  EXPECT_NE(lastError().find("cuMemFreeAsync"), std::string::npos);
  s.live_allocs = 0; // the fake kept the one whose free failed
  // A negative size in a descriptor is refused before the driver.
  k.variants[0].scratch_state_floats = -1;
  int allocs = s.alloc_calls;
  EXPECT_EQ(call.run(&k.desc), ATTN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(s.alloc_calls, allocs);
}

TEST_F(CudaBackward, ContextsAndManagedMemory) {
  BwdKernel k(backwardVariants());
  // Device 1: its primary context for the memsets and the launch.
  BwdCall one;
  one.setDevice({kDLCUDA, 1});
  ASSERT_EQ(one.run(&k.desc), ATTN_OK) << lastError();
  const FakeCudaState &s = state();
  ASSERT_EQ(s.memset_calls, 3);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(s.memsets[i].context, fake().primary(1));
  EXPECT_EQ(lastLaunch().context, fake().primary(1));

  // A current context on another device than the tensors.
  fake().setCurrent(fake().primary(0));
  EXPECT_EQ(one.run(&k.desc), ATTN_ERROR_DEVICE);
  EXPECT_EQ(s.memset_calls, 3);
  EXPECT_EQ(s.launch_calls, 1);

  // Managed memory is device memory, mixed with kDLCUDA.
  BwdCall managed;
  managed.setDevice({kDLCUDAManaged, 0});
  managed.dk.t.device = {kDLCUDA, 0};
  managed.dq.t.device = {kDLCUDA, 0};
  ASSERT_EQ(managed.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(s.launch_calls, 2);
}

TEST_F(CudaBackward, AdjacentTensorsDoNotOverlap) {
  // dq starts right after q's last byte, dk right after dq's, dslope right
  // after dtable's: touching is not overlapping.
  BwdKernel k(backwardVariants());
  BwdCall call;
  uintptr_t qEnd = BwdCall::kQ + 2 * 4 * 100 * 64 * 2;
  uintptr_t dqEnd = qEnd + 2 * 4 * 100 * 64 * 4;
  call.dq.t.data = reinterpret_cast<void *>(qEnd);
  call.dk.t.data = reinterpret_cast<void *>(dqEnd);
  call.dslope.t.data = reinterpret_cast<void *>(BwdCall::kDtable + 4 * 32 * 4);
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_EQ(state().memsets[0].dst, uint64_t(qEnd));
  EXPECT_EQ(params(PDk, 2), (Words{int64_t(dqEnd), int64_t(dqEnd)}));
}

TEST_F(CudaBackward, HalfPrecision) {
  BwdKernel k(backwardVariants(), ATTN_F16);
  BwdCall call(f16());
  ASSERT_EQ(call.run(&k.desc), ATTN_OK) << lastError();
  EXPECT_STREQ(lastLaunch().function, "attn_test_bwd_d64");
  EXPECT_EQ(params(PDout, 11), compactDesc(BwdCall::kDout, {2, 4, 100, 48}));
}

TEST_F(CudaBackward, ConcurrentCalls) {
  BwdKernel k(backwardVariants());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        BwdCall call;
        call.Dqk = (t + i) % 2 ? 64 : 128;
        call.reshape();
        if (call.run(&k.desc) != ATTN_OK)
          ++failures;
      }
    });
  for (std::thread &t : threads)
    t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(state().launch_calls, 200);
  EXPECT_EQ(state().memset_calls, 600);
}

} // namespace

int main(int argc, char **argv) {
  // Before the first CUDA call: the runtime reads it once.
  setenv("ATTN_CUDA_DRIVER", ATTN_FAKE_CUDA_DRIVER, 1);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
