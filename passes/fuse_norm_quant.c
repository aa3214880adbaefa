/* fuse-norm-quant: rmsnorm followed by quantize (its only reader) becomes one
 * kernel at the quantize's place: the normalized row is quantized while
 * still in registers, and the float row never reaches memory. */
#include "rewrite.h"

static int match(const bn_rw *rw, int i, bn_fusion *f) {
  const bn_node *q = &rw->src->nodes[i], *r = bn_rw_def(rw, q->in[0]);
  if (q->op != BN_OP_QUANTIZE || !r || r->op != BN_OP_RMSNORM || rw->uses[r->out] != 1) return 0;
  *f = (bn_fusion){.nodes = {rw->src->values[r->out].node, i}, .n = 2, .args = {r->in[0], r->in[1]}, .n_args = 2,
                   .chain = -1};
  return 1;
}

bn_status bn_pass_fuse_norm_quant(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  return bn_rw_fuse_matches(g, match, err);
}
