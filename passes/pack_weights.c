/* pack-weights: every ternary weight a tmatmul reads (TQ1_0, TQ2_0 or I2_S,
 * as the file stored it) is re-laid as TP2, the layout the kernels stream:
 * rows of 256-element groups of 2-bit codes plus one f32 scale per row. The
 * trits and scales are the same numbers, so the results are bit-identical.
 * Weights without data (a .bnir graph) get a TP2 type and no data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/quant.h"
#include "rewrite.h"

static int pack(bn_rw *rw, int v) {
  const bn_value *w = &rw->src->values[v];
  int64_t N = w->shape.d[0], K = w->shape.d[1];
  char name[160];
  snprintf(name, sizeof name, "%s.tp2", w->name);
  size_t nbytes = (size_t)bn_value_bytes(BN_DT_TP2, &w->shape, 0);
  if (!w->data) { /* a .bnir graph: the type changes, there are no bytes to move */
    int id = bn_graph_add_weight(&rw->dst, name, BN_DT_TP2, w->shape, NULL, nbytes);
    if (id < 0) rw->st = bn_fail(rw->err, BN_E_NOMEM, "out of memory");
    return id;
  }
  uint8_t *out = malloc(nbytes);
  int8_t *trit = malloc((size_t)K);
  float *sc = malloc((size_t)K * sizeof *sc);
  if (!out || !trit || !sc) {
    free(out), free(trit), free(sc);
    rw->st = bn_fail(rw->err, BN_E_NOMEM, "pack-weights: out of memory for %%%s", w->name);
    return -1;
  }
  uint64_t total = (uint64_t)N * (uint64_t)K;
  for (int64_t r = 0; r < N; r++) {
    bn_ternary_decode(w->dtype, w->data, total, (uint64_t)(r * K), (uint64_t)K, trit, sc);
    bn_tp2_write_row(out, (uint64_t)N, (uint64_t)K, (uint64_t)r, trit, sc[0]);
  }
  free(trit), free(sc);
  return bn_rw_weight(rw, name, BN_DT_TP2, w->shape, out, nbytes);
}

bn_status bn_pass_pack_weights(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  bn_rw rw;
  bn_status st = bn_rw_begin(&rw, g, err);
  if (st) return st;
  int *packed = malloc((size_t)g->n_values * sizeof *packed);
  if (!packed) return bn_rw_abort(&rw), bn_fail(err, BN_E_NOMEM, "out of memory");
  for (int i = 0; i < g->n_values; i++) packed[i] = -1;
  for (int i = 0; i < g->n_nodes && !rw.st; i++) {
    const bn_node *n = &g->nodes[i];
    int wi = n->op == BN_OP_TMATMUL ? 1 : n->op == BN_OP_DEQUANT ? 2 : -1;
    const bn_value *w = wi >= 0 ? &g->values[n->in[wi]] : NULL;
    if (!w || w->dtype == BN_DT_TP2 || w->dtype == BN_DT_TL2 || w->dtype == BN_DT_TG2 || w->dtype == BN_DT_TG2H || w->shape.d[1] % 256) { /* rows of whole 256-groups only (not 3B's 3200) */
      bn_rw_copy(&rw, i);
      continue;
    }
    if (packed[n->in[wi]] < 0) packed[n->in[wi]] = pack(&rw, n->in[wi]);
    int in[BN_MAX_IN];
    for (int k = 0; k < n->n_in; k++) in[k] = k == wi ? packed[n->in[wi]] : bn_rw_val(&rw, n->in[k]);
    rw.map[n->out] = bn_rw_add(&rw, n->op, g->values[n->out].name, in, n->n_in, n->attr);
  }
  free(packed);
  return bn_rw_end(&rw, g);
}
