/* IR generation for the LLVM backend: a small kit shared by the kernel
 * generators (one file per kernel family). */
#ifndef BN_LLVM_GEN_H
#define BN_LLVM_GEN_H

#include <llvm-c/Core.h>

#include "llvm.h"

typedef struct bn_gen {
  LLVMContextRef c;
  LLVMModuleRef m;
  LLVMBuilderRef b;
  LLVMValueRef fn;
  LLVMTypeRef i8, i16, i32, i64, f16, f32, f64, ptr;
  bn_isa isa;
  int64_t K, N;           /* the kernel's constant shape */
  LLVMValueRef arg[12];   /* the function's parameters */
  void *ctx;              /* the generator's own state */
} bn_gen;

/* Starts `void name(ptr x n_ptr (noalias), i64 x n_i64)` with an entry block. */
void bn_gen_begin(bn_gen *g, LLVMContextRef c, LLVMModuleRef m, const char *name, int n_ptr, int n_i64, bn_isa isa,
                  int64_t K, int64_t N);
void bn_gen_end(bn_gen *g); /* returns void, frees the builder */

LLVMValueRef bn_gen_c64(bn_gen *g, int64_t v);
LLVMValueRef bn_gen_splat(LLVMTypeRef elem, int n, long long v);
LLVMValueRef bn_gen_gep(bn_gen *g, LLVMValueRef base, LLVMValueRef byte_off);
LLVMValueRef bn_gen_load(bn_gen *g, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef byte_off);
void bn_gen_store(bn_gen *g, LLVMValueRef v, LLVMValueRef base, LLVMValueRef byte_off);
/* for (i = from; i < limit; i += step): bn_gen_for_begin leaves the builder in the body with
 * l.i the counter; bn_gen_for_end closes the loop and continues after it. */
typedef struct {
  LLVMBasicBlockRef head, body, done;
  LLVMValueRef var, i;
  int64_t step;
} bn_gen_for;
bn_gen_for bn_gen_for_begin(bn_gen *g, LLVMValueRef from, LLVMValueRef limit, int64_t step);
void bn_gen_for_end(bn_gen *g, bn_gen_for *l);

/* An alloca in the entry block (so it becomes a register). */
LLVMValueRef bn_gen_alloca(bn_gen *g, LLVMTypeRef t, const char *name);
LLVMValueRef bn_gen_call(bn_gen *g, const char *intrinsic, LLVMTypeRef *overload, int n_over, LLVMValueRef *args, int n);

/* Weight blocks (gen_decode.c): bytes per block (f32/f16: one vector of lanes), and
 * elements [v lanes, (v + 1) lanes) of the block at blk as floats, as bn_dequant computes them. */
int64_t bn_gen_block_bytes(bn_dtype t, int lanes);
LLVMValueRef bn_gen_decode(bn_gen *g, bn_dtype t, int lanes, LLVMValueRef blk, int v);

/* x (a scalar) in every lane of vector type vf (gen_util.c). */
LLVMValueRef bn_gen_splat_v(bn_gen *g, LLVMTypeRef vf, LLVMValueRef x);
/* A shuffle of a (and b, or a alone when b is NULL) by the lanes in mask[0..n) (gen_util.c). */
LLVMValueRef bn_gen_shuffle(bn_gen *g, LLVMValueRef a, LLVMValueRef b, const int *mask, int n);
/* The lane sums of m vectors of one type (m up to 16), as one vector: v[j]'s sum in lane lane[j]. */
LLVMValueRef bn_gen_lane_sums(bn_gen *g, LLVMValueRef *v, int m, int *lane);
/* The sum of a double vector's lanes, in lane order. */
LLVMValueRef bn_gen_hsum_f64(bn_gen *g, LLVMValueRef v);
/* A float or float vector constant of type t; exp(x) without a call (gen_util.c). */
LLVMValueRef bn_gen_constf(LLVMTypeRef t, double c);
LLVMValueRef bn_gen_exp(bn_gen *g, LLVMValueRef x);

/* for n in [n0, n1) in steps of `rows` rows (then one at a time for the rest): for t in
 * [0, T) in tiles of `tile` tokens, then of half as many, down to one: tile_fn(g, n, rr, t, tt)
 * for rr rows from n and tt tokens from t. With block > rows, whole blocks of `block` rows go
 * first, token tiles outside and row tiles inside, so a block's weights and a token tile's
 * activations stay in L1 while they are reused. Counters live in allocas (mem2reg makes them
 * registers). */
typedef void (*bn_gen_tile_fn)(bn_gen *g, LLVMValueRef n, int rr, LLVMValueRef t, int tt);
void bn_gen_rows_tokens(bn_gen *g, LLVMValueRef n0, LLVMValueRef n1, LLVMValueRef T, int rows, int tile, int block,
                        bn_gen_tile_fn tile_fn);

/* Adds `void name(ptr qa, ptr w, ptr out, ptr resid, i64 T, i64 n0, i64 n1)` (gen_matmul.c), or with
 * pro (1 + a BN_NQ_* mode) `void name(ptr qa, ptr w, ptr out, ptr resid, ptr x, ptr wn, ptr tmp, i64 T,
 * i64 n0, i64 n1)` whose prologue fills qa from x first (bn_gen_matmul_begin); over weights of type
 * wt: TP2, TP1 or TG2. */
void bn_gen_matmul(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t N, bn_mm_mode mode, int pro,
                   float eps, bn_dtype wt, bn_isa isa);
/* The same signatures over TL2 weights by table lookups; n0, n1 multiples of 16 (gen_matmul_lut.c). */
void bn_gen_matmul_lut(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t N, bn_mm_mode mode,
                       int pro, float eps, bn_isa isa);
/* Starts a matmul kernel of either signature (gen_norm_quant.c): g->arg holds qa, w, out, resid,
 * T, n0, n1 (then x, wn, tmp); with pro, the prologue's rows [0, T) are already emitted. */
void bn_gen_matmul_begin(bn_gen *g, LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t N, int pro,
                         float eps, bn_isa isa);
/* Adds `void name(ptr x, ptr w, ptr y, i64 T, i64 n0, i64 n1)`: y = x * W^T for W of N
 * rows of K in f32, f16, q8_0, q4_0 or q6_k (gen_matmul_f.c). */
void bn_gen_matmul_f(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t N, bn_dtype wtype, bn_isa isa);

/* Adds `void name(ptr x, ptr w, ptr qa, ptr tmp, i64 T, i64 t0, i64 t1)`: rmsnorm + quantize
 * (mode 0) or the gate act(g) * u + rmsnorm + quantize (mode 1 relu2, 2 silu) (gen_norm_quant.c). */
/* group: RMSNORM over each group-wide piece of a row alone (rows of group floats, K / group of them a token); 0: whole rows. */
void bn_gen_norm_quant(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t group, int mode, float eps,
                       bn_isa isa);
/* Its rows [t0, t1) emitted into the function g is building (K = g->K). */
void bn_gen_nq_rows(bn_gen *g, int mode, float eps, LLVMValueRef x, LLVMValueRef wn, LLVMValueRef qa, LLVMValueRef tmp,
                    LLVMValueRef t0, LLVMValueRef t1);
/* Adds `void name(ptr q, ptr kc, ptr vc, ptr y, ptr scores, i64 T, i64 pos, i64 h0, i64 h1)` (gen_attention.c). */
void bn_gen_attention(LLVMContextRef c, LLVMModuleRef m, const char *name, int heads, int kv_heads, int hd, bn_dtype cache,
                      bn_isa isa);
/* Add `void name(ptr in, ptr w, ptr y, i64 T, i64 t0, i64 t1)` (gen_rows.c): the embedding
 * gather (in: token ids, w: the table of rows of width in type t) and the column slice
 * (in: rows of K floats, y: n of them from off; w unused). */
void bn_gen_embed(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t width, bn_dtype t, bn_isa isa);
void bn_gen_slice(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t n, int64_t off, bn_isa isa);
/* Adds `void name(ptr x, ptr y, ptr table, i64 T, i64 pos, i64 h0, i64 h1, i64 n_ctx)` (gen_rope.c). */
void bn_gen_rope(LLVMContextRef c, LLVMModuleRef m, const char *name, int heads, int head_dim, bn_isa isa);
/* Adds `void name(ptr in, ptr out, i64 iters)`: the int8 multiply-add peak loop. */
void bn_gen_peak(LLVMContextRef c, LLVMModuleRef m, const char *name, bn_isa isa);

#endif
