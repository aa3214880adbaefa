/* fuse-norm-quant: rmsnorm followed by quantize (its only reader) becomes one
 * kernel at the quantize's place: the normalized row is quantized while
 * still in registers, and the float row never reaches memory. */
#include <stdlib.h>

#include "rewrite.h"

bn_status bn_pass_fuse_norm_quant(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  bn_rw rw;
  bn_status st = bn_rw_begin(&rw, g, err);
  char *absorbed = calloc((size_t)g->n_nodes + 1, 1);
  if (!st && !absorbed) st = bn_fail(err, BN_E_NOMEM, "out of memory");
  for (int i = 0; i < g->n_nodes && !st; i++) {
    const bn_node *n = &g->nodes[i], *r = bn_rw_def(&rw, n->in[0]);
    if (n->op == BN_OP_QUANTIZE && r && r->op == BN_OP_RMSNORM && rw.uses[r->out] == 1)
      absorbed[g->values[r->out].node] = 1;
  }
  for (int i = 0; i < g->n_nodes && !st && !rw.st; i++) {
    const bn_node *n = &g->nodes[i], *r = bn_rw_def(&rw, n->in[0]);
    if (absorbed[i]) continue;
    if (n->op == BN_OP_QUANTIZE && r && absorbed[g->values[r->out].node]) {
      int nodes[2] = {g->values[r->out].node, i}, args[2] = {r->in[0], r->in[1]};
      bn_rw_fuse(&rw, nodes, 2, args, 2, n->out);
    } else bn_rw_copy(&rw, i);
  }
  free(absorbed);
  if (st) return bn_rw_abort(&rw), st;
  return bn_rw_end(&rw, g);
}
