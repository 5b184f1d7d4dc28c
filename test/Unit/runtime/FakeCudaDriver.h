/*===- FakeCudaDriver.h - a recording stand-in for libcuda.so.1 -----------===*
 *
 * FakeCudaDriver.cpp builds a shared library exporting the CUDA driver entry
 * points the runtime resolves. attn_cuda_run loads it through
 * ATTN_CUDA_DRIVER; the test dlopens the same file (the same loaded copy) and
 * reads and steers it through fake_cuda_state().
 *
 * An "image" is text, one function per line, "name=num_params\n": the fake
 * cuModuleLoadData parses it (CUDA_ERROR_INVALID_IMAGE when it does not
 * parse), cuModuleGetFunction looks names up (CUDA_ERROR_NOT_FOUND), and
 * cuLaunchKernel copies num_params 8-byte parameters out of kernelParams.
 * cuMemsetD32Async records its arguments and writes nothing: the tests'
 * device pointers are fake addresses. cuMemcpyDtoHAsync_v2 (the runtime's
 * ATTN_GPU_CHECK_TABLES mode) copies from its source address as host
 * memory: a test that turns that mode on gives its tables real host
 * addresses.
 * The current context is per thread, as in the real driver; device d's
 * primary context is a fixed object per d.
 *
 *===----------------------------------------------------------------------===*/

#ifndef ATTN_TEST_FAKECUDADRIVER_H
#define ATTN_TEST_FAKECUDADRIVER_H

#include <stdint.h>

#define FAKE_CUDA_MAX_PARAMS 512
#define FAKE_CUDA_MAX_DEVICES 8
#define FAKE_CUDA_NAME_LEN 128
#define FAKE_CUDA_MAX_MEMSETS 64

typedef struct FakeCudaLaunch {
  char function[FAKE_CUDA_NAME_LEN]; /* the launched function's name */
  const void *image;                 /* the image its module was loaded from */
  void *context;                     /* the thread's current context */
  unsigned grid[3];
  unsigned block[3];
  unsigned shared_mem_bytes;
  void *stream;
  int num_params;
  int64_t params[FAKE_CUDA_MAX_PARAMS]; /* each parameter's 8 bytes */
  int extra_is_null;
  int sequence; /* state.call_sequence when it was recorded */
} FakeCudaLaunch;

typedef struct FakeCudaMemset {
  unsigned long long dst; /* the CUdeviceptr */
  unsigned value;
  uint64_t count; /* 32-bit words */
  void *stream;
  void *context; /* the thread's current context */
  int sequence;  /* state.call_sequence when it was recorded */
} FakeCudaMemset;

typedef struct FakeCudaState {
  /* Steering, written by the test. */
  int device_count;       /* what cuDeviceGetCount reports (default 2) */
  char fail_function[64]; /* the next call of this entry point fails ... */
  int fail_code;          /* ... with this CUresult (then both reset) */
  /* What cuDeviceGetAttribute(MULTIPROCESSOR_COUNT) and
     cuOccupancyMaxActiveBlocksPerMultiprocessor report (132 and 3 at the
     start). */
  int sm_count;
  int blocks_per_sm;

  /* Calls, counted. */
  int init_calls;
  int device_get_count_calls;
  int primary_retain_calls;
  int ctx_set_current_calls;
  int module_load_calls;
  int get_function_calls;
  int set_attribute_calls;
  int launch_calls;
  int memset_calls; /* cuMemsetD32Async; a test may reset it to 0 */
  int alloc_calls;  /* cuMemAllocAsync */
  int free_calls;   /* cuMemFreeAsync */
  int live_allocs;  /* allocated and not freed yet */
  /* Launches and memsets together, for their order on a stream. */
  int call_sequence;

  /* The latest calls' arguments. */
  const void *last_loaded_image;
  char last_requested_function[FAKE_CUDA_NAME_LEN];
  char last_attribute_function[FAKE_CUDA_NAME_LEN];
  int last_attribute;
  int last_attribute_value;
  FakeCudaLaunch last_launch;
  FakeCudaLaunch prev_launch; /* the launch before last_launch */
  /* The latest occupancy query: function, block size, shared bytes. */
  int occupancy_calls;
  char last_occupancy_function[FAKE_CUDA_NAME_LEN];
  int last_occupancy_block_size;
  uint64_t last_occupancy_shared_bytes;
  /* cuMemsetD32Async calls in order: memsets[i] is call i counted from the
     last time memset_calls was 0 (the first FAKE_CUDA_MAX_MEMSETS kept). */
  FakeCudaMemset memsets[FAKE_CUDA_MAX_MEMSETS];
  /* The latest cuMemAllocAsync: its size, stream, the pointer it returned
     (never dereferenced) and call_sequence then; the latest
     cuMemFreeAsync's pointer, stream and sequence. */
  uint64_t last_alloc_bytes;
  void *last_alloc_stream;
  unsigned long long last_alloc_ptr;
  int last_alloc_sequence;
  unsigned long long last_free_ptr;
  void *last_free_stream;
  int last_free_sequence;
  /* cuMemcpyDtoHAsync_v2 and cuStreamSynchronize calls, the latest copy's
     stream, and the latest synchronize's stream. */
  int copy_calls;
  int sync_calls;
  void *last_copy_stream;
  void *last_sync_stream;
} FakeCudaState;

#ifdef __cplusplus
extern "C" {
#endif
/* The state; calls are serialized by a lock inside the fake. */
FakeCudaState *fake_cuda_state(void);
/* &fake_cuda_state()->last_launch. */
const FakeCudaLaunch *fake_cuda_last_launch(void);
/* The primary context object of device d (what the runtime should use). */
void *fake_cuda_primary_context(int device);
/* Sets the calling thread's current context (NULL: none). */
void fake_cuda_set_current(void *context);
#ifdef __cplusplus
}
#endif

#endif /* ATTN_TEST_FAKECUDADRIVER_H */
