/* Reference kernels. Numerics follow Hugging Face transformers' BitNet (README,
 * Numerics): float32 activations, int32 ternary
 * accumulation, reductions in double so the oracle is the accurate side. */
#include <math.h>
#include <string.h>

#include "../../ir/quant.h"
#include "ref.h"

float bn_ref_quantize_row(const float *x, int64_t k, int8_t *q) {
  float m = 0;
  for (int64_t i = 0; i < k; i++) m = fmaxf(m, fabsf(x[i]));
  float s = 127.0f / fmaxf(m, 1e-5f);
  for (int64_t i = 0; i < k; i++) {
    float r = nearbyintf(x[i] * s); /* default rounding mode: half to even */
    q[i] = (int8_t)(r > 127 ? 127 : r < -128 ? -128 : r);
  }
  return s;
}

void bn_ref_quantize(const float *x, int64_t T, int64_t K, uint8_t *qa) {
  int64_t stride = bn_qa8_row_bytes(K), meta = stride - 64;
  for (int64_t t = 0; t < T; t++) {
    uint8_t *row = qa + t * stride;
    float s = bn_ref_quantize_row(x + t * K, K, (int8_t *)row);
    int32_t sum = 0;
    for (int64_t i = 0; i < K; i++) sum += (int8_t)row[i];
    memset(row + K, 0, (size_t)(meta - K));
    memcpy(row + meta, &s, 4);
    memcpy(row + meta + 4, &sum, 4);
  }
}

void bn_ref_tmatmul(const uint8_t *qa, int64_t T, int64_t K, int64_t N, const bn_value *w, int32_t *acc,
                    int8_t *trit, float *bscale) {
  int64_t stride = bn_qa8_row_bytes(K);
  uint64_t total = (uint64_t)N * (uint64_t)K;
  for (int64_t n = 0; n < N; n++) {
    bn_ternary_decode(w->dtype, w->data, total, (uint64_t)(n * K), (uint64_t)K, trit, bscale);
    for (int64_t t = 0; t < T; t++) {
      const int8_t *q = (const int8_t *)(qa + t * stride);
      if (w->dtype == BN_DT_TG2 || w->dtype == BN_DT_TG2H) { /* each group's exact sum times its scale, in double */
        double sum = 0;
        int64_t gs = w->dtype == BN_DT_TG2 ? 256 : 128;
        for (int64_t g = 0; g < K / gs; g++) {
          int32_t a = 0;
          for (int64_t i = g * gs; i < g * gs + gs; i++) a += q[i] * trit[i];
          sum += (double)a * bscale[g];
        }
        float f = (float)sum;
        memcpy(&acc[t * N + n], &f, 4);
        continue;
      }
      int32_t a = 0;
      for (int64_t i = 0; i < K; i++) a += q[i] * trit[i];
      acc[t * N + n] = a;
    }
  }
}

void bn_ref_dequant(const int32_t *acc, const uint8_t *qa, int64_t T, int64_t K, int64_t N, const bn_value *w,
                    float tensor_scale, float *y) {
  int64_t stride = bn_qa8_row_bytes(K);
  uint64_t total = (uint64_t)N * (uint64_t)K;
  for (int64_t n = 0; n < N; n++) {
    int grouped = w->dtype == BN_DT_TG2 || w->dtype == BN_DT_TG2H;
    double rs = grouped ? 1 : bn_ternary_row_scale(w->dtype, w->data, total, (uint64_t)n, (uint64_t)K);
    for (int64_t t = 0; t < T; t++) {
      float s, f;
      memcpy(&s, qa + t * stride + stride - 64, 4);
      memcpy(&f, &acc[t * N + n], 4); /* TG2: the tmatmul's group-scaled float */
      double a = grouped ? (double)f : (double)acc[t * N + n];
      y[t * N + n] = (float)(a * rs / s * tensor_scale); /* as bn_ref_bitlinear */
    }
  }
}

void bn_ref_bitlinear(const float *x, int64_t T, int64_t K, int64_t N, const bn_value *w, float tensor_scale,
                      float *y, int8_t *q, float *s, int8_t *trit, float *bscale) {
  int64_t be = bn_ternary_group(w->dtype, K);
  uint64_t total = (uint64_t)N * (uint64_t)K;
  for (int64_t t = 0; t < T; t++) s[t] = bn_ref_quantize_row(x + t * K, K, q + t * K);
  for (int64_t n = 0; n < N; n++) {
    bn_ternary_decode(w->dtype, w->data, total, (uint64_t)(n * K), (uint64_t)K, trit, bscale);
    for (int64_t t = 0; t < T; t++) {
      const int8_t *qt = q + t * K;
      /* Blocks sharing a scale (all of them, in real models) accumulate in
       * one exact int32; a new scale flushes the sum. */
      double sum = 0;
      int32_t acc = 0;
      float cur = bscale[0];
      for (int64_t b = 0; b < K / be; b++) {
        if (bscale[b] != cur) {
          sum += (double)acc * cur;
          acc = 0;
          cur = bscale[b];
        }
        for (int64_t i = b * be; i < (b + 1) * be; i++) acc += qt[i] * trit[i];
      }
      sum += (double)acc * cur;
      y[t * N + n] = (float)(sum / s[t] * tensor_scale);
    }
  }
}

double bn_ref_sum_squares(const float *x, int64_t n) {
  double lane[BN_SS_LANES] = {0}, ss = 0;
  int64_t l = bn_ss_lanes(n);
  for (int64_t i = 0; i < n; i++) lane[i % l] += (double)x[i] * x[i]; /* each product exact in double */
  for (int64_t k = 0; k < l; k++) ss += lane[k];
  return ss;
}

void bn_ref_rmsnorm(const float *x, int64_t T, int64_t n, const float *w, float eps, float *y) {
  for (int64_t t = 0; t < T; t++) {
    const float *r = x + t * n;
    double ss = bn_ref_sum_squares(r, n);
    float inv = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++) y[t * n + i] = r[i] * inv * w[i];
  }
}

void bn_ref_rope_angle(int p, int i, int dims, double base, float *c, float *s) {
  double theta = (double)p * pow(base, -2.0 * i / dims);
  *c = (float)cos(theta), *s = (float)sin(theta);
}

void bn_ref_rope(const float *x, int64_t T, int heads, int head_dim, int dims, float base, int pos, float *y) {
  int half = dims / 2;
  for (int64_t t = 0; t < T; t++)
    for (int h = 0; h < heads; h++) {
      const float *a = x + (t * heads + h) * head_dim;
      float *o = y + (t * heads + h) * head_dim;
      memcpy(o, a, (size_t)head_dim * sizeof *o);
      for (int i = 0; i < half; i++) {
        float c, s;
        bn_ref_rope_angle(pos + (int)t, i, dims, base, &c, &s);
        float ac = a[i] * c, bs = a[i + half] * s, as = a[i] * s, bc = a[i + half] * c; /* each product rounded */
        o[i] = ac - bs;
        o[i + half] = as + bc;
      }
    }
}

void bn_ref_kv_row(bn_dtype kv, void *c, int64_t at, const float *x, int n) {
  if (kv == BN_DT_F16)
    for (int i = 0; i < n; i++) ((uint16_t *)c)[at + i] = bn_float_to_half(x[i]);
  else memcpy((float *)c + at, x, (size_t)n * sizeof(float));
}

void bn_ref_kv_store(const float *k, const float *v, int64_t T, int kv_heads, int head_dim, int pos, int n_ctx,
                     bn_dtype kv, void *kc, void *vc, int h0, int h1) {
  for (int64_t t = 0; t < T; t++)
    for (int h = h0; h < h1; h++) {
      int64_t from = (t * kv_heads + h) * head_dim, to = ((int64_t)h * n_ctx + pos + t) * head_dim;
      bn_ref_kv_row(kv, kc, to, k + from, head_dim);
      bn_ref_kv_row(kv, vc, to, v + from, head_dim);
    }
}

void bn_ref_attention(const float *q, const float *k, const float *v, int64_t T, int heads, int kv_heads,
                      int head_dim, int pos, int n_ctx, bn_dtype kv, void *kc, void *vc, float *scores, float *y) {
  bn_ref_kv_store(k, v, T, kv_heads, head_dim, pos, n_ctx, kv, kc, vc, 0, kv_heads);
  bn_ref_attention_heads(q, T, heads, kv_heads, head_dim, pos, n_ctx, kv, kc, vc, scores, y, 0, heads);
}

/* Element i of a cache of type kv (F32 or F16). */
static float kv_at(bn_dtype kv, const void *c, int64_t i) {
  return kv == BN_DT_F16 ? bn_half_to_float(((const uint16_t *)c)[i]) : ((const float *)c)[i];
}

void bn_ref_attention_heads(const float *q, int64_t T, int heads, int kv_heads, int head_dim, int pos, int n_ctx,
                            bn_dtype kv, const void *kc, const void *vc, float *scores, float *y, int h0, int h1) {
  int group = heads / kv_heads;
  double scale = 1.0 / sqrt((double)head_dim);
  for (int64_t t = 0; t < T; t++)
    for (int h = h0; h < h1; h++) {
      const float *qh = q + (t * heads + h) * head_dim;
      int64_t base = (int64_t)(h / group) * n_ctx * head_dim; /* the KV head's rows */
      int64_t n = pos + t + 1;
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j < n; j++) {
        double d = 0;
        for (int i = 0; i < head_dim; i++) d += (double)qh[i] * kv_at(kv, kc, base + j * head_dim + i);
        scores[j] = (float)(d * scale);
        mx = fmax(mx, scores[j]);
      }
      for (int64_t j = 0; j < n; j++) sum += (scores[j] = (float)exp(scores[j] - mx));
      float *o = y + (t * heads + h) * head_dim;
      for (int i = 0; i < head_dim; i++) {
        double acc = 0;
        for (int64_t j = 0; j < n; j++) acc += (double)scores[j] * kv_at(kv, vc, base + j * head_dim + i);
        o[i] = (float)(acc / sum);
      }
    }
}

void bn_ref_matmul_f(const float *x, int64_t T, int64_t K, int64_t N, const bn_value *w, float *wrow, float *y) {
  uint64_t total = (uint64_t)N * (uint64_t)K;
  for (int64_t n = 0; n < N; n++) {
    bn_dequant(w->dtype, w->data, total, (uint64_t)(n * K), (uint64_t)K, wrow);
    for (int64_t t = 0; t < T; t++) {
      double acc = 0;
      for (int64_t i = 0; i < K; i++) acc += (double)x[t * K + i] * wrow[i];
      y[t * N + n] = (float)acc;
    }
  }
}
