/* How fast cores stream memory while doing a decode matmul's arithmetic.
 *
 * bnc bench measures tg against a bound of bytes / bandwidth, the bandwidth
 * of a loop that only reads. A ternary decode kernel also unpacks every
 * 64-byte line of 2-bit weights (3 shifts, 4 masks) and multiplies it into
 * int8 activations with 4 vpdpbusd (256 weights, 64 per instruction: no
 * fewer will do). This program streams 512 MiB (2 MiB pages, as plans'
 * weights; each thread its own half with -t 2) with
 *   read:     loads only (bnc bench's yardstick, in AVX-512);
 *   dot:      loads + that unpacking and those vpdpbusd, 4 rows of a tile
 *             sharing the activation loads, as the generated decode kernel;
 *   dot + pf: the same with a software prefetch of each line D bytes ahead
 *             (prefetcht0, as the generated kernel, D = 6 KiB there);
 * and runs `dot` on 256 KiB a thread that stay in L2 (its arithmetic alone).
 * With -t N the N threads run each loop at once and the figure is their sum.
 * Each figure is the best of 5 passes; the rows alternate, -r rounds.
 *
 *   build/bench/stream_dot [-t THREADS] [-r ROUNDS]   (x86-64 with AVX-512 VNNI only) */
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define VNNI __attribute__((noinline, target("avx512f,avx512bw,avx512vnni")))

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static _Atomic int64_t sink; /* the loops' results, so none is optimized away */
static uint8_t act[1536] __attribute__((aligned(64))); /* a 1536-wide activation row, as large's */

VNNI static void read_only(const uint8_t *p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (const uint8_t *e = p + n; p < e; p += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + 64));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + 128));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + 192));
  }
  sink += _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
}

/* One row's 64 bytes: the codes at shifts 0, 2, 4, 6 against 4 activation vectors, 2 chains. */
#define ROW(r)                                                                                  \
  {                                                                                             \
    __m512i w = _mm512_load_si512(p + 64 * (r));                                                \
    c##r##0 = _mm512_dpbusd_epi32(c##r##0, _mm512_and_si512(w, m), x0);                         \
    c##r##1 = _mm512_dpbusd_epi32(c##r##1, _mm512_and_si512(_mm512_srli_epi16(w, 2), m), x1);   \
    c##r##0 = _mm512_dpbusd_epi32(c##r##0, _mm512_and_si512(_mm512_srli_epi16(w, 4), m), x2);   \
    c##r##1 = _mm512_dpbusd_epi32(c##r##1, _mm512_and_si512(_mm512_srli_epi16(w, 6), m), x3);   \
  }

VNNI static void dot(const uint8_t *p, size_t n, long ahead) {
  __m512i c00 = _mm512_setzero_si512(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  const __m512i m = _mm512_set1_epi8(3);
  size_t g = 0;
  for (const uint8_t *e = p + n; p < e; p += 256, g = g == 5 ? 0 : g + 1) {
    if (ahead)
      for (int l = 0; l < 256; l += 64) _mm_prefetch((const char *)p + ahead + l, _MM_HINT_T0);
    const uint8_t *a = act + 256 * g;
    __m512i x0 = _mm512_load_si512(a), x1 = _mm512_load_si512(a + 64), x2 = _mm512_load_si512(a + 128),
            x3 = _mm512_load_si512(a + 192);
    ROW(0) ROW(1) ROW(2) ROW(3)
  }
  __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c00, c01), _mm512_add_epi32(c10, c11)),
                               _mm512_add_epi32(_mm512_add_epi32(c20, c21), _mm512_add_epi32(c30, c31)));
  sink += _mm512_reduce_add_epi32(s);
}

typedef struct {
  const uint8_t *buf;
  size_t n;
  int times;
  long ahead; /* < 0: read_only */
  pthread_barrier_t *start;
  double gbs;
} job;

/* GB/s of the best of 5 passes, each `times` sweeps over n bytes, the threads starting together. */
static void *rate(void *arg) {
  job *j = arg;
  j->gbs = 0;
  for (int r = 0; r < 5; r++) {
    pthread_barrier_wait(j->start);
    double t0 = now();
    for (int k = 0; k < j->times; k++)
      if (j->ahead < 0) read_only(j->buf, j->n);
      else dot(j->buf, j->n, j->ahead);
    double gbs = (double)j->n * j->times / (now() - t0) / 1e9;
    if (gbs > j->gbs) j->gbs = gbs;
  }
  return NULL;
}

int main(int argc, char **argv) {
  int threads = 1, rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    int v = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "-t") && v >= 1 && v <= 64) threads = v;
    else if (!strcmp(argv[i], "-r") && v >= 1 && v <= 100) rounds = v;
    else return fprintf(stderr, "usage: stream_dot [-t THREADS] [-r ROUNDS]\n"), 2;
  }
  if (argc % 2 == 0) return fprintf(stderr, "usage: stream_dot [-t THREADS] [-r ROUNDS]\n"), 2;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512bw")) {
    fprintf(stderr, "stream_dot: this CPU lacks AVX-512 VNNI\n");
    return 1;
  }
  size_t bytes = (size_t)512 << 20, per = bytes / (size_t)threads / 4096 * 4096;
  uint8_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED) return perror("stream_dot: mmap"), 1;
  madvise(buf, bytes, MADV_HUGEPAGE);
  memset(buf, 0x5a, bytes);
  memset(act, 7, sizeof act);
  const char *names[] = {"read", "dot", "dot + pf 4 KiB", "dot + pf 6 KiB", "dot + pf 8 KiB", "dot + pf 12 KiB",
                         "dot + pf 16 KiB", "dot, in L2"};
  const long ahead[] = {-1, 0, 4096, 6144, 8192, 12288, 16384, 0};
  enum { ROWS = 8 };
  double *r = calloc((size_t)rounds * ROWS, sizeof *r);
  pthread_t *th = calloc((size_t)threads, sizeof *th);
  job *jobs = calloc((size_t)threads, sizeof *jobs);
  if (!r || !th || !jobs) return fputs("stream_dot: out of memory\n", stderr), 1;
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)threads);
  for (int k = 0; k < rounds; k++)
    for (int i = 0; i < ROWS; i++) {
      int in_l2 = i == ROWS - 1;
      for (int t = 0; t < threads; t++) {
        jobs[t] = (job){buf + per * (size_t)t, in_l2 ? 256 << 10 : per, in_l2 ? 2048 : 1, ahead[i], &start, 0};
        if (t && pthread_create(&th[t], NULL, rate, &jobs[t])) return fputs("stream_dot: cannot start a thread\n", stderr), 1;
      }
      rate(&jobs[0]);
      for (int t = 1; t < threads; t++) pthread_join(th[t], NULL);
      for (int t = 0; t < threads; t++) r[k * ROWS + i] += jobs[t].gbs;
    }
  printf("%d thread(s), GB/s (all threads together), best of 5 passes\n\n| loop |", threads);
  for (int k = 0; k < rounds; k++) printf(" round %d |", k + 1);
  printf("\n| --- |");
  for (int k = 0; k < rounds; k++) printf(" ---: |");
  printf("\n");
  for (int i = 0; i < ROWS; i++) {
    printf("| %s |", names[i]);
    for (int k = 0; k < rounds; k++) printf(" %.1f |", r[k * ROWS + i]);
    printf("\n");
  }
  free(r), free(th), free(jobs);
  munmap(buf, bytes);
  return 0;
}
