//===- ValidateHostileTest.cpp - validation of hostile C API arguments ----===//
//
// What a careless or hostile caller of attn_cpu_run / attn_cuda_run can pass:
// device types and element types outside their enums, negative or huge ndim
// and rank, NULL shapes, negative sizes, shapes and strides whose extent
// overflows 64 bits, byte offsets near 2^64. Each gets its own status and a
// one-line message, the kernel never runs, and (under -fsanitize=undefined)
// validation itself has no undefined behaviour: enums are read as integers
// and every size product is overflow-checked before use.
//
//===----------------------------------------------------------------------===//

#include "CudaTestUtil.h"
#include "attn/Signature.h"
#include "attn/runtime.h"

#include <gtest/gtest.h>

#include <atomic>
#include <climits>
#include <cstring>
#include <string>
#include <vector>

namespace {

std::atomic<int> calls{0};

/// Counts invocations; validation failures must leave it at 0.
void countingKernel(void **, int64_t, int64_t) { calls.fetch_add(1); }

constexpr DLDataType kF32 = {kDLFloat, 32, 1};

/// A host tensor whose shape and strides live in this object; the data is a
/// small buffer (validation fails before any element is touched).
struct HostTensor {
  std::vector<int64_t> shape, strides;
  std::vector<uint64_t> storage = std::vector<uint64_t>(64);
  DLTensor dl{};

  explicit HostTensor(std::vector<int64_t> s) : shape(std::move(s)) {
    dl.data = storage.data();
    dl.device = {kDLCPU, 0};
    dl.ndim = static_cast<int32_t>(shape.size());
    dl.dtype = kF32;
    dl.shape = shape.data();
  }
  void setStrides(std::vector<int64_t> s) {
    strides = std::move(s);
    dl.strides = strides.data();
  }
};

/// Stores \p value in an enum field without a C++ conversion to the enum
/// (which would itself be undefined for values outside its range).
template <typename Enum> void storeRaw(Enum &field, int32_t value) {
  static_assert(sizeof(Enum) == sizeof(int32_t), "32-bit enum");
  std::memcpy(&field, &value, sizeof(value));
}

const char *const kQDims[] = {"B", "Hq", "N", "Dqk"};
const char *const kKDims[] = {"B", "Hkv", "M", "Dqk"};
const char *const kVDims[] = {"B", "Hkv", "M", "Dv"};
const char *const kAuxDims[] = {"B", "N"};

/// A small valid call (B=1 Hq=2 Hkv=1 N=3 M=5 Dqk=4 Dv=2, aux a : f32[B, N]);
/// each test breaks one thing.
class HostileTest : public ::testing::Test {
protected:
  std::vector<attn_input_desc_t> descs{{"q", ATTN_F32, 4, kQDims, nullptr},
                                       {"k", ATTN_F32, 4, kKDims, nullptr},
                                       {"v", ATTN_F32, 4, kVDims, nullptr},
                                       {"a", ATTN_F32, 2, kAuxDims, nullptr}};
  attn_kernel_desc_t kernel{};
  HostTensor q{{1, 2, 3, 4}}, k{{1, 1, 5, 4}}, v{{1, 1, 5, 2}}, a{{1, 3}};
  HostTensor o{{1, 2, 3, 2}}, lse{{1, 2, 3}};

  void SetUp() override {
    kernel.abi_version = ATTN_ABI_VERSION;
    kernel.name = "hostile";
    kernel.tile_q = 16;
    kernel.num_inputs = 4;
    kernel.inputs = descs.data();
    kernel.has_lse = 1;
    kernel.cpu_fn = countingKernel;
    calls = 0;
  }

  attn_status_t call() {
    const DLTensor *in[] = {&q.dl, &k.dl, &v.dl, &a.dl};
    attn_run_options_t options{1};
    return attn_cpu_run(&kernel, in, &o.dl, &lse.dl, &options);
  }

  /// Expects `code` and a one-line message containing `substr`.
  void expectError(attn_status_t code, const std::string &substr) {
    attn_status_t st = call();
    std::string msg = attn_last_error();
    EXPECT_EQ(st, code) << attn_status_string(st) << ": " << msg;
    EXPECT_NE(msg.find(substr), std::string::npos)
        << "message: " << msg << "\nexpected to contain: " << substr;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(calls.load(), 0);
  }
};

TEST_F(HostileTest, ValidCallRuns) {
  EXPECT_EQ(call(), ATTN_OK) << attn_last_error();
  EXPECT_GT(calls.load(), 0);
}

/// A causal linear attention's k and v have N rows ([B, Hkv, N, ..]: its
/// keys are its queries): such a descriptor is valid, and a call whose k
/// and v have M != N rows is refused before the kernel runs (it used to
/// read and write past them).
TEST_F(HostileTest, KeysThatAreTheQueriesMustHaveNRows) {
  static const char *const kKN[] = {"B", "Hkv", "N", "Dqk"};
  static const char *const kVN[] = {"B", "Hkv", "N", "Dv"};
  descs[1].dims = kKN;
  descs[2].dims = kVN;
  expectError(ATTN_ERROR_SHAPE, "dim 'N' is 3");
  HostTensor k3({1, 1, 3, 4}), v3({1, 1, 3, 2});
  const DLTensor *in[] = {&q.dl, &k3.dl, &v3.dl, &a.dl};
  attn_run_options_t options{1};
  EXPECT_EQ(attn_cpu_run(&kernel, in, &o.dl, &lse.dl, &options), ATTN_OK)
      << attn_last_error();
  EXPECT_GT(calls.load(), 0);
}

TEST_F(HostileTest, DeviceTypesOutsideTheEnum) {
  storeRaw(k.dl.device.device_type, 999);
  expectError(ATTN_ERROR_DEVICE, "k: tensor is on device type 999, expected "
                                 "host memory");
  storeRaw(k.dl.device.device_type, -1);
  expectError(ATTN_ERROR_DEVICE, "k: tensor is on device type -1");
  k.dl.device.device_type = kDLCPU;
  storeRaw(o.dl.device.device_type, INT32_MIN);
  expectError(ATTN_ERROR_DEVICE, "o: tensor is on device type -2147483648");
  o.dl.device.device_type = kDLCPU;
  storeRaw(lse.dl.device.device_type, 0);
  expectError(ATTN_ERROR_DEVICE, "lse: tensor is on device type 0");
}

TEST_F(HostileTest, CudaDeviceTypeOutsideTheEnum) {
  // Validation comes before the driver is loaded, so this needs no GPU.
  attn_test::Kernel kernel(attn_test::standardVariants());
  attn_test::Call call;
  storeRaw(call.v.t.device.device_type, 999);
  EXPECT_EQ(call.run(&kernel.desc), ATTN_ERROR_DEVICE);
  EXPECT_NE(std::string(attn_last_error())
                .find("v: tensor is on device type 999, expected CUDA device "
                      "memory"),
            std::string::npos)
      << attn_last_error();
}

TEST_F(HostileTest, ElementTypeOutsideTheEnum) {
  storeRaw(descs[3].type, 7);
  expectError(ATTN_ERROR_INVALID_ARGUMENT,
              "inputs[3] 'a': unknown element type 7");
  storeRaw(descs[3].type, -100);
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "unknown element type -100");
}

TEST_F(HostileTest, NegativeAndHugeNDim) {
  q.dl.ndim = -1;
  expectError(ATTN_ERROR_SHAPE, "q: ndim is -1, expected 4");
  q.dl.ndim = INT32_MIN;
  expectError(ATTN_ERROR_SHAPE, "q: ndim is -2147483648, expected 4");
  q.dl.ndim = INT32_MAX;
  expectError(ATTN_ERROR_SHAPE, "q: ndim is 2147483647, expected 4");
  q.dl.ndim = 4;
  o.dl.ndim = -4;
  expectError(ATTN_ERROR_SHAPE, "o: ndim is -4, expected 4");
}

TEST_F(HostileTest, NegativeAndHugeRanksInTheDescriptor) {
  descs[3].rank = -1;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "'a': rank -1 is not in [0, 16]");
  descs[3].rank = INT32_MAX;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "'a': rank 2147483647 is not in");
  descs[3].rank = 2;
  kernel.num_inputs = -5;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "num_inputs is -5");
  kernel.num_inputs = INT32_MAX;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "num_inputs is 2147483647");
}

TEST_F(HostileTest, NullShapes) {
  a.dl.shape = nullptr;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "a: shape is NULL");
  a.dl.shape = a.shape.data();
  lse.dl.shape = nullptr;
  expectError(ATTN_ERROR_INVALID_ARGUMENT, "lse: shape is NULL");
}

TEST_F(HostileTest, NegativeSizes) {
  q.shape[2] = -3;
  expectError(ATTN_ERROR_SHAPE, "input 'q' dim 2 must be positive, got -3");
  q.shape[2] = INT64_MIN;
  expectError(ATTN_ERROR_SHAPE,
              "input 'q' dim 2 must be positive, got -9223372036854775808");
  q.shape[2] = 3;
  o.shape[3] = -2;
  expectError(ATTN_ERROR_SHAPE, "o: dim 3 (Dv) is -2, expected 2");
  o.shape[3] = 2;
  static const int64_t negativeFixed[] = {0, -7};
  static const char *const fixedDims[] = {"B", nullptr};
  descs[3].dims = fixedDims;
  descs[3].fixed_sizes = negativeFixed;
  expectError(ATTN_ERROR_INVALID_ARGUMENT,
              "dim 1 is fixed but has no positive fixed_sizes entry");
}

TEST_F(HostileTest, CompactShapesWhoseSizeOverflows) {
  // Compact (NULL strides): the strides are products of the sizes, which
  // overflow here; they must be rejected, never computed with wrapping.
  int64_t n = int64_t(1) << 62;
  q.shape[2] = a.shape[1] = o.shape[2] = lse.shape[2] = n;
  expectError(ATTN_ERROR_SHAPE, "q: shape [1, 2, 4611686018427387904, 4] "
                                "overflows 64-bit indexing");
  // Every size INT64_MAX: binds consistently (Hkv = 1), then overflows.
  q.shape = {INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX};
  k.shape = {INT64_MAX, 1, 5, INT64_MAX};
  v.shape = {INT64_MAX, 1, 5, 2};
  a.shape = {INT64_MAX, INT64_MAX};
  for (HostTensor *t : {&q, &k, &v, &a})
    t->dl.shape = t->shape.data();
  expectError(ATTN_ERROR_SHAPE, "q: shape [9223372036854775807, "
                                "9223372036854775807, 9223372036854775807, "
                                "9223372036854775807] overflows 64-bit");
}

TEST_F(HostileTest, StridesWhoseExtentOverflows) {
  v.setStrides({0, 0, INT64_MAX, 1});
  expectError(ATTN_ERROR_SHAPE, "v: shape [1, 1, 5, 2] overflows 64-bit "
                                "indexing");
  // The last element at exactly INT64_MAX: one past it does not fit.
  v.setStrides({0, 0, INT64_MAX / 4, 1});
  v.strides[3] = INT64_MAX - 4 * (INT64_MAX / 4);
  expectError(ATTN_ERROR_SHAPE, "v: shape [1, 1, 5, 2] overflows 64-bit");
  v.setStrides({0, 0, INT64_MAX / 8, 1});
  expectError(ATTN_ERROR_SHAPE, "overflows 64-bit byte addressing");
  v.dl.strides = nullptr;
  v.strides.clear();
  // B = 1: dim 0's stride contributes nothing; dim 1's overflows the bytes.
  o.setStrides({INT64_MAX, INT64_MAX / 2, 2, 1});
  expectError(ATTN_ERROR_SHAPE, "o: shape [1, 2, 3, 2] overflows");
  o.setStrides({12, 6, 2, INT64_MIN});
  expectError(ATTN_ERROR_LAYOUT, "o: dim 3 has stride -9223372036854775808");
}

TEST_F(HostileTest, ByteOffsetsNearTheTopOfTheAddressSpace) {
  a.dl.byte_offset = UINT64_MAX - 3; // a multiple of 4: passes alignment
  expectError(ATTN_ERROR_SHAPE, "a: shape [1, 3] overflows 64-bit byte");
  a.dl.byte_offset = uint64_t(INT64_MAX) - 3;
  expectError(ATTN_ERROR_SHAPE, "a: shape [1, 3] overflows 64-bit byte");
  a.dl.byte_offset = 0;
  lse.dl.byte_offset = uint64_t(INT64_MAX) + 1;
  expectError(ATTN_ERROR_SHAPE, "lse: shape [1, 2, 3] overflows 64-bit byte");
}

TEST_F(HostileTest, DTypesWithZeroOrOddWidths) {
  a.dl.dtype = {kDLFloat, 0, 1};
  expectError(ATTN_ERROR_DTYPE, "a: dtype is float0, expected float32");
  a.dl.dtype = {kDLFloat, 32, 0};
  expectError(ATTN_ERROR_DTYPE, "a: dtype is float32x0");
  a.dl.dtype = {255, 32, 1};
  expectError(ATTN_ERROR_DTYPE, "a: dtype is code255_32");
}

TEST(BindShapesTest, SignatureWithoutHeadDimsBindsWithoutG) {
  // G = Hq / Hkv is derived only where both are bound: a signature without
  // k (possible through the C++ API) must not divide by a missing Hkv.
  attn::Signature sig;
  sig.inputs.push_back({"q", attn::ElemType::F32, {{"B", 0}, {"Hq", 0}}});
  attn::DimBinding dims;
  EXPECT_EQ(attn::bindShapes(sig, {{"q", {2, 3}}}, dims), "");
  EXPECT_EQ(dims.count("G"), 0u);
  EXPECT_EQ(dims.count("Hkv"), 0u);
  EXPECT_EQ(dims.at("Hq"), 3);
}

} // namespace
