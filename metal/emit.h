/* The Metal code generator: MSL compute kernels for bnc's kernel families, and a plan's
 * library (every kernel its graph needs) with its dispatch table (docs/metal.md).
 *
 * Every kernel takes its parameters in one order, which the Mac host and the simulator
 * (metal/sim) both follow:
 *   constant bn_step &st [[buffer(0)]]             T, pos, n_ctx of the step
 *   device ... [[buffer(1)]] .. [[buffer(n - 1)]]  the family's operands (below)
 *   threadgroup float *tgm [[threadgroup(0)]]      where the kernel has a threadgroup block
 *   uint3 tgp [[threadgroup_position_in_grid]], uint tid [[thread_index_in_threadgroup]],
 *   uint sg [[simdgroup_index_in_threadgroup]], uint lane [[thread_index_in_simdgroup]]
 * Grids are 2-D: x as the kernel says (rows / 4, heads, 1), y the step's tokens in tiles of
 * tok_tile. Shapes are constants of the source, as in the CPU kernels. */
#ifndef BN_METAL_EMIT_H
#define BN_METAL_EMIT_H

#include <stdint.h>

#include "../codegen/backend.h"
#include "../ir/memplan.h"
#include "../ir/sbuf.h"

/* The K/V store of an attention node is a kernel of its own: family ATTENTION, this variant bit, n = the KV heads.
 * A ternary matmul's kernel for many tokens (simdgroup_matrix tiles): family MATMUL, this variant bit. */
enum { BN_MTL_STORE = 1 << 20, BN_MTL_MANY = 1 << 21 };

typedef struct {
  char name[64];
  bn_kkey key;          /* what it computes (ATTENTION with variant | BN_MTL_STORE: the K/V store) */
  int n_buffers;        /* buffer(0) included */
  int tg_block;         /* takes a threadgroup block */
  uint32_t threads;     /* a group's threads, a multiple of 32 */
  uint32_t tg_bytes;    /* its threadgroup block */
  uint32_t groups_x;    /* threadgroups along x */
  uint32_t tok_tile;    /* tokens a group handles: groups along y = ceil(T / tok_tile) */
} bn_mtl_kernel;

/* Whether the emitter has a kernel for key (ternary matmuls: TP2 weights; float ones and the
 * embedding: F32, F16, BF16, Q8_0, Q4_0, Q6_K). */
int bn_metal_supports(const bn_kkey *key);
/* Appends the MSL of key's kernel to src and describes it in k. */
bn_status bn_metal_emit(const bn_kkey *key, bn_mtl_kernel *k, bn_sbuf *src, bn_error *err);
/* What every library starts with: metal_stdlib, the step's constants, the element loaders. */
const char *bn_metal_prelude(void);

/* Where a dispatch's buffer lies. */
typedef enum {
  BN_MTL_STEP,   /* the step's constants (buffer 0) */
  BN_MTL_ARENA,  /* the activations, at offset */
  BN_MTL_WEIGHT, /* operand `index` of the dispatch's node, a weight (node indices survive a plan's round trip) */
  BN_MTL_TOKENS, /* the step's token ids */
  BN_MTL_KCACHE, /* layer `index`'s K cache */
  BN_MTL_VCACHE,
  BN_MTL_ROPE    /* RoPE table `index` (bn_rope_table of the library's rope[index]) */
} bn_mtl_space;

typedef struct {
  uint8_t space;
  int32_t index;
  int64_t offset;
} bn_mtl_bind;

enum { BN_MTL_MAX_BIND = 6 };

typedef struct {
  int kernel, node;
  int many;   /* the kernel for steps of at least its tok_tile tokens (a matmul's tiles); -1: none */
  int n_bind; /* buffers 0..n_bind-1 */
  bn_mtl_bind bind[BN_MTL_MAX_BIND];
} bn_mtl_dispatch;

/* A plan's Metal library: its source, its kernels, and the dispatches of one step in order. */
typedef struct {
  char *source;
  bn_mtl_kernel *kernels;
  int n_kernels;
  bn_mtl_dispatch *steps;
  int n_steps;
  int n_rope;
  int rope_dims[4];
  double rope_base[4];
  int64_t out_offset, out_width; /* the logits: [T, width] floats in the arena */
} bn_mtl_lib;

/* The library of graph g whose activations lie as mp plans them; kv: the caches' type (F32, F16).
 * A node no kernel computes is an error naming it. */
bn_status bn_metal_build(const bn_graph *g, const bn_memplan *mp, bn_dtype kv, bn_mtl_lib *out, bn_error *err);
void bn_metal_lib_free(bn_mtl_lib *lib);
int bn_metal_lib_equal(const bn_mtl_lib *a, const bn_mtl_lib *b);

/* The kernel dispatch d runs for a step of T tokens: its tile kernel for many tokens, where it has one. */
static inline int bn_metal_kernel_for(const bn_mtl_lib *l, const bn_mtl_dispatch *d, int T) {
  return d->many >= 0 && (uint32_t)T >= l->kernels[d->many].tok_tile ? d->many : d->kernel;
}

/* What a host runs: the library of its graph (opts' graph, memory plan and cache type) built here, and
 * the plan's device section (opts.device), when there is one, checked to be that same library. */
bn_status bn_metal_host_lib(const bn_backend_opts *o, bn_mtl_lib *lib, bn_error *err);

/* A plan's Metal section (docs/bnplan.md): the libraries of g for F32 and F16 caches, serialized
 * (malloc'd); and one read back, checked against g and mp, for the caches' type kv. */
bn_status bn_metal_section(const bn_graph *g, const bn_memplan *mp, uint8_t **bytes, size_t *n, bn_error *err);
bn_status bn_metal_section_read(const void *bytes, size_t n, const bn_graph *g, const bn_memplan *mp, bn_dtype kv,
                                bn_mtl_lib *lib, bn_error *err);

#endif
