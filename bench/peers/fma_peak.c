/* fma_peak.c - the machine's fp32 FMA limit, measured: every thread runs 16
 * independent chains of 16-lane (AVX-512; 8-lane with AVX2) FMAs for about
 * half a second; prints the total in GFLOP/s (2 flops per lane per FMA).
 * Built and run by bench/peers/run_backward.py:
 *   cc -O2 -march=native -pthread fma_peak.c -o fma_peak && ./fma_peak [threads] */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define SUM(x) _mm512_reduce_add_ps(x)
#else
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
static float SUM(__m256 x) {
  float t[8];
  _mm256_storeu_ps(t, x);
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#endif

enum { CHAINS = 16, ITERS = 1 << 22 };
static volatile float sink;

static void *run(void *arg) {
  vec acc[CHAINS], a = SET1(0.999999f), b = SET1(1e-7f);
  int i, c;
  (void)arg;
  for (c = 0; c < CHAINS; ++c)
    acc[c] = SET1((float)c);
  for (i = 0; i < ITERS; ++i)
    for (c = 0; c < CHAINS; ++c)
      acc[c] = FMA(acc[c], a, b);
  for (c = 1; c < CHAINS; ++c)
    acc[0] = ADD(acc[0], acc[c]);
  sink = SUM(acc[0]);
  return NULL;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN), t;
  pthread_t th[256];
  struct timespec t0, t1;
  double s, best = 0;
  int rep;
  if (n < 1 || n > 256)
    n = 1;
  for (rep = 0; rep < 3; ++rep) {
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (t = 0; t < n; ++t)
      pthread_create(&th[t], NULL, run, NULL);
    for (t = 0; t < n; ++t)
      pthread_join(th[t], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    s = 2.0 * LANES * CHAINS * (double)ITERS * n / s / 1e9;
    if (s > best)
      best = s;
  }
  printf("%.1f GFLOP/s (%d threads, %d-lane FMA, %d chains)\n", best, n, LANES,
         CHAINS);
  return 0;
}
