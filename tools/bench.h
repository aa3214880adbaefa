/* What bnc bench measures, kept whole: every repetition's sample, so that a run can be
 * saved as a baseline (baseline.c), compared with one, and drawn (report.c). */
#ifndef BN_CLI_BENCH_H
#define BN_CLI_BENCH_H

#include "../runtime/exec.h"

enum { BN_BENCH_REPS = 50, BN_BENCH_ROWS = 64, BN_BENCH_BINS = 40, BN_BENCH_KINDS = 64 };

typedef struct {
  char test[24]; /* "pp128", "tg64@d512" */
  int threads, tokens, depth, n; /* n: repetitions */
  double tps[BN_BENCH_REPS], frac[BN_BENCH_REPS]; /* tokens/s, and its fraction of the bound measured beside it */
  double bw[BN_BENCH_REPS], peak[BN_BENCH_REPS];  /* the limits measured just before each repetition */
  double median, sd, bw_med, peak_med, frac_med;
  /* tg: per-token latency over every repetition, ms: p50, p95, p99, the slowest; and a histogram */
  int has_lat;
  double p50, p95, p99, worst, lat_lo, lat_hi;
  int hist[BN_BENCH_BINS];
} bn_bench_row;

typedef struct {
  char model[256], isa[32], version[64], plan_id[80];
  double wbytes, macs, kv; /* per token, per token, per position */
  size_t llc;              /* sysfs's last-level cache size */
  double cache_gbs, mem_gbs; /* read bandwidth over a buffer of the weights' size, and over 512 MiB */
  int fits_cache;            /* the first is well above the second: decode reads the weights from a cache */
  bn_bench_row rows[BN_BENCH_ROWS];
  int n_rows;
  bn_exec_stat kinds[BN_BENCH_KINDS]; /* time per kernel kind of the first thread count's session */
  int n_kinds;
} bn_bench_run;

/* A row's change against the baseline: the ratio of the medians of the fractions of the bound
 * (tg: of the bandwidth bound; pp: of the int8 peak), its 95 % bootstrap interval, and the verdict:
 * 1 faster, -1 slower (the interval clear of 1 +- threshold), 0 no change shown. */
typedef struct {
  int now, base; /* row indices */
  double ratio, lo, hi;
  int verdict;
} bn_bench_cmp;

/* A JSON object with the run's identity and costs (what --save and -o json both begin with). */
typedef struct cJSON cJSON;
cJSON *bn_bench_json_head(const bn_bench_run *r);
/* A row's medians and sd from its samples. */
void bn_bench_summarize(bn_bench_row *w);
bn_status bn_bench_save(const bn_bench_run *r, const char *path, bn_error *err);
bn_status bn_bench_load(bn_bench_run *r, const char *path, bn_error *err);
/* Fills out (room for now->n_rows) for the rows both runs have; returns how many. */
int bn_bench_compare(const bn_bench_run *now, const bn_bench_run *base, double threshold, bn_bench_cmp *out);
/* One self-contained HTML file: inline SVG plots of now (and the comparison with base, if given). */
bn_status bn_bench_html(const bn_bench_run *now, const bn_bench_run *base, const bn_bench_cmp *cmp, int n_cmp,
                        double threshold, const char *path, bn_error *err);

#endif
