/* fuse-prologue: a norm + quantize kernel (fuse-norm-quant's, or fuse-gate's
 * ending in the sub-norm) whose only reader is a fused matmul becomes that
 * matmul's prologue: one kernel reads the float rows, quantizes them into
 * scratch and multiplies, so the QA8 activations never go through the arena
 * and a step runs one kernel (and, on threads, meets at one barrier) fewer. */
#include <stdlib.h>

#include "rewrite.h"

/* Does fused node n end in rmsnorm -> quantize, its result? */
static int is_norm_quant(const bn_node *n) {
  const bn_graph *b = n->body;
  if (!b || b->n_nodes < 2) return 0;
  const bn_node *r = &b->nodes[b->n_nodes - 2], *q = &b->nodes[b->n_nodes - 1];
  return r->op == BN_OP_RMSNORM && q->op == BN_OP_QUANTIZE && q->in[0] == r->out && b->outputs[0] == q->out;
}

/* The norm + quantize node feeding fused matmul m as its activations (its only reader), or -1. */
static int prologue_of(const bn_rw *rw, const bn_node *m) {
  const bn_graph *b = m->body;
  if (!b || !b->n_nodes || b->nodes[0].op != BN_OP_TMATMUL || b->values[b->nodes[0].in[0]].kind != BN_VAL_INPUT)
    return -1;
  for (int v = 0; v < b->nodes[0].in[0]; v++) /* the activations are the first operand */
    if (b->values[v].kind == BN_VAL_INPUT) return -1;
  const bn_node *p = bn_rw_def(rw, m->in[0]);
  return p && rw->uses[m->in[0]] == 1 && is_norm_quant(p) ? rw->src->values[p->out].node : -1;
}

bn_status bn_pass_fuse_prologue(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  bn_rw rw;
  bn_status st = bn_rw_begin(&rw, g, err);
  int *pro = malloc(((size_t)g->n_nodes + 1) * sizeof *pro); /* per matmul: its prologue node, or -1 */
  char *absorbed = calloc((size_t)g->n_nodes + 1, 1);
  if (!st && (!pro || !absorbed)) st = bn_fail(err, BN_E_NOMEM, "out of memory");
  for (int i = 0; i < g->n_nodes && !st; i++)
    if ((pro[i] = prologue_of(&rw, &g->nodes[i])) >= 0) absorbed[pro[i]] = 1;
  for (int i = 0; i < g->n_nodes && !st && !rw.st; i++) {
    if (absorbed[i]) continue;
    if (pro[i] >= 0) bn_rw_fuse_chain(&rw, pro[i], i);
    else bn_rw_copy(&rw, i);
  }
  free(pro), free(absorbed);
  if (st) return bn_rw_abort(&rw), st;
  return bn_rw_end(&rw, g);
}
