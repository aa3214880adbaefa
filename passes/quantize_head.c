/* quantize-head: when asked (bnc compile --head q8_0|q6_k), the output projection reads its weights as
 * Q8_0 (8.5 bits a weight) or Q6_K (6.56) instead of F16 or F32: decode reads the head once a token,
 * and it is a third of large's bytes and half of 2b4t's. Lossy: docs/passes.md gives the measured cost.
 * A tied embedding keeps its exact table for the gather; the head gets a quantized copy of its rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/quant.h"
#include "rewrite.h"

/* The copy of weight w in type t (Q8_0, Q6_K); the squares of its errors and of the weights added to
 * *err2 and *sum2. */
static int quantize(bn_rw *rw, int v, bn_dtype t, double *err2, double *sum2) {
  const bn_value *w = &rw->src->values[v];
  int64_t N = w->shape.d[0], K = w->shape.d[1], E = bn_dtype_table[t].block_elems, B = bn_dtype_table[t].block_bytes;
  char name[160];
  snprintf(name, sizeof name, "%s.%s", w->name, bn_dtype_table[t].name);
  if (K % E) {
    rw->st = bn_fail(rw->err, BN_E_UNSUPPORTED, "quantize-head: %%%s: rows of %lld, not a multiple of %s's %lld", w->name,
                     (long long)K, bn_dtype_table[t].name, (long long)E);
    return -1;
  }
  size_t nbytes = (size_t)bn_value_bytes(t, &w->shape, 0);
  if (!w->data) { /* a .bnir graph: the type changes, there are no bytes */
    int id = bn_graph_add_weight(&rw->dst, name, t, w->shape, NULL, nbytes);
    if (id < 0) rw->st = bn_fail(rw->err, BN_E_NOMEM, "out of memory");
    return id;
  }
  uint8_t *out = malloc(nbytes);
  float *row = malloc((size_t)K * 2 * sizeof *row);
  if (!out || !row) {
    free(out), free(row);
    rw->st = bn_fail(rw->err, BN_E_NOMEM, "quantize-head: out of memory for %%%s", w->name);
    return -1;
  }
  uint64_t total = (uint64_t)N * (uint64_t)K;
  for (int64_t r = 0; r < N; r++) {
    uint8_t *q = out + (size_t)r * (size_t)(K / E * B);
    bn_dequant(w->dtype, w->data, total, (uint64_t)(r * K), (uint64_t)K, row);
    if (t == BN_DT_Q8_0) bn_q8_0_quantize(row, (uint64_t)K, q);
    else bn_q6_k_quantize(row, (uint64_t)K, q);
    bn_dequant(t, q, (uint64_t)K, 0, (uint64_t)K, row + K);
    for (int64_t k = 0; k < K; k++) *err2 += (double)(row[K + k] - row[k]) * (row[K + k] - row[k]), *sum2 += (double)row[k] * row[k];
  }
  free(row);
  return bn_rw_weight(rw, name, t, w->shape, out, nbytes);
}

bn_status bn_pass_quantize_head(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  if (!o->head || !strcmp(o->head, "exact")) return BN_OK;
  bn_dtype t = !strcmp(o->head, "q8_0") ? BN_DT_Q8_0 : !strcmp(o->head, "q6_k") ? BN_DT_Q6_K : BN_DT_COUNT;
  if (t == BN_DT_COUNT) return bn_fail(err, BN_E_INVALID, "quantize-head: head type '%s' (exact, q8_0, q6_k)", o->head);
  bn_rw rw;
  bn_status st = bn_rw_begin(&rw, g, err);
  if (st) return st;
  double err2 = 0, sum2 = 0;
  for (int i = 0; i < g->n_nodes && !rw.st; i++) {
    const bn_node *n = &g->nodes[i];
    const bn_value *w = n->op == BN_OP_OUTPUT_PROJ ? &g->values[n->in[1]] : NULL;
    if (!w || w->dtype == t) {
      bn_rw_copy(&rw, i);
      continue;
    }
    int in[2] = {bn_rw_val(&rw, n->in[0]), quantize(&rw, n->in[1], t, &err2, &sum2)};
    rw.map[n->out] = bn_rw_add(&rw, n->op, g->values[n->out].name, in, 2, n->attr);
  }
  if (o->head_error) *o->head_error = sum2 > 0 ? sqrt(err2 / sum2) : 0;
  return bn_rw_end(&rw, g);
}
