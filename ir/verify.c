/* The verifier: every node's operands exist and precede it, operand counts
 * match the op table, declared shapes equal the shape rule's, names are
 * unique, outputs exist. Messages name the node. */
#include <string.h>

#include "ir.h"

bn_status bn_graph_verify(const bn_graph *g, bn_error *err) {
  for (int i = 0; i < g->n_nodes; i++) {
    const bn_node *n = &g->nodes[i];
    if ((n->op == BN_OP_FUSED) != (n->body != NULL))
      return bn_fail(err, BN_E_INVALID, "node %%%s: only fused nodes have a body", g->values[n->out].name);
    if (n->body) {
      bn_error e2;
      if (bn_graph_verify(n->body, &e2))
        return bn_fail(err, BN_E_INVALID, "in the body of %%%s: %s", g->values[n->out].name, e2.msg);
    }
  }
  bn_strmap seen;
  if (bn_strmap_init(&seen, (size_t)g->n_values)) return bn_fail(err, BN_E_NOMEM, "verifier: out of memory");
  for (int i = 0; i < g->n_values; i++)
    if (bn_strmap_add(&seen, g->values[i].name, strlen(g->values[i].name), i) >= 0) {
      bn_strmap_free(&seen);
      return bn_fail(err, BN_E_INVALID, "value %%%s is defined twice", g->values[i].name);
    }
  bn_strmap_free(&seen);
  for (int i = 0; i < g->n_nodes; i++) {
    const bn_node *n = &g->nodes[i];
    const bn_op_info *info = &bn_op_table[n->op];
    const char *out = g->values[n->out].name;
    if (n->n_in < info->min_in || n->n_in > info->max_in)
      return bn_fail(err, BN_E_INVALID, "node %%%s (%s): %d operands, expected %d..%d", out, info->name,
                     n->n_in, info->min_in, info->max_in);
    for (int k = 0; k < n->n_in; k++) {
      int v = n->in[k];
      if (v < 0 || v >= g->n_values)
        return bn_fail(err, BN_E_INVALID, "node %%%s: operand %d out of range", out, k);
      if (g->values[v].kind == BN_VAL_NODE && g->values[v].node >= i)
        return bn_fail(err, BN_E_INVALID, "node %%%s: operand %%%s is used before it is defined", out,
                       g->values[v].name);
    }
    bn_shape s;
    bn_dtype t;
    bn_error e2;
    if (info->rule(g, n, &t, &s, &e2))
      return bn_fail(err, BN_E_INVALID, "node %%%s: %s", out, e2.msg);
    if (!bn_shape_eq(&s, &g->values[n->out].shape) || g->values[n->out].dtype != t)
      return bn_fail(err, BN_E_INVALID, "node %%%s (%s): declared type does not match the shape rule", out,
                     info->name);
  }
  for (int i = 0; i < g->n_outputs; i++)
    if (g->outputs[i] < 0 || g->outputs[i] >= g->n_values)
      return bn_fail(err, BN_E_INVALID, "output %d is not a value", i);
  if (g->n_outputs == 0) return bn_fail(err, BN_E_INVALID, "graph has no outputs");
  return BN_OK;
}
