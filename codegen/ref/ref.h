/* The reference kernels and interpreter: plain scalar C with BitNet b1.58
 * semantics. This is the oracle every fast backend is tested against. */
#ifndef BN_REF_H
#define BN_REF_H

#include <stdint.h>

#include "../../ir/ir.h"

/* --- kernels (row-major, T rows) --- */

/* Per-token absmax int8: s = 127 / max(max|x|, 1e-5), q = clamp(round_half_even(x*s), -128, 127). Returns s. */
float bn_ref_quantize_row(const float *x, int64_t k, int8_t *q);
/* quantize: T rows of x into QA8 rows (codes, scale s, sum of codes). */
void bn_ref_quantize(const float *x, int64_t T, int64_t K, uint8_t *qa);
/* y[t][n] = sum_i q[t][i] * w[n][i] (int32, exact) for ternary weights; then
 * y_f = acc * block_scale / s[t] (* tensor_scale). scratch: trit[K], bscale[K / 128]. */
void bn_ref_bitlinear(const float *x, int64_t T, int64_t K, int64_t N, const bn_value *w, float tensor_scale,
                      float *y, int8_t *q_scratch, float *s_scratch, int8_t *trit, float *bscale);
/* acc[t][n] = sum_i q[t][i] * trit[n][i] over QA8 rows (exact int32). TG2 weights: the sum over
 * 256-groups (TG2H: 128) g of (that sum over g) * scale[n][g], in double (exact while a row's scales lie within
 * 2^20 of each other), rounded once to the float stored in acc's place; dequant's row scale is then 1. */
void bn_ref_tmatmul(const uint8_t *qa, int64_t T, int64_t K, int64_t N, const bn_value *w, int32_t *acc,
                    int8_t *trit, float *bscale);
/* y[t][n] = acc[t][n] * row_scale(W, n) / s[t] * tensor_scale. */
void bn_ref_dequant(const int32_t *acc, const uint8_t *qa, int64_t T, int64_t K, int64_t N, const bn_value *w,
                    float tensor_scale, float *y);
/* The sum of squares of a norm, in double, in one fixed order that every backend follows (so
 * the norm, and the int8 codes after it, are the same bits): lane i % L accumulates element i,
 * L = 16 where n is a multiple of 16, else 8 where n is a multiple of 8, else 1; then the
 * lanes are added in order. Each square of a float is exact in double. */
enum { BN_SS_LANES = 16 };
static inline int64_t bn_ss_lanes(int64_t n) { return n % 16 == 0 ? 16 : n % 8 == 0 ? 8 : 1; }
double bn_ref_sum_squares(const float *x, int64_t n);
void bn_ref_rmsnorm(const float *x, int64_t T, int64_t n, const float *w, float eps, float *y);
/* NeoX RoPE over the first `dims` dims of each head; token t is at position pos + t. */
/* RoPE (NeoX halves): dimension i of each head turns with i + dims/2 by theta = p * base^(-2i/dims),
 * taken in double and rounded to float cos and sin; the rotation is float products and sums, as
 * in transformers, so every backend (which tables the same floats) gets the same bits. */
void bn_ref_rope_angle(int p, int i, int dims, double base, float *c, float *s);
void bn_ref_rope(const float *x, int64_t T, int heads, int head_dim, int dims, float base, int pos, float *y);
/* Causal GQA attention; K/V rows of this step are first written into the cache at pos..pos+T-1.
 * A layer's cache is head-major, [kv_heads][n_ctx][head_dim]: a head's keys lie one after another;
 * its elements of type kv: F32, or F16 (rounded to nearest even when stored). */
void bn_ref_attention(const float *q, const float *k, const float *v, int64_t T, int heads, int kv_heads,
                      int head_dim, int pos, int n_ctx, bn_dtype kv, void *kcache, void *vcache, float *scores, float *y);
/* The same in two steps, so heads can be split over threads: store this
 * step's K/V rows of KV heads [h0, h1), then attend for heads [h0, h1)
 * (scores: n_ctx floats). */
/* One row: x[0..n) into cache c of type kv at element `at`. */
void bn_ref_kv_row(bn_dtype kv, void *c, int64_t at, const float *x, int n);
void bn_ref_kv_store(const float *k, const float *v, int64_t T, int kv_heads, int head_dim, int pos, int n_ctx,
                     bn_dtype kv, void *kcache, void *vcache, int h0, int h1);
void bn_ref_attention_heads(const float *q, int64_t T, int heads, int kv_heads, int head_dim, int pos, int n_ctx,
                            bn_dtype kv, const void *kcache, const void *vcache, float *scores, float *y, int h0, int h1);
/* logits[t][n] = sum_i x[t][i] * W[n][i] with W of any non-ternary type. */
void bn_ref_matmul_f(const float *x, int64_t T, int64_t K, int64_t N, const bn_value *w, float *wrow, float *y);

/* --- running one node --- */

/* Scratch the kernels need, sized for the largest row and step. */
typedef struct {
  int8_t *q, *trit;
  float *s, *bscale, *fw, *scores;
} bn_ref_scratch;

/* Where a node runs: the buffer of every value, the step, the KV cache. */
typedef struct bn_ref_env {
  const bn_graph *g;
  void **val;          /* per value id: its buffer (weights: their data) */
  int64_t T;           /* tokens in this step */
  int pos;             /* position of the first */
  void **kc, **vc;     /* per layer: [kv_heads][n_ctx][head_dim] of type kv */
  bn_dtype kv;         /* the caches' element type: F32 (0) or F16 */
  int n_ctx;
  bn_ref_scratch *scratch;
  void ***body_val;    /* per node of g: the value buffers of its fused body, else NULL */
} bn_ref_env;

/* Bytes of scratch for graph g (bodies included) at up to max_tokens tokens and n_ctx positions. */
void bn_ref_scratch_size(const bn_graph *g, int max_tokens, int n_ctx, int64_t sizes[6]);
void bn_ref_run_node(const bn_ref_env *env, int node);
/* The number of KV-cache layers g uses (1 + the largest attention layer). */
int bn_ref_kv_layers(const bn_graph *g);
/* KV width (kv_heads * head_dim) of layer L, 0 if no attention uses it. */
int64_t bn_ref_kv_width(const bn_graph *g, int layer);

/* --- the self-contained interpreter --- */
typedef struct bn_ref bn_ref;

/* Prepares to run g on up to max_tokens tokens per call with a KV cache of
 * n_ctx positions. All memory is allocated here; eval allocates nothing. */
bn_status bn_ref_create(const bn_graph *g, int max_tokens, int n_ctx, bn_ref **out, bn_error *err);
/* Runs tokens[0..n) at positions pos..pos+n-1; *out points at the first
 * output, [n x width] floats, valid until the next call. */
bn_status bn_ref_eval(bn_ref *r, const int32_t *tokens, int n, int pos, const float **out, bn_error *err);
/* Checks a step of n tokens at pos: 1 <= n <= max_tokens, the positions fit
 * n_ctx, every id is in g's vocabulary; then stores the ids in env's token
 * buffer and sets T and pos. */
bn_status bn_ref_begin_step(bn_ref_env *env, int32_t *token_buf, const int32_t *tokens, int n, int pos, int max_tokens,
                            int n_ctx, bn_error *err);
int64_t bn_ref_output_width(const bn_ref *r);
size_t bn_ref_bytes(const bn_ref *r); /* activations + KV cache */
void bn_ref_free(bn_ref *r);

#endif
