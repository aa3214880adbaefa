/* infer-shapes: recomputes every node's output type and shape from the op
 * table's rules, in order. A graph from the importer already agrees; one
 * parsed from edited text gets its declared types checked and corrected
 * where the rule is certain, or an error naming the node. */
#include "pass.h"

bn_status bn_pass_infer_shapes(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  for (int i = 0; i < g->n_nodes; i++) {
    bn_node *n = &g->nodes[i];
    bn_value *out = &g->values[n->out];
    bn_error e2;
    if (n->body && bn_pass_infer_shapes(n->body, o, &e2))
      return bn_fail(err, BN_E_INVALID, "in the body of %%%s: %s", out->name, e2.msg);
    if (bn_op_table[n->op].rule(g, n, &out->dtype, &out->shape, &e2))
      return bn_fail(err, BN_E_INVALID, "node %%%s: %s", out->name, e2.msg);
  }
  return BN_OK;
}
