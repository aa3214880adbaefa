/* The compile-time tuner: times the packed (dot-product), the lookup-table and
 * the 1.6-bit matmul kernels of one shape on this machine, one thread, for a decode step
 * (one token) and a prompt chunk, over random weights (their timing does not
 * depend on the values). Decode steps read every layer's weights from memory,
 * not cache, so the decode timing cycles through copies of the weights that
 * together exceed the last-level cache. */
#include <stdlib.h>
#include <string.h>

#include "tune.h"

#include "../ir/clock.h"
#include "../ir/quant.h"
#include "../ir/rng.h"

enum { STREAM_BYTES = 96 << 20 }; /* more than the last-level caches of the CPUs bnc targets */

/* The median of 5 timings of enough calls to take ~20 ms each, per call, in
 * microseconds; call c reads copy c % copies of the weights (stride apart). */
static double time_kernel(bn_mm_kernel k, const uint8_t *qa, const uint8_t *w, size_t stride, int copies, float *y,
                          int64_t T, int64_t N) {
  double t[5];
  for (int c = 0; c < copies; c++) k(qa, w + stride * (size_t)c, y, NULL, T, 0, N); /* warm-up: page faults, code */
  double t0 = bn_clock_s();
  k(qa, w, y, NULL, T, 0, N);
  double once = bn_clock_s() - t0;
  int calls = once > 0.02 ? 1 : (int)(0.02 / (once > 1e-7 ? once : 1e-7)) + 1, at = 0;
  for (int r = 0; r < 5; r++) {
    t0 = bn_clock_s();
    for (int c = 0; c < calls; c++, at = (at + 1) % copies) k(qa, w + stride * (size_t)at, y, NULL, T, 0, N);
    t[r] = (bn_clock_s() - t0) / calls * 1e6;
  }
  for (int i = 1; i < 5; i++)
    for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
      double x = t[j];
      t[j] = t[j - 1], t[j - 1] = x;
    }
  return t[2];
}

const bn_kfamily bn_layout_family[BN_FIXTURES] = {BN_K_MATMUL, BN_K_MATMUL_LUT, BN_K_MATMUL_T1, BN_K_MATMUL_G, BN_K_MATMUL_G};
static const bn_dtype bn_layout_dtype[BN_FIXTURES] = {BN_DT_TP2, BN_DT_TL2, BN_DT_TP1, BN_DT_TG2, BN_DT_TG2H};
const char *const bn_layout_name[BN_FIXTURES] = {"packed", "lookup table", "1.6-bit", "scale per 256", "scale per 128"};

bn_kkey bn_layout_key(int l, int64_t K, int64_t N) {
  bn_kfamily fam = bn_layout_family[l];
  return (bn_kkey){.family = fam, .k = K, .n = N, .variant = BN_MM_DQ, .cache = fam == BN_K_MATMUL_G ? bn_layout_dtype[l] : 0};
}

bn_status bn_mm_fixture_make(int64_t K, int64_t N, int64_t T, int stream, bn_mm_fixture *f, bn_error *err) {
  memset(f, 0, sizeof *f);
  int64_t d[2] = {N, K};
  bn_shape s = bn_shape_make(2, d);
  size_t wb = bn_value_bytes(BN_DT_TP2, &s, 0), rb = (size_t)bn_qa8_row_bytes(K);
  if (!wb || T < 1 || T > 65536 || K > (1 << 20))
    return bn_fail(err, BN_E_INVALID, "a K=%lld N=%lld T=%lld matmul has no valid shape", (long long)K, (long long)N,
                   (long long)T);
  size_t most = 0;
  for (int l = 0; l < BN_FIXTURES; l++) {
    f->bytes[l] = bn_value_bytes(bn_layout_dtype[l], &s, 0);
    most = f->bytes[l] > most ? f->bytes[l] : most;
  }
  f->stride = (most + 63) / 64 * 64, f->copies = stream ? (int)(STREAM_BYTES / f->stride) + 1 : 1;
  int fail = 0;
  for (int l = 0; l < BN_FIXTURES; l++)
    if ((l != BN_LAYOUT_TL2 || N % 16 == 0) && (bn_layout_family[l] != BN_K_MATMUL_G || N % 4 == 0))
      fail |= !(f->w[l] = aligned_alloc(64, f->stride * (size_t)f->copies));
  f->qa = aligned_alloc(64, rb * (size_t)T);
  f->y = malloc((size_t)N * (size_t)T * sizeof *f->y);
  if (fail || !f->qa || !f->y) {
    bn_mm_fixture_free(f);
    return bn_fail(err, BN_E_NOMEM, "out of memory for a K=%lld N=%lld T=%lld matmul", (long long)K, (long long)N, (long long)T);
  }
  uint8_t *tp = f->w[BN_LAYOUT_TP2];
  uint64_t rng = 17;
  for (size_t i = 0; i < wb; i++) tp[i] = (uint8_t)(bn_rng_next(&rng) & 0x55); /* codes 0 or 1 */
  for (int64_t r = 0; r < N; r++) memcpy(tp + N * K / 4 + 4 * r, &(float){1.0f}, 4);
  for (size_t i = 0; i < rb * (size_t)T; i++) f->qa[i] = (uint8_t)(bn_rng_next(&rng) % 200);
  for (int64_t t = 0; t < T; t++) memcpy(f->qa + rb * (size_t)t + rb - 64, &(float){1.0f}, 4);
  if (f->w[BN_LAYOUT_TL2]) bn_tl2_from_tp2(tp, (uint64_t)N, (uint64_t)K, f->w[BN_LAYOUT_TL2]);
  bn_tp1_from_tp2(tp, (uint64_t)N, (uint64_t)K, f->w[BN_LAYOUT_TP1]);
  for (int l = BN_LAYOUT_TG2; l <= BN_LAYOUT_TG2H; l++) /* TP2's codes, then f16 scales in [0.5, 2) */
    if (f->w[l]) {
      memcpy(f->w[l], tp, (size_t)(N * K / 4));
      for (size_t i = (size_t)(N * K / 4); i + 1 < f->bytes[l]; i += 2) {
        uint16_t h = (uint16_t)(0x3800 + bn_rng_next(&rng) % 0x800);
        memcpy(f->w[l] + i, &h, 2);
      }
    }
  for (int l = 0; l < BN_FIXTURES; l++)
    for (int c = 1; c < f->copies && f->w[l]; c++) memcpy(f->w[l] + f->stride * (size_t)c, f->w[l], f->bytes[l]);
  return BN_OK;
}

void bn_mm_fixture_free(bn_mm_fixture *f) {
  for (int l = 0; l < BN_FIXTURES; l++) free(f->w[l]);
  free(f->qa), free(f->y);
  memset(f, 0, sizeof *f);
}

bn_status bn_tune_matmul(bn_codegen *cg, int64_t K, int64_t N, int batch, bn_tune *out, bn_error *err) {
  memset(out, 0, sizeof *out);
  out->k = K, out->n = N, out->batch = batch;
  if (K % 256 || batch < 1) return BN_OK; /* no packed layout applies */
  bn_mm_fixture f;
  bn_status st = bn_mm_fixture_make(K, N, batch, 1, &f, err);
  if (st) return st;
  /* the work of llama-bench's pp128 + tg64: 128 / batch prompt chunks and 64 decode steps;
   * another layout must win by 3 % (noise) to be chosen */
  double best = 0;
  for (int l = 0; l < BN_LAYOUTS && !st; l++) {
    bn_kkey key = bn_layout_key(l, K, N);
    void *fn;
    if (!f.w[l] || !bn_codegen_supports(cg, &key)) continue;
    if ((st = bn_codegen_get(cg, &key, &fn, err))) break;
    out->decode_us[l] = time_kernel((bn_mm_kernel)fn, f.qa, f.w[l], f.stride, f.copies, f.y, 1, N);
    out->prefill_us[l] = time_kernel((bn_mm_kernel)fn, f.qa, f.w[l], f.stride, f.copies, f.y, batch, N);
    double cost = 128.0 / batch * out->prefill_us[l] + 64 * out->decode_us[l];
    if (l == 0 || cost < 0.97 * best) best = cost, out->best = l;
  }
  bn_mm_fixture_free(&f);
  return st;
}
