/* Bench baselines: a run's raw samples in JSON, and the comparison of a run with one
 * (the ratio of medians with a bootstrap interval, and a verdict). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/files.h"
#include "../ir/rng.h"
#include "bench.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median_of(double *x, int n) {
  qsort(x, (size_t)n, sizeof *x, cmp_double);
  return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}

static double median_copy(const double *x, int n) {
  double s[BN_BENCH_REPS];
  memcpy(s, x, (size_t)n * sizeof *x);
  return median_of(s, n);
}

void bn_bench_summarize(bn_bench_row *w) {
  double mean = 0, var = 0;
  for (int i = 0; i < w->n; i++) mean += w->tps[i] / w->n;
  for (int i = 0; i < w->n; i++) var += (w->tps[i] - mean) * (w->tps[i] - mean) / (w->n > 1 ? w->n - 1 : 1);
  w->sd = sqrt(var);
  w->median = median_copy(w->tps, w->n), w->frac_med = median_copy(w->frac, w->n);
  w->bw_med = median_copy(w->bw, w->n), w->peak_med = median_copy(w->peak, w->n);
}

static cJSON *samples(const double *x, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(x[i]));
  return a;
}

cJSON *bn_bench_json_head(const bn_bench_run *r) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "bnc", r->version);
  cJSON_AddStringToObject(root, "model", r->model);
  cJSON_AddStringToObject(root, "plan", r->plan_id);
  cJSON_AddStringToObject(root, "isa", r->isa);
  cJSON_AddNumberToObject(root, "weight_bytes_per_token", r->wbytes);
  cJSON_AddNumberToObject(root, "macs_per_token", r->macs);
  cJSON_AddNumberToObject(root, "kv_bytes_per_position", r->kv);
  return root;
}

bn_status bn_bench_save(const bn_bench_run *r, const char *path, bn_error *err) {
  cJSON *root = bn_bench_json_head(r), *rows = cJSON_AddArrayToObject(root, "rows");
  cJSON_AddStringToObject(root, "format", "bnc-bench-1");
  cJSON_AddBoolToObject(root, "weights_fit_in_cache", r->fits_cache);
  for (int i = 0; i < r->n_rows; i++) {
    const bn_bench_row *w = &r->rows[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "test", w->test);
    cJSON_AddNumberToObject(o, "threads", w->threads);
    cJSON_AddNumberToObject(o, "tokens", w->tokens);
    cJSON_AddNumberToObject(o, "depth", w->depth);
    cJSON_AddItemToObject(o, "tokens_per_s", samples(w->tps, w->n));
    cJSON_AddItemToObject(o, "fraction_of_bound", samples(w->frac, w->n));
    cJSON_AddItemToObject(o, "bandwidth_gbs", samples(w->bw, w->n));
    cJSON_AddItemToObject(o, "int8_peak_gmacs", samples(w->peak, w->n));
    cJSON_AddItemToArray(rows, o);
  }
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  if (!text) return bn_fail(err, BN_E_NOMEM, "out of memory");
  bn_outfile of;
  bn_status st = bn_outfile_open(&of, path, NULL, err);
  if (!st) {
    fputs(text, of.fp);
    st = bn_outfile_commit(&of, err);
  }
  free(text);
  return st;
}

static int get_samples(const cJSON *o, const char *key, double *x, int *n) {
  const cJSON *a = cJSON_GetObjectItem(o, key), *e;
  int k = 0;
  if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) < 1 || cJSON_GetArraySize(a) > BN_BENCH_REPS) return -1;
  cJSON_ArrayForEach(e, a) {
    if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0)) return -1;
    x[k++] = e->valuedouble;
  }
  if (*n && *n != k) return -1;
  *n = k;
  return 0;
}

bn_status bn_bench_load(bn_bench_run *r, const char *path, bn_error *err) {
  memset(r, 0, sizeof *r);
  bn_file_view v;
  bn_status st = bn_file_load(path, 2, 0, "a bench baseline", &v, err);
  if (st) return st;
  cJSON *root = v.size < (16u << 20) ? cJSON_ParseWithLength((const char *)v.base, v.size) : NULL;
  bn_file_release(&v);
  const cJSON *fmt = cJSON_GetObjectItem(root, "format"), *rows = cJSON_GetObjectItem(root, "rows"), *o;
  if (!root || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, "bnc-bench-1") || !cJSON_IsArray(rows)) {
    cJSON_Delete(root);
    return bn_fail(err, BN_E_FORMAT, "%s: not a bnc bench baseline (format bnc-bench-1)", path);
  }
  const cJSON *s = cJSON_GetObjectItem(root, "model");
  snprintf(r->model, sizeof r->model, "%s", cJSON_IsString(s) ? s->valuestring : "?");
  s = cJSON_GetObjectItem(root, "bnc");
  snprintf(r->version, sizeof r->version, "%s", cJSON_IsString(s) ? s->valuestring : "?");
  s = cJSON_GetObjectItem(root, "plan");
  snprintf(r->plan_id, sizeof r->plan_id, "%s", cJSON_IsString(s) ? s->valuestring : "?");
  r->fits_cache = cJSON_IsTrue(cJSON_GetObjectItem(root, "weights_fit_in_cache"));
  s = cJSON_GetObjectItem(root, "macs_per_token");
  r->macs = cJSON_IsNumber(s) && s->valuedouble > 0 && s->valuedouble < 1e15 ? s->valuedouble : 0;
  cJSON_ArrayForEach(o, rows) {
    bn_bench_row *w = &r->rows[r->n_rows];
    const cJSON *t = cJSON_GetObjectItem(o, "test"), *th = cJSON_GetObjectItem(o, "threads");
    if (r->n_rows == BN_BENCH_ROWS || !cJSON_IsString(t) || !cJSON_IsNumber(th) ||
        get_samples(o, "tokens_per_s", w->tps, &w->n) || get_samples(o, "fraction_of_bound", w->frac, &w->n) ||
        get_samples(o, "bandwidth_gbs", w->bw, &w->n) || get_samples(o, "int8_peak_gmacs", w->peak, &w->n)) {
      cJSON_Delete(root);
      return bn_fail(err, BN_E_FORMAT, "%s: row %d is damaged (test, threads and 1..%d samples of each figure)", path,
                     r->n_rows, BN_BENCH_REPS);
    }
    snprintf(w->test, sizeof w->test, "%s", t->valuestring);
    w->threads = th->valueint;
    bn_bench_summarize(w);
    r->n_rows++;
  }
  cJSON_Delete(root);
  return BN_OK;
}

/* The ratio of medians b / a, and its 95 % percentile bootstrap interval (2000 resamplings of each side). */
static void bootstrap(const double *a, int na, const double *b, int nb, double *ratio, double *lo, double *hi) {
  enum { B = 2000 };
  double ra[BN_BENCH_REPS], rb[BN_BENCH_REPS], *ratios = malloc(B * sizeof *ratios);
  memcpy(ra, a, (size_t)na * sizeof *a), memcpy(rb, b, (size_t)nb * sizeof *b);
  *ratio = median_of(rb, nb) / median_of(ra, na);
  if (!ratios) {
    *lo = *hi = *ratio;
    return;
  }
  uint64_t rng = 0x6e6263; /* fixed: the same samples give the same interval */
  for (int k = 0; k < B; k++) {
    for (int i = 0; i < na; i++) ra[i] = a[bn_rng_next(&rng) % (uint64_t)na];
    for (int i = 0; i < nb; i++) rb[i] = b[bn_rng_next(&rng) % (uint64_t)nb];
    ratios[k] = median_of(rb, nb) / median_of(ra, na);
  }
  qsort(ratios, B, sizeof *ratios, cmp_double);
  *lo = ratios[B * 25 / 1000], *hi = ratios[B * 975 / 1000 - 1];
  free(ratios);
}

int bn_bench_compare(const bn_bench_run *now, const bn_bench_run *base, double threshold, bn_bench_cmp *out) {
  int n = 0;
  for (int i = 0; i < now->n_rows; i++)
    for (int j = 0; j < base->n_rows; j++) {
      const bn_bench_row *a = &base->rows[j], *b = &now->rows[i];
      if (strcmp(a->test, b->test) || a->threads != b->threads) continue;
      bn_bench_cmp *c = &out[n++];
      /* by tokens/s where no bound holds: pp without a peak loop, tg with the weights in a cache (the
       * memory's bandwidth, measured beside it, moves with other tenants while the tokens/s do not) */
      int by_bound = a->frac[0] > 0 && b->frac[0] > 0 && !(a->test[0] == 't' && (base->fits_cache || now->fits_cache));
      c->now = i, c->base = j;
      bootstrap(by_bound ? a->frac : a->tps, a->n, by_bound ? b->frac : b->tps, b->n, &c->ratio, &c->lo, &c->hi);
      if (by_bound && a->test[0] == 'p' && base->macs > 0 && now->macs > 0) { /* bounds that count other work */
        double k = base->macs / now->macs;
        c->ratio *= k, c->lo *= k, c->hi *= k;
      }
      c->verdict = c->lo > 1 + threshold ? 1 : c->hi < 1 - threshold ? -1 : 0;
      break;
    }
  return n;
}
