/* relayout-lut and relayout-t1: the weights of fused matmuls re-laid from TP2 to
 * another packed layout of the same trits and row scales, so results are
 * bit-identical: TL2 for the lookup-table kernels (the shapes [N, K] in o->lut,
 * chosen by bnc compile --tune or --lut), TP1 at 1.6 bits (those in o->t1: bnc
 * compile --weights t1, or --tune). In place: nodes and values keep their indices (the
 * memory plan stays valid), so they may run after the pipeline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/quant.h"
#include "pass.h"

static int in(const int64_t *kn, int n, int64_t K, int64_t N) {
  for (int i = 0; i < n; i++)
    if (kn[2 * i] == K && kn[2 * i + 1] == N) return 1;
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

/* Every fused matmul whose TP2 (or already re-laid) weights `take` accepts gets them as `to`. */
static bn_status relayout(bn_graph *g, const bn_pass_opts *o, bn_dtype to, int (*take)(const bn_pass_opts *, int64_t, int64_t),
                          bn_error *err) {
  for (int i = 0; i < g->n_nodes; i++) {
    bn_node *n = &g->nodes[i];
    int wi, at = bn_fused_tmatmul(n, &wi);
    if (at < 0) continue;
    bn_value *w = &g->values[n->in[wi]];
    int64_t N = w->shape.d[0], K = w->shape.d[1];
    if ((w->dtype != BN_DT_TP2 && w->dtype != to) || K % 256 || !take(o, K, N)) continue;
    int arg = n->body->nodes[at].in[1]; /* the body's weight input */
    if (w->dtype == BN_DT_TP2) { /* once per weight, however many nodes read it */
      uint64_t nbytes = bn_value_bytes(to, &w->shape, 0);
      void *out = NULL;
      if (w->data && !(out = bn_graph_own(g, calloc(1, nbytes))))
        return bn_fail(err, BN_E_NOMEM, "relayout: out of memory for %%%s", w->name);
      if (out && to == BN_DT_TL2) bn_tl2_from_tp2(w->data, (uint64_t)N, (uint64_t)K, out);
      if (out && to == BN_DT_TP1) bn_tp1_from_tp2(w->data, (uint64_t)N, (uint64_t)K, out);
      char name[200]; /* "x.tp2" becomes "x.tp1" */
      size_t len = strlen(w->name);
      int tp2 = len > 4 && !strcmp(w->name + len - 4, ".tp2");
      snprintf(name, sizeof name, "%.*s.%s", (int)(tp2 ? len - 4 : len), w->name, bn_dtype_table[to].name);
      if (bn_graph_rename_value(g, (int)(w - g->values), name)) return bn_fail(err, BN_E_NOMEM, "out of memory");
      w->dtype = to;
      w->nbytes = (size_t)nbytes;
      if (out) w->data = out;
    }
    n->body->values[arg].dtype = to;
  }
  return o->verify ? bn_graph_verify(g, err) : BN_OK;
}

static int lut_shape(const bn_pass_opts *o, int64_t K, int64_t N) { return N % 16 == 0 && in(o->lut, o->n_lut, K, N); }
static int t1_shape(const bn_pass_opts *o, int64_t K, int64_t N) { return in(o->t1, o->n_t1, K, N); }

bn_status bn_pass_relayout_lut(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  return relayout(g, o, BN_DT_TL2, lut_shape, err);
}

bn_status bn_pass_relayout_t1(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  return relayout(g, o, BN_DT_TP1, t1_shape, err);
}
