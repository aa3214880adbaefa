/* The compile-time tuner: times the packed (dot-product) and the lookup-table
 * matmul kernels of one shape on this machine, one thread, for a decode step
 * (one token) and a prompt chunk, over random weights (their timing does not
 * depend on the values). Decode steps read every layer's weights from memory,
 * not cache, so the decode timing cycles through copies of the weights that
 * together exceed the last-level cache. */
#include <stdlib.h>
#include <string.h>

#include "../../ir/clock.h"
#include "../../ir/quant.h"
#include "../../ir/rng.h"
#include "llvm.h"

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

bn_status bn_llvm_tune_matmul(bn_llvm *j, int64_t K, int64_t N, int batch, bn_tune *out, bn_error *err) {
  memset(out, 0, sizeof *out);
  out->k = K, out->n = N, out->batch = batch;
  if (K % 256 || N % 16 || batch < 1) return BN_OK; /* only the packed kernel applies */
  int64_t d[2] = {N, K};
  bn_shape s = bn_shape_make(2, d);
  size_t wb = bn_value_bytes(BN_DT_TP2, &s, 0), rb = (size_t)bn_qa8_row_bytes(K), stride = (wb + 63) / 64 * 64;
  int copies = (int)(STREAM_BYTES / stride) + 1;
  uint8_t *tp = aligned_alloc(64, stride * (size_t)copies), *tl = aligned_alloc(64, stride * (size_t)copies);
  uint8_t *qa = aligned_alloc(64, rb * (size_t)batch);
  float *y = malloc((size_t)N * (size_t)batch * sizeof *y);
  if (!tp || !tl || !qa || !y) {
    free(tp), free(tl), free(qa), free(y);
    return bn_fail(err, BN_E_NOMEM, "tune: out of memory for K=%lld N=%lld", (long long)K, (long long)N);
  }
  uint64_t rng = 17;
  for (size_t i = 0; i < wb; i++) tp[i] = (uint8_t)(bn_rng_next(&rng) & 0x55); /* codes 0 or 1 */
  for (int64_t r = 0; r < N; r++) memcpy(tp + N * K / 4 + 4 * r, &(float){1.0f}, 4);
  for (size_t i = 0; i < rb * (size_t)batch; i++) qa[i] = (uint8_t)(bn_rng_next(&rng) % 200);
  for (int t = 0; t < batch; t++) memcpy(qa + rb * (size_t)t + rb - 64, &(float){1.0f}, 4);
  bn_tl2_from_tp2(tp, (uint64_t)N, (uint64_t)K, tl);
  for (int c = 1; c < copies; c++) memcpy(tp + stride * (size_t)c, tp, wb), memcpy(tl + stride * (size_t)c, tl, wb);
  bn_status st = BN_OK;
  for (int p = 0; p < 2 && !st; p++) {
    bn_llvm_key key = {p ? BN_K_MATMUL_LUT : BN_K_MATMUL, K, N, BN_MM_DQ, 0};
    void *fn;
    if ((st = bn_llvm_get(j, &key, &fn, err))) break;
    out->decode_us[p] = time_kernel((bn_mm_kernel)fn, qa, p ? tl : tp, stride, copies, y, 1, N);
    out->prefill_us[p] = time_kernel((bn_mm_kernel)fn, qa, p ? tl : tp, stride, copies, y, batch, N);
  }
  /* the work of llama-bench's pp128 + tg64: 128 / batch prompt chunks and 64 decode steps;
   * the tables must win by 3 % (noise) to be chosen */
  double cost[2];
  for (int p = 0; p < 2; p++) cost[p] = 128.0 / batch * out->prefill_us[p] + 64 * out->decode_us[p];
  out->lut = !st && cost[1] < 0.97 * cost[0];
  free(tp), free(tl), free(qa), free(y);
  return st;
}
