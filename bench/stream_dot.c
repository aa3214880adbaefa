/* How fast one core streams memory while doing a decode matmul's arithmetic.
 *
 * bnc bench measures tg against a bound of bytes / bandwidth, the bandwidth
 * of a loop that only reads. A ternary decode kernel also unpacks every
 * 64-byte line of 2-bit weights (3 shifts, 4 masks) and multiplies it into
 * int8 activations with 4 vpdpbusd (256 weights, 64 per instruction: no
 * fewer will do). This program streams the same 512 MiB buffer (2 MiB pages,
 * as plans' weights) with
 *   read:     loads only (bnc bench's yardstick, in AVX-512);
 *   dot:      loads + that unpacking and those vpdpbusd, 4 rows of a tile
 *             sharing the activation loads, as the generated decode kernel;
 *   dot + pf: the same with a software prefetch of each line D bytes ahead
 *             (prefetcht0, as the generated kernel, D = 12 KiB there);
 * and runs `dot` on 256 KiB that stay in L2 (its arithmetic alone). Each
 * figure is the best of 5 passes; the rows alternate, 3 rounds.
 *
 *   build/bench/stream_dot          (x86-64 with AVX-512 VNNI only) */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define VNNI __attribute__((noinline, target("avx512f,avx512bw,avx512vnni")))

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static volatile int64_t sink;
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

/* GB/s of the best of 5 passes, each `times` sweeps over n bytes; ahead < 0: read_only. */
static double rate(const uint8_t *buf, size_t n, int times, long ahead) {
  double best = 0;
  for (int r = 0; r < 5; r++) {
    double t0 = now();
    for (int k = 0; k < times; k++)
      if (ahead < 0) read_only(buf, n);
      else dot(buf, n, ahead);
    double gbs = (double)n * times / (now() - t0) / 1e9;
    if (gbs > best) best = gbs;
  }
  return best;
}

int main(void) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512bw")) {
    fprintf(stderr, "stream_dot: this CPU lacks AVX-512 VNNI\n");
    return 1;
  }
  size_t bytes = (size_t)512 << 20;
  uint8_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED) return perror("stream_dot: mmap"), 1;
  madvise(buf, bytes, MADV_HUGEPAGE);
  memset(buf, 0x5a, bytes);
  memset(act, 7, sizeof act);
  const char *names[] = {"read", "dot", "dot + pf 4 KiB", "dot + pf 8 KiB", "dot + pf 12 KiB", "dot + pf 16 KiB",
                         "dot, in L2"};
  const long ahead[] = {-1, 0, 4096, 8192, 12288, 16384, 0};
  enum { ROWS = 7, ROUNDS = 3 };
  double r[ROUNDS][ROWS];
  for (int k = 0; k < ROUNDS; k++)
    for (int i = 0; i < ROWS; i++) r[k][i] = i == ROWS - 1 ? rate(buf, 256 << 10, 2048, 0) : rate(buf, bytes, 1, ahead[i]);
  printf("| loop | GB/s, round 1 | round 2 | round 3 |\n| --- | ---: | ---: | ---: |\n");
  for (int i = 0; i < ROWS; i++) printf("| %s | %.1f | %.1f | %.1f |\n", names[i], r[0][i], r[1][i], r[2][i]);
  munmap(buf, bytes);
  return 0;
}
