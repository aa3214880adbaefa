/* The LLVM backend: kernels built as LLVM IR through the LLVM-C API with
 * every shape a constant, optimized at O3 for the host CPU and JIT-compiled
 * with ORC LLJIT. Each unique kernel (shape, mode, ISA) is built once and
 * shared by every node that needs it. */
#ifndef BN_LLVM_H
#define BN_LLVM_H

#include <stdint.h>

#include "../../ir/ir.h"

typedef enum { BN_ISA_AVX2, BN_ISA_AVX512_VNNI } bn_isa;

/* What a ternary matmul kernel writes for each token t and row n:
 *   ACC:    acc[t][n] = sum_k q[t][k] * trit[n][k]                (int32, exact)
 *   DQ:     y[t][n]   = acc * row_scale[n] / s[t]
 *   DQ_ADD: y[t][n]   = resid[t][n] + acc * row_scale[n] / s[t]
 * (the dequantization in double, as the reference kernels do, so results
 * are bit-identical to them). */
typedef enum { BN_MM_ACC, BN_MM_DQ, BN_MM_DQ_ADD } bn_mm_mode;

/* qa: T rows of QA8 (K codes); w: TP2 [N, K] (the lookup-table kernels: TL2,
 * and n0, n1 multiples of 16); rows n0..n1 of the output. */
typedef void (*bn_mm_kernel)(const uint8_t *qa, const uint8_t *w, void *out, const float *resid, int64_t T, int64_t n0,
                             int64_t n1);
/* The same with a norm + quantize prologue (key.pro): qa = T rows of QA8 scratch it fills
 * first from x (T float rows, as bn_nq_kernel reads them) with norm weights wn and tmp
 * (K floats of scratch, the gate); then rows n0..n1 of the matmul over them. */
typedef void (*bn_mmp_kernel)(uint8_t *qa, const uint8_t *w, void *out, const float *resid, const float *x,
                              const float *wn, float *tmp, int64_t T, int64_t n0, int64_t n1);

/* x: T rows of K floats; w: N rows of K (f32, f16, q8_0, q4_0, q6_k); y[t][n] for rows n0..n1. */
typedef void (*bn_mf_kernel)(const float *x, const void *w, float *y, int64_t T, int64_t n0, int64_t n1);

/* x: T rows (K floats, or 2K for the gate: g | u); w: K norm weights; qa: T QA8 rows;
 * tmp: K floats of scratch (the gate); rows t0..t1. */
typedef void (*bn_nq_kernel)(const float *x, const float *w, uint8_t *qa, float *tmp, int64_t T, int64_t t0, int64_t t1);
enum { BN_NQ_PLAIN, BN_NQ_GATE_RELU2, BN_NQ_GATE_SILU, BN_NQ_RMSNORM }; /* RMSNORM: qa is K floats per row */
/* Causal GQA attention of heads h0..h1 for T tokens at pos.. over the caches of n_ctx
 * positions, head-major as bn_ref_kv_store writes them (this step's K/V stored already);
 * scores: bn_attn_scores(T, n_ctx) floats of scratch (T score rows of pos + T floats, then T
 * inverse sums). */
enum { BN_ATTN_SCORE_ROWS = 4 }; /* a prompt tile's tokens */
static inline int64_t bn_attn_scores(int64_t T, int64_t n_ctx) { return T * (n_ctx + 1); }
typedef void (*bn_attn_kernel)(const float *q, const float *kc, const float *vc, float *y, float *scores, int64_t T,
                               int64_t pos, int64_t h0, int64_t h1, int64_t n_ctx);

/* Row kernels, rows t0..t1: the embedding gather (in: token ids, w: the table) and the
 * column slice (in: the rows sliced; w unused). */
typedef void (*bn_rows_kernel)(const void *in, const void *w, float *y, int64_t T, int64_t t0, int64_t t1);

/* RoPE of heads h0..h1 for T tokens at pos..; table: n_ctx rows of head_dim/2 cosines, then as many of sines. */
typedef void (*bn_rope_kernel)(const float *x, float *y, const float *table, int64_t T, int64_t pos, int64_t h0,
                               int64_t h1, int64_t n_ctx);
/* Fills the table: angle (pos * base^(-2i/dims)) as the reference computes it, rounded to float. */
void bn_rope_table(float *table, int n_ctx, int dims, double base);

typedef struct bn_llvm bn_llvm;

/* The elements of K a float matmul over weights of this type takes at a time
 * (K must be a multiple); 0: no generated kernel for the type. */
int bn_gen_matmul_f_block(bn_dtype wtype, bn_isa isa);

/* A kernel's identity: its family, constant shape and variant. Every
 * generated kernel is built once per key and shared. */
enum { BN_K_MATMUL, BN_K_MATMUL_F, BN_K_PEAK, BN_K_NORM_QUANT, BN_K_ATTENTION, BN_K_ROPE, BN_K_MATMUL_LUT, BN_K_EMBED, BN_K_SLICE };
typedef struct {
  int family;
  int64_t k, n;  /* MATMUL(_F, _LUT): K, N; NORM_QUANT: K; ATTENTION, ROPE: head_dim, heads; EMBED: width, rows;
                    SLICE: input width, output width */
  int variant;   /* MATMUL(_LUT): bn_mm_mode; MATMUL_F, EMBED: weight dtype; NORM_QUANT: BN_NQ_*; ATTENTION: kv_heads;
                    SLICE: the first column */
  float eps;     /* NORM_QUANT, and a matmul's prologue */
  int pro;       /* MATMUL(_LUT): 0, or 1 + the BN_NQ_* mode of the norm + quantize prologue (bn_mmp_kernel) */
} bn_llvm_key;

/* The generated kernel that computes node i of g (a fused matmul, the output
 * projection, a norm/gate kernel, attention), if this backend has one for the
 * ISA: 1 and *key, else 0. */
int bn_llvm_select(const bn_graph *g, int node, bn_isa isa, bn_llvm_key *key);
/* Builds (once) and returns the kernel of key. */
bn_status bn_llvm_get(bn_llvm *j, const bn_llvm_key *key, void **fn, bn_error *err);
int bn_llvm_key_eq(const bn_llvm_key *a, const bn_llvm_key *b);
/* The kernel's symbol name. */
void bn_llvm_key_name(const bn_llvm_key *key, bn_isa isa, char *buf, size_t cap);
/* The optimized LLVM IR (emit = "llvm") or assembly ("asm") of key's kernel, malloc'd. */
char *bn_llvm_text(bn_llvm *j, const bn_llvm_key *key, const char *emit, bn_error *err);

/* The best ISA this CPU has. */
bn_isa bn_llvm_host_isa(void);
/* Compile targets: "native" (the host's best), "x86-64-v3" (AVX2), "x86-64-v4" (AVX-512 with VNNI).
 * Returns 0 and the ISA for a known name ("ref", what older plans carry, counts as native). */
int bn_llvm_target_isa(const char *target, bn_isa *isa);
const char *bn_isa_name(bn_isa isa);
/* A JIT generating for this host's CPU, with isa's kernels. */
bn_status bn_llvm_create(bn_isa isa, bn_llvm **out, bn_error *err);
/* A JIT for a compile target: native (this host's CPU and features), or the
 * generic x86-64-v3 / x86-64-v4 CPUs (object code any such CPU runs). */
bn_status bn_llvm_create_for(const char *target, bn_llvm **out, bn_error *err);
/* The same with the native target's ISA forced (force: 1 + a bn_isa; 0: the host's best;
 * the portable targets have theirs). */
bn_status bn_llvm_create_forced(const char *target, int force, bn_llvm **out, bn_error *err);
bn_isa bn_llvm_isa(const bn_llvm *j);
/* The CPU name and feature string ("+avx2,+fma,...") the code is generated for. */
const char *bn_llvm_cpu(const bn_llvm *j, const char **features);
/* Does this host have every "+feature" of the list? If not, the first missing one. */
int bn_llvm_host_has(const char *features, char *missing, size_t cap);

/* Keeps generated object code in c's directory and looks there first (c outlives j; NULL: no cache). */
typedef struct bn_kcache bn_kcache;
void bn_llvm_use_cache(bn_llvm *j, const bn_kcache *c);

/* Object code of one kernel, by symbol name (a plan's AOT section). */
typedef struct {
  const char *name;
  const void *data;
  size_t size;
} bn_llvm_obj;
/* The tuner's measurement of one matmul shape: microseconds per call of the
 * packed [0] and lookup-table [1] kernels for one token and for a chunk of
 * `batch`, on one thread; lut: the tables win on pp128 + tg64's work. */
typedef struct {
  int64_t k, n;
  int batch, lut;
  double decode_us[2], prefill_us[2];
} bn_tune;
bn_status bn_llvm_tune_matmul(bn_llvm *j, int64_t K, int64_t N, int batch, bn_tune *out, bn_error *err);

/* What the tuner and bnc bench --kernel time a ternary matmul on: random TP2
 * weights (codes 0 or 1, row scales 1), the same as TL2 (tl: NULL unless
 * N % 16 = 0), in `copies` copies stride bytes apart — with stream, as many
 * as exceed the last-level cache, so a decode step reads them from memory as
 * a real one does — T random QA8 rows, and T x N floats of output. */
typedef struct {
  uint8_t *tp, *tl, *qa;
  float *y;
  size_t bytes, stride;
  int copies;
} bn_mm_fixture;
bn_status bn_mm_fixture_make(int64_t K, int64_t N, int64_t T, int stream, bn_mm_fixture *f, bn_error *err);
void bn_mm_fixture_free(bn_mm_fixture *f);

/* Ahead-of-time object code: the kernels of one plan, generated for cpu with
 * features (the "+feature" list a host must have to run them). */
typedef struct {
  const char *cpu, *features;
  const bn_llvm_obj *objs;
  int n;
} bn_llvm_aot;
/* Kernels whose names appear in aot are loaded from there instead of being
 * generated (aot must outlive j). The caller checks the host has the features. */
void bn_llvm_provide(bn_llvm *j, const bn_llvm_aot *aot);
/* Was aot made by this build's generators? (Kernel names end in the generators' stamp:
 * object code from another build is not used, its kernels are generated anew.) */
int bn_llvm_aot_current(const bn_llvm_aot *aot);
/* The object code of every unique kernel g's nodes select , for
 * bnc compile --aot; bn_llvm_aot_free releases it. */
bn_status bn_llvm_aot_build(bn_llvm *j, const bn_graph *g, bn_llvm_aot *out, bn_error *err);
void bn_llvm_aot_free(bn_llvm_aot *a);
/* The object code of key's kernel (malloc'd): from the disk cache or built. */
bn_status bn_llvm_object(bn_llvm *j, const bn_llvm_key *key, void **data, size_t *size, bn_error *err);
/* Where the kernels came from: built now (and stored in the disk cache),
 * loaded from the disk cache, or from the plan's object code. */
typedef struct {
  int built, stored, cached, aot;
  double seconds;
} bn_llvm_counts;
bn_llvm_counts bn_llvm_get_counts(const bn_llvm *j);
void bn_llvm_free(bn_llvm *j);
/* The kernel for rows of K (a multiple of 256) and N outputs; built on first use. */
bn_status bn_llvm_matmul(bn_llvm *j, int64_t K, int64_t N, bn_mm_mode mode, bn_mm_kernel *out, bn_error *err);
/* The float matmul (output projection) kernel for f16/f32 rows of K. */
bn_status bn_llvm_matmul_f(bn_llvm *j, int64_t K, int64_t N, bn_dtype wtype, bn_mf_kernel *out, bn_error *err);
/* rmsnorm + quantize (or the gate's act * up + rmsnorm + quantize) over rows of K, K a multiple of the lanes. */
bn_status bn_llvm_norm_quant(bn_llvm *j, int64_t K, int mode, float eps, bn_nq_kernel *out, bn_error *err);
bn_status bn_llvm_attention(bn_llvm *j, int heads, int kv_heads, int head_dim, bn_attn_kernel *out, bn_error *err);
/* A kernel running 8 x lanes int8 multiply-adds per iteration on registers:
 * the machine's int8 peak, for bnc bench. Returns the MACs per iteration. */
typedef void (*bn_peak_kernel)(const void *in, void *out, int64_t iters);
bn_status bn_llvm_peak(bn_llvm *j, bn_peak_kernel *out, int *macs_per_iter, bn_error *err);


#endif
