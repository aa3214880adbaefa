/* A graph's Metal library and dispatch table (emit.h): each node's kernel key (codegen/select.c),
 * a matmul's norm + quantize prologue as a dispatch of its own into the QA8 rows its fused body
 * plans, attention as the K/V store then the attention proper; every distinct kernel emitted once. */
#include <stdlib.h>
#include <string.h>

#include "emit.h"

typedef struct {
  bn_mtl_lib *lib;
  const bn_graph *g;
  const bn_memplan *mp;
  bn_sbuf src;
  int cap_k, cap_s;
} builder;

/* *at: the index of key's kernel in the library, emitted on first use. */
static bn_status kernel_of(builder *b, const bn_kkey *key, int *at, bn_error *err) {
  bn_mtl_lib *l = b->lib;
  for (*at = 0; *at < l->n_kernels; ++*at)
    if (bn_kkey_eq(&l->kernels[*at].key, key)) return BN_OK;
  if (l->n_kernels == b->cap_k) {
    int cap = b->cap_k ? 2 * b->cap_k : 16;
    bn_mtl_kernel *k = realloc(l->kernels, (size_t)cap * sizeof *k);
    if (!k) return bn_fail(err, BN_E_NOMEM, "metal: out of memory");
    l->kernels = k, b->cap_k = cap;
  }
  bn_status st = bn_metal_emit(key, &l->kernels[l->n_kernels], &b->src, err);
  if (!st) l->n_kernels++;
  return st;
}

/* Where operand k of node i lies for its dispatches (k = -1: its output). */
static bn_mtl_bind at_value(builder *b, int i, int k) {
  int v = k < 0 ? b->g->nodes[i].out : b->g->nodes[i].in[k];
  const bn_value *val = &b->g->values[v];
  if (val->kind == BN_VAL_WEIGHT) return (bn_mtl_bind){.space = BN_MTL_WEIGHT, .index = k};
  if (val->kind == BN_VAL_INPUT) return (bn_mtl_bind){.space = BN_MTL_TOKENS};
  return (bn_mtl_bind){.space = BN_MTL_ARENA, .offset = b->mp->offset[val->node]};
}

/* Appends a dispatch of key's kernel for node with buffers 1..n from binds. */
static bn_status add(builder *b, int node, const bn_kkey *key, const bn_mtl_bind *binds, int n, bn_error *err) {
  int k;
  bn_status st = kernel_of(b, key, &k, err);
  if (st) return st;
  bn_mtl_lib *l = b->lib;
  if (l->n_steps == b->cap_s) {
    int cap = b->cap_s ? 2 * b->cap_s : 64;
    bn_mtl_dispatch *s = realloc(l->steps, (size_t)cap * sizeof *s);
    if (!s) return bn_fail(err, BN_E_NOMEM, "metal: out of memory");
    l->steps = s, b->cap_s = cap;
  }
  int many = -1; /* a matmul's tiles for many tokens, where their sums are exact */
  bn_kkey mk = *key;
  mk.variant |= BN_MTL_MANY;
  if (key->family == BN_K_MATMUL && bn_metal_supports(&mk) && (st = kernel_of(b, &mk, &many, err))) return st;
  bn_mtl_dispatch *d = &l->steps[l->n_steps++];
  *d = (bn_mtl_dispatch){.kernel = k, .node = node, .many = many, .n_bind = n + 1};
  d->bind[0] = (bn_mtl_bind){.space = BN_MTL_STEP};
  memcpy(d->bind + 1, binds, (size_t)n * sizeof *binds);
  return BN_OK;
}

static int rope_table(bn_mtl_lib *l, int dims, double base) {
  for (int r = 0; r < l->n_rope; r++)
    if (l->rope_dims[r] == dims && l->rope_base[r] == base) return r;
  if (l->n_rope == 4) return -1;
  l->rope_dims[l->n_rope] = dims, l->rope_base[l->n_rope] = base;
  return l->n_rope++;
}

static bn_status add_node(builder *b, int i, bn_dtype kv, bn_error *err) {
  const bn_graph *g = b->g;
  const bn_node *n = &g->nodes[i];
  bn_kkey key;
  if (!bn_kernel_select(g, i, &key))
    return bn_fail(err, BN_E_UNSUPPORTED, "metal: node %%%s (%s) is no kernel family the Metal backend emits",
                   g->values[n->out].name, bn_op_table[n->op].name);
  bn_mtl_bind v[5];
  switch (key.family) {
  case BN_K_MATMUL:
  case BN_K_MATMUL_G: {
    int wi = 1;
    if (key.pro) { /* the prologue into the QA8 rows of the body's quantize */
      const bn_graph *body = n->body;
      int len = 0;
      bn_fused_norm_quant(body, &len);
      bn_kkey nq = {.family = BN_K_NORM_QUANT, .k = key.k, .variant = key.pro - 1, .eps = key.eps};
      bn_mtl_bind qa = {.space = BN_MTL_ARENA, .offset = b->mp->body_offset[i][body->nodes[len - 1].out]};
      bn_mtl_bind in[3] = {at_value(b, i, 0), at_value(b, i, 1), qa};
      bn_status st = add(b, i, &nq, in, 3, err);
      if (st) return st;
      v[0] = qa, wi = 2, key.pro = 0, key.eps = 0;
    } else v[0] = at_value(b, i, 0);
    v[1] = at_value(b, i, wi), v[2] = at_value(b, i, -1);
    if (key.variant == BN_MM_DQ_ADD) v[3] = at_value(b, i, wi + 1);
    return add(b, i, &key, v, key.variant == BN_MM_DQ_ADD ? 4 : 3, err);
  }
  case BN_K_MATMUL_F:
  case BN_K_EMBED:
  case BN_K_NORM_QUANT:
    if (key.family == BN_K_NORM_QUANT && !bn_nq_normed(key.variant)) { /* a quantize alone, or after a gate: x, qa */
      v[0] = at_value(b, i, 0), v[1] = at_value(b, i, -1);
      return add(b, i, &key, v, 2, err);
    }
    v[0] = at_value(b, i, 0), v[1] = at_value(b, i, 1), v[2] = at_value(b, i, -1);
    return add(b, i, &key, v, 3, err);
  case BN_K_SLICE:
    v[0] = at_value(b, i, 0), v[1] = at_value(b, i, -1);
    return add(b, i, &key, v, 2, err);
  case BN_K_ROPE: {
    int r = rope_table(b->lib, (int)n->attr[2], n->attr[3]);
    if (r < 0) return bn_fail(err, BN_E_UNSUPPORTED, "metal: more than 4 RoPE tables");
    v[0] = at_value(b, i, 0), v[1] = at_value(b, i, -1), v[2] = (bn_mtl_bind){.space = BN_MTL_ROPE, .index = r};
    return add(b, i, &key, v, 3, err);
  }
  case BN_K_ATTENTION: {
    int layer = (int)n->attr[0];
    bn_mtl_bind kc = {.space = BN_MTL_KCACHE, .index = layer}, vc = {.space = BN_MTL_VCACHE, .index = layer};
    key.cache = kv;
    bn_kkey store = key;
    store.variant |= BN_MTL_STORE, store.n = key.variant; /* by KV heads: one kernel for every head count */
    bn_mtl_bind s[4] = {at_value(b, i, 1), at_value(b, i, 2), kc, vc};
    bn_status st = add(b, i, &store, s, 4, err);
    if (st) return st;
    v[0] = at_value(b, i, 0), v[1] = kc, v[2] = vc, v[3] = at_value(b, i, -1);
    return add(b, i, &key, v, 4, err);
  }
  default: {
    char d[96];
    bn_kkey_describe(&key, d, sizeof d);
    return bn_fail(err, BN_E_UNSUPPORTED, "metal: node %%%s: no Metal kernel for %s (recompile for TP2 weights)",
                   g->values[n->out].name, d);
  }
  }
}

bn_status bn_metal_build(const bn_graph *g, const bn_memplan *mp, bn_dtype kv, bn_mtl_lib *out, bn_error *err) {
  memset(out, 0, sizeof *out);
  builder b = {.lib = out, .g = g, .mp = mp};
  bn_sbuf_put(&b.src, "%s", bn_metal_prelude());
  bn_status st = BN_OK;
  for (int i = 0; !st && i < g->n_nodes; i++) st = add_node(&b, i, kv, err);
  const bn_value *o = g->n_outputs ? &g->values[g->outputs[0]] : NULL;
  if (!st && (!o || o->kind != BN_VAL_NODE || o->shape.rank != 2))
    st = bn_fail(err, BN_E_FORMAT, "metal: the graph's output is not a [T, width] node value");
  if (!st && b.src.oom) st = bn_fail(err, BN_E_NOMEM, "metal: out of memory");
  out->source = b.src.buf;
  if (st) return bn_metal_lib_free(out), st;
  out->out_offset = mp->offset[o->node], out->out_width = o->shape.d[1];
  return BN_OK;
}

void bn_metal_lib_free(bn_mtl_lib *lib) {
  free(lib->source), free(lib->kernels), free(lib->steps);
  memset(lib, 0, sizeof *lib);
}
