/* fuse-matmul: tmatmul -> dequant (the int32 sums' only reader) becomes one
 * kernel, and when the result's only reader is a residual add, the add joins
 * too: y = x + acc * row_scale / xs is written once, at the add's place. */
#include <stdlib.h>

#include "rewrite.h"

bn_status bn_pass_fuse_matmul(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  bn_rw rw;
  bn_status st = bn_rw_begin(&rw, g, err);
  /* at[i] = 1 + the node whose fused kernel replaces node i (0: none) */
  int *at = calloc((size_t)g->n_nodes + 1, sizeof *at), *user = malloc((size_t)g->n_values * sizeof *user);
  if (!st && (!at || !user)) st = bn_fail(err, BN_E_NOMEM, "out of memory");
  for (int i = 0; i < g->n_nodes && !st; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++) user[g->nodes[i].in[k]] = i;
  for (int i = 0; i < g->n_nodes && !st; i++) {
    const bn_node *t = &g->nodes[i];
    if (t->op != BN_OP_TMATMUL || rw.uses[t->out] != 1) continue;
    int d = user[t->out];
    const bn_node *dq = &g->nodes[d];
    if (dq->op != BN_OP_DEQUANT || dq->n_in != 3 || dq->in[0] != t->out || dq->in[1] != t->in[0] || dq->in[2] != t->in[1])
      continue;
    int last = d;
    if (rw.uses[dq->out] == 1 && g->nodes[user[dq->out]].op == BN_OP_ADD && !at[user[dq->out]]) last = user[dq->out];
    at[i] = at[d] = at[last] = last + 1;
  }
  for (int i = 0; i < g->n_nodes && !st && !rw.st; i++) {
    if (!at[i]) bn_rw_copy(&rw, i);
    else if (at[i] == i + 1) { /* the last member: emit the kernel */
      const bn_node *n = &g->nodes[i];
      if (n->op == BN_OP_ADD) {
        int y = n->in[0], r = n->in[1];
        const bn_node *d0 = bn_rw_def(&rw, y);
        if (!d0 || d0->op != BN_OP_DEQUANT || at[g->values[y].node] != i + 1) y = n->in[1], r = n->in[0];
        const bn_node *dq = bn_rw_def(&rw, y), *t = bn_rw_def(&rw, dq->in[0]);
        int nodes[3] = {g->values[t->out].node, g->values[dq->out].node, i}, args[3] = {t->in[0], t->in[1], r};
        bn_rw_fuse(&rw, nodes, 3, args, 3, n->out);
      } else {
        const bn_node *t = bn_rw_def(&rw, n->in[0]);
        int nodes[2] = {g->values[t->out].node, i}, args[2] = {t->in[0], t->in[1]};
        bn_rw_fuse(&rw, nodes, 2, args, 2, n->out);
      }
    }
  }
  free(at), free(user);
  if (st) return bn_rw_abort(&rw), st;
  return bn_rw_end(&rw, g);
}
