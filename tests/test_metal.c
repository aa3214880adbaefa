/* The Metal backend against the reference kernels: every kernel family the emitter writes, over
 * many shapes (odd sizes, every tile remainder, one and many tokens), its MSL run by metal-sim with
 * Metal's semantics; a barrier taken out or a threadgroup block one element short must fail; the
 * emitted source must be MSL a Mac accepts (metal/lint.c); whole models through --backend metal-sim
 * against the reference backend. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../codegen/backend.h"
#include "../codegen/ref/ref.h"
#include "../frontend/import.h"
#include "../passes/pass.h"
#include "../runtime/session.h"
#include "../ir/quant.h"
#include "../ir/rng.h"
#include "../metal/emit.h"
#include "../metal/lint.h"
#include "../metal/sim/sim.h"
#include "testmodel.h"
#include "testutil.h"

/* ---- a library of single kernels, compiled once, each run as the dispatch table would ---- */

enum { MAXK = 160 };
typedef struct {
  bn_sbuf src;
  bn_mtl_kernel k[MAXK];
  int n;
  bn_sim_lib *lib;
} klib;

static int kl_add(klib *l, bn_kkey key) {
  for (int i = 0; i < l->n; i++)
    if (bn_kkey_eq(&l->k[i].key, &key)) return i;
  bn_error err = {0};
  if (!l->src.len) bn_sbuf_put(&l->src, "%s", bn_metal_prelude());
  assert_true(l->n < MAXK);
  if (bn_metal_emit(&key, &l->k[l->n], &l->src, &err)) fail_msg("%s", err.msg);
  return l->n++;
}

static bn_status kl_compile(klib *l, bn_error *err) {
  bn_sim_kernel ks[MAXK];
  for (int i = 0; i < l->n; i++)
    ks[i] = (bn_sim_kernel){.name = l->k[i].name, .n_buffers = l->k[i].n_buffers, .tg_block = l->k[i].tg_block};
  return bn_sim_compile(l->src.buf, ks, l->n, NULL, &l->lib, err);
}

static void kl_free(klib *l) {
  bn_sim_free(l->lib);
  free(l->src.buf);
  memset(l, 0, sizeof *l);
}

/* Kernel i over a step of T tokens at pos (caches of n_ctx), buffers 1.. from b; tg_short: bytes
 * taken off its threadgroup block. */
static bn_status kl_run_short(klib *l, int i, int T, int pos, int n_ctx, void *const *b, uint32_t tg_short,
                              bn_error *err) {
  struct {
    uint32_t T, pos, n_ctx, pad;
  } st = {(uint32_t)T, (uint32_t)pos, (uint32_t)n_ctx, 0};
  void *bufs[BN_MTL_MAX_BIND] = {&st};
  for (int j = 1; j < l->k[i].n_buffers; j++) bufs[j] = b[j - 1];
  const bn_mtl_kernel *k = &l->k[i];
  bn_sim_grid g = {.groups = {k->groups_x, (uint32_t)(T + (int)k->tok_tile - 1) / k->tok_tile},
                   .threads = k->threads, .tg_bytes = k->tg_bytes - tg_short, .buffers = bufs};
  return bn_sim_dispatch(l->lib, i, &g, err);
}

static void kl_run(klib *l, int i, int T, int pos, int n_ctx, void *const *b) {
  bn_error err = {0};
  if (kl_run_short(l, i, T, pos, n_ctx, b, 0, &err)) fail_msg("%s", err.msg);
}

static float frand(uint64_t *rng, float lo, float hi) { return lo + (hi - lo) * (float)bn_rng_unit(rng); }

/* A random TP2 tensor of N rows of K. */
static uint8_t *random_tp2(int N, int K, uint64_t *rng, bn_value *v) {
  size_t bytes = (size_t)N * K / 4 + 4 * (size_t)N;
  uint8_t *w = calloc(1, bytes);
  int8_t *trit = malloc((size_t)K);
  for (int r = 0; r < N; r++) {
    for (int i = 0; i < K; i++) trit[i] = (int8_t)(bn_rng_next(rng) % 3) - 1;
    bn_tp2_write_row(w, (uint64_t)N, (uint64_t)K, (uint64_t)r, trit, frand(rng, 0.01f, 1.0f));
  }
  free(trit);
  int64_t d[2] = {N, K};
  *v = (bn_value){BN_VAL_WEIGHT, "w", BN_DT_TP2, bn_shape_make(2, d), -1, w, bytes};
  return w;
}

/* ---- ternary matmul: integer sums exactly the reference's, dequantized within 1e-6 ---- */

/* Kernels idx[0..2] (ACC, DQ, DQ_ADD) over the weights wv (w their bytes) against bn_ref_tmatmul and
 * bn_ref_dequant on T random rows: ACC's 32 bits equal (TG2: the float's), the dequantized within 1e-6
 * relative (the largest so far in *worst). */
static void check_mm(klib *l, const int idx[3], const char *kind, int T, const bn_value *wv, const uint8_t *w,
                     uint64_t *rng, double *worst) {
  int K = (int)wv->shape.d[1], N = (int)wv->shape.d[0];
  int64_t rb = bn_qa8_row_bytes(K);
  float *x = malloc((size_t)T * K * 4), *resid = malloc((size_t)T * N * 4), *y = malloc((size_t)T * N * 4);
  float *want = malloc((size_t)T * N * 4);
  uint8_t *qa = malloc((size_t)(T * rb));
  int32_t *acc = malloc((size_t)T * N * 4), *got = malloc((size_t)T * N * 4);
  int8_t *trit = malloc((size_t)K);
  float bscale[64];
  for (int i = 0; i < T * K; i++) x[i] = frand(rng, -3, 3);
  for (int i = 0; i < T * N; i++) resid[i] = frand(rng, -1, 1);
  bn_ref_quantize(x, T, K, qa);
  bn_ref_tmatmul(qa, T, K, N, wv, acc, trit, bscale);
  bn_ref_dequant(acc, qa, T, K, N, wv, 1.0f, want);
  void *b[4] = {qa, (void *)w, got, resid};
  memset(got, 0x55, (size_t)T * N * 4);
  kl_run(l, idx[0], T, 0, 0, b);
  for (int i = 0; i < T * N; i++)
    if (got[i] != acc[i]) fail_msg("%s T=%d K=%d N=%d [%d]: %08x, the reference %08x", kind, T, K, N, i, got[i], acc[i]);
  for (int m = 1; m < 3; m++) {
    b[2] = y;
    kl_run(l, idx[m], T, 0, 0, b);
    for (int i = 0; i < T * N; i++) {
      double ref = want[i] + (m == 2 ? resid[i] : 0), mag = fabs(want[i]) + (m == 2 ? fabs(resid[i]) : 0);
      double e = fabs(y[i] - (float)ref) / fmax(mag, 1e-30);
      *worst = fmax(*worst, e);
      if (e > 1e-6) fail_msg("%s mode %d T=%d K=%d N=%d [%d]: %.9g, the reference %.9g", kind, m, T, K, N, i, y[i], ref);
    }
  }
  free(x), free(resid), free(y), free(want), free(qa), free(acc), free(got), free(trit);
}

static void test_ternary_matmul(void **state) {
  (void)state;
  /* tokens, K, N: tiles of 8 and 32 tokens and 8 and 32 rows, whole and with some left over */
  const int shapes[][3] = {{1, 256, 1},   {1, 256, 5},  {3, 512, 8},   {8, 256, 13}, {9, 768, 37},  {17, 512, 4},
                           {1, 1536, 9},  {2, 256, 3},  {16, 256, 7},  {5, 2560, 6}, {32, 256, 32}, {33, 512, 37},
                           {70, 256, 64}, {40, 768, 5}, {64, 1536, 33}};
  enum { NS = sizeof shapes / sizeof *shapes };
  const int modes[] = {BN_MM_ACC, BN_MM_DQ, BN_MM_DQ_ADD};
  klib l = {0};
  int idx[NS][2][3];
  for (int s = 0; s < NS; s++)
    for (int many = 0; many < 2; many++)
      for (int m = 0; m < 3; m++)
        idx[s][many][m] = kl_add(&l, (bn_kkey){.family = BN_K_MATMUL, .k = shapes[s][1], .n = shapes[s][2],
                                               .variant = modes[m] | (many ? BN_MTL_MANY : 0)});
  bn_error err = {0};
  if (kl_compile(&l, &err)) fail_msg("%s", err.msg);
  uint64_t rng = 7;
  double worst = 0;
  for (int s = 0; s < NS; s++) {
    bn_value wv;
    uint8_t *w = random_tp2(shapes[s][2], shapes[s][1], &rng, &wv);
    for (int many = 0; many < 2; many++)
      check_mm(&l, idx[s][many], many ? "mmt (simdgroup_matrix tiles)" : "mm", shapes[s][0], &wv, w, &rng, &worst);
    free(w);
  }
  print_message("ternary matmul, both kernels: integer sums equal; dequantized within %.2g relative\n", worst);
  kl_free(&l);
}

/* ---- ternary matmul with group scales (TG2, TG2H): the float of the exact sum, the reference's bits ---- */

static void test_group_matmul(void **state) {
  (void)state;
  const int shapes[][3] = {{1, 256, 1}, {1, 256, 5}, {3, 512, 8}, {8, 256, 13}, {9, 768, 37}, {1, 1536, 9}, {17, 2560, 6}};
  enum { NS = sizeof shapes / sizeof *shapes };
  klib l = {0};
  int idx[NS][2][3];
  for (int s = 0; s < NS; s++)
    for (int h = 0; h < 2; h++)
      for (int m = 0; m < 3; m++)
        idx[s][h][m] = kl_add(&l, (bn_kkey){.family = BN_K_MATMUL_G, .k = shapes[s][1], .n = shapes[s][2],
                                            .variant = BN_MM_ACC + m, .cache = h ? BN_DT_TG2H : BN_DT_TG2});
  bn_error err = {0};
  if (kl_compile(&l, &err)) fail_msg("%s", err.msg);
  uint64_t rng = 11;
  double worst = 0;
  for (int s = 0; s < NS; s++)
    for (int h = 0; h < 2; h++) {
      int K = shapes[s][1], N = shapes[s][2], G = K / (h ? 128 : 256);
      bn_value wv;
      uint8_t *w = random_tp2(N, K, &rng, &wv); /* TP2's codes, then the rows' scales of each group, as f16 */
      wv.dtype = h ? BN_DT_TG2H : BN_DT_TG2;
      wv.data = w = realloc(w, (size_t)N * K / 4 + 2 * (size_t)N * G);
      for (int i = 0; i < N * G; i++) {
        uint16_t d = bn_float_to_half(frand(&rng, 0.005f, 0.015f) * (i % 5 == 0 ? -1 : 1));
        memcpy(w + (size_t)N * K / 4 + 2 * (size_t)i, &d, 2);
      }
      check_mm(&l, idx[s][h], h ? "mgh" : "mg", shapes[s][0], &wv, w, &rng, &worst);
      free(w);
    }
  print_message("group-scaled ternary matmul (TG2, TG2H): float sums the reference's bits; dequantized within %.2g relative\n", worst);
  kl_free(&l);
}

/* ---- float matmul (the output projection) over every weight type ---- */

/* Random weights of type t (N rows of K): floats drawn in [-0.1, 0.1), block formats' codes as
 * drawn and their f16 scales in [0.01, 0.02). */
static uint8_t *random_weights(bn_dtype t, int N, int K, uint64_t *rng) {
  size_t n = (size_t)N * K, bytes = (size_t)bn_dtype_nbytes(t, n);
  uint8_t *w = malloc(bytes);
  for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)bn_rng_next(rng);
  if (t == BN_DT_F32 || t == BN_DT_F16 || t == BN_DT_BF16)
    for (size_t i = 0; i < n; i++) {
      float v = frand(rng, -0.1f, 0.1f);
      uint32_t u;
      memcpy(&u, &v, 4);
      uint16_t h = t == BN_DT_F16 ? bn_float_to_half(v) : (uint16_t)(u >> 16);
      if (t == BN_DT_F32) memcpy(w + 4 * i, &v, 4);
      else memcpy(w + 2 * i, &h, 2);
    }
  else {
    const bn_dtype_info *d = &bn_dtype_table[t];
    for (size_t b = 0; b < bytes / (size_t)d->block_bytes; b++) {
      uint16_t h = bn_float_to_half(frand(rng, 0.01f, 0.02f));
      memcpy(w + b * (size_t)d->block_bytes + (t == BN_DT_Q6_K ? 208 : 0), &h, 2);
    }
  }
  return w;
}

static const bn_dtype float_types[] = {BN_DT_F32, BN_DT_F16, BN_DT_BF16, BN_DT_Q8_0, BN_DT_Q4_0, BN_DT_Q6_K};

static void test_float_matmul(void **state) {
  (void)state;
  const int shapes[][3] = {{1, 256, 9}, {9, 512, 5}, {3, 256, 33}, {8, 768, 2}, {17, 256, 1}};
  klib l = {0};
  int idx[5][6];
  for (int s = 0; s < 5; s++)
    for (int t = 0; t < 6; t++)
      idx[s][t] = kl_add(&l, (bn_kkey){.family = BN_K_MATMUL_F, .k = shapes[s][1], .n = shapes[s][2],
                                        .variant = (int)float_types[t]});
  bn_error err = {0};
  if (kl_compile(&l, &err)) fail_msg("%s", err.msg);
  uint64_t rng = 11;
  double worst = 0;
  for (int s = 0; s < 5; s++)
    for (int t = 0; t < 6; t++) {
      int T = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
      bn_dtype type = float_types[t];
      uint8_t *w = random_weights(type, N, K, &rng);
      float *x = malloc((size_t)T * K * 4), *y = malloc((size_t)T * N * 4), *want = malloc((size_t)T * N * 4);
      float *row = malloc((size_t)N * K * 4);
      for (int i = 0; i < T * K; i++) x[i] = frand(&rng, -1, 1);
      int64_t d[2] = {N, K};
      bn_value wv = {BN_VAL_WEIGHT, "w", type, bn_shape_make(2, d), -1, w, 0};
      bn_ref_matmul_f(x, T, K, N, &wv, row, want);
      bn_dequant(type, w, (uint64_t)N * K, 0, (uint64_t)N * K, row); /* every row, for the error's scale */
      void *b[3] = {x, w, y};
      kl_run(&l, idx[s][t], T, 0, 0, b);
      for (int tt = 0; tt < T; tt++)
        for (int n = 0; n < N; n++) {
          double mag = 0; /* sum |x w|: what float rounding is relative to */
          for (int i = 0; i < K; i++) mag += fabs((double)x[tt * K + i] * row[(size_t)n * K + i]);
          double e = fabs(y[tt * N + n] - want[tt * N + n]) / fmax(mag, 1e-30);
          worst = fmax(worst, e);
          if (e > 1e-6)
            fail_msg("mf %s T=%d K=%d N=%d [%d][%d]: %.9g, the reference %.9g", bn_dtype_table[type].name, T, K, N, tt,
                     n, y[tt * N + n], want[tt * N + n]);
        }
      free(w), free(x), free(y), free(want), free(row);
    }
  print_message("float matmul: within %.2g of sum |x w|\n", worst);
  kl_free(&l);
}

/* ---- norm + quantize, the gates, the final rmsnorm ---- */

static void ref_nq(int mode, const float *x, const float *wn, int T, int K, float eps, float *m, float *y, uint8_t *q) {
  const float *src = x;
  if (bn_nq_gated(mode)) {
    int relu2 = mode == BN_NQ_GATE_RELU2 || mode == BN_NQ_GATE_RELU2_Q;
    for (int t = 0; t < T; t++)
      for (int i = 0; i < K; i++) {
        float g = x[t * 2 * K + i], u = x[t * 2 * K + K + i];
        m[t * K + i] = (relu2 ? (g > 0 ? g * g : 0.0f) : g / (1.0f + expf(-g))) * u;
      }
    src = m;
  }
  if (bn_nq_normed(mode)) bn_ref_rmsnorm(src, T, K, wn, eps, y);
  if (q) bn_ref_quantize(bn_nq_normed(mode) ? y : src, T, K, q);
}

/* The codes against the reference's: the norm's sum of squares is float here, double there, so a
 * code may move by one on a rounding tie: at most 0.1 % of them (and one). The row's sum is the
 * sum of its own codes, the padding zero, the scale within 1e-6. */
static void check_codes(const uint8_t *got, const uint8_t *want, int T, int K, const char *what) {
  int64_t rb = bn_qa8_row_bytes(K);
  int diff = 0;
  for (int t = 0; t < T; t++) {
    int32_t sum = 0, gsum;
    for (int i = 0; i < K; i++) {
      int d = (int8_t)got[t * rb + i] - (int8_t)want[t * rb + i];
      if (d < -1 || d > 1) fail_msg("%s K=%d: code %d off by %d", what, K, i, d);
      diff += d != 0, sum += (int8_t)got[t * rb + i];
    }
    for (int64_t i = K; i < rb - 64; i++)
      if (got[t * rb + i]) fail_msg("%s K=%d: padding byte %lld is %d", what, K, (long long)i, got[t * rb + i]);
    float s1, s2;
    memcpy(&s1, got + t * rb + rb - 64, 4), memcpy(&s2, want + t * rb + rb - 64, 4), memcpy(&gsum, got + t * rb + rb - 60, 4);
    if (fabsf(s1 - s2) > 1e-6f * s2) fail_msg("%s K=%d: scale %.9g, the reference %.9g", what, K, s1, s2);
    assert_int_equal(gsum, sum);
  }
  if (diff > T * K / 1000 + 1) fail_msg("%s K=%d: %d codes differ", what, K, diff);
}

static void test_norm_quant(void **state) {
  (void)state;
  const int shapes[][2] = {{1, 32}, {3, 96}, {9, 256}, {1, 512}, {4, 1000}, {2, 2560}, {1, 6912}};
  enum { MODES = BN_NQ_GATE_SILU_Q + 2 }; /* every mode, then RMSNORM by groups of 8 (qwen3's per-head norms) */
  klib l = {0};
  int idx[7][MODES];
  for (int s = 0; s < 7; s++)
    for (int m = 0; m < MODES; m++)
      idx[s][m] = kl_add(&l, (bn_kkey){.family = BN_K_NORM_QUANT, .k = shapes[s][1], .n = m < MODES - 1 ? 0 : 8,
                                       .variant = m < MODES - 1 ? m : BN_NQ_RMSNORM, .eps = 1e-5f});
  bn_error err = {0};
  if (kl_compile(&l, &err)) fail_msg("%s", err.msg);
  uint64_t rng = 13;
  double worst = 0;
  for (int s = 0; s < 7; s++)
    for (int mi = 0; mi < MODES; mi++) {
      int mode = mi < MODES - 1 ? mi : BN_NQ_RMSNORM, group = mi < MODES - 1 ? 0 : 8;
      int T = shapes[s][0], K = shapes[s][1], in_w = bn_nq_gated(mode) ? 2 * K : K;
      int64_t rb = bn_qa8_row_bytes(K);
      float *x = malloc((size_t)T * in_w * 4), *wn = malloc((size_t)K * 4), *m = malloc((size_t)T * K * 4);
      float *y = malloc((size_t)T * K * 4), *got_y = malloc((size_t)T * K * 4);
      uint8_t *want = calloc(1, (size_t)(T * rb)), *got = malloc((size_t)(T * rb));
      memset(got, 0x5a, (size_t)(T * rb));
      for (int i = 0; i < T * in_w; i++) x[i] = frand(&rng, -3, 3);
      for (int i = 0; i < K; i++) wn[i] = frand(&rng, 0.5f, 1.5f);
      if (group) bn_ref_rmsnorm(x, T * K / group, group, wn, 1e-5f, y); /* each piece a row of its own */
      else ref_nq(mode, x, wn, T, K, 1e-5f, m, y, mode == BN_NQ_RMSNORM ? NULL : want);
      void *b[3] = {x, wn, mode == BN_NQ_RMSNORM ? (void *)got_y : got};
      if (!bn_nq_normed(mode)) b[1] = got; /* x, qa */
      kl_run(&l, idx[s][mi], T, 0, 0, b);
      char what[48];
      snprintf(what, sizeof what, "norm-quantize mode %d", mode);
      if (mode != BN_NQ_RMSNORM) check_codes(got, want, T, K, what);
      else
        for (int i = 0; i < T * K; i++) {
          double e = fabs(got_y[i] - y[i]) / fmax(fabs(y[i]), 1e-30);
          worst = fmax(worst, e);
          if (e > 1e-6) fail_msg("rmsnorm K=%d group %d [%d]: %.9g, the reference %.9g", K, group, i, got_y[i], y[i]);
        }
      free(x), free(wn), free(m), free(y), free(got_y), free(want), free(got);
    }
  print_message("norm-quantize, every mode (a quantize alone, the gates with and without the norm, rmsnorm whole "
                "and by groups of 8): codes as check_codes allows; rmsnorm within %.2g relative\n", worst);
  kl_free(&l);
}

/* ---- attention: the K/V store bit for bit, the attention within 1e-6 of the values' range ---- */

static void test_attention(void **state) {
  (void)state;
  /* head_dim, heads, KV heads, tokens, position: dims below, at and past a simdgroup's 32, GQA, and
   * key counts that leave simdgroups without a block or a block part full */
  const int cases[][5] = {{16, 2, 2, 1, 0}, {64, 8, 2, 3, 5}, {80, 4, 1, 2, 40}, {128, 4, 4, 1, 100},
                          {64, 8, 2, 5, 123}, {32, 2, 1, 9, 0}, {96, 3, 3, 1, 300}};
  const bn_dtype caches[] = {BN_DT_F32, BN_DT_F16};
  klib l = {0};
  int attn[7][2], store[7][2];
  for (int c = 0; c < 7; c++)
    for (int ct = 0; ct < 2; ct++) {
      bn_kkey key = {.family = BN_K_ATTENTION, .k = cases[c][0], .n = cases[c][1], .variant = cases[c][2],
                     .cache = caches[ct]};
      attn[c][ct] = kl_add(&l, key);
      key.variant |= BN_MTL_STORE, key.n = cases[c][2];
      store[c][ct] = kl_add(&l, key);
    }
  bn_error err = {0};
  if (kl_compile(&l, &err)) fail_msg("%s", err.msg);
  uint64_t rng = 19;
  double worst = 0;
  for (int c = 0; c < 7; c++)
    for (int ct = 0; ct < 2; ct++) {
      int hd = cases[c][0], H = cases[c][1], kvh = cases[c][2], T = cases[c][3], pos = cases[c][4];
      int n_ctx = pos + T + 3, es = caches[ct] == BN_DT_F16 ? 2 : 4;
      size_t cache = (size_t)kvh * n_ctx * hd;
      float *q = malloc((size_t)T * H * hd * 4), *k = malloc((size_t)T * kvh * hd * 4), *v = malloc((size_t)T * kvh * hd * 4);
      float *y = malloc((size_t)T * H * hd * 4), *want = malloc((size_t)T * H * hd * 4), *scores = malloc((size_t)n_ctx * 4);
      uint8_t *kc = malloc(cache * es), *vc = malloc(cache * es), *kc2 = malloc(cache * es), *vc2 = malloc(cache * es);
      for (size_t i = 0; i < cache; i++) { /* earlier positions: values in the cache's type */
        bn_ref_kv_row(caches[ct], kc, (int64_t)i, &(float){frand(&rng, -1, 1)}, 1);
        bn_ref_kv_row(caches[ct], vc, (int64_t)i, &(float){frand(&rng, -2, 2)}, 1);
      }
      memcpy(kc2, kc, cache * es), memcpy(vc2, vc, cache * es);
      for (int i = 0; i < T * H * hd; i++) q[i] = frand(&rng, -1, 1);
      for (int i = 0; i < T * kvh * hd; i++) k[i] = frand(&rng, -1, 1), v[i] = frand(&rng, -2, 2);
      bn_ref_kv_store(k, v, T, kvh, hd, pos, n_ctx, caches[ct], kc, vc, 0, kvh);
      bn_ref_attention_heads(q, T, H, kvh, hd, pos, n_ctx, caches[ct], kc, vc, scores, want, 0, H);
      void *bs[4] = {k, v, kc2, vc2}, *ba[4] = {q, kc2, vc2, y};
      kl_run(&l, store[c][ct], T, pos, n_ctx, bs);
      assert_memory_equal(kc2, kc, cache * es);
      assert_memory_equal(vc2, vc, cache * es);
      kl_run(&l, attn[c][ct], T, pos, n_ctx, ba);
      for (int i = 0; i < T * H * hd; i++) {
        double e = fabs(y[i] - want[i]) / 2.0; /* the values lie in [-2, 2] */
        worst = fmax(worst, e);
        if (e > 1e-6)
          fail_msg("attention hd=%d H=%d kv=%d T=%d pos=%d %s [%d]: %.9g, the reference %.9g", hd, H, kvh, T, pos,
                   bn_dtype_table[caches[ct]].name, i, y[i], want[i]);
      }
      free(q), free(k), free(v), free(y), free(want), free(scores), free(kc), free(vc), free(kc2), free(vc2);
    }
  print_message("attention: within %.2g of the values' range\n", worst);
  kl_free(&l);
}

/* ---- RoPE, the embedding gather and slices: the reference's floats exactly ---- */

static void test_rope_rows(void **state) {
  (void)state;
  const int rope[][4] = {{16, 1, 1, 0}, {64, 8, 3, 7}, {128, 2, 2, 100}, {2, 3, 1, 5}, {96, 5, 4, 33}};
  const int sl[][3] = {{96, 32, 64}, {100, 37, 5}, {48, 7, 0}, {1000, 300, 699}};
  klib l = {0};
  int ri[5], ei[6], si[4];
  for (int c = 0; c < 5; c++) ri[c] = kl_add(&l, (bn_kkey){.family = BN_K_ROPE, .k = rope[c][0], .n = rope[c][1]});
  for (int t = 0; t < 6; t++)
    ei[t] = kl_add(&l, (bn_kkey){.family = BN_K_EMBED, .k = 512, .n = 7, .variant = (int)float_types[t]});
  for (int c = 0; c < 4; c++)
    si[c] = kl_add(&l, (bn_kkey){.family = BN_K_SLICE, .k = sl[c][0], .n = sl[c][1], .variant = sl[c][2]});
  bn_error err = {0};
  if (kl_compile(&l, &err)) fail_msg("%s", err.msg);
  uint64_t rng = 23;
  for (int c = 0; c < 5; c++) {
    int hd = rope[c][0], H = rope[c][1], T = rope[c][2], pos = rope[c][3], n_ctx = pos + T + 1;
    float *x = malloc((size_t)T * H * hd * 4), *y = malloc((size_t)T * H * hd * 4), *want = malloc((size_t)T * H * hd * 4);
    float *tab = malloc((size_t)n_ctx * hd * 4);
    for (int i = 0; i < T * H * hd; i++) x[i] = frand(&rng, -2, 2);
    bn_rope_table(tab, n_ctx, hd, 10000.0);
    bn_ref_rope(x, T, H, hd, hd, 10000.0f, pos, want);
    kl_run(&l, ri[c], T, pos, n_ctx, (void *[]){x, y, tab});
    assert_memory_equal(y, want, (size_t)T * H * hd * 4);
    kl_run(&l, ri[c], T, pos, n_ctx, (void *[]){x, x, tab}); /* in place, as plans may run it */
    assert_memory_equal(x, want, (size_t)T * H * hd * 4);
    free(x), free(y), free(want), free(tab);
  }
  const int32_t tok[5] = {3, 0, 6, 3, 1};
  for (int t = 0; t < 6; t++) {
    uint8_t *w = random_weights(float_types[t], 7, 512, &rng);
    float *y = malloc(5 * 512 * 4), *want = malloc(5 * 512 * 4);
    for (int i = 0; i < 5; i++) bn_dequant(float_types[t], w, 7 * 512, (uint64_t)tok[i] * 512, 512, want + i * 512);
    kl_run(&l, ei[t], 5, 0, 0, (void *[]){(void *)tok, w, y});
    assert_memory_equal(y, want, 5 * 512 * 4);
    free(w), free(y), free(want);
  }
  for (int c = 0; c < 4; c++) {
    int K = sl[c][0], n = sl[c][1], off = sl[c][2], T = 3;
    float *x = malloc((size_t)T * K * 4), *y = malloc((size_t)T * n * 4);
    for (int i = 0; i < T * K; i++) x[i] = frand(&rng, 0, 1);
    kl_run(&l, si[c], T, 0, 0, (void *[]){x, y});
    for (int t = 0; t < T; t++) assert_memory_equal(y + t * n, x + t * K + off, (size_t)n * 4);
    free(x), free(y);
  }
  kl_free(&l);
}

/* ---- the simulator catches what a Mac would get wrong ---- */

/* Replaces the first `what` in src (a kernel's text) with `with`. */
static void replace_first(bn_sbuf *src, const char *what, const char *with) {
  char *at = strstr(src->buf, what);
  assert_non_null(at);
  size_t head = (size_t)(at - src->buf), wl = strlen(what);
  bn_sbuf out = {0};
  bn_sbuf_put(&out, "%.*s%s%s", (int)head, src->buf, with, at + wl);
  free(src->buf);
  *src = out;
}

/* A barrier taken out of an emitted kernel, or its threadgroup block one element short, must fail:
 * each kernel below is run as emitted (the reference's result), then mutated. */
static void test_mutations_fail(void **state) {
  (void)state;
  const char *barrier = "threadgroup_barrier(mem_flags::mem_threadgroup);";
  const char *sbarrier = "simdgroup_barrier(mem_flags::mem_threadgroup);";
  struct {
    bn_kkey key;
    const char *cut;
  } cases[] = {
      {{.family = BN_K_NORM_QUANT, .k = 512, .variant = BN_NQ_PLAIN, .eps = 1e-5f}, barrier},
      {{.family = BN_K_ATTENTION, .k = 64, .n = 4, .variant = 2}, barrier},
      {{.family = BN_K_ATTENTION, .k = 64, .n = 4, .variant = 2}, sbarrier},
      {{.family = BN_K_MATMUL, .k = 512, .n = 16, .variant = BN_MM_ACC}, sbarrier},
      {{.family = BN_K_MATMUL_F, .k = 256, .n = 8, .variant = BN_DT_F16}, sbarrier},
      {{.family = BN_K_MATMUL, .k = 512, .n = 16, .variant = BN_MM_ACC | BN_MTL_MANY}, barrier},
  };
  uint64_t rng = 37;
  int T = 3, K = 512, pos = 130, n_ctx = 160; /* every simdgroup of attention gets a whole block of keys */
  float *x = malloc(1 << 20), *w = malloc(1 << 20), *y = malloc(1 << 20), *want = malloc(1 << 20);
  uint8_t *kc = malloc(1 << 20), *vc = malloc(1 << 20);
  bn_value tp2;
  uint8_t *wt = random_tp2(16, K, &rng, &tp2), *wf = random_weights(BN_DT_F16, 8, 256, &rng), *qa = malloc(1 << 16);
  for (int i = 0; i < (1 << 18); i++) x[i] = frand(&rng, -1, 1), w[i] = frand(&rng, 0.5f, 1.5f);
  for (int i = 0; i < (1 << 18); i++) ((float *)kc)[i] = frand(&rng, -1, 1), ((float *)vc)[i] = frand(&rng, -1, 1);
  bn_ref_quantize(x, T, K, qa);
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
    for (int mut = 0; mut < 3; mut++) { /* 0: as emitted; 1: the cut; 2: the block short by a float */
      bn_kkey key = cases[c].key;
      if (mut == 2 && c != 0 && c != 1 && c != 3 && c != 5) continue;
      klib l = {0};
      kl_add(&l, key);
      if (mut == 1) replace_first(&l.src, cases[c].cut, "");
      bn_error err = {0};
      if (kl_compile(&l, &err)) fail_msg("%s", err.msg);
      void *b[4];
      size_t out = 0;
      switch (key.family) {
      case BN_K_NORM_QUANT: b[0] = x, b[1] = w, b[2] = y, out = (size_t)(T * bn_qa8_row_bytes(K)); break;
      case BN_K_ATTENTION: b[0] = x, b[1] = kc, b[2] = vc, b[3] = y, out = (size_t)T * 4 * 64 * 4; break;
      case BN_K_MATMUL: b[0] = qa, b[1] = wt, b[2] = y, out = (size_t)T * 16 * 4; break;
      default: b[0] = x, b[1] = wf, b[2] = y, out = (size_t)T * 8 * 4; break;
      }
      memset(y, 0, out);
      bn_status st = kl_run_short(&l, 0, T, pos, n_ctx, b, mut == 2 ? 4 : 0, &err);
      if (mut == 0) {
        assert_int_equal(st, BN_OK);
        memcpy(want, y, out);
      } else if (!st && !memcmp(y, want, out))
        fail_msg("%s with %s: the mutated kernel gave the right result", l.k[0].name,
                 mut == 1 ? cases[c].cut : "its threadgroup block a float short");
      else if (st) print_message("%s, %s: %s\n", l.k[0].name, mut == 1 ? "a barrier cut" : "block short", err.msg);
      else print_message("%s, %s: wrong results\n", l.k[0].name, mut == 1 ? "a barrier cut" : "block short");
      kl_free(&l);
    }
  free(x), free(w), free(y), free(want), free(kc), free(vc), free(wt), free(wf), free(qa);
}

/* ---- MSL, not C++ ---- */

/* Every family's kernels and a whole model's library pass the checker; sources that a Mac would
 * reject, or that bind wrongly, do not. */
static void test_msl_only(void **state) {
  (void)state;
  bn_sbuf all = {0};
  bn_sbuf_put(&all, "%s", bn_metal_prelude());
  bn_kkey keys[] = {
      {.family = BN_K_MATMUL, .k = 512, .n = 13, .variant = BN_MM_DQ_ADD},
      {.family = BN_K_MATMUL_F, .k = 256, .n = 9, .variant = BN_DT_Q6_K},
      {.family = BN_K_NORM_QUANT, .k = 96, .variant = BN_NQ_GATE_SILU, .eps = 1e-6f},
      {.family = BN_K_NORM_QUANT, .k = 96, .variant = BN_NQ_RMSNORM, .eps = 1e-6f},
      {.family = BN_K_NORM_QUANT, .k = 96, .n = 32, .variant = BN_NQ_RMSNORM, .eps = 1e-6f},
      {.family = BN_K_NORM_QUANT, .k = 96, .variant = BN_NQ_QUANT},
      {.family = BN_K_NORM_QUANT, .k = 96, .variant = BN_NQ_GATE_SILU_Q},
      {.family = BN_K_MATMUL_G, .k = 512, .n = 13, .variant = BN_MM_DQ, .cache = BN_DT_TG2H},
      {.family = BN_K_ATTENTION, .k = 80, .n = 4, .variant = 2, .cache = BN_DT_F16},
      {.family = BN_K_ATTENTION, .k = 80, .n = 2, .variant = 2 | BN_MTL_STORE, .cache = BN_DT_F16},
      {.family = BN_K_ROPE, .k = 64, .n = 3},
      {.family = BN_K_EMBED, .k = 64, .n = 9, .variant = BN_DT_Q4_0},
      {.family = BN_K_SLICE, .k = 64, .n = 9, .variant = 3},
  };
  bn_error err = {0};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    bn_mtl_kernel k;
    if (bn_metal_emit(&keys[i], &k, &all, &err)) fail_msg("%s", err.msg);
  }
  if (bn_metal_lint(all.buf, &err)) fail_msg("the emitted kernels: %s", err.msg);
  bn_gguf f;
  bn_model m;
  bn_memplan mp;
  bn_mtl_lib lib;
  bn_pass_opts po = {.max_tokens = 64};
  if (tu_model(BNC_SOURCE_DIR "/examples/bitnet-kjv-tq2_0.gguf", NULL, &po, &f, &m, &mp, &err) || bn_metal_build(&m.graph, &mp, BN_DT_F32, &lib, &err))
    fail_msg("%s", err.msg);
  if (bn_metal_lint(lib.source, &err)) fail_msg("the example model's library: %s", err.msg);
  for (int i = 0; i < lib.n_steps; i++) /* each dispatch binds the buffers its kernel declares */
    assert_int_equal(lib.steps[i].n_bind, lib.kernels[lib.steps[i].kernel].n_buffers);
  bn_metal_lib_free(&lib), bn_memplan_free(&mp), bn_model_free(&m), bn_gguf_close(&f);
  /* and qwen3's with group scales (the group-scaled matmul, per-head norms, the gate without a norm) */
  if (tu_model(BNC_TEST_DATA "/hf/qwen3-pq2_0.gguf", NULL, &po, &f, &m, &mp, &err) || bn_metal_build(&m.graph, &mp, BN_DT_F16, &lib, &err))
    fail_msg("%s", err.msg);
  if (bn_metal_lint(lib.source, &err)) fail_msg("qwen3-pq2_0's library: %s", err.msg);
  for (int i = 0; i < lib.n_steps; i++) assert_int_equal(lib.steps[i].n_bind, lib.kernels[lib.steps[i].kernel].n_buffers);
  bn_metal_lib_free(&lib), bn_memplan_free(&mp), bn_model_free(&m), bn_gguf_close(&f);
  /* what a Mac rejects: each a small change to a kernel that passes */
  const char *ok = "#include <metal_stdlib>\nusing namespace metal;\nstruct bn_step { uint T; };\n"
                   "static inline float twice(float x) { return 2 * x; }\n"
                   "kernel void k(constant bn_step &st [[buffer(0)]], device float *y [[buffer(1)]],\n"
                   "    uint tid [[thread_index_in_threadgroup]]) {\n"
                   "  device float *p = y + tid;\n  *p = twice(max(float(st.T), 1.0f));\n}\n";
  const struct {
    const char *from, *to, *why;
  } bad[] = {
      {"float x) { return 2 * x", "double x) { return 2 * x", "double"},
      {"device float *p", "float *p", "address space"},
      {"return 2 * x", "return twice(x)", "recursion"},
      {"twice(max(", "twice(sin(", "sin"},
      {"[[buffer(1)]]", "[[buffer(2)]]", "skips buffer"},
      {"[[buffer(1)]]", "[[buffer(0)]]", "twice"},
      {", device float *y [[buffer(1)]]", ", device float *y", "binding attribute"},
      {"#include <metal_stdlib>", "#include <stdio.h>", "include"},
      {"struct bn_step { uint T; };", "struct bn_step { uint T; };\nfloat counter;", "program scope"},
  };
  if (bn_metal_lint(ok, &err)) fail_msg("the control: %s", err.msg);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    bn_sbuf s = {0};
    bn_sbuf_put(&s, "%s", ok);
    replace_first(&s, bad[i].from, bad[i].to);
    if (!bn_metal_lint(s.buf, &err)) fail_msg("not caught: %s", bad[i].why);
    if (!strstr(err.msg, bad[i].why)) fail_msg("%s: the message '%s'", bad[i].why, err.msg);
    free(s.buf);
  }
  free(all.buf);
}

/* ---- a plan's Metal section ---- */

extern const bn_backend bn_backend_metal_sim;

/* The section round-trips to the libraries it was made from; damaged ones are refused with a
 * message, never read past their end, whatever byte is changed. */
static void test_metal_section(void **state) {
  (void)state;
  bn_gguf f;
  bn_model m;
  bn_memplan mp;
  bn_error err = {0};
  bn_pass_opts po = {.max_tokens = 16};
  if (tu_model(BNC_TEST_DATA "/t2-TQ2_0.gguf", NULL, &po, &f, &m, &mp, &err)) fail_msg("%s", err.msg);
  uint8_t *sec;
  size_t n;
  if (bn_metal_section(&m.graph, &mp, &sec, &n, &err)) fail_msg("%s", err.msg);
  for (int c = 0; c < 2; c++) {
    bn_dtype kv = c ? BN_DT_F16 : BN_DT_F32;
    bn_mtl_lib built, read;
    if (bn_metal_build(&m.graph, &mp, kv, &built, &err) || bn_metal_section_read(sec, n, &m.graph, &mp, kv, &read, &err))
      fail_msg("%s", err.msg);
    assert_true(bn_metal_lib_equal(&built, &read));
    bn_metal_lib_free(&built), bn_metal_lib_free(&read);
  }
  assert_int_not_equal(bn_metal_section_read(sec, n - 1, &m.graph, &mp, BN_DT_F32, &(bn_mtl_lib){0}, &err), BN_OK);
  uint64_t rng = 41;
  int refused = 0;
  for (int trial = 0; trial < 3000; trial++) { /* one byte changed: refused, or read as a library that still checks */
    uint8_t *bad = malloc(n);
    memcpy(bad, sec, n);
    size_t at = (size_t)(bn_rng_next(&rng) % n);
    bad[at] ^= (uint8_t)(1 + bn_rng_next(&rng) % 255);
    bn_mtl_lib l;
    if (bn_metal_section_read(bad, n, &m.graph, &mp, BN_DT_F32, &l, &err)) refused++, assert_true(err.msg[0]);
    else bn_metal_lib_free(&l);
    free(bad);
  }
  /* metal-sim runs a plan's table only if it is the one it emits: a changed kernel text is refused */
  char *hit = memmem(sec, n, "kernel void", 11);
  assert_non_null(hit);
  hit[0] = 'K';
  bn_backend_opts bo = {.g = &m.graph, .memplan = &mp, .n_ctx = 32, .device = sec, .device_bytes = n};
  bn_codegen *cg;
  assert_int_equal(bn_codegen_open(&bn_backend_metal_sim, &bo, &cg, &err), BN_E_FORMAT);
  assert_non_null(strstr(err.msg, "not the one this bnc emits"));
  hit[0] = 'k';
  if (bn_codegen_open(&bn_backend_metal_sim, &bo, &cg, &err)) fail_msg("%s", err.msg);
  bn_codegen_close(cg);
  print_message("metal section: %zu bytes; %d of 3000 one-byte changes refused (the rest: source text, or the F16 library)\n",
                n, refused);
  free(sec);
  bn_memplan_free(&mp), bn_model_free(&m), bn_gguf_close(&f);
}

/* ---- whole models through --backend metal-sim against the reference backend ---- */

/* Every position's logits of tok[0..n) in chunks of the plan's max_tokens, on backend be. */
static float *model_logits(const bn_model *m, const bn_memplan *mp, const bn_backend *be, bn_dtype kv,
                           const int32_t *tok, int n, int *jit) {
  bn_session_params sp = {.n_ctx = n, .exec = {.backend = be, .threads = 1, .kv = kv}, .sampler = bn_sampler_defaults()};
  bn_session *s;
  bn_error err = {0};
  if (bn_session_create(m, mp, &sp, &s, &err)) fail_msg("%s", err.msg);
  size_t V = (size_t)m->hp.n_vocab;
  float *out = malloc((size_t)n * V * sizeof *out);
  if (bn_session_eval(s, tok, n, out, &err)) fail_msg("%s", err.msg);
  char kinds[256];
  *jit = bn_exec_ref_nodes(bn_session_exec(s), kinds, sizeof kinds);
  bn_session_free(s);
  return out;
}

/* A model file compiled as bnc compiles it, run on metal-sim and on the reference kernels over n
 * tokens (prefill chunks of max_tokens, so every tile remainder is crossed): logits within 1e-5
 * of each position's logit range, the same greedy token at every position. */
static void check_model(const char *path, int max_tokens, int n, bn_dtype kv) {
  bn_gguf f;
  bn_model m;
  bn_memplan mp;
  bn_error err = {0};
  bn_pass_opts po = {.max_tokens = max_tokens, .verify = 1};
  if (tu_model(path, NULL, &po, &f, &m, &mp, &err)) fail_msg("%s", err.msg);
  int32_t *tok = malloc((size_t)n * sizeof *tok);
  uint64_t rng = 29;
  for (int i = 0; i < n; i++) tok[i] = (int32_t)(bn_rng_next(&rng) % (uint64_t)m.hp.n_vocab);
  int ref_nodes;
  float *want = model_logits(&m, &mp, bn_backend_find("ref"), kv, tok, n, &ref_nodes);
  float *got = model_logits(&m, &mp, &bn_backend_metal_sim, kv, tok, n, &ref_nodes);
  assert_int_equal(ref_nodes, 0); /* the device ran every node */
  size_t V = (size_t)m.hp.n_vocab;
  double worst = 0;
  int worst_at = 0;
  for (int p = 0; p < n; p++) {
    double e = tu_rel_to_range(got + p * V, want + p * V, V);
    if (e > worst) worst = e, worst_at = p;
    size_t a = 0, b = 0;
    for (size_t v = 1; v < V; v++) {
      if (got[p * V + v] > got[p * V + a]) a = v;
      if (want[p * V + v] > want[p * V + b]) b = v;
    }
    if (a != b) fail_msg("%s: position %d: greedy token %zu, the reference %zu", path, p, a, b);
  }
  print_message("%s (kv %s): %d positions, logits within %.2g of the range (position %d)\n", path,
                bn_dtype_table[kv].name, n, worst, worst_at);
  if (worst > 1e-5) fail_msg("%s: logits %.3g of the range off at position %d", path, worst, worst_at);
  free(tok), free(want), free(got);
  bn_memplan_free(&mp);
  bn_model_free(&m);
  bn_gguf_close(&f);
}

/* Every node of a compiled model, its dispatches run by metal-sim and the reference node on a copy
 * of the same arena and caches (so on the same inputs): the node's output within tol of the
 * reference's, relative to its largest magnitude (integer and QA8 outputs: the same bytes but
 * for codes moved by one on a tie of silu's exp). n tokens in one step at pos 0 after `warm`
 * earlier ones. */
static void check_nodes(const char *path, int n, int warm) {
  bn_gguf f;
  bn_model m;
  bn_memplan mp;
  bn_error err = {0};
  bn_pass_opts po = {.max_tokens = n > warm ? n : warm, .verify = 1};
  if (tu_model(path, NULL, &po, &f, &m, &mp, &err)) fail_msg("%s", err.msg);
  const bn_graph *g = &m.graph;
  bn_mtl_lib lib;
  if (bn_metal_build(g, &mp, BN_DT_F32, &lib, &err)) fail_msg("%s", err.msg);
  bn_sim_kernel ks[256];
  for (int i = 0; i < lib.n_kernels; i++)
    ks[i] = (bn_sim_kernel){.name = lib.kernels[i].name, .n_buffers = lib.kernels[i].n_buffers, .tg_block = lib.kernels[i].tg_block};
  bn_sim_lib *so;
  if (bn_sim_compile(lib.source, ks, lib.n_kernels, NULL, &so, &err)) fail_msg("%s", err.msg);
  int n_ctx = n + warm, layers = bn_ref_kv_layers(g);
  size_t ab = (size_t)mp.arena_bytes;
  uint8_t *arena = calloc(1, ab), *arena2 = calloc(1, ab);
  float *kc[16], *vc[16], *kc2[16], *vc2[16], *rope[4];
  size_t kvb[16];
  for (int L = 0; L < layers; L++) {
    kvb[L] = (size_t)bn_ref_kv_width(g, L) * n_ctx * 4;
    kc[L] = calloc(1, kvb[L]), vc[L] = calloc(1, kvb[L]), kc2[L] = malloc(kvb[L]), vc2[L] = malloc(kvb[L]);
  }
  for (int r = 0; r < lib.n_rope; r++) {
    rope[r] = malloc((size_t)n_ctx * lib.rope_dims[r] * 4);
    bn_rope_table(rope[r], n_ctx, lib.rope_dims[r], lib.rope_base[r]);
  }
  uint64_t rng = 31;
  int32_t *tok = malloc((size_t)(n + warm) * 4);
  for (int i = 0; i < n + warm; i++) tok[i] = (int32_t)(bn_rng_next(&rng) % (uint64_t)m.hp.n_vocab);
  /* the reference's view of arena2 */
  bn_ref_env env = {.g = g, .n_ctx = n_ctx, .kv = BN_DT_F32};
  int64_t sz[6];
  bn_ref_scratch_size(g, po.max_tokens, n_ctx, sz);
  bn_ref_scratch sc = {malloc(sz[0]), malloc(sz[1]), malloc(sz[2]), malloc(sz[3]), malloc(sz[4]), malloc(sz[5])};
  env.scratch = &sc;
  env.val = calloc((size_t)g->n_values, sizeof *env.val);
  env.body_val = calloc((size_t)g->n_nodes, sizeof *env.body_val);
  env.kc = (void **)kc2, env.vc = (void **)vc2;
  for (int i = 0; i < g->n_values; i++) {
    const bn_value *v = &g->values[i];
    env.val[i] = v->kind == BN_VAL_WEIGHT ? (void *)v->data : v->kind == BN_VAL_INPUT ? NULL : arena2 + mp.offset[v->node];
  }
  for (int i = 0; i < g->n_nodes; i++) {
    const bn_node *nd = &g->nodes[i];
    if (!nd->body) continue;
    env.body_val[i] = calloc((size_t)nd->body->n_values, sizeof(void *));
    for (int k = 0, a = 0; k < nd->body->n_values; k++)
      env.body_val[i][k] = nd->body->values[k].kind == BN_VAL_INPUT ? env.val[nd->in[a++]] : arena2 + mp.body_offset[i][k];
  }
  for (int step = 0; step < 2; step++) {
    int T = step ? n : warm, pos = step ? warm : 0;
    const int32_t *tk = tok + pos;
    if (!T) continue;
    for (int i = 0; i < g->n_values; i++)
      if (g->values[i].kind == BN_VAL_INPUT) env.val[i] = (void *)tk;
    env.T = T, env.pos = pos;
    struct {
      uint32_t T, pos, n_ctx, pad;
    } st = {(uint32_t)T, (uint32_t)pos, (uint32_t)n_ctx, 0};
    int d = 0;
    for (int node = 0; node < g->n_nodes; node++) {
      memcpy(arena2, arena, ab);
      for (int L = 0; L < layers; L++) memcpy(kc2[L], kc[L], kvb[L]), memcpy(vc2[L], vc[L], kvb[L]);
      for (; d < lib.n_steps && lib.steps[d].node == node; d++) {
        const bn_mtl_dispatch *ds = &lib.steps[d];
        int ki = bn_metal_kernel_for(&lib, ds, T);
        const bn_mtl_kernel *k = &lib.kernels[ki];
        void *bufs[BN_MTL_MAX_BIND];
        for (int b = 0; b < ds->n_bind; b++) {
          const bn_mtl_bind *bd = &ds->bind[b];
          bufs[b] = bd->space == BN_MTL_STEP    ? (void *)&st
                    : bd->space == BN_MTL_ARENA ? (void *)(arena + bd->offset)
                    : bd->space == BN_MTL_WEIGHT ? (void *)g->values[g->nodes[node].in[bd->index]].data
                    : bd->space == BN_MTL_TOKENS ? (void *)tk
                    : bd->space == BN_MTL_KCACHE ? (void *)kc[bd->index]
                    : bd->space == BN_MTL_VCACHE ? (void *)vc[bd->index]
                                                 : (void *)rope[bd->index];
        }
        bn_sim_grid gr = {.groups = {k->groups_x, (uint32_t)(T + (int)k->tok_tile - 1) / k->tok_tile},
                          .threads = k->threads, .tg_bytes = k->tg_bytes, .buffers = bufs};
        if (bn_sim_dispatch(so, ki, &gr, &err)) fail_msg("%s", err.msg);
      }
      bn_ref_run_node(&env, node);
      const bn_value *ov = &g->values[g->nodes[node].out];
      size_t bytes = (size_t)bn_value_bytes(ov->dtype, &ov->shape, T);
      const uint8_t *got = arena + mp.offset[node], *want = arena2 + mp.offset[node];
      if (ov->dtype == BN_DT_F32) {
        double big = 0, e = 0;
        int at = 0;
        for (size_t i = 0; i < bytes / 4; i++) big = fmax(big, fabs(((const float *)want)[i]));
        for (size_t i = 0; i < bytes / 4; i++) {
          double x = fabs((double)((const float *)got)[i] - ((const float *)want)[i]) / fmax(big, 1e-30);
          if (x > e) e = x, at = (int)i;
        }
        if (e > 1e-6)
          print_message("step %d node %d %%%s (%s): %.3g of its largest at [%d]\n", step, node, ov->name,
                        bn_op_table[g->nodes[node].op].name, e, at);
        if (e > 1e-6) fail_msg("%s: node %%%s off by %.3g of its largest", path, ov->name, e);
      } else if (memcmp(got, want, bytes))
        fail_msg("%s: node %%%s (%s) differs from the reference's bytes", path, ov->name, bn_dtype_table[ov->dtype].name);
    }
  }
  for (int i = 0; i < g->n_nodes; i++) free(env.body_val[i]);
  free(env.body_val), free(env.val), free(tok), free(arena), free(arena2);
  free(sc.q), free(sc.trit), free(sc.s), free(sc.bscale), free(sc.fw), free(sc.scores);
  for (int L = 0; L < layers; L++) free(kc[L]), free(vc[L]), free(kc2[L]), free(vc2[L]);
  for (int r = 0; r < lib.n_rope; r++) free(rope[r]);
  bn_sim_free(so);
  bn_metal_lib_free(&lib);
  bn_memplan_free(&mp);
  bn_model_free(&m);
  bn_gguf_close(&f);
}

static void test_nodes(void **state) {
  (void)state;
  check_nodes(BNC_TEST_DATA "/t2-TQ2_0.gguf", 24, 36);
}

static void test_models(void **state) {
  (void)state;
  check_model(BNC_TEST_DATA "/t2-TQ2_0.gguf", 16, 40, BN_DT_F32);
  check_model(BNC_TEST_DATA "/b158-TQ2_0.gguf", 16, 40, BN_DT_F32);
  check_model(BNC_TEST_DATA "/t2-I2_S.gguf", 8, 21, BN_DT_F16);
  check_model(BNC_SOURCE_DIR "/examples/bitnet-kjv-tq2_0.gguf", 64, 200, BN_DT_F32);
  /* llama with TQ2_0's block scales (TG2, the gate without a norm) and qwen3 with PQ2_0's (TG2H, per-head norms) */
  check_model(BNC_TEST_DATA "/hf/llama-groups.gguf", 16, 40, BN_DT_F32);
  check_model(BNC_TEST_DATA "/hf/qwen3-pq2_0.gguf", 16, 40, BN_DT_F16);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ternary_matmul),
      cmocka_unit_test(test_group_matmul), cmocka_unit_test(test_float_matmul), cmocka_unit_test(test_norm_quant),
      cmocka_unit_test(test_attention),      cmocka_unit_test(test_rope_rows),      cmocka_unit_test(test_mutations_fail), cmocka_unit_test(test_msl_only), cmocka_unit_test(test_metal_section), cmocka_unit_test(test_nodes), cmocka_unit_test(test_models),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
