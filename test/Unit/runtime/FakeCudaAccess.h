//===- FakeCudaAccess.h - the fake driver as the runtime loaded it -*- C++
//-*-===//
//
// For the tests that run the CUDA runtime against FakeCudaDriver.cpp: opens
// the same library file the runtime loads through ATTN_CUDA_DRIVER (so the
// same loaded copy, the same state) and reads and steers it.
//
//===----------------------------------------------------------------------===//

#ifndef ATTN_TEST_FAKECUDAACCESS_H
#define ATTN_TEST_FAKECUDAACCESS_H

#include "FakeCudaDriver.h"
#include "attn/runtime.h"

#include <cstdio>
#include <cstdlib>
#include <dlfcn.h>
#include <string>

#ifndef ATTN_FAKE_CUDA_DRIVER
#error "ATTN_FAKE_CUDA_DRIVER must name the fake driver library"
#endif

namespace attn_test {

struct Fake {
  FakeCudaState *(*state)(void);
  void *(*primary)(int);
  void (*setCurrent)(void *);
};

inline const Fake &fake() {
  static const Fake f = [] {
    // The same file the runtime opens, so the same loaded copy.
    void *h = dlopen(ATTN_FAKE_CUDA_DRIVER, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      std::fprintf(stderr, "cannot load the fake driver: %s\n", dlerror());
      std::abort();
    }
    Fake r;
    r.state =
        reinterpret_cast<FakeCudaState *(*)(void)>(dlsym(h, "fake_cuda_state"));
    r.primary =
        reinterpret_cast<void *(*)(int)>(dlsym(h, "fake_cuda_primary_context"));
    r.setCurrent =
        reinterpret_cast<void (*)(void *)>(dlsym(h, "fake_cuda_set_current"));
    if (!r.state || !r.primary || !r.setCurrent)
      std::abort();
    return r;
  }();
  return f;
}

inline FakeCudaState &state() { return *fake().state(); }
inline const FakeCudaLaunch &lastLaunch() { return state().last_launch; }

/// The next call of driver entry point \p function fails with \p code.
inline void failNext(const char *function, int code) {
  std::snprintf(state().fail_function, sizeof(state().fail_function), "%s",
                function);
  state().fail_code = code;
}

inline std::string lastError() { return attn_last_error(); }

/// A test's start: no current context on this thread, no injected failure,
/// two devices of 132 SMs running 3 CTAs each.
inline void resetFake() {
  fake().setCurrent(nullptr);
  state().fail_code = 0;
  state().fail_function[0] = '\0';
  state().device_count = 2;
  state().sm_count = 132;
  state().blocks_per_sm = 3;
}

} // namespace attn_test

#endif // ATTN_TEST_FAKECUDAACCESS_H
