/* Kernel families (kernels.def): their ids, calling conventions and keys, shared by
 * every backend, the executor and the tools. A kernel is generated for one key
 * (family, constant shape, variant) and called through its family's function type. */
#ifndef BN_KERNELS_H
#define BN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "../ir/ir.h"

/* What a ternary matmul kernel writes for each token t and row n:
 *   ACC:    acc[t][n] = sum_k q[t][k] * trit[n][k]                (int32, exact)
 *   DQ:     y[t][n]   = acc * row_scale[n] / s[t]
 *   DQ_ADD: y[t][n]   = resid[t][n] + acc * row_scale[n] / s[t]
 * (the dequantization in double, as the reference kernels do, so results
 * are bit-identical to them). */
typedef enum { BN_MM_ACC, BN_MM_DQ = BN_FUSED_DQ, BN_MM_DQ_ADD = BN_FUSED_DQ_ADD } bn_mm_mode;

/* qa: T rows of QA8 (K codes); w: TP2 [N, K] (the lookup-table kernels: TL2,
 * and n0, n1 multiples of 16; MATMUL_T1: TP1; MATMUL_G: TG2, whose ACC mode writes the group-scaled
 * float sums of bn_ref_tmatmul and DQ modes divide those by s); rows n0..n1 of the output. With a norm + quantize
 * prologue (key.pro) the kernel is a bn_mmp_kernel: qa = T rows of QA8 scratch it
 * fills first from x (T float rows, as bn_nq_kernel reads them) with norm weights
 * wn and tmp (K floats of scratch, the gate); then rows n0..n1 of the matmul. */
typedef void (*bn_mm_kernel)(const uint8_t *qa, const uint8_t *w, void *out, const float *resid, int64_t T, int64_t n0,
                             int64_t n1);
typedef void (*bn_mmp_kernel)(uint8_t *qa, const uint8_t *w, void *out, const float *resid, const float *x,
                              const float *wn, float *tmp, int64_t T, int64_t n0, int64_t n1);

/* x: T rows of K floats; w: N rows of K (f32, f16, q8_0, q4_0, q6_k); y[t][n] for rows n0..n1. */
typedef void (*bn_mf_kernel)(const float *x, const void *w, float *y, int64_t T, int64_t n0, int64_t n1);

/* x: T rows (K floats, or 2K for the gate: g | u); w: K norm weights; qa: T QA8 rows;
 * tmp: K floats of scratch (the gate); rows t0..t1. */
typedef void (*bn_nq_kernel)(const float *x, const float *w, uint8_t *qa, float *tmp, int64_t T, int64_t t0, int64_t t1);
enum { BN_NQ_PLAIN = BN_FUSED_NORM, BN_NQ_GATE_RELU2 = BN_FUSED_GATE_RELU2, BN_NQ_GATE_SILU = BN_FUSED_GATE_SILU,
       BN_NQ_RMSNORM, /* RMSNORM: qa is K floats per row */
       BN_NQ_QUANT,   /* QUANT: a quantize alone (llama's and qwen3's, without sub-norms): w unused */
       BN_NQ_GATE_RELU2_Q = BN_FUSED_GATE_RELU2_Q, BN_NQ_GATE_SILU_Q = BN_FUSED_GATE_SILU_Q }; /* a gate, then quantize: w unused */
/* Whether a BN_NQ_* mode reads g | u rows (2K floats) through a gate, and whether it normalizes. */
static inline int bn_nq_gated(int mode) {
  return mode == BN_NQ_GATE_RELU2 || mode == BN_NQ_GATE_SILU || mode == BN_NQ_GATE_RELU2_Q || mode == BN_NQ_GATE_SILU_Q;
}
static inline int bn_nq_normed(int mode) { return mode <= BN_NQ_RMSNORM; }

/* Causal GQA attention of heads h0..h1 for T tokens at pos.. over the caches of n_ctx
 * positions, head-major as bn_ref_kv_store writes them (this step's K/V stored already), their
 * elements of the key's type (bn_kkey.cache);
 * scores: bn_attn_scores(T, n_ctx) floats of scratch (T score rows of pos + T floats, then T
 * inverse sums). */
static inline int64_t bn_attn_scores(int64_t T, int64_t n_ctx) { return T * (n_ctx + 1); }
typedef void (*bn_attn_kernel)(const float *q, const void *kc, const void *vc, float *y, float *scores, int64_t T,
                               int64_t pos, int64_t h0, int64_t h1, int64_t n_ctx);

/* Row kernels, rows t0..t1: the embedding gather (in: token ids, w: the table) and the
 * column slice (in: the rows sliced; w unused). */
typedef void (*bn_rows_kernel)(const void *in, const void *w, float *y, int64_t T, int64_t t0, int64_t t1);

/* RoPE of heads h0..h1 for T tokens at pos..; table: n_ctx rows of head_dim/2 cosines, then
 * as many of sines (bn_rope_table). */
typedef void (*bn_rope_kernel)(const float *x, float *y, const float *table, int64_t T, int64_t pos, int64_t h0,
                               int64_t h1, int64_t n_ctx);
/* Fills the table: angle (pos * base^(-2i/dims)) as the reference computes it, rounded to float. */
void bn_rope_table(float *table, int n_ctx, int dims, double base);

/* 8 x 4 x lanes int8 multiply-adds an iteration on registers (bn_codegen_info.lanes): the
 * machine's int8 peak, for bnc bench. */
typedef void (*bn_peak_kernel)(const void *in, void *out, int64_t iters);

/* How the executor shares one call among threads: rows of the output (in whole granules),
 * tokens, heads; NONE: not run by the executor. */
typedef enum { BN_SPLIT_NONE, BN_SPLIT_ROWS, BN_SPLIT_TOKENS, BN_SPLIT_HEADS } bn_ksplit;

typedef enum {
#define X(id, name, type, split, key, ref) BN_K_##id,
#include "kernels.def"
#undef X
  BN_K_COUNT
} bn_kfamily;

/* The ternary matmul families (one calling convention, bn_mm_kernel) and the rows a thread's share
 * is a multiple of: the weight layout's row blocks (TP2's, TG2's and TP1's 4, TL2's 16). */
static inline int bn_kfamily_tmatmul(bn_kfamily f) {
  return f == BN_K_MATMUL || f == BN_K_MATMUL_LUT || f == BN_K_MATMUL_T1 || f == BN_K_MATMUL_G;
}
static inline int64_t bn_kfamily_granule(bn_kfamily f) { return f == BN_K_MATMUL_LUT ? 16 : bn_kfamily_tmatmul(f) ? 4 : 1; }

typedef struct {
  const char *name, *type, *key, *ref;
  bn_ksplit split;
} bn_kfamily_info;
extern const bn_kfamily_info bn_kfamilies[BN_K_COUNT];

/* A kernel's identity: its family, constant shape and variant (kernels.def says what the
 * fields mean per family). Every generated kernel is built once per key and shared. */
typedef struct {
  bn_kfamily family;
  int64_t k, n;
  int variant;
  float eps; /* NORM_QUANT, and a matmul's prologue */
  int pro;   /* MATMUL(_LUT): 0, or 1 + the BN_NQ_* mode of the norm + quantize prologue (bn_mmp_kernel) */
  bn_dtype cache; /* ATTENTION: the K/V caches' element type, F32 (0) or F16 */
} bn_kkey;

int bn_kkey_eq(const bn_kkey *a, const bn_kkey *b);
/* "mm dqadd k2560 n2560", for messages and listings. */
void bn_kkey_describe(const bn_kkey *key, char *buf, size_t cap);

/* The kernel that computes node i of g — the patterns the fusion passes build (a
 * matmul with its prologue and epilogue, a norm + quantize, the gate), the output
 * projection, attention, RoPE, the embedding, a slice: 1 and *key; 0: the node is
 * no kernel family (it runs on the reference kernels). Backends decide which keys
 * they can build (bn_backend.supports). */
int bn_kernel_select(const bn_graph *g, int node, bn_kkey *key);

#endif
