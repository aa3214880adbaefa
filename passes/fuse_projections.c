/* fuse-projections: matmuls that read the same quantized input (Q, K and V;
 * gate and up) become one over their weights concatenated by rows, so the
 * activations are read once: tmatmul + dequant over [W1; W2; ...] and a
 * slice per original result. TP2 keeps a scale per row (TG2, TG2H per group
 * of a row), so tensors with different scales concatenate exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/quant.h"
#include "rewrite.h"

enum { MAX_GROUP = 4 };

typedef struct {
  int n;
  int mm[MAX_GROUP], dq[MAX_GROUP]; /* tmatmul and dequant node of each member */
} group;

/* "l0.q", "l0.k", "l0.v" -> "l0.q_k_v" */
static void group_name(const bn_graph *g, const group *gr, char *out, size_t cap) {
  const char *first = g->values[g->nodes[gr->dq[0]].out].name;
  const char *dot = strrchr(first, '.');
  size_t pre = dot ? (size_t)(dot - first + 1) : 0;
  snprintf(out, cap, "%.*s", (int)pre, first);
  for (int k = 0; k < gr->n; k++) {
    const char *nm = g->values[g->nodes[gr->dq[k]].out].name;
    size_t len = strlen(out);
    snprintf(out + len, cap - len, "%s%s", k ? "_" : "", strlen(nm) > pre && !strncmp(nm, first, pre) ? nm + pre : nm);
  }
}

/* [W1; W2; ...] in their type (TP2, TG2 or TG2H): every row's codes and scales. */
static int concat_weights(bn_rw *rw, const group *gr, const char *name) {
  const bn_graph *g = rw->src;
  bn_dtype t = g->values[g->nodes[gr->mm[0]].in[1]].dtype;
  int64_t K = g->values[g->nodes[gr->mm[0]].in[1]].shape.d[1], N = 0;
  int have_data = 1;
  for (int k = 0; k < gr->n; k++) {
    const bn_value *w = &g->values[g->nodes[gr->mm[k]].in[1]];
    N += w->shape.d[0];
    have_data &= w->data != NULL;
  }
  int64_t d[2] = {N, K};
  bn_shape s = bn_shape_make(2, d);
  size_t nbytes = (size_t)bn_value_bytes(t, &s, 0);
  char wn[200];
  snprintf(wn, sizeof wn, "%s.w", name);
  if (!have_data) {
    int id = bn_graph_add_weight(&rw->dst, wn, t, s, NULL, nbytes);
    if (id < 0) rw->st = bn_fail(rw->err, BN_E_NOMEM, "out of memory");
    return id;
  }
  uint8_t *out = malloc(nbytes);
  if (!out) return rw->st = bn_fail(rw->err, BN_E_NOMEM, "out of memory"), -1;
  for (int k = 0, row = 0; k < gr->n; k++) { /* row by row: the blocks of 4 rows are laid out anew */
    const bn_value *w = &g->values[g->nodes[gr->mm[k]].in[1]];
    int64_t n = w->shape.d[0];
    for (int64_t r = 0; r < n; r++, row++)
      bn_tp2_copy_row(t, out, (uint64_t)N, (uint64_t)row, w->data, (uint64_t)n, (uint64_t)r, (uint64_t)K);
  }
  return bn_rw_weight(rw, wn, t, s, out, nbytes);
}

bn_status bn_pass_fuse_projections(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  bn_rw rw;
  bn_status st = bn_rw_begin(&rw, g, err);
  group *groups = calloc((size_t)g->n_values + 1, sizeof *groups); /* by quantized input */
  int *member = malloc(((size_t)g->n_nodes + 1) * sizeof *member); /* node -> its group's input value, or -1 */
  int *user = malloc((size_t)g->n_values * sizeof *user);
  if (!st && (!groups || !member || !user)) st = bn_fail(err, BN_E_NOMEM, "out of memory");
  for (int i = 0; i < g->n_nodes && !st; i++) {
    member[i] = -1;
    for (int k = 0; k < g->nodes[i].n_in; k++) user[g->nodes[i].in[k]] = i;
  }
  for (int i = 0; i < g->n_nodes && !st; i++) {
    const bn_node *t = &g->nodes[i];
    bn_dtype wt = g->values[t->in[1]].dtype;
    if (t->op != BN_OP_TMATMUL || (wt != BN_DT_TP2 && wt != BN_DT_TG2 && wt != BN_DT_TG2H) || rw.uses[t->out] != 1) continue;
    const bn_node *dq = &g->nodes[user[t->out]];
    if (dq->op != BN_OP_DEQUANT || dq->n_in != 3 || dq->in[1] != t->in[0] || dq->in[2] != t->in[1]) continue;
    group *gr = &groups[t->in[0]];
    if (gr->n == MAX_GROUP || (gr->n && g->values[g->nodes[gr->mm[0]].in[1]].dtype != wt)) continue; /* one type a group */
    gr->mm[gr->n] = i;
    gr->dq[gr->n++] = user[t->out];
  }
  for (int v = 0; v < g->n_values && !st; v++)
    for (int k = 0; groups[v].n >= 2 && k < groups[v].n; k++) member[groups[v].mm[k]] = member[groups[v].dq[k]] = v;
  for (int i = 0; i < g->n_nodes && !st && !rw.st; i++) {
    if (member[i] < 0) {
      bn_rw_copy(&rw, i);
      continue;
    }
    const group *gr = &groups[member[i]];
    if (gr->mm[0] != i) continue; /* emitted with the group's first matmul */
    char name[160], an[180];
    group_name(g, gr, name, sizeof name);
    snprintf(an, sizeof an, "%s.acc", name);
    int w = concat_weights(&rw, gr, name), xq = bn_rw_val(&rw, member[i]);
    int acc = bn_rw_add(&rw, BN_OP_TMATMUL, an, (int[]){xq, w}, 2, NULL);
    int y = bn_rw_add(&rw, BN_OP_DEQUANT, name, (int[]){acc, xq, w}, 3, NULL);
    double off = 0;
    for (int k = 0; k < gr->n && !rw.st; k++) {
      const bn_node *dq = &g->nodes[gr->dq[k]];
      double width = (double)g->values[dq->out].shape.d[1], attr[4] = {off, width};
      rw.map[dq->out] = bn_rw_add(&rw, BN_OP_SLICE, g->values[dq->out].name, &y, 1, attr);
      off += width;
    }
  }
  free(groups), free(member), free(user);
  if (st) return bn_rw_abort(&rw), st;
  return bn_rw_end(&rw, g);
}
