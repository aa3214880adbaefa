/* Memory plans: liveness, checking, freeing. */
#include "memplan.h"

#include <stdlib.h>

void bn_memplan_free(bn_memplan *m) {
  if (m->body_offset)
    for (int i = 0; i < m->n_nodes; i++) free(m->body_offset[i]);
  free(m->body_offset);
  free(m->offset);
  m->body_offset = NULL;
  m->offset = NULL;
}

void bn_liveness(const bn_graph *g, int *first, int *last) {
  for (int i = 0; i < g->n_values; i++) first[i] = last[i] = -1;
  for (int i = 0; i < g->n_nodes; i++) {
    const bn_node *n = &g->nodes[i];
    first[n->out] = last[n->out] = i;
    for (int k = 0; k < n->n_in; k++)
      if (last[n->in[k]] < i) last[n->in[k]] = i;
  }
  for (int i = 0; i < g->n_outputs; i++) last[g->outputs[i]] = g->n_nodes;
}

typedef struct {
  int64_t off, bytes;
  int first, last;
  const char *name;
} region;

static bn_status check_regions(const region *r, int n, int64_t arena, bn_error *err) {
  for (int i = 0; i < n; i++) {
    if (r[i].off < 0 || r[i].off % BN_ARENA_ALIGN || r[i].off + r[i].bytes > arena)
      return bn_fail(err, BN_E_FORMAT, "memory plan: %%%s at offset %lld (+%lld) is outside the %lld-byte arena or unaligned",
                     r[i].name, (long long)r[i].off, (long long)r[i].bytes, (long long)arena);
    for (int j = 0; j < i; j++)
      if (r[i].first <= r[j].last && r[j].first <= r[i].last && r[i].off < r[j].off + r[j].bytes &&
          r[j].off < r[i].off + r[i].bytes)
        return bn_fail(err, BN_E_FORMAT, "memory plan: %%%s and %%%s are live together but overlap", r[i].name,
                       r[j].name);
  }
  return BN_OK;
}

bn_status bn_memplan_check(const bn_memplan *m, const bn_graph *g, bn_error *err) {
  if (m->n_nodes != g->n_nodes || m->max_tokens < 1 || m->arena_bytes < 0)
    return bn_fail(err, BN_E_FORMAT, "memory plan: made for another graph (%d nodes; the graph has %d)", m->n_nodes,
                   g->n_nodes);
  int *first = malloc((size_t)g->n_values * sizeof *first), *last = malloc((size_t)g->n_values * sizeof *last);
  region *r = NULL;
  int n = 0, cap = g->n_values;
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].body) cap += g->nodes[i].body->n_values;
  r = malloc((size_t)cap * sizeof *r);
  if (!first || !last || !r) {
    free(first), free(last), free(r);
    return bn_fail(err, BN_E_NOMEM, "memory plan: out of memory");
  }
  bn_liveness(g, first, last);
  bn_status st = BN_OK;
  for (int i = 0; i < g->n_nodes && !st; i++) {
    const bn_value *v = &g->values[g->nodes[i].out];
    r[n++] = (region){m->offset[i], (int64_t)bn_value_bytes(v->dtype, &v->shape, m->max_tokens),
                      first[g->nodes[i].out], last[g->nodes[i].out], v->name};
    const bn_graph *b = g->nodes[i].body;
    if (!b) continue;
    if (!m->body_offset || !m->body_offset[i]) {
      st = bn_fail(err, BN_E_FORMAT, "memory plan: fused node %%%s has no body plan", v->name);
      break;
    }
    for (int k = 0; k < b->n_nodes; k++) {
      const bn_value *bv = &b->values[b->nodes[k].out];
      if (b->nodes[k].out == b->outputs[0]) continue; /* the body's result is the node's output */
      r[n++] = (region){m->body_offset[i][b->nodes[k].out], (int64_t)bn_value_bytes(bv->dtype, &bv->shape, m->max_tokens),
                        i, i, bv->name};
    }
  }
  if (!st) st = check_regions(r, n, m->arena_bytes, err);
  free(first), free(last), free(r);
  return st;
}
