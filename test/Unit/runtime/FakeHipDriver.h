/*===- FakeHipDriver.h - a recording stand-in for libamdhip64 -------------===*
 *
 * FakeHipDriver.cpp builds a shared library exporting the HIP runtime entry
 * points the runtime resolves, with hip_runtime_api.h's signatures and
 * error codes. attn_rocm_run loads it through ATTN_HIP_LIBRARY; the test
 * dlopens the same file (the same loaded copy) and reads and steers it
 * through fake_hip_state().
 *
 * An "image" is text, one function per line, "name=num_params\n", as for
 * the fake CUDA driver (FakeCudaDriver.h): hipModuleLoadData parses it
 * (hipErrorInvalidImage when it does not parse) into a module of the
 * calling thread's current device, hipModuleGetFunction looks names up
 * (hipErrorNotFound), and hipModuleLaunchKernel copies num_params 8-byte
 * parameters out of kernelParams. hipMemsetD32Async records its arguments
 * and writes nothing: the tests' device pointers are fake addresses.
 * The current device is per thread, 0 until hipSetDevice, as in HIP.
 *
 *===----------------------------------------------------------------------===*/

#ifndef ATTN_TEST_FAKEHIPDRIVER_H
#define ATTN_TEST_FAKEHIPDRIVER_H

#include <stdint.h>

#define FAKE_HIP_MAX_PARAMS 512
#define FAKE_HIP_MAX_DEVICES 8
#define FAKE_HIP_NAME_LEN 128
#define FAKE_HIP_MAX_MEMSETS 64

typedef struct FakeHipLaunch {
  char function[FAKE_HIP_NAME_LEN]; /* the launched function's name */
  const void *image;                /* the image its module was loaded from */
  int module_device;                /* the device its module was loaded on */
  int device;                       /* the thread's current device */
  unsigned grid[3];
  unsigned block[3];
  unsigned shared_mem_bytes;
  void *stream;
  int num_params;
  int64_t params[FAKE_HIP_MAX_PARAMS]; /* each parameter's 8 bytes */
  int extra_is_null;
  int sequence; /* state.call_sequence when it was recorded */
} FakeHipLaunch;

typedef struct FakeHipMemset {
  void *dst;
  int value;
  uint64_t count; /* 32-bit words */
  void *stream;
  int device;   /* the thread's current device */
  int sequence; /* state.call_sequence when it was recorded */
} FakeHipMemset;

typedef struct FakeHipState {
  /* Steering, written by the test. */
  int device_count;       /* what hipGetDeviceCount reports (default 2) */
  char fail_function[64]; /* the next call of this entry point fails ... */
  int fail_code;          /* ... with this hipError_t (then both reset) */
  int fail_skip;          /* ... after letting this many calls of it pass */

  /* Calls, counted. */
  int init_calls;
  int get_device_calls;
  int set_device_calls; /* hipSetDevice, the test's own calls excluded */
  int device_count_calls;
  int module_load_calls;
  int get_function_calls;
  int launch_calls;
  int memset_calls; /* hipMemsetD32Async; a test may reset it to 0 */
  int alloc_calls;  /* hipMallocAsync */
  int free_calls;   /* hipFreeAsync */
  int live_allocs;  /* allocated and not freed yet */
  /* Launches, memsets, allocations and frees together, for their order on
     a stream. */
  int call_sequence;

  /* The latest calls' arguments. */
  const void *last_loaded_image;
  int last_loaded_device;
  char last_requested_function[FAKE_HIP_NAME_LEN];
  FakeHipLaunch last_launch;
  /* hipMemsetD32Async calls in order: memsets[i] is call i counted from the
     last time memset_calls was 0 (the first FAKE_HIP_MAX_MEMSETS kept). */
  FakeHipMemset memsets[FAKE_HIP_MAX_MEMSETS];
  /* The latest hipMallocAsync: its size, stream, device, the pointer it
     returned (never dereferenced) and call_sequence then; the latest
     hipFreeAsync's pointer, stream and sequence. */
  uint64_t last_alloc_bytes;
  void *last_alloc_stream;
  int last_alloc_device;
  void *last_alloc_ptr;
  int last_alloc_sequence;
  void *last_free_ptr;
  void *last_free_stream;
  int last_free_sequence;
} FakeHipState;

#ifdef __cplusplus
extern "C" {
#endif
/* The state; calls are serialized by a lock inside the fake. */
FakeHipState *fake_hip_state(void);
/* The calling thread's current device, read and set without counting. */
int fake_hip_current_device(void);
void fake_hip_set_current_device(int device);
#ifdef __cplusplus
}
#endif

#endif /* ATTN_TEST_FAKEHIPDRIVER_H */
