/* Finds a step's q/k/v pattern (qkv.h). */
#include "qkv.h"

static int readers(const bn_graph *g, int v) {
  int r = 0;
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++) r += g->nodes[i].in[k] == v;
  for (int i = 0; i < g->n_outputs; i++) r += g->outputs[i] == v;
  return r;
}

/* The node that makes value v, if it is an op node; else -1. */
static int maker(const bn_graph *g, int v, bn_op op) {
  const bn_value *x = &g->values[v];
  return x->kind == BN_VAL_NODE && g->nodes[x->node].op == op ? x->node : -1;
}

static int slice_is(const bn_graph *g, int s, int x, int64_t offset, int64_t width) {
  const bn_node *n = &g->nodes[s];
  return n->in[0] == x && (int64_t)n->attr[0] == offset && (int64_t)n->attr[1] == width;
}

static int rope_is(const bn_graph *g, int r, int heads, int64_t head_dim) {
  const bn_node *n = &g->nodes[r];
  return (int)n->attr[0] == heads && (int64_t)n->attr[1] == head_dim;
}

int bn_qkv_find(const bn_graph *g, int a, bn_qkv *q) {
  const bn_node *A = &g->nodes[a];
  if (A->op != BN_OP_ATTENTION) return 0;
  int H = (int)A->attr[1], KVH = (int)A->attr[2];
  int64_t hd = (int64_t)A->attr[3], qw = H * hd, kw = KVH * hd;
  int rq = maker(g, A->in[0], BN_OP_ROPE), rk = maker(g, A->in[1], BN_OP_ROPE), sv = maker(g, A->in[2], BN_OP_SLICE);
  if (rq < 0 || rk < 0 || sv < 0) return 0;
  int sq = maker(g, g->nodes[rq].in[0], BN_OP_SLICE), sk = maker(g, g->nodes[rk].in[0], BN_OP_SLICE);
  if (sq < 0 || sk < 0) return 0;
  int x = g->nodes[sv].in[0];
  const bn_value *xv = &g->values[x];
  if (xv->kind != BN_VAL_NODE || xv->dtype != BN_DT_F32 || xv->shape.rank != 2 || xv->shape.d[1] != qw + 2 * kw)
    return 0;
  if (!slice_is(g, sq, x, 0, qw) || !slice_is(g, sk, x, qw, kw) || !slice_is(g, sv, x, qw + kw, kw)) return 0;
  if (!rope_is(g, rq, H, hd) || !rope_is(g, rk, KVH, hd)) return 0;
  /* skipping the nodes leaves no one without their values */
  *q = (bn_qkv){.mm = xv->node, .skip = {sq, sk, sv, rq, rk}, .layer = (int)A->attr[0], .head_dim = hd, .qw = qw, .kw = kw};
  for (int i = 0; i < 5; i++)
    if (readers(g, g->nodes[q->skip[i]].out) != 1) return 0;
  return readers(g, x) == 3;
}
