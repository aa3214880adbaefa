/* The bodies of the fused kernels: the patterns the fusion passes build, defined once here
 * for the passes and the kernel selector (codegen/select.c) alike. */
#include "ir.h"

int bn_fused_tmatmul(const bn_node *n, int *w) {
  for (int i = 0; n->body && i < n->body->n_nodes; i++) {
    if (n->body->nodes[i].op != BN_OP_TMATMUL) continue;
    int v = n->body->nodes[i].in[1], arg = 0; /* a body input: inputs are the operands in order */
    for (int k = 0; k < v; k++) arg += n->body->values[k].kind == BN_VAL_INPUT;
    if (n->body->values[v].kind != BN_VAL_INPUT || arg >= n->n_in) return -1;
    if (w) *w = arg;
    return i;
  }
  return -1;
}

/* BN_FUSED_NORM or _GATE_* if body nodes [0, *len) are rmsnorm + quantize (len 2) or the gate
 * (slice 0..F, slice F..2F, relu2|silu of the first, mul, rmsnorm, quantize: len 6); else -1. */
int bn_fused_norm_quant(const bn_graph *body, int *len) {
  const bn_node *b = body->nodes;
  if (body->n_nodes >= 2 && b[0].op == BN_OP_RMSNORM && b[1].op == BN_OP_QUANTIZE && b[1].in[0] == b[0].out)
    return *len = 2, BN_FUSED_NORM;
  if (body->n_nodes < 5) return -1;
  int relu2 = b[2].op == BN_OP_RELU2;
  int norm = body->n_nodes >= 6 && b[4].op == BN_OP_RMSNORM && b[5].op == BN_OP_QUANTIZE && b[4].in[0] == b[3].out &&
             b[5].in[0] == b[4].out;
  if (b[0].op != BN_OP_SLICE || b[1].op != BN_OP_SLICE || (!relu2 && b[2].op != BN_OP_SILU) || b[3].op != BN_OP_MUL ||
      (!norm && (b[4].op != BN_OP_QUANTIZE || b[4].in[0] != b[3].out)))
    return -1;
  double F = b[0].attr[1];
  if (b[0].attr[0] != 0 || b[1].attr[0] != F || b[1].attr[1] != F || b[2].in[0] != b[0].out || b[3].in[0] != b[2].out ||
      b[3].in[1] != b[1].out || body->values[b[0].in[0]].shape.d[1] != 2 * (int64_t)F)
    return -1;
  *len = norm ? 6 : 5;
  if (!norm) return relu2 ? BN_FUSED_GATE_RELU2_Q : BN_FUSED_GATE_SILU_Q;
  return relu2 ? BN_FUSED_GATE_RELU2 : BN_FUSED_GATE_SILU;
}

/* The mode of the matmul making up body nodes [at, end): tmatmul, dequant of its sums (and a
 * residual add); -1 if they are something else. */
int bn_fused_matmul(const bn_graph *body, int at) {
  const bn_node *t = &body->nodes[at], *d = t + 1;
  int left = body->n_nodes - at;
  if (left < 2 || left > 3 || t->op != BN_OP_TMATMUL || d->op != BN_OP_DEQUANT || d->n_in != 3 || d->in[0] != t->out ||
      d->in[1] != t->in[0] || d->in[2] != t->in[1])
    return -1;
  if (left == 2) return BN_FUSED_DQ;
  return d[1].op == BN_OP_ADD && (d[1].in[0] == d->out || d[1].in[1] == d->out) ? BN_FUSED_DQ_ADD : -1;
}
