/* lower-bitlinear: bitlinear(x, W [, s]) becomes
 *     xq  = quantize x          per-token int8 + scale (+ sum of codes)
 *     acc = tmatmul xq, W       exact int32 sums of codes x trits
 *     y   = dequant acc, xq, W [, s]   acc * row_scale(W) / scale(xq) [* s]
 * which is bitlinear's definition when every row of W has one scale. The
 * projections of one input share its quantize (%x.q8). A TQ tensor whose
 * blocks within a row differ in scale (TriLM's, Llama3-8B-1.58's; Bonsai's PQ2_0
 * at 128) is packed here as TG2 (TG2H), whose tmatmul sums each 256-group (128)
 * and scales it (ref/ref.h); finer scales (Q2_0's 64) stay a bitlinear. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/quant.h"
#include "rewrite.h"

/* The group-scaled type weight v fits: TG2 (a scale per 256), TG2H (per 128), or -1 (neither). */
static int group_type(const bn_value *w) {
  uint64_t N = (uint64_t)w->shape.d[0], K = (uint64_t)w->shape.d[1];
  if (K % 256) return -1;
  return bn_tg2_groups_fit(w->dtype, w->data, N, K, 256) ? BN_DT_TG2 : bn_tg2_groups_fit(w->dtype, w->data, N, K, 128) ? BN_DT_TG2H : -1;
}

/* The TG2 or TG2H copy of weight v (made once however many bitlinears read it). */
static int tg2(bn_rw *rw, int v, bn_dtype to) {
  const bn_value *w = &rw->src->values[v];
  char name[160];
  snprintf(name, sizeof name, "%s.%s", w->name, bn_dtype_table[to].name);
  int have = bn_graph_find_value(&rw->dst, name, strlen(name));
  if (have >= 0) return have;
  size_t nbytes = (size_t)bn_value_bytes(to, &w->shape, 0);
  void *out = malloc(nbytes);
  if (!out || bn_tg2_from_ternary(w->dtype, w->data, (uint64_t)w->shape.d[0], (uint64_t)w->shape.d[1], to, out)) {
    free(out);
    rw->st = bn_fail(rw->err, BN_E_NOMEM, "lower-bitlinear: out of memory for %%%s", w->name);
    return -1;
  }
  return bn_rw_weight(rw, name, to, w->shape, out, nbytes);
}

bn_status bn_pass_lower_bitlinear(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  bn_rw rw;
  bn_status st = bn_rw_begin(&rw, g, err);
  if (st) return st;
  int *xq_of = malloc((size_t)g->n_values * sizeof *xq_of); /* src value -> its quantize in dst */
  if (!xq_of) return bn_rw_abort(&rw), bn_fail(err, BN_E_NOMEM, "out of memory");
  for (int i = 0; i < g->n_values; i++) xq_of[i] = -1;
  for (int i = 0; i < g->n_nodes && !rw.st; i++) {
    const bn_node *n = &g->nodes[i];
    const bn_value *w = n->op == BN_OP_BITLINEAR ? &g->values[n->in[1]] : NULL;
    int grouped = w && w->data && !bn_ternary_rows_uniform(w->dtype, w->data, (uint64_t)w->shape.d[0], (uint64_t)w->shape.d[1]);
    int gt = grouped ? group_type(w) : -1;
    if (!w || (grouped && gt < 0)) { /* scales finer than 128 within a row: the generic bitlinear */
      bn_rw_copy(&rw, i);
      continue;
    }
    const char *name = g->values[n->out].name;
    char qn[160], an[160];
    snprintf(qn, sizeof qn, "%s.q8", g->values[n->in[0]].name);
    snprintf(an, sizeof an, "%s.acc", name);
    int x = bn_rw_val(&rw, n->in[0]), wid = grouped ? tg2(&rw, n->in[1], (bn_dtype)gt) : bn_rw_val(&rw, n->in[1]);
    if (xq_of[n->in[0]] < 0) xq_of[n->in[0]] = bn_rw_add(&rw, BN_OP_QUANTIZE, qn, &x, 1, NULL);
    int xq = xq_of[n->in[0]];
    int acc = bn_rw_add(&rw, BN_OP_TMATMUL, an, (int[]){xq, wid}, 2, NULL);
    int in[4] = {acc, xq, wid, n->n_in == 3 ? bn_rw_val(&rw, n->in[2]) : -1};
    rw.map[n->out] = bn_rw_add(&rw, BN_OP_DEQUANT, name, in, n->n_in == 3 ? 4 : 3, NULL);
  }
  free(xq_of);
  return bn_rw_end(&rw, g);
}
