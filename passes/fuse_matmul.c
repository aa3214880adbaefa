/* fuse-matmul: tmatmul -> dequant (the int32 sums' only reader) becomes one
 * kernel, and when the result's only reader is a residual add, the add joins
 * too: y = x + acc * row_scale / xs is written once, at the add's place. */
#include "rewrite.h"

/* The tmatmul node whose sums dequant value v alone reads (and whose operands it rescales by), or -1. */
static int matmul_of(const bn_rw *rw, int v) {
  const bn_node *dq = bn_rw_def(rw, v), *t = dq && dq->op == BN_OP_DEQUANT ? bn_rw_def(rw, dq->in[0]) : NULL;
  if (!t || t->op != BN_OP_TMATMUL || rw->uses[t->out] != 1 || dq->n_in != 3 || dq->in[1] != t->in[0] ||
      dq->in[2] != t->in[1])
    return -1;
  return rw->src->values[t->out].node;
}

/* The operand (0 or 1) of add node a that is a dequant it alone reads, the earlier of two; -1: none. */
static int absorbs(const bn_rw *rw, const bn_node *a) {
  int pick = -1;
  for (int k = 0; a->op == BN_OP_ADD && k < 2; k++)
    if (rw->uses[a->in[k]] == 1 && matmul_of(rw, a->in[k]) >= 0 &&
        (pick < 0 || matmul_of(rw, a->in[k]) < matmul_of(rw, a->in[pick])))
      pick = k;
  return pick;
}

static int match(const bn_rw *rw, int i, bn_fusion *f) {
  const bn_graph *g = rw->src;
  const bn_node *n = &g->nodes[i];
  int k = absorbs(rw, n);
  if (k >= 0) { /* the add: tmatmul, dequant, add over the activations, the weights and the residual */
    const bn_node *dq = bn_rw_def(rw, n->in[k]), *t = bn_rw_def(rw, dq->in[0]);
    *f = (bn_fusion){.nodes = {g->values[t->out].node, g->values[dq->out].node, i}, .n = 3,
                     .args = {t->in[0], t->in[1], n->in[1 - k]}, .n_args = 3, .chain = -1};
    return 1;
  }
  if (n->op != BN_OP_DEQUANT || matmul_of(rw, n->out) < 0) return 0;
  int r = rw->reader[n->out]; /* a dequant its add absorbs is no head */
  if (rw->uses[n->out] == 1 && r >= 0 && absorbs(rw, &g->nodes[r]) >= 0 && g->nodes[r].in[absorbs(rw, &g->nodes[r])] == n->out)
    return 0;
  const bn_node *t = bn_rw_def(rw, n->in[0]);
  *f = (bn_fusion){.nodes = {g->values[t->out].node, i}, .n = 2, .args = {t->in[0], t->in[1]}, .n_args = 2, .chain = -1};
  return 1;
}

bn_status bn_pass_fuse_matmul(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  return bn_rw_fuse_matches(g, match, err);
}
