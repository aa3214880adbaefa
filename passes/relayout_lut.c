/* relayout-lut: the weights of the fused matmuls whose shape [N, K] is in
 * o->lut (chosen by bnc compile --tune) are re-laid from TP2 to TL2, the
 * layout of the lookup-table kernels; the trits and row scales are the same,
 * so results are bit-identical. In place: nodes and values keep their
 * indices (the memory plan stays valid), so it may run after the pipeline. */
#include <stdio.h>
#include <stdlib.h>

#include "../ir/quant.h"
#include "pass.h"

static int chosen(const bn_pass_opts *o, int64_t K, int64_t N) {
  for (int i = 0; i < o->n_lut; i++)
    if (o->lut[2 * i] == K && o->lut[2 * i + 1] == N) return 1;
  return 0;
}

int bn_pass_matmul_shapes(const bn_graph *g, int64_t *kn) {
  int n = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    int wi;
    if (bn_fused_tmatmul(&g->nodes[i], &wi) < 0) continue;
    const bn_value *w = &g->values[g->nodes[i].in[wi]];
    if (w->dtype != BN_DT_TP2) continue;
    int64_t K = w->shape.d[1], N = w->shape.d[0];
    int k = 0;
    while (k < n && !(kn[2 * k] == K && kn[2 * k + 1] == N)) k++;
    if (k == n) kn[2 * n] = K, kn[2 * n + 1] = N, n++;
  }
  return n;
}

bn_status bn_pass_relayout_lut(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  for (int i = 0; i < g->n_nodes; i++) {
    bn_node *n = &g->nodes[i];
    int wi, at = bn_fused_tmatmul(n, &wi);
    if (at < 0) continue;
    bn_value *w = &g->values[n->in[wi]];
    int64_t N = w->shape.d[0], K = w->shape.d[1];
    if ((w->dtype != BN_DT_TP2 && w->dtype != BN_DT_TL2) || N % 16 || K % 256 || !chosen(o, K, N)) continue;
    int arg = n->body->nodes[at].in[1]; /* the body's weight input */
    if (w->dtype == BN_DT_TP2) { /* once per weight, however many nodes read it */
      void *tl = NULL;
      if (w->data && !(tl = bn_graph_own(g, malloc(w->nbytes))))
        return bn_fail(err, BN_E_NOMEM, "relayout-lut: out of memory for %%%s", w->name);
      if (tl) bn_tl2_from_tp2(w->data, (uint64_t)N, (uint64_t)K, tl);
      char name[200];
      snprintf(name, sizeof name, "%s.tl2", w->name);
      if (bn_graph_rename_value(g, (int)(w - g->values), name)) return bn_fail(err, BN_E_NOMEM, "out of memory");
      w->dtype = BN_DT_TL2;
      if (tl) w->data = tl;
    }
    n->body->values[arg].dtype = BN_DT_TL2;
  }
  return o->verify ? bn_graph_verify(g, err) : BN_OK;
}
