/* fuse-gate: the FFN's middle, from the concatenated gate|up projection to
 * the quantized input of ffn_down,
 *     g = slice y; u = slice y; m = act(g) * u; q = quantize(rmsnorm(m, w))
 * (act = silu or relu2, each value read once) becomes one kernel reading y
 * and writing q: the F-wide float rows never go back to memory. */
#include <stdlib.h>

#include "rewrite.h"

static const bn_node *def1(const bn_rw *rw, int v, bn_op op) {
  const bn_node *n = bn_rw_def(rw, v);
  return n && n->op == op && rw->uses[v] == 1 ? n : NULL;
}

/* Fills nodes[6] (graph order) and args[2] if quantize node q heads the pattern. */
static int match(const bn_rw *rw, const bn_node *q, int nodes[6], int args[2]) {
  const bn_graph *g = rw->src;
  const bn_node *r = q->op == BN_OP_QUANTIZE ? def1(rw, q->in[0], BN_OP_RMSNORM) : NULL;
  const bn_node *m = r ? def1(rw, r->in[0], BN_OP_MUL) : NULL;
  if (!m) return 0;
  const bn_node *a = def1(rw, m->in[0], BN_OP_RELU2);
  if (!a) a = def1(rw, m->in[0], BN_OP_SILU);
  const bn_node *sg = a ? def1(rw, a->in[0], BN_OP_SLICE) : NULL, *su = def1(rw, m->in[1], BN_OP_SLICE);
  if (!sg || !su || sg->in[0] != su->in[0]) return 0;
  const bn_node *list[6] = {sg, su, a, m, r, q};
  for (int i = 0; i < 6; i++) nodes[i] = list[i] == q ? g->values[q->out].node : g->values[list[i]->out].node;
  for (int i = 1; i < 6; i++) /* graph order */
    for (int j = i; j > 0 && nodes[j - 1] > nodes[j]; j--) {
      int t = nodes[j];
      nodes[j] = nodes[j - 1], nodes[j - 1] = t;
    }
  args[0] = sg->in[0];
  args[1] = r->in[1];
  return 1;
}

bn_status bn_pass_fuse_gate(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  bn_rw rw;
  bn_status st = bn_rw_begin(&rw, g, err);
  char *absorbed = calloc((size_t)g->n_nodes + 1, 1);
  if (!st && !absorbed) st = bn_fail(err, BN_E_NOMEM, "out of memory");
  int nodes[6], args[2];
  for (int i = 0; i < g->n_nodes && !st; i++)
    if (match(&rw, &g->nodes[i], nodes, args))
      for (int k = 0; k < 5; k++) absorbed[nodes[k]] = 1;
  for (int i = 0; i < g->n_nodes && !st && !rw.st; i++) {
    if (absorbed[i]) continue;
    if (match(&rw, &g->nodes[i], nodes, args)) bn_rw_fuse(&rw, nodes, 6, args, 2, g->nodes[i].out);
    else bn_rw_copy(&rw, i);
  }
  free(absorbed);
  if (st) return bn_rw_abort(&rw), st;
  return bn_rw_end(&rw, g);
}
