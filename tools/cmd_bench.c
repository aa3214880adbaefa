/* bnc bench: prompt processing (pp) and token generation (tg) speed in the
 * spirit of llama-bench, and a kernel micro-benchmark; every figure next to
 * this machine's memory bandwidth and int8 multiply-add peak, measured here. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../codegen/ref/ref.h"
#include "../codegen/tune.h"
#include "../ir/quant.h"
#include "../ir/rng.h"
#include "../runtime/pool.h"
#include "../runtime/session.h"
#include "cli.h"
#include "../include/bnc.h"
#include "bench.h"
#include "limits.h"

static const char HELP[] =
    "usage: bnc bench MODEL [-p 128,512] [-n 64] [-d 0] [-t 1,2] [-r 3] [-b 128] [-o md|json] [--backend NAME]\n"
    "                 [--kv f32|f16] [--save NAME] [--baseline NAME [--threshold PCT]] [--html FILE]\n"
    "       bnc bench --kernel K,N,T [-t 1,2] [-r 5] [-o md|json] [--backend NAME]\n"
    "  MODEL: a .bnplan or a GGUF (compiled in memory with prompt chunks of -b tokens).\n"
    "  ppP: tokens/s processing a P-token prompt; tgN: tokens/s generating N tokens one at a time.\n"
    "  -d D,...: run the tests after D tokens of context (untimed), as llama-bench's depth:\n"
    "  tgN@dD generates at positions D..D+N-1 (pp over a context likewise).\n"
    "  Each test runs -r times (after one warm-up); the table gives median +- standard deviation.\n"
    "  --kernel: the fused ternary matmul+dequant kernel alone on a [T x K] x [K -> N] product,\n"
    "  in GOPS (2 ops per multiply-add) and, for one token, GB/s of weights streamed (with T > 1\n"
    "  the weights come from cache, as a prompt chunk's do, and those cells stay empty): the packed\n"
    "  (dot-product) kernel, when N is a multiple of 16 the lookup-table kernel on the same weights,\n"
    "  the 1.6-bit one, and when N is a multiple of 4 the kernels with an f16 scale per 256 and per\n"
    "  128 weights (TQ2_0 blocks of their own scale, PQ2_0).\n"
    "  Before every repetition bench measures, on the test's threads, memory read bandwidth (the\n"
    "  best of 3 passes over 512 MiB in 2 MiB pages, as plans' weights) and the int8 multiply-add\n"
    "  peak, and takes the repetition's fraction of them: tgN's bound streams the weights and\n"
    "  the K/V cache read so far once per token, ppP's is the int8 peak over the ternary matmuls.\n"
    "  The table gives the medians of the limits and of the fractions (a shared machine's\n"
    "  bandwidth changes from one second to the next). Weights smaller than the last-level\n"
    "  cache are read from it, and bench says so: the bandwidth bound does not hold for them.\n"
    "  The peak loop is the default backend's; without one the peak and its fractions read 0.\n"
    "  Whether the weights fit in a cache is measured: a buffer of their size read again and again against\n"
    "  512 MiB (more than 1.3x as fast: they fit, and the note says what was measured).\n"
    "  tg rows give each token's latency too: p50 / p95 / p99 / the slowest, over every repetition.\n"
    "  --save NAME       keep every repetition's samples, the limits beside them and this bnc's version in\n"
    "                    NAME.json under BNC_BENCH_DIR (default $XDG_DATA_HOME/bnc/bench, ~/.local/share/bnc/bench)\n"
    "  --baseline NAME   compare each row with the same test of that baseline: new / old of the median\n"
    "                    fraction of the bound (tg: of the bandwidth bound, pp: of the int8 peak, each measured\n"
    "                    beside its repetition, since this machine's limits move from minute to minute; pp rows\n"
    "                    without a peak and tg rows whose weights fit in a cache: of tokens/s) with a 95 %\n"
    "                    bootstrap interval; the verdict is faster or slower only where the interval clears\n"
    "                    1 +- the threshold, else no change. The exit status is 3 when a row is slower.\n"
    "  --threshold PCT   the verdict's margin, in percent (default 2)\n"
    "  --html FILE       one self-contained page (inline SVG, no scripts): throughput by test and threads,\n"
    "                    the distance to the limits, per-token latency, time per kernel kind, and with\n"
    "                    --baseline every row's change and interval\n";

typedef struct {
  int vals[16], n;
} list;

static int parse_list(const char *opt, const char *s, list *l, int lo, int hi) {
  l->n = 0;
  for (const char *p = s; *p && l->n < 16;) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || v < lo || v > hi) return bn_cli_usage_error("bench", "%s: '%s' is not a list of %d..%d", opt, s, lo, hi);
    l->vals[l->n++] = (int)v;
    p = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') return bn_cli_usage_error("bench", "%s: '%s' is not a comma-separated list", opt, s);
  }
  return l->n ? 0 : bn_cli_usage_error("bench", "%s is empty", opt);
}

static void stats(const double *x, int n, double *median, double *sd) {
  double s[64], mean = 0, var = 0;
  memcpy(s, x, (size_t)n * sizeof *x);
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
      double t = s[j];
      s[j] = s[j - 1], s[j - 1] = t;
    }
  *median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  for (int i = 0; i < n; i++) mean += x[i] / n;
  for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean) / (n > 1 ? n - 1 : 1);
  *sd = sqrt(var);
}

static double median(const double *x, int n) {
  double m, sd;
  stats(x, n, &m, &sd);
  return m;
}

/* ---- model benchmarks ---- */

/* A fresh context of `depth` tokens (untimed); 0 on success. */
static int context(bn_session *s, const int32_t *tok, int depth) {
  const float *last;
  bn_error err;
  bn_session_reset(s);
  return depth && bn_session_append(s, tok, depth, &last, &err) ? -1 : 0;
}

/* BNC_BENCH_DELAY_US: a planted slowdown per token, for the tests of --baseline (bn_cli_bench_delay). */
static void delay(int tokens) {
  double us = bn_cli_bench_delay_us();
  if (us <= 0) return;
  double until = bn_now() + us * 1e-6 * tokens;
  while (bn_now() < until) {
  }
}

static double run_pp(bn_session *s, const int32_t *tok, int n, int depth) {
  const float *last;
  bn_error err;
  if (context(s, tok, depth)) return -1;
  double t0 = bn_now();
  if (bn_session_append(s, tok + depth, n, &last, &err)) return -1;
  delay(n);
  return n / (bn_now() - t0);
}

/* lat (NULL: none): each token's seconds. */
static double run_tg(bn_session *s, const int32_t *tok, int n, int depth, double *lat) {
  const float *last;
  bn_error err;
  if (context(s, tok, depth)) return -1;
  double t0 = bn_now(), t = t0;
  for (int i = 0; i < n; i++) {
    if (bn_session_append(s, &tok[depth], 1, &last, &err)) return -1;
    delay(1);
    double now = bn_now();
    if (lat) lat[i] = now - t;
    t = now;
  }
  return n / (t - t0);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* A tg row's latency percentiles and histogram (ms) from n per-token seconds (sorted here). */
static void latencies(bn_bench_row *w, double *lat, int n) {
  qsort(lat, (size_t)n, sizeof *lat, cmp_double);
  w->has_lat = 1;
  w->p50 = 1e3 * lat[(n - 1) / 2], w->p95 = 1e3 * lat[(int)(0.95 * (n - 1))], w->p99 = 1e3 * lat[(int)(0.99 * (n - 1))];
  w->worst = 1e3 * lat[n - 1];
  w->lat_lo = 1e3 * lat[0], w->lat_hi = 1e3 * lat[(int)(0.999 * (n - 1))]; /* the histogram's range: to p99.9 */
  if (w->lat_hi <= w->lat_lo) w->lat_hi = w->lat_lo + 1e-3;
  for (int i = 0; i < n; i++) {
    int k = (int)((1e3 * lat[i] - w->lat_lo) / (w->lat_hi - w->lat_lo) * BN_BENCH_BINS);
    w->hist[k < 0 ? 0 : k >= BN_BENCH_BINS ? BN_BENCH_BINS - 1 : k]++;
  }
}

/* Bytes the weights of one token's forward pass read, its ternary multiply-adds (the int8 work a prompt's
 * every token does; a float head runs for its last token only), and the K/V cache bytes attention reads
 * per position of context. */
/* 0, or -1 when out of memory. */
static int model_cost(const bn_model *m, bn_dtype kv, double *bytes, double *macs, double *kv_per_pos) {
  *bytes = 0, *macs = 0, *kv_per_pos = 0;
  const bn_graph *g = &m->graph;
  for (int L = 0; L < bn_ref_kv_layers(g); L++) *kv_per_pos += 2.0 * (double)bn_ref_kv_width(g, L) * (kv == BN_DT_F16 ? 2 : 4);
  char *matrix = calloc((size_t)g->n_values + 1, 1); /* read whole by some node other than an embedding */
  if (!matrix) return -1;
  for (int k = 0; k < g->n_nodes; k++)
    for (int a = 0; a < g->nodes[k].n_in; a++)
      if (g->nodes[k].op != BN_OP_EMBED && g->nodes[k].in[a] >= 0 && g->nodes[k].in[a] < g->n_values)
        matrix[g->nodes[k].in[a]] = 1;
  for (int i = 0; i < g->n_values; i++) {
    const bn_value *v = &g->values[i];
    if (v->kind != BN_VAL_WEIGHT || !matrix[i]) continue; /* the embedding table is read one row per token */
    *bytes += (double)v->nbytes;
    if (v->shape.rank == 2 && bn_dtype_table[v->dtype].ternary) *macs += (double)v->shape.d[0] * (double)v->shape.d[1];
  }
  free(matrix);
  return 0;
}

static void print_json(const bn_bench_run *r, const bn_bench_cmp *cmp, int n_cmp) {
  cJSON *root = bn_bench_json_head(r), *arr = cJSON_AddArrayToObject(root, "results");
  cJSON_AddNumberToObject(root, "last_level_cache_bytes", (double)r->llc);
  cJSON_AddNumberToObject(root, "weights_size_read_gbs", r->cache_gbs);
  cJSON_AddNumberToObject(root, "memory_read_gbs", r->mem_gbs);
  cJSON_AddBoolToObject(root, "weights_fit_in_cache", r->fits_cache);
  for (int i = 0; i < r->n_rows; i++) {
    const bn_bench_row *w = &r->rows[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "test", w->test);
    cJSON_AddNumberToObject(o, "threads", w->threads);
    cJSON_AddNumberToObject(o, "depth", w->depth);
    cJSON_AddNumberToObject(o, "tokens_per_s", w->median);
    cJSON_AddNumberToObject(o, "stddev", w->sd);
    cJSON_AddNumberToObject(o, "bandwidth_gbs", w->bw_med);
    cJSON_AddNumberToObject(o, "int8_peak_gmacs", w->peak_med);
    cJSON_AddNumberToObject(o, "fraction_of_bound", w->frac_med);
    if (w->has_lat) {
      cJSON_AddNumberToObject(o, "token_ms_p50", w->p50);
      cJSON_AddNumberToObject(o, "token_ms_p95", w->p95);
      cJSON_AddNumberToObject(o, "token_ms_p99", w->p99);
      cJSON_AddNumberToObject(o, "token_ms_max", w->worst);
    }
    for (int c = 0; c < n_cmp; c++)
      if (cmp[c].now == i) {
        cJSON *b = cJSON_AddObjectToObject(o, "against_baseline");
        cJSON_AddNumberToObject(b, "ratio", cmp[c].ratio);
        cJSON_AddNumberToObject(b, "low", cmp[c].lo);
        cJSON_AddNumberToObject(b, "high", cmp[c].hi);
        cJSON_AddStringToObject(b, "verdict", cmp[c].verdict > 0 ? "faster" : cmp[c].verdict < 0 ? "slower" : "no change");
      }
    cJSON_AddItemToArray(arr, o);
  }
  char *text = cJSON_Print(root);
  puts(text);
  free(text);
  cJSON_Delete(root);
}

static void print_md(const bn_bench_run *r, const bn_bench_run *base, const bn_bench_cmp *cmp, int n_cmp,
                     const char *baseline, double thr) {
  printf("model: %s | kernels: %s | weights read per token: %.1f MB | K/V read per position: %.1f KB%s | "
         "ternary multiply-adds per token: %.2f G\n\n", r->model, r->isa, r->wbytes / 1e6, r->kv / 1e3,
         strstr(r->plan_id, "f16 K/V") ? " (f16)" : "", r->macs / 1e9);
  if (r->fits_cache)
    printf("note: the weights fit in a cache these threads use: a buffer of their size, read again and again, reads at "
           "%.1f GB/s, 512 MiB at %.1f GB/s; decode reads them from there and the bandwidth bound does not hold for tg\n\n",
           r->cache_gbs, r->mem_gbs);
  printf("| test | threads | t/s | bandwidth GB/s | int8 peak GMAC/s | of the bound | token ms p50 / p95 / p99 / max |\n");
  printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (int i = 0; i < r->n_rows; i++) {
    const bn_bench_row *w = &r->rows[i];
    char lat[64] = "";
    if (w->has_lat) snprintf(lat, sizeof lat, "%.3f / %.3f / %.3f / %.3f", w->p50, w->p95, w->p99, w->worst);
    printf("| %s | %d | %.2f ± %.2f | %.1f | %.0f | %.0f%% %s | %s |\n", w->test, w->threads, w->median, w->sd, w->bw_med,
           w->peak_med, 100 * w->frac_med, w->test[0] == 't' ? "(bandwidth)" : "(int8 peak)", lat);
  }
  if (!baseline) return;
  printf("\nagainst baseline %s (threshold ±%.1f%%; new / old of the fraction of the bound%s, 95%% bootstrap interval):\n\n"
         "| test | threads | old t/s | new t/s | new / old | interval | verdict |\n| --- | ---: | ---: | ---: | ---: | --- | --- |\n",
         baseline, 100 * thr, r->fits_cache || base->fits_cache ? " (tg: of tokens/s, the weights in a cache)" : "");
  for (int c = 0; c < n_cmp; c++) {
    const bn_bench_row *w = &r->rows[cmp[c].now];
    printf("| %s | %d | %.2f | %.2f | %.3f | %.3f – %.3f | %s |\n", w->test, w->threads, base->rows[cmp[c].base].median,
           w->median, cmp[c].ratio, cmp[c].lo, cmp[c].hi, cmp[c].verdict > 0 ? "faster" : cmp[c].verdict < 0 ? "**slower**" : "no change");
  }
}

static int bench_kernel(const char *spec, const list *threads, int reps, const char *fmt, const bn_backend *backend);

/* Whether the weights fit in a cache the threads use: a buffer of their size read again and
 * again against 512 MiB (sysfs's cache size can be one the cores cannot use: a VM's). */
static void cache_check(bn_bench_run *r, bn_cli_limits *lim, bn_pool *pool) {
  r->llc = bn_cli_llc_bytes();
  r->mem_gbs = bn_cli_limits_read(lim, pool, (size_t)512 << 20);
  r->cache_gbs = r->wbytes < (double)(512 << 20) ? bn_cli_limits_read(lim, pool, (size_t)r->wbytes) : r->mem_gbs;
  r->fits_cache = r->cache_gbs > 1.3 * r->mem_gbs;
}

/* The tests of one thread count on session s; 0, or -1 when a step failed. */
static int run_tests(bn_bench_run *r, bn_session *s, bn_pool *pool, bn_cli_limits *lim, const int32_t *tok,
                     const list *pp, const list *depths, int tg, int reps, int threads, int progress) {
  double *lat = malloc((size_t)(tg > 0 ? tg : 1) * (size_t)reps * sizeof *lat);
  int total = depths->n * (pp->n + 1), done = 0;
  for (int di = 0; di < depths->n; di++)
    for (int k = 0; k <= pp->n && r->n_rows < BN_BENCH_ROWS; k++, done++) {
      int is_tg = k == pp->n, n = is_tg ? tg : pp->vals[k], d = depths->vals[di];
      if (n == 0) continue;
      bn_bench_row *w = &r->rows[r->n_rows++];
      if (d) snprintf(w->test, sizeof w->test, "%s%d@d%d", is_tg ? "tg" : "pp", n, d);
      else snprintf(w->test, sizeof w->test, "%s%d", is_tg ? "tg" : "pp", n);
      if (progress) fprintf(stderr, "\r\033[K  bench: %s, %d thread(s) (%d of %d)", w->test, threads, done + 1, total);
      w->threads = threads, w->tokens = n, w->depth = d, w->n = reps;
      /* tg is bounded by streaming the weights and the K/V cache so far once per token (token i
       * of n after d reads d + i + 1 positions: d + (n + 1) / 2 on average); pp by int8 multiply-adds */
      double tg_bytes = r->wbytes + r->kv * (d + (n + 1) / 2.0);
      if ((is_tg ? run_tg(s, tok, n < 4 ? n : 4, 0, NULL) : run_pp(s, tok, n < 8 ? n : 8, 0)) < 0) break; /* warm-up */
      for (int i = 0; i < reps; i++) { /* each repetition against the limits measured just before it */
        bn_cli_limits_now(lim, pool, &w->bw[i], &w->peak[i]);
        w->tps[i] = is_tg ? run_tg(s, tok, n, d, lat ? lat + (size_t)i * n : NULL) : run_pp(s, tok, n, d);
        if (w->tps[i] < 0) return free(lat), -1;
        w->frac[i] = is_tg ? w->tps[i] / (w->bw[i] * 1e9 / tg_bytes)
                           : w->peak[i] > 0 ? w->tps[i] / (w->peak[i] * 1e9 / r->macs) : 0;
      }
      bn_bench_summarize(w);
      if (is_tg && lat) latencies(w, lat, n * reps);
      if (!progress) fprintf(stderr, "  %s, %d thread(s): %.2f t/s\n", w->test, threads, w->median);
    }
  if (progress) fprintf(stderr, "\r\033[K");
  free(lat);
  return 0;
}

int bn_cmd_bench(int argc, char **argv) {
  const char *model = NULL, *fmt = "md", *kernel = NULL, *save = NULL, *baseline = NULL, *html = NULL;
  list pp = {{128}, 1}, threads = {{1}, 1}, depths = {{0}, 1};
  long tg = 64, reps = 3, batch = BN_CLI_BATCH;
  double threshold = 0.02;
  const bn_backend *backend = bn_backend_default();
  bn_dtype kv = BN_DT_F32;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), bn_cli_print_backends(stdout), 0;
    if (a[0] != '-') {
      model = a;
      continue;
    }
    if (!bn_cli_has("-p -t -d -n -r -b -o --kernel --backend --kv --save --baseline --threshold --html", a))
      return bn_cli_usage_error("bench", "unknown option '%s'", a);
    if (!v) return bn_cli_usage_error("bench", "option %s needs a value", a);
    i++;
    if (!strcmp(a, "-p")) { if (parse_list(a, v, &pp, 0, 8192)) return 2; }
    else if (!strcmp(a, "-t")) { if (parse_list(a, v, &threads, 1, 512)) return 2; }
    else if (!strcmp(a, "-d")) { if (parse_list(a, v, &depths, 0, 65536)) return 2; }
    else if (!strcmp(a, "-n")) { if (bn_cli_int("bench", a, v, 0, 8192, &tg)) return 2; }
    else if (!strcmp(a, "-r")) { if (bn_cli_int("bench", a, v, 1, BN_BENCH_REPS, &reps)) return 2; }
    else if (!strcmp(a, "-b")) { if (bn_cli_int("bench", a, v, 1, 4096, &batch)) return 2; }
    else if (!strcmp(a, "-o")) {
      if (strcmp(v, "md") && strcmp(v, "json")) return bn_cli_usage_error("bench", "-o must be md or json, got '%s'", v);
      fmt = v;
    } else if (!strcmp(a, "--kernel")) kernel = v;
    else if (!strcmp(a, "--backend")) { if (bn_cli_backend("bench", v, &backend)) return 2; }
    else if (!strcmp(a, "--kv")) { if (bn_cli_kv("bench", v, &kv)) return 2; }
    else if (!strcmp(a, "--save")) save = v;
    else if (!strcmp(a, "--baseline")) baseline = v;
    else if (!strcmp(a, "--html")) html = v;
    else if (!strcmp(a, "--threshold")) {
      if (bn_cli_float("bench", a, v, &threshold) || threshold < 0 || threshold >= 50)
        return bn_cli_usage_error("bench", "--threshold needs a percentage in 0..50, got '%s'", v);
      threshold /= 100;
    } else return bn_cli_usage_error("bench", "unknown option '%s'", a);
  }
  for (int i = 0; i < threads.n; i++) threads.vals[i] = bn_cli_threads(threads.vals[i]);
  if (kernel) return bench_kernel(kernel, &threads, (int)reps, fmt, backend);
  if (!model) return bn_cli_usage_error("bench", "missing MODEL (or --kernel K,N,T)");
  char save_path[4352], base_path[4352];
  if ((save && bn_cli_bench_path(save, save_path, sizeof save_path)) ||
      (baseline && bn_cli_bench_path(baseline, base_path, sizeof base_path)))
    return bn_cli_usage_error("bench", "a baseline name is 1..64 letters, digits, '.', '_' or '-' (not first '.'), got '%s'",
                              save && bn_cli_bench_path(save, save_path, sizeof save_path) ? save : baseline);
  bn_error err = {0};
  bn_bench_run *run = calloc(1, sizeof *run), *base = baseline ? calloc(1, sizeof *base) : NULL;
  bn_bench_cmp *cmp = calloc(BN_BENCH_ROWS, sizeof *cmp);
  if (!run || (baseline && !base) || !cmp) return free(run), free(base), free(cmp), fputs("bnc: out of memory\n", stderr), 1;
  if (baseline && bn_bench_load(base, base_path, &err)) return free(run), free(base), free(cmp), bn_cli_fail(&err);
  bn_cli_model cm;
  if (bn_cli_open_model(model, (int)batch, &cm, &err)) return free(run), free(base), free(cmp), bn_cli_fail(&err);
  bn_codegen *jit = NULL; /* the limits' peak loop */
  if (bn_cli_codegen(bn_backend_default(), NULL, &jit, &err))
    return bn_cli_close_model(&cm), free(run), free(base), free(cmp), bn_cli_fail(&err);
  snprintf(run->model, sizeof run->model, "%s", model);
  snprintf(run->isa, sizeof run->isa, "%s", bn_codegen_get_info(jit).isa);
  snprintf(run->version, sizeof run->version, "bnc %s", bnc_version());
  if (cm.is_plan) /* the plan's content hash; a GGUF compiled here: its size (a directory: its name) */
    snprintf(run->plan_id, sizeof run->plan_id, "plan %016llx, %d nodes", (unsigned long long)cm.plan.hash,
             cm.m->graph.n_nodes);
  else if (cm.f.gguf.base) snprintf(run->plan_id, sizeof run->plan_id, "gguf %zu bytes, %d nodes", cm.f.gguf.size, cm.m->graph.n_nodes);
  else snprintf(run->plan_id, sizeof run->plan_id, "hf %.60s, %d nodes", model, cm.m->graph.n_nodes);
  if (kv == BN_DT_F16) /* a baseline over the other cache type is another configuration (a note says so) */
    snprintf(run->plan_id + strlen(run->plan_id), sizeof run->plan_id - strlen(run->plan_id), ", f16 K/V cache");
  int max_pp = 0, max_d = 0;
  for (int i = 0; i < pp.n; i++) max_pp = pp.vals[i] > max_pp ? pp.vals[i] : max_pp;
  for (int i = 0; i < depths.n; i++) max_d = depths.vals[i] > max_d ? depths.vals[i] : max_d;
  int longest = max_pp > tg ? max_pp : (int)tg, n_ctx = max_d + longest; /* the deepest, longest test's positions */
  if (n_ctx > cm.m->hp.n_ctx) {
    int have = cm.m->hp.n_ctx;
    bn_cli_close_model(&cm), bn_codegen_close(jit), free(run), free(base), free(cmp);
    return bn_cli_usage_error("bench", "a context of %d tokens (-d %d, then a %d-token test) exceeds %s's %d", n_ctx,
                              max_d, longest, model, have);
  }
  int32_t *tok = malloc((size_t)(max_d + max_pp + 1) * sizeof *tok);
  if (!tok || model_cost(cm.m, kv, &run->wbytes, &run->macs, &run->kv)) {
    free(tok), bn_codegen_close(jit), bn_cli_close_model(&cm), free(run), free(base), free(cmp);
    return fputs("bnc: out of memory\n", stderr), 1;
  }
  uint64_t rng = 7;
  for (int i = 0; i <= max_d + max_pp; i++) tok[i] = (int32_t)(bn_rng_next(&rng) % (uint64_t)cm.m->hp.n_vocab);
  bn_cli_limits *lim;
  if (bn_cli_limits_open(jit, &lim, &err)) {
    free(tok), bn_codegen_close(jit), bn_cli_close_model(&cm), free(run), free(base), free(cmp);
    return bn_cli_fail(&err);
  }
  int rc = 0, progress = bn_cli_progress();
  for (int ti = 0; ti < threads.n && !rc; ti++) {
    bn_pool *pool; /* the session's threads, which also measure the limits between its runs */
    if (bn_pool_create(threads.vals[ti], &pool, &err)) {
      rc = bn_cli_fail(&err);
      break;
    }
    if (ti == 0) cache_check(run, lim, pool);
    bn_session_params sp = {.n_ctx = n_ctx, .exec = bn_cli_exec_opts(backend, threads.vals[ti], kv, &cm),
                            .sampler = bn_sampler_defaults()};
    sp.exec.pool = pool;
    bn_session *s;
    if (bn_session_create(cm.m, cm.mem, &sp, &s, &err)) {
      rc = bn_cli_fail(&err);
      bn_pool_free(pool);
      break;
    }
    if (run_tests(run, s, pool, lim, tok, &pp, &depths, (int)tg, (int)reps, threads.vals[ti], progress))
      rc = 1, fprintf(stderr, "bnc: bench: a step failed\n");
    if (ti == 0) { /* the time per kernel kind, for the report */
      const bn_exec_stat *st;
      int n = bn_exec_stats(bn_session_exec(s), &st);
      run->n_kinds = n < BN_BENCH_KINDS ? n : BN_BENCH_KINDS;
      memcpy(run->kinds, st, (size_t)run->n_kinds * sizeof *st);
    }
    bn_session_free(s);
    bn_pool_free(pool);
  }
  if (base && strcmp(base->plan_id, run->plan_id))
    fprintf(stderr, "bnc: bench: note: baseline %s was measured on %s, this run on %s\n", baseline, base->plan_id,
            run->plan_id);
  int n_cmp = base ? bn_bench_compare(run, base, threshold, cmp) : 0, slower = 0;
  for (int c = 0; c < n_cmp; c++) slower |= cmp[c].verdict < 0;
  if (!rc) {
    if (!strcmp(fmt, "json")) print_json(run, cmp, n_cmp);
    else print_md(run, base, cmp, n_cmp, baseline, threshold);
    if (baseline && !n_cmp) fprintf(stderr, "bnc: bench: no test of this run is in baseline %s\n", baseline), rc = 1;
  }
  if (!rc && save && bn_bench_save(run, save_path, &err)) rc = bn_cli_fail(&err);
  else if (!rc && save) fprintf(stderr, "bench: saved %s\n", save_path);
  if (!rc && html && bn_bench_html(run, base, cmp, n_cmp, threshold, html, &err)) rc = bn_cli_fail(&err);
  if (!rc && slower) rc = 3;
  free(tok), free(run), free(base), free(cmp);
  bn_cli_limits_close(lim);
  bn_codegen_close(jit);
  bn_cli_close_model(&cm);
  return rc;
}

/* ---- the kernel micro-benchmark ---- */

typedef struct {
  bn_mm_kernel k;
  const uint8_t *qa, *w;
  float *y;
  int64_t T, N, G; /* G: rows split in multiples of G */
} mm_job;

static void mm_run(void *ctx, int i, int n) {
  const mm_job *j = ctx;
  int64_t n0, n1;
  bn_pool_share(j->N, j->G, i, n, &n0, &n1);
  if (n1 > n0) j->k(j->qa, j->w, j->y, NULL, j->T, n0, n1);
}

static int bench_kernel(const char *spec, const list *threads, int reps, const char *fmt, const bn_backend *backend) {
  long v[3];
  const char *p = spec;
  for (int i = 0; i < 3; i++) { /* three whole numbers, nothing else */
    char *end;
    v[i] = p[0] >= '0' && p[0] <= '9' ? strtol(p, &end, 10) : -1;
    if (v[i] < 0 || end == p || *end != (i < 2 ? ',' : 0)) v[i] = -1;
    else p = end + 1;
    if (v[i] < 0) break;
  }
  long K = v[0], N = v[1], T = v[2];
  /* bounded so that every size below fits easily: weights of at most 1 GiB */
  if (K <= 0 || K % 256 || K > 65536 || N <= 0 || N > 262144 || T <= 0 || T > 4096 || (double)K * N / 4 > 1 << 30)
    return bn_cli_usage_error("bench", "--kernel K,N,T needs K a multiple of 256 up to 65536, 0 < N <= 262144, "
                              "0 < T <= 4096 and K x N / 4 at most 1 GiB of weights, got '%s'", spec);
  bn_error err = {0};
  bn_codegen *jit;
  if (bn_cli_codegen(backend, NULL, &jit, &err)) return bn_cli_fail(&err);
  /* one token: copies of the weights beyond the last-level cache, read in turn as decode reads
   * every layer from memory; a prompt chunk reuses its weights from cache, as prefill does */
  bn_mm_fixture f;
  if (bn_mm_fixture_make(K, N, T, T == 1, &f, &err)) return bn_codegen_close(jit), bn_cli_fail(&err);
  mm_job jobs[BN_FIXTURES];
  int paths = 0, layout[BN_FIXTURES];
  for (int l = 0; l < BN_FIXTURES; l++) { /* every layout the backend has a kernel for */
    bn_kkey key = bn_layout_key(l, K, N);
    void *fn;
    if (!f.w[l] || !bn_codegen_supports(jit, &key)) continue;
    if (bn_codegen_get(jit, &key, &fn, &err)) return bn_mm_fixture_free(&f), bn_codegen_close(jit), bn_cli_fail(&err);
    jobs[paths] = (mm_job){(bn_mm_kernel)fn, f.qa, f.w[l], f.y, T, N, bn_kfamily_granule(key.family)};
    layout[paths++] = l;
  }
  const char *isa = bn_codegen_get_info(jit).isa;
  if (!strcmp(fmt, "md")) {
    printf("kernel fused:tmatmul+dequant, K=%ld N=%ld T=%ld, %s, weights %.2f MB (1.6-bit: %.2f MB)\n\n", K, N, T, isa,
           f.bytes[BN_LAYOUT_TP2] / 1e6, f.bytes[BN_LAYOUT_TP1] / 1e6);
    printf("| threads | path | us/call | GOPS | of int8 peak | weight GB/s | of bandwidth |\n"
           "| ---: | --- | ---: | ---: | ---: | ---: | ---: |\n");
  }
  bn_cli_limits *lim;
  bn_codegen *peak = NULL; /* the limits' peak loop: the default backend's */
  if (bn_cli_codegen(bn_backend_default(), NULL, &peak, &err) || bn_cli_limits_open(peak, &lim, &err))
    return bn_mm_fixture_free(&f), bn_codegen_close(jit), bn_codegen_close(peak), bn_cli_fail(&err);
  double macs = (double)K * N * T;
  int rc = 0;
  for (int ti = 0; ti < threads->n && !rc; ti++) {
    bn_pool *pool;
    if (bn_pool_create(threads->vals[ti], &pool, &err)) {
      rc = bn_cli_fail(&err);
      break;
    }
    int inner = (int)(2e8 / macs + 1);
    for (int p = 0; p < paths; p++) {
      double us[64], bw[64], peak[64], of_peak[64], of_bw[64], med, sd;
      const uint8_t *w0 = jobs[p].w;
      /* r = -1: the warm-up (pages touched, caches filled); then each repetition against the limits measured just
       * before it */
      for (int r = -1, at = 0; r < reps; r++) {
        if (r >= 0) bn_cli_limits_now(lim, pool, &bw[r], &peak[r]);
        double t0 = bn_now();
        for (int i = 0; i < inner; i++, at = (at + 1) % f.copies) {
          jobs[p].w = w0 + f.stride * (size_t)at;
          bn_pool_run(pool, mm_run, &jobs[p]);
        }
        if (r < 0) continue;
        us[r] = (bn_now() - t0) / inner * 1e6;
        of_peak[r] = peak[r] > 0 ? macs / us[r] / 1e3 / peak[r] : 0, of_bw[r] = f.bytes[layout[p]] / us[r] / 1e3 / bw[r];
      }
      jobs[p].w = w0;
      stats(us, reps, &med, &sd);
      double gops = 2 * macs / med / 1e3, gbs = f.bytes[layout[p]] / med / 1e3;
      char bwcells[48] = " | "; /* a prompt chunk's weights come from cache: no bandwidth columns */
      if (T == 1) snprintf(bwcells, sizeof bwcells, " %.1f | %.0f%% ", gbs, 100 * median(of_bw, reps));
      if (!strcmp(fmt, "md"))
        printf("| %d | %s | %.1f ± %.1f | %.1f | %.0f%% |%s|\n", threads->vals[ti], bn_layout_name[layout[p]], med, sd, gops,
               100 * median(of_peak, reps), bwcells);
      else
        printf("{\"threads\": %d, \"path\": \"%s\", \"us\": %.3f, \"stddev\": %.3f, \"gops\": %.2f, "
               "\"int8_peak_gmacs\": %.1f, \"fraction_of_peak\": %.4f, \"weight_gbs\": %.2f, \"bandwidth_gbs\": %.2f, "
               "\"fraction_of_bandwidth\": %.4f}\n",
               threads->vals[ti], (const char *[]){"packed", "lut", "t1", "g256", "g128"}[layout[p]], med, sd, gops, median(peak, reps), median(of_peak, reps), gbs,
               median(bw, reps), median(of_bw, reps));
    }
    bn_pool_free(pool);
  }
  bn_cli_limits_close(lim);
  bn_mm_fixture_free(&f);
  bn_codegen_close(jit), bn_codegen_close(peak);
  return rc;
}
