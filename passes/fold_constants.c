/* fold-constants: a dequant with a constant per-tensor scale (the optional
 * blk.N.*.scale tensors of older bitnet.cpp conversions) multiplies it into
 * its packed weight's row scales and drops the operand, so kernels never see
 * it. Only weights this graph made (packed) and no other dequant reads are
 * changed; y = acc * (row_scale * s) / xs equals acc * row_scale / xs * s to
 * float rounding. */
#include <string.h>

#include "../ir/quant.h"
#include "rewrite.h"

static int owned(const bn_graph *g, const void *p) {
  for (int i = 0; i < g->n_owned; i++)
    if (g->owned[i] == p) return 1;
  return 0;
}

bn_status bn_pass_fold_constants(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  bn_rw rw;
  bn_status st = bn_rw_begin(&rw, g, err);
  if (st) return st;
  for (int i = 0; i < g->n_nodes && !rw.st; i++) {
    const bn_node *n = &g->nodes[i];
    const bn_value *w = n->op == BN_OP_DEQUANT ? &g->values[n->in[2]] : NULL;
    const bn_value *s = n->op == BN_OP_DEQUANT && n->n_in == 4 ? &g->values[n->in[3]] : NULL;
    int dequant_users = 0;
    for (int k = 0; s && k < g->n_nodes; k++) dequant_users += g->nodes[k].op == BN_OP_DEQUANT && g->nodes[k].in[2] == n->in[2];
    if (!s || !s->data || w->dtype != BN_DT_TP2 || !owned(g, w->data) || dequant_users != 1) {
      bn_rw_copy(&rw, i);
      continue;
    }
    float scale;
    memcpy(&scale, s->data, 4);
    uint64_t rows = (uint64_t)w->shape.d[0], k = (uint64_t)w->shape.d[1];
    float *row_scale = (float *)((uint8_t *)w->data + rows * k / 4); /* TP2: scales follow the codes */
    for (uint64_t r = 0; r < rows; r++) row_scale[r] *= scale;
    int in[3] = {bn_rw_val(&rw, n->in[0]), bn_rw_val(&rw, n->in[1]), bn_rw_val(&rw, n->in[2])};
    rw.map[n->out] = bn_rw_add(&rw, BN_OP_DEQUANT, g->values[n->out].name, in, 3, NULL);
  }
  return bn_rw_end(&rw, g);
}
