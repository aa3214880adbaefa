/* bnc bench --html: one self-contained page (inline SVG, no scripts, nothing fetched) with the
 * run's throughput, distance to the limits, per-token latency, time per kernel kind and, with a
 * baseline, the change of every row with its interval. Well-formed XML, so a parser can check it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/files.h"
#include "bench.h"

enum { W = 820, LABEL = 190, BAR = 18, GAP = 6 };

static void esc(FILE *f, const char *s) {
  for (; *s; s++)
    if (*s == '&') fputs("&amp;", f);
    else if (*s == '<') fputs("&lt;", f);
    else if (*s == '>') fputs("&gt;", f);
    else if (*s == '"') fputs("&quot;", f);
    else fputc(*s, f);
}

/* Horizontal bars after labels `lw` pixels wide: label i, value v[i] (and whisker +- e[i], a thin second
 * bar b[i] when given) on a scale to max; text[i] printed after the bar. */
static void hbars(FILE *f, const char *title, int lw, int n, char (*label)[64], const double *v, const double *e,
                  const double *b, double max, char (*text)[48], const char *color) {
  int h = 30 + n * (BAR + GAP) + 10, plot = W - lw - 190;
  fprintf(f, "<h2>");
  esc(f, title);
  fprintf(f, "</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" height=\"%d\">\n", W, h);
  if (max <= 0) max = 1;
  for (int i = 0; i < n; i++) {
    int y = 20 + i * (BAR + GAP);
    double len = plot * (v[i] > 0 ? v[i] : 0) / max;
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", lw - 8, y + BAR - 5);
    esc(f, label[i]);
    fprintf(f, "</text>\n<rect class=\"bar\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", lw, y,
            len, b ? BAR / 2 + 2 : BAR, color);
    if (b) fprintf(f, "<rect class=\"base\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"#9aa5b1\"/>\n", lw,
                   y + BAR / 2 + 2, plot * (b[i] > 0 ? b[i] : 0) / max, BAR / 2 - 2);
    if (e && e[i] > 0)
      fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#222\"/>\n", lw + plot * (v[i] - e[i]) / max,
              lw + plot * (v[i] + e[i]) / max, y + BAR / 4, y + BAR / 4);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\">", lw + len + 6, y + BAR - 5);
    esc(f, text[i]);
    fprintf(f, "</text>\n");
  }
  fprintf(f, "</svg>\n");
}

static void throughput(FILE *f, const bn_bench_run *r, const bn_bench_run *base, const bn_bench_cmp *cmp, int n_cmp) {
  char label[BN_BENCH_ROWS][64], text[BN_BENCH_ROWS][48];
  double v[BN_BENCH_ROWS], e[BN_BENCH_ROWS], b[BN_BENCH_ROWS];
  for (int first = 0; first < r->n_rows; first++) { /* one chart per test, its thread counts as bars */
    int seen = 0, n = 0;
    for (int k = 0; k < first; k++) seen |= !strcmp(r->rows[k].test, r->rows[first].test);
    if (seen) continue;
    double max = 0;
    for (int i = first; i < r->n_rows; i++) {
      const bn_bench_row *w = &r->rows[i];
      if (strcmp(w->test, r->rows[first].test)) continue;
      snprintf(label[n], sizeof label[n], "%d thread%s", w->threads, w->threads > 1 ? "s" : "");
      snprintf(text[n], sizeof text[n], "%.1f t/s", w->median);
      v[n] = w->median, e[n] = w->sd, b[n] = 0;
      for (int c = 0; c < n_cmp; c++)
        if (cmp[c].now == i) b[n] = base->rows[cmp[c].base].tps[0] > 0 ? base->rows[cmp[c].base].median : 0;
      if (v[n] + e[n] > max) max = v[n] + e[n];
      if (b[n] > max) max = b[n];
      n++;
    }
    char title[96];
    snprintf(title, sizeof title, "Throughput, %s (tokens/s, median and sd%s)", r->rows[first].test,
             base ? "; grey: the baseline" : "");
    hbars(f, title, LABEL, n, label, v, e, base ? b : NULL, max * 1.05, text, "#2f6fb0");
  }
}

static void limits(FILE *f, const bn_bench_run *r) {
  char label[BN_BENCH_ROWS][64], text[BN_BENCH_ROWS][48];
  double v[BN_BENCH_ROWS];
  for (int i = 0; i < r->n_rows; i++) {
    const bn_bench_row *w = &r->rows[i];
    snprintf(label[i], sizeof label[i], "%s, %d thread%s", w->test, w->threads, w->threads > 1 ? "s" : "");
    snprintf(text[i], sizeof text[i], "%.0f %% of the %s", 100 * w->frac_med, w->test[0] == 't' ? "bandwidth bound" : "int8 peak");
    v[i] = w->frac_med;
  }
  hbars(f, "Distance to the limits measured beside each repetition (the bar's end at 100 %: the bound)", LABEL,
        r->n_rows, label, v, NULL, NULL, 1.0, text, "#3c8d5a");
}

static void latency(FILE *f, const bn_bench_row *w) {
  int h = 190, plot = W - 200, top = 0;
  for (int k = 0; k < BN_BENCH_BINS; k++) top = w->hist[k] > top ? w->hist[k] : top;
  fprintf(f, "<h2>Per-token latency, %s, %d thread%s (ms)</h2>\n", w->test, w->threads, w->threads > 1 ? "s" : "");
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" height=\"%d\">\n", W, h);
  double bw = (double)plot / BN_BENCH_BINS, span = w->lat_hi - w->lat_lo > 0 ? w->lat_hi - w->lat_lo : 1;
  for (int k = 0; k < BN_BENCH_BINS; k++) {
    double bh = top ? 130.0 * w->hist[k] / top : 0;
    fprintf(f, "<rect class=\"bin\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#8a5cb8\"/>\n",
            40 + k * bw, 150 - bh, bw - 1, bh);
  }
  const double q[4] = {w->p50, w->p95, w->p99, w->worst};
  const char *qn[4] = {"p50", "p95", "p99", "max"};
  for (int k = 0; k < 4; k++) { /* the quantiles: dashed lines, their values in a legend at the right */
    double x = 40 + plot * ((q[k] - w->lat_lo) / span);
    if (x > 40 + plot) x = 40 + plot;
    fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"15\" y2=\"150\" stroke=\"#c0392b\" stroke-dasharray=\"3,3\"/>\n", x, x);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#c0392b\">%s</text>\n", x, 12 + 11 * (k % 2), qn[k]);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s %.3f ms</text>\n", W - 10, 40 + 14 * k, qn[k], q[k]);
  }
  fprintf(f, "<text x=\"40\" y=\"170\">%.3f ms</text><text x=\"%d\" y=\"170\" text-anchor=\"end\">%.3f ms (%s)</text>\n",
          w->lat_lo, 40 + plot, w->lat_hi, w->worst > w->lat_hi ? "the slowest beyond" : "the slowest");
  fprintf(f, "</svg>\n");
}

static void kinds(FILE *f, const bn_bench_run *r) {
  char label[BN_BENCH_KINDS][64], text[BN_BENCH_KINDS][48];
  double v[BN_BENCH_KINDS], total = 0;
  int order[BN_BENCH_KINDS], n = r->n_kinds < 16 ? r->n_kinds : 16;
  for (int i = 0; i < r->n_kinds; i++) order[i] = i, total += r->kinds[i].seconds;
  for (int i = 1; i < r->n_kinds; i++) /* slowest first */
    for (int j = i; j > 0 && r->kinds[order[j]].seconds > r->kinds[order[j - 1]].seconds; j--) {
      int t = order[j];
      order[j] = order[j - 1], order[j - 1] = t;
    }
  for (int i = 0; i < n; i++) {
    const bn_exec_stat *k = &r->kinds[order[i]];
    const char *name = strncmp(k->kind, "fused:", 6) ? k->kind : k->kind + 6;
    snprintf(label[i], sizeof label[i], "%.40s%s", name, strlen(name) > 40 ? "..." : "");
    snprintf(text[i], sizeof text[i], "%.1f ms, %.0f %%", k->seconds * 1e3, total > 0 ? 100 * k->seconds / total : 0);
    v[i] = k->seconds;
  }
  hbars(f, "Time per kernel kind (every test of the first thread count, summed; fused kernels by their ops)", 300, n,
        label, v, NULL, NULL, n ? v[0] * 1.05 : 1, text, "#d08a2c");
}

static void change(FILE *f, const bn_bench_run *r, const bn_bench_cmp *cmp, int n, double threshold) {
  double lo = 1 - 2 * threshold, hi = 1 + 2 * threshold;
  for (int i = 0; i < n; i++) lo = fmin(lo, cmp[i].lo), hi = fmax(hi, cmp[i].hi);
  lo -= 0.01, hi += 0.01;
  int h = 40 + n * (BAR + GAP), plot = W - LABEL - 250;
#define X(v) (LABEL + plot * ((v) - lo) / (hi - lo))
  fprintf(f, "<h2>Change against the baseline: new / old of the fraction of the bound, 95 %% interval</h2>\n");
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" height=\"%d\">\n", W, h);
  fprintf(f, "<rect class=\"band\" x=\"%.1f\" y=\"10\" width=\"%.1f\" height=\"%d\" fill=\"#eef1f4\"/>\n", X(1 - threshold),
          X(1 + threshold) - X(1 - threshold), h - 30);
  fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"10\" y2=\"%d\" stroke=\"#555\"/>\n", X(1.0), X(1.0), h - 20);
  fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">1.00</text>\n", X(1.0), h - 5);
  for (int i = 0; i < n; i++) {
    const bn_bench_row *w = &r->rows[cmp[i].now];
    int y = 20 + i * (BAR + GAP) + BAR / 2;
    const char *col = cmp[i].verdict > 0 ? "#2e8b57" : cmp[i].verdict < 0 ? "#c0392b" : "#555";
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s, %d thread%s</text>\n", LABEL - 8, y + 4, w->test,
            w->threads, w->threads > 1 ? "s" : "");
    fprintf(f, "<line class=\"interval\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>\n",
            X(cmp[i].lo), X(cmp[i].hi), y, y, col);
    fprintf(f, "<circle cx=\"%.1f\" cy=\"%d\" r=\"4\" fill=\"%s\"/>\n", X(cmp[i].ratio), y, col);
    fprintf(f, "<text x=\"%d\" y=\"%d\">%.3f [%.3f, %.3f] %s</text>\n", LABEL + plot + 8, y + 4, cmp[i].ratio, cmp[i].lo,
            cmp[i].hi, cmp[i].verdict > 0 ? "faster" : cmp[i].verdict < 0 ? "slower" : "no change");
  }
#undef X
  fprintf(f, "</svg>\n");
}

bn_status bn_bench_html(const bn_bench_run *r, const bn_bench_run *base, const bn_bench_cmp *cmp, int n_cmp,
                        double threshold, const char *path, bn_error *err) {
  bn_outfile of;
  bn_status st = bn_outfile_open(&of, path, NULL, err);
  if (st) return st;
  FILE *f = of.fp;
  fputs("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
        "<title>bnc bench</title>\n<style>\nbody { font: 14px sans-serif; margin: 24px; color: #222; max-width: 820px; }\n"
        "h1 { font-size: 20px; } h2 { font-size: 15px; margin-top: 28px; }\n"
        "svg text { font: 12px sans-serif; fill: #222; }\ntable { border-collapse: collapse; }\n"
        "td, th { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: right; }\n</style>\n</head>\n<body>\n",
        f);
  fputs("<h1>bnc bench: ", f);
  esc(f, r->model);
  fputs("</h1>\n<p>", f);
  esc(f, r->version);
  fprintf(f, " · kernels %s · weights read per token %.1f MB · ternary multiply-adds per token %.2f G", r->isa, r->wbytes / 1e6,
          r->macs / 1e9);
  if (base) {
    fputs(" · baseline: ", f);
    esc(f, base->version);
  }
  fputs("</p>\n", f);
  if (r->fits_cache)
    fprintf(f, "<p>The weights fit in a cache these threads use (a buffer of their size read again and again: %.1f GB/s; "
            "512 MiB: %.1f GB/s): the bandwidth bound does not hold for tg.</p>\n", r->cache_gbs, r->mem_gbs);
  throughput(f, r, base, cmp, n_cmp);
  limits(f, r);
  if (base && n_cmp) change(f, r, cmp, n_cmp, threshold);
  for (int i = 0; i < r->n_rows; i++)
    if (r->rows[i].has_lat) latency(f, &r->rows[i]);
  if (r->n_kinds) kinds(f, r);
  fputs("</body>\n</html>\n", f);
  return bn_outfile_commit(&of, err);
}
