/* The executor: runs a compiled graph over its planned arena. Everything is
 * allocated at create time (arena, KV cache, scratch, pointer tables, generated
 * kernels, the thread pool); a step allocates nothing. A node whose kernel family
 * (codegen/kernels.def) the backend supports runs its generated kernel, split over
 * the threads as the family says (matmuls by rows, attention and RoPE by heads,
 * norms by tokens); the rest run the reference kernels; a backend that runs whole
 * graphs (a GPU) is handed each step; a one-token step rotates and stores q/k/v right after their
 * projection where it can (qkv.h) and skips the slice and RoPE nodes. Every
 * node is timed and its time added to its kernel kind ("rope",
 * "fused:tmatmul+dequant+add", ...); a trace recorder, when attached, keeps one
 * event per node. */
#ifndef BN_RT_EXEC_H
#define BN_RT_EXEC_H

#include "../codegen/backend.h"
#include "../ir/memplan.h"
#include "pool.h"
#include "trace.h"

typedef struct bn_exec bn_exec;

/* One sequence's part of a step: n tokens at positions pos.. of sequence seq (each sequence has its own
 * K/V caches). */
typedef struct {
  const int32_t *tokens;
  int n, pos, seq;
} bn_exec_seg;
enum { BN_EXEC_MAX_SEQ = 256 };

typedef struct {
  const bn_backend *backend; /* a registry entry (codegen/backend.h); NULL: the reference kernels alone */
  int threads;               /* generated kernels are split over this many threads */
  const char *target;        /* the plan's target (bn_backend_opts.target); NULL: native */
  const char *isa;           /* the native target's instruction set ("avx2", "avx512"); NULL: the host's best */
  const bn_objcode *code;    /* the plan's object code (NULL: none), which the caller trusts: used when the
                              * backend made it and this host can run it */
  const void *device;        /* the plan's device section (bn_plan.device), for a GPU backend; NULL: none */
  size_t device_bytes;
  bn_pool *pool;             /* NULL: the executor starts `threads` threads; else it runs on this pool of
                              * the caller's (which outlives it; threads is then its size) */
  const bn_kcache *cache;    /* the kernel disk cache (outlives the executor); NULL: none */
  int no_qkv_phase;          /* steps run the q/k/v slices, RoPEs and K/V store as nodes (comparisons) */
  int n_seq;                 /* sequences, each with K/V caches of n_ctx positions (0 or 1: one; at most
                              * BN_EXEC_MAX_SEQ) */
  bn_dtype kv;               /* the K/V caches' element type: BN_DT_F32 (0: exact) or BN_DT_F16 (half the bytes,
                              * each K and V element rounded to half) */
} bn_exec_opts;

typedef struct {
  char kind[96];
  double seconds;
  long calls;
} bn_exec_stat;

/* What the executor relies on beyond the verifier: one input, the tokens i32[T]; every
 * computed value one row per token; weights of known shape; the first output the logits
 * f32[T, n_vocab]; fused bodies without attention; one attention node a layer. */
bn_status bn_exec_check(const bn_graph *g, int n_vocab, bn_error *err);
bn_status bn_exec_create(const bn_graph *g, const bn_memplan *mp, int n_ctx, const bn_exec_opts *opts, bn_exec **out,
                         bn_error *err);
/* How many nodes run generated code; where their kernels came from and the time it took. */
int bn_exec_jit_nodes(const bn_exec *e, bn_codegen_counts *counts);
const char *bn_exec_backend(const bn_exec *e); /* the name of the backend its kernels come from */
/* How many nodes run the reference kernels on thread 0 (no generated code for them), and
 * their kinds, comma-separated, in kinds. */
int bn_exec_ref_nodes(const bn_exec *e, char *kinds, size_t cap);
/* When the plan's object code was not used, why ("this CPU lacks avx512vnni", "made by
 * another build of bnc's code generator"); else NULL. */
const char *bn_exec_aot_missing(const bn_exec *e);
void bn_exec_free(bn_exec *e);
/* Which rows of the output a step computes: every token's, the last token's (the output projection then
 * computes only that row), or none (a prompt's earlier chunk: the projection is not run, *out is NULL). */
enum { BN_ROWS_ALL, BN_ROWS_LAST, BN_ROWS_NONE };
/* Runs tokens[0..n) at positions pos..; *out: the first output, the rows `rows` says [n or 1 x width]. */
bn_status bn_exec_run(bn_exec *e, const int32_t *tokens, int n, int pos, int rows, const float **out,
                      bn_error *err);
/* Runs several sequences' tokens as one step of their total (every matmul reads its weights once for
 * all of them; RoPE, the K/V store and attention per sequence, each in its own caches); *out: the logits
 * of each segment's last token, [n_segs x vocab]. Each sequence's logits are the bits it gets alone. */
bn_status bn_exec_run_batch(bn_exec *e, const bn_exec_seg *segs, int n_segs, const float **out, bn_error *err);
/* Debug: after each node, fill the arena regions of values that just died
 * with NaN, so a plan that let a live value be overwritten shows up. */
void bn_exec_set_poison(bn_exec *e, int on);
void bn_exec_set_trace(bn_exec *e, bn_trace *t);
int bn_exec_stats(const bn_exec *e, const bn_exec_stat **stats); /* returns the number of kinds */
int bn_exec_max_tokens(const bn_exec *e);
int64_t bn_exec_arena_bytes(const bn_exec *e);
size_t bn_exec_kv_bytes(const bn_exec *e);
/* How many layers decode their q/k/v RoPE and K/V store in the projection's phase (qkv.h). */
int bn_exec_qkv_phases(const bn_exec *e);

#endif
