/* Memory read bandwidth and int8 peak (limits.h). */
#include "limits.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../runtime/session.h"

enum { BUF_BYTES = 512 << 20, PEAK_ITERS = 20000000 };

struct bn_cli_limits {
  uint8_t *buf; /* BUF_BYTES, touched */
  bn_peak_kernel peak;
  int peak_macs; /* per iteration */
  uint8_t in[128], out[512][64];
  uint64_t sink[512];
};

typedef struct {
  bn_cli_limits *l;
  int64_t iters; /* of the peak loop */
  size_t bytes;  /* the bandwidth loop reads this much of the buffer */
} job;

__attribute__((target("avx2"))) static void bw_read(void *ctx, int i, int n) {
  const job *j = ctx;
  size_t per = j->bytes / (size_t)n / 128 * 128;
  const __m256i *p = (const __m256i *)(j->l->buf + per * (size_t)i), *e = p + per / 32;
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (; p < e; p += 4) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(p));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(p + 1));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(p + 2));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(p + 3));
  }
  __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  j->l->sink[i % 512] = (uint64_t)_mm256_extract_epi64(s, 0);
}

static void peak_run(void *ctx, int i, int n) {
  const job *j = ctx;
  (void)n;
  j->l->peak(j->l->in, j->l->out[i % 512], j->iters);
}

bn_status bn_cli_limits_open(bn_codegen *cg, bn_cli_limits **out, bn_error *err) {
  bn_cli_limits *l = calloc(1, sizeof *l);
  if (!l) return bn_fail(err, BN_E_NOMEM, "bench: out of memory");
  bn_kkey key = {.family = BN_K_PEAK};
  if (bn_codegen_supports(cg, &key)) {
    bn_status st = bn_codegen_get(cg, &key, (void **)&l->peak, err);
    if (st) return free(l), st;
    l->peak_macs = 8 * 4 * bn_codegen_get_info(cg).lanes;
  }
  l->buf = mmap(NULL, BUF_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (l->buf == MAP_FAILED) return free(l), bn_fail(err, BN_E_NOMEM, "bench: cannot map %d MiB to measure bandwidth", BUF_BYTES >> 20);
  madvise(l->buf, BUF_BYTES, MADV_HUGEPAGE); /* as plans' weights: 4 KiB pages read slower */
  memset(l->buf, 1, BUF_BYTES);
  memset(l->in, 1, sizeof l->in);
  *out = l;
  return BN_OK;
}

void bn_cli_limits_close(bn_cli_limits *l) {
  if (!l) return;
  munmap(l->buf, BUF_BYTES);
  free(l);
}

/* The best of 3: a run is either a pass over the buffer or PEAK_ITERS of the peak loop. */
static double best_of_3(bn_cli_limits *l, bn_pool *pool, int peak) {
  job j = {l, PEAK_ITERS, BUF_BYTES};
  double best = 0;
  for (int r = 0; r < 3; r++) {
    double t0 = bn_now();
    bn_pool_run(pool, peak ? peak_run : bw_read, &j);
    double s = bn_now() - t0;
    double v = peak ? (double)j.iters * l->peak_macs * bn_pool_size(pool) / s / 1e9 : BUF_BYTES / s / 1e9;
    if (v > best) best = v;
  }
  return best;
}

void bn_cli_limits_now(bn_cli_limits *l, bn_pool *pool, double *gbs, double *gmacs) {
  *gmacs = l->peak ? best_of_3(l, pool, 1) : 0;
  *gbs = best_of_3(l, pool, 0);
}

double bn_cli_limits_read(bn_cli_limits *l, bn_pool *pool, size_t bytes) {
  job j = {l, 0, bytes < BUF_BYTES ? bytes : BUF_BYTES};
  int passes = (int)((256u << 20) / (j.bytes + 1)) + 1;
  double best = 0;
  bn_pool_run(pool, bw_read, &j); /* warm: what a cache holds, it now holds */
  for (int r = 0; r < 3; r++) {
    double t0 = bn_now();
    for (int p = 0; p < passes; p++) bn_pool_run(pool, bw_read, &j);
    double v = (double)j.bytes * passes / (bn_now() - t0) / 1e9;
    if (v > best) best = v;
  }
  return best;
}

size_t bn_cli_llc_bytes(void) {
  static const char *dirs[] = {"index3", "index2"}; /* sysconf's figure can be the whole package's, or wrong in a VM */
  for (int i = 0; i < 2; i++) {
    char path[96];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/%s/size", dirs[i]);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    unsigned long v = 0;
    char unit = 0;
    int got = fscanf(f, "%lu%c", &v, &unit);
    fclose(f);
    if (got >= 1 && v) return (size_t)v << (unit == 'K' ? 10 : unit == 'M' ? 20 : 0);
  }
  long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
  return v > 0 ? (size_t)v : 0;
}
