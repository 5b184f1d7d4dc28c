/* read_bw.c - the machine's read bandwidth from memory, measured: every
 * thread sums its own slice of a buffer much larger than the caches with
 * 64-byte (AVX-512; 32-byte with AVX2) loads into 8 independent
 * accumulators, 5 passes; prints the best pass in GB/s (bytes read /
 * seconds, all threads). The decode benchmark (run_decode.py) divides the
 * K+V bytes a decode step must read by its time and reports that against
 * this number, measured in the same run.
 *   cc -O2 -march=native -pthread read_bw.c -o read_bw && ./read_bw [threads] [MiB] */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define LOAD _mm512_load_ps
#define ADD _mm512_add_ps
#define ZERO _mm512_setzero_ps
#define SUM(x) _mm512_reduce_add_ps(x)
#else
typedef __m256 vec;
#define LANES 8
#define LOAD _mm256_load_ps
#define ADD _mm256_add_ps
#define ZERO _mm256_setzero_ps
static float SUM(__m256 x) {
  float t[8];
  _mm256_storeu_ps(t, x);
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#endif

typedef struct {
  const float *p;
  size_t n; /* floats, a multiple of 8 * LANES */
  pthread_barrier_t *start;
  float out;
} job_t;

static void *run(void *arg) {
  job_t *j = arg;
  vec a[8];
  size_t i;
  int c;
  for (c = 0; c < 8; ++c)
    a[c] = ZERO();
  pthread_barrier_wait(j->start);
  for (i = 0; i < j->n; i += 8 * LANES)
    for (c = 0; c < 8; ++c)
      a[c] = ADD(a[c], LOAD(j->p + i + c * LANES));
  for (c = 1; c < 8; ++c)
    a[0] = ADD(a[0], a[c]);
  j->out = SUM(a[0]);
  return NULL;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
  size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
  size_t total = mib << 20, per, i;
  float *buf, sink = 0;
  double best = 0;
  int pass, t;
  if (threads < 1 || threads > 256)
    threads = 1;
  per = (total / sizeof(float) / threads) / (8 * LANES) * (8 * LANES);
  if (posix_memalign((void **)&buf, 64, per * threads * sizeof(float)))
    return 1;
  for (i = 0; i < per * threads; ++i) /* fault every page in first */
    buf[i] = (float)(i & 7);
  for (pass = 0; pass < 5; ++pass) {
    pthread_t tid[256];
    job_t jobs[256];
    pthread_barrier_t start;
    double t0, dt;
    pthread_barrier_init(&start, NULL, threads + 1);
    for (t = 0; t < threads; ++t) {
      jobs[t].p = buf + per * t;
      jobs[t].n = per;
      jobs[t].start = &start;
      pthread_create(&tid[t], NULL, run, &jobs[t]);
    }
    pthread_barrier_wait(&start);
    t0 = now();
    for (t = 0; t < threads; ++t) {
      pthread_join(tid[t], NULL);
      sink += jobs[t].out;
    }
    dt = now() - t0;
    pthread_barrier_destroy(&start);
    if (per * threads * sizeof(float) / dt / 1e9 > best)
      best = per * threads * sizeof(float) / dt / 1e9;
  }
  printf("%.2f GB/s read (%d threads, %zu MiB, %d-lane loads; checksum %g)\n",
         best, threads, mib, LANES, (double)sink);
  free(buf);
  return 0;
}
