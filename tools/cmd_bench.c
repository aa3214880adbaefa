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
#include "limits.h"

static const char HELP[] =
    "usage: bnc bench MODEL [-p 128,512] [-n 64] [-d 0] [-t 1,2] [-r 3] [-b 128] [-o md|json] [--backend NAME]\n"
    "       bnc bench --kernel K,N,T [-t 1,2] [-r 5] [-o md|json] [--backend NAME]\n"
    "  MODEL: a .bnplan or a GGUF (compiled in memory with prompt chunks of -b tokens).\n"
    "  ppP: tokens/s processing a P-token prompt; tgN: tokens/s generating N tokens one at a time.\n"
    "  -d D,...: run the tests after D tokens of context (untimed), as llama-bench's depth:\n"
    "  tgN@dD generates at positions D..D+N-1 (pp over a context likewise).\n"
    "  Each test runs -r times (after one warm-up); the table gives median +- standard deviation.\n"
    "  --kernel: the fused ternary matmul+dequant kernel alone on a [T x K] x [K -> N] product,\n"
    "  in GOPS (2 ops per multiply-add) and, for one token, GB/s of weights streamed (with T > 1\n"
    "  the weights come from cache, as a prompt chunk's do, and those cells stay empty): the packed\n"
    "  (dot-product) kernel and, when N is a multiple of 16, the lookup-table kernel on the same weights.\n"
    "  Before every repetition bench measures, on the test's threads, memory read bandwidth (the\n"
    "  best of 3 passes over 512 MiB in 2 MiB pages, as plans' weights) and the int8 multiply-add\n"
    "  peak, and takes the repetition's fraction of them: tgN's bound streams the weights and\n"
    "  the K/V cache read so far once per token, ppP's is the int8 peak over the ternary matmuls.\n"
    "  The table gives the medians of the limits and of the fractions (a shared machine's\n"
    "  bandwidth changes from one second to the next). Weights smaller than the last-level\n"
    "  cache are read from it, and bench says so: the bandwidth bound does not hold for them.\n"
    "  The peak loop is the default backend's; without one the peak and its fractions read 0.\n";

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

typedef struct {
  char test[24];
  int threads, tokens, depth;
  double median, sd;      /* tokens/s */
  double bw, peak;        /* the machine's limits on these threads (medians over the repetitions) */
  double frac;            /* of the bandwidth bound (tg) or the int8 peak (pp): the median of the repetitions' */
} row;

/* A fresh context of `depth` tokens (untimed); 0 on success. */
static int context(bn_session *s, const int32_t *tok, int depth) {
  const float *last;
  bn_error err;
  bn_session_reset(s);
  return depth && bn_session_append(s, tok, depth, &last, &err) ? -1 : 0;
}

static double run_pp(bn_session *s, const int32_t *tok, int n, int depth) {
  const float *last;
  bn_error err;
  if (context(s, tok, depth)) return -1;
  double t0 = bn_now();
  if (bn_session_append(s, tok + depth, n, &last, &err)) return -1;
  return n / (bn_now() - t0);
}

static double run_tg(bn_session *s, const int32_t *tok, int n, int depth) {
  const float *last;
  bn_error err;
  if (context(s, tok, depth)) return -1;
  double t0 = bn_now();
  for (int i = 0; i < n; i++)
    if (bn_session_append(s, &tok[depth], 1, &last, &err)) return -1;
  return n / (bn_now() - t0);
}

/* Bytes the weights of one token's forward pass read, its multiply-adds, and
 * the K/V cache bytes attention reads per position of context. */
static void model_cost(const bn_model *m, double *bytes, double *macs, double *kv_per_pos) {
  *bytes = 0, *macs = 0, *kv_per_pos = 0;
  const bn_graph *g = &m->graph;
  for (int L = 0; L < bn_ref_kv_layers(g); L++) *kv_per_pos += 2.0 * (double)bn_ref_kv_width(g, L) * sizeof(float);
  for (int i = 0; i < g->n_values; i++) {
    const bn_value *v = &g->values[i];
    if (v->kind != BN_VAL_WEIGHT) continue;
    int used_as_matrix = 0;
    for (int k = 0; k < g->n_nodes; k++)
      for (int a = 0; a < g->nodes[k].n_in; a++)
        used_as_matrix |= g->nodes[k].in[a] == i && g->nodes[k].op != BN_OP_EMBED;
    if (!used_as_matrix) continue; /* the embedding table is read one row per token */
    *bytes += (double)v->nbytes;
    if (v->shape.rank == 2) *macs += (double)v->shape.d[0] * (double)v->shape.d[1];
  }
}

static int print_rows(const row *r, int n, const char *fmt, const char *model, const char *isa, double bytes, double macs,
                      double kv) {
  size_t llc = bn_cli_llc_bytes();
  if (!strcmp(fmt, "json")) {
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "results");
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddStringToObject(root, "isa", isa);
    cJSON_AddNumberToObject(root, "weight_bytes_per_token", bytes);
    cJSON_AddNumberToObject(root, "macs_per_token", macs);
    cJSON_AddNumberToObject(root, "kv_bytes_per_position", kv);
    cJSON_AddNumberToObject(root, "last_level_cache_bytes", (double)llc);
    for (int i = 0; i < n; i++) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "test", r[i].test);
      cJSON_AddNumberToObject(o, "threads", r[i].threads);
      cJSON_AddNumberToObject(o, "depth", r[i].depth);
      cJSON_AddNumberToObject(o, "tokens_per_s", r[i].median);
      cJSON_AddNumberToObject(o, "stddev", r[i].sd);
      cJSON_AddNumberToObject(o, "bandwidth_gbs", r[i].bw);
      cJSON_AddNumberToObject(o, "int8_peak_gmacs", r[i].peak);
      cJSON_AddNumberToObject(o, "fraction_of_bound", r[i].frac);
      cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_Print(root);
    puts(text);
    free(text);
    cJSON_Delete(root);
    return 0;
  }
  printf("model: %s | kernels: %s | weights read per token: %.1f MB | K/V read per position: %.1f KB | "
         "multiply-adds per token: %.2f G\n\n", model, isa, bytes / 1e6, kv / 1e3, macs / 1e9);
  if (llc && bytes < (double)llc)
    printf("note: the weights fit in this CPU's last-level cache (%.1f MiB), so decode reads them from there and the "
           "bandwidth bound does not hold for tg\n\n", llc / 1048576.0);
  printf("| test | threads | t/s | bandwidth GB/s | int8 peak GMAC/s | of the bound |\n");
  printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
  for (int i = 0; i < n; i++)
    printf("| %s | %d | %.2f ± %.2f | %.1f | %.0f | %.0f%% %s |\n", r[i].test, r[i].threads, r[i].median, r[i].sd,
           r[i].bw, r[i].peak, 100 * r[i].frac, r[i].test[0] == 't' ? "(bandwidth)" : "(int8 peak)");
  return 0;
}

static int bench_kernel(const char *spec, const list *threads, int reps, const char *fmt, const bn_backend *backend);

int bn_cmd_bench(int argc, char **argv) {
  const char *model = NULL, *fmt = "md", *kernel = NULL;
  list pp = {{128}, 1}, threads = {{1}, 1}, depths = {{0}, 1};
  long tg = 64, reps = 3, batch = BN_CLI_BATCH;
  const bn_backend *backend = bn_backend_default();
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), bn_cli_print_backends(stdout), 0;
    if (a[0] != '-') {
      model = a;
      continue;
    }
    if (!bn_cli_has("-p -t -d -n -r -b -o --kernel --backend", a))
      return bn_cli_usage_error("bench", "unknown option '%s'", a);
    if (!v) return bn_cli_usage_error("bench", "option %s needs a value", a);
    i++;
    if (!strcmp(a, "-p")) { if (parse_list(a, v, &pp, 0, 8192)) return 2; }
    else if (!strcmp(a, "-t")) { if (parse_list(a, v, &threads, 1, 512)) return 2; }
    else if (!strcmp(a, "-d")) { if (parse_list(a, v, &depths, 0, 65536)) return 2; }
    else if (!strcmp(a, "-n")) { if (bn_cli_int("bench", a, v, 0, 8192, &tg)) return 2; }
    else if (!strcmp(a, "-r")) { if (bn_cli_int("bench", a, v, 1, 50, &reps)) return 2; }
    else if (!strcmp(a, "-b")) { if (bn_cli_int("bench", a, v, 1, 4096, &batch)) return 2; }
    else if (!strcmp(a, "-o")) {
      if (strcmp(v, "md") && strcmp(v, "json")) return bn_cli_usage_error("bench", "-o must be md or json, got '%s'", v);
      fmt = v;
    } else if (!strcmp(a, "--kernel")) kernel = v;
    else if (!strcmp(a, "--backend")) { if (bn_cli_backend("bench", v, &backend)) return 2; }
    else return bn_cli_usage_error("bench", "unknown option '%s'", a);
  }
  for (int i = 0; i < threads.n; i++) threads.vals[i] = bn_cli_threads(threads.vals[i]);
  if (kernel) return bench_kernel(kernel, &threads, (int)reps, fmt, backend);
  if (!model) return bn_cli_usage_error("bench", "missing MODEL (or --kernel K,N,T)");
  bn_error err = {0};
  bn_cli_model cm;
  if (bn_cli_open_model(model, (int)batch, &cm, &err)) return bn_cli_fail(&err);
  bn_codegen *jit = NULL; /* the limits' peak loop */
  if (bn_cli_codegen(bn_backend_default(), NULL, &jit, &err)) return bn_cli_close_model(&cm), bn_cli_fail(&err);
  double wbytes, macs, kv_per_pos;
  model_cost(cm.m, &wbytes, &macs, &kv_per_pos);
  int max_pp = 0, max_d = 0;
  for (int i = 0; i < pp.n; i++) max_pp = pp.vals[i] > max_pp ? pp.vals[i] : max_pp;
  for (int i = 0; i < depths.n; i++) max_d = depths.vals[i] > max_d ? depths.vals[i] : max_d;
  int longest = max_pp > tg ? max_pp : (int)tg, n_ctx = max_d + longest; /* the deepest, longest test's positions */
  if (n_ctx > cm.m->hp.n_ctx) {
    int have = cm.m->hp.n_ctx;
    bn_cli_close_model(&cm), bn_codegen_close(jit);
    return bn_cli_usage_error("bench", "a context of %d tokens (-d %d, then a %d-token test) exceeds %s's %d", n_ctx,
                              max_d, longest, model, have);
  }
  int32_t *tok = malloc((size_t)(max_d + max_pp + 1) * sizeof *tok);
  uint64_t rng = 7;
  for (int i = 0; i <= max_d + max_pp; i++) tok[i] = (int32_t)(bn_rng_next(&rng) % (uint64_t)cm.m->hp.n_vocab);
  bn_cli_limits *lim;
  if (bn_cli_limits_open(jit, &lim, &err)) {
    free(tok), bn_codegen_close(jit), bn_cli_close_model(&cm);
    return bn_cli_fail(&err);
  }
  row rows[64];
  int n_rows = 0, rc = 0;
  for (int ti = 0; ti < threads.n && !rc; ti++) {
    bn_pool *pool; /* the session's threads, which also measure the limits between its runs */
    if (bn_pool_create(threads.vals[ti], &pool, &err)) {
      rc = bn_cli_fail(&err);
      break;
    }
    bn_session_params sp = {.n_ctx = n_ctx, .exec = bn_cli_exec_opts(backend, threads.vals[ti], &cm),
                            .sampler = bn_sampler_defaults()};
    sp.exec.pool = pool;
    bn_session *s;
    if (bn_session_create(cm.m, cm.mem, &sp, &s, &err)) {
      rc = bn_cli_fail(&err);
      bn_pool_free(pool);
      break;
    }
    for (int di = 0; di < depths.n; di++)
      for (int k = 0; k <= pp.n && n_rows < 64; k++) {
        int is_tg = k == pp.n, n = is_tg ? (int)tg : pp.vals[k], d = depths.vals[di];
        if (n == 0) continue;
        /* tg is bounded by streaming the weights and the K/V cache so far once per token (token i
         * of n after d reads d + i + 1 positions: d + (n + 1) / 2 on average); pp by int8 multiply-adds */
        double tg_bytes = wbytes + kv_per_pos * (d + (n + 1) / 2.0), x[64], bw[64], peak[64], frac[64];
        (is_tg ? run_tg(s, tok, n < 4 ? n : 4, 0) : run_pp(s, tok, n < 8 ? n : 8, 0)); /* warm-up */
        for (int r = 0; r < reps; r++) { /* each repetition against the limits measured just before it */
          bn_cli_limits_now(lim, pool, &bw[r], &peak[r]);
          x[r] = is_tg ? run_tg(s, tok, n, d) : run_pp(s, tok, n, d);
          frac[r] = is_tg ? x[r] / (bw[r] * 1e9 / tg_bytes) : peak[r] > 0 ? x[r] / (peak[r] * 1e9 / macs) : 0;
        }
        row *o = &rows[n_rows++];
        if (d) snprintf(o->test, sizeof o->test, "%s%d@d%d", is_tg ? "tg" : "pp", n, d);
        else snprintf(o->test, sizeof o->test, "%s%d", is_tg ? "tg" : "pp", n);
        o->threads = threads.vals[ti], o->tokens = n, o->depth = d;
        stats(x, (int)reps, &o->median, &o->sd);
        o->bw = median(bw, (int)reps), o->peak = median(peak, (int)reps), o->frac = median(frac, (int)reps);
        if (!strcmp(fmt, "md")) fprintf(stderr, "  %s, %d thread(s): %.2f t/s\n", o->test, o->threads, o->median);
      }
    bn_session_free(s);
    bn_pool_free(pool);
  }
  if (!rc) print_rows(rows, n_rows, fmt, model, bn_codegen_get_info(jit).isa, wbytes, macs, kv_per_pos);
  free(tok);
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
  size_t wbytes = f.bytes;
  int paths = f.tl ? 2 : 1;
  mm_job jobs[2] = {{NULL, f.qa, f.tp, f.y, T, N, 4}, {NULL, f.qa, f.tl, f.y, T, N, 16}};
  for (int p = 0; p < paths; p++) {
    bn_kkey key = {p ? BN_K_MATMUL_LUT : BN_K_MATMUL, K, N, BN_MM_DQ, 0, 0};
    void *fn;
    if (bn_codegen_get(jit, &key, &fn, &err)) return bn_mm_fixture_free(&f), bn_codegen_close(jit), bn_cli_fail(&err);
    jobs[p].k = (bn_mm_kernel)fn;
  }
  const char *isa = bn_codegen_get_info(jit).isa, *names[2] = {"packed", "lookup table"};
  if (!strcmp(fmt, "md")) {
    printf("kernel fused:tmatmul+dequant, K=%ld N=%ld T=%ld, %s, weights %.2f MB\n\n", K, N, T, isa, wbytes / 1e6);
    printf("| threads | path | us/call | GOPS | of int8 peak | weight GB/s | of bandwidth |\n"
           "| ---: | --- | ---: | ---: | ---: | ---: | ---: |\n");
  }
  bn_cli_limits *lim;
  if (bn_cli_limits_open(jit, &lim, &err)) return bn_mm_fixture_free(&f), bn_codegen_close(jit), bn_cli_fail(&err);
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
      for (int r = 0, at = 0; r < reps; r++) { /* each repetition against the limits measured just before it */
        bn_cli_limits_now(lim, pool, &bw[r], &peak[r]);
        double t0 = bn_now();
        for (int i = 0; i < inner; i++, at = (at + 1) % f.copies) {
          jobs[p].w = w0 + f.stride * (size_t)at;
          bn_pool_run(pool, mm_run, &jobs[p]);
        }
        us[r] = (bn_now() - t0) / inner * 1e6;
        of_peak[r] = peak[r] > 0 ? macs / us[r] / 1e3 / peak[r] : 0, of_bw[r] = wbytes / us[r] / 1e3 / bw[r];
      }
      jobs[p].w = w0;
      stats(us, reps, &med, &sd);
      double gops = 2 * macs / med / 1e3, gbs = wbytes / med / 1e3;
      char bwcells[48] = " | "; /* a prompt chunk's weights come from cache: no bandwidth columns */
      if (T == 1) snprintf(bwcells, sizeof bwcells, " %.1f | %.0f%% ", gbs, 100 * median(of_bw, reps));
      if (!strcmp(fmt, "md"))
        printf("| %d | %s | %.1f ± %.1f | %.1f | %.0f%% |%s|\n", threads->vals[ti], names[p], med, sd, gops,
               100 * median(of_peak, reps), bwcells);
      else
        printf("{\"threads\": %d, \"path\": \"%s\", \"us\": %.3f, \"stddev\": %.3f, \"gops\": %.2f, "
               "\"int8_peak_gmacs\": %.1f, \"fraction_of_peak\": %.4f, \"weight_gbs\": %.2f, \"bandwidth_gbs\": %.2f, "
               "\"fraction_of_bandwidth\": %.4f}\n",
               threads->vals[ti], p ? "lut" : "packed", med, sd, gops, median(peak, reps), median(of_peak, reps), gbs,
               median(bw, reps), median(of_bw, reps));
    }
    bn_pool_free(pool);
  }
  bn_cli_limits_close(lim);
  bn_mm_fixture_free(&f);
  bn_codegen_close(jit);
  return rc;
}
