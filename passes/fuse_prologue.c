/* fuse-prologue: a norm + quantize kernel (fuse-norm-quant's, or fuse-gate's
 * ending in the sub-norm) whose only reader is a fused matmul becomes that
 * matmul's prologue: one kernel reads the float rows, quantizes them into
 * scratch and multiplies, so the QA8 activations never go through the arena
 * and a step runs one kernel (and, on threads, meets at one barrier) fewer. */
#include "rewrite.h"

/* Is fused node n a norm + quantize kernel, whole (a gate without the norm stays a kernel of its own)? */
static int is_norm_quant(const bn_node *n) {
  int len, mode = n->body ? bn_fused_norm_quant(n->body, &len) : -1;
  return mode >= 0 && mode <= BN_FUSED_GATE_SILU && len == n->body->n_nodes &&
         n->body->outputs[0] == n->body->nodes[len - 1].out;
}

/* Fused matmul i, fed its activations (first operand) by a norm + quantize node it alone reads. */
static int match(const bn_rw *rw, int i, bn_fusion *f) {
  const bn_node *m = &rw->src->nodes[i];
  const bn_graph *b = m->body;
  if (!b || !b->n_nodes || b->nodes[0].op != BN_OP_TMATMUL || b->values[b->nodes[0].in[0]].kind != BN_VAL_INPUT)
    return 0;
  for (int v = 0; v < b->nodes[0].in[0]; v++) /* the activations are the first operand */
    if (b->values[v].kind == BN_VAL_INPUT) return 0;
  const bn_node *p = bn_rw_def(rw, m->in[0]);
  if (!p || rw->uses[m->in[0]] != 1 || !is_norm_quant(p)) return 0;
  f->chain = rw->src->values[p->out].node;
  return 1;
}

bn_status bn_pass_fuse_prologue(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  return bn_rw_fuse_matches(g, match, err);
}
