/* plan-memory: one arena for every activation of a step. Each node output
 * is live from its node to its last reader (graph outputs to the end); a
 * fused body's intermediates live during their node only. Regions are placed
 * largest first at the lowest 64-byte-aligned offset that no region live at
 * the same time occupies (greedy by size, as TFLite's planner does). A
 * node's output never shares memory with its operands, which are live at
 * that node: kernels may read and write freely. */
#include <stdlib.h>
#include <string.h>

#include "pass.h"

typedef struct {
  int64_t bytes, off;
  int first, last;
  int node, value; /* value of the graph (node < 0) or of node's body */
} region;

static int by_size(const void *a, const void *b) {
  const region *x = a, *y = b;
  if (x->bytes != y->bytes) return x->bytes > y->bytes ? -1 : 1;
  if (x->first != y->first) return x->first - y->first;
  if (x->node != y->node) return x->node - y->node;
  return x->value - y->value;
}

static int64_t align(int64_t x) { return (x + BN_ARENA_ALIGN - 1) / BN_ARENA_ALIGN * BN_ARENA_ALIGN; }

/* Places r[i] given the already placed r[0..i). */
static void place(region *r, int i) {
  int64_t off = 0;
  for (int moved = 1; moved;) {
    moved = 0;
    for (int j = 0; j < i; j++)
      if (r[j].first <= r[i].last && r[i].first <= r[j].last && off < r[j].off + r[j].bytes &&
          r[j].off < off + r[i].bytes) {
        off = align(r[j].off + r[j].bytes);
        moved = 1;
      }
  }
  r[i].off = off;
}

bn_status bn_plan_memory(const bn_graph *g, int max_tokens, bn_memplan *mp, bn_error *err) {
  memset(mp, 0, sizeof *mp);
  mp->max_tokens = max_tokens;
  mp->n_nodes = g->n_nodes;
  int cap = g->n_nodes;
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].body) cap += g->nodes[i].body->n_nodes;
  region *r = malloc((size_t)(cap + 1) * sizeof *r);
  int *first = malloc((size_t)g->n_values * sizeof *first), *last = malloc((size_t)g->n_values * sizeof *last);
  mp->offset = malloc(((size_t)g->n_nodes + 1) * sizeof *mp->offset);
  mp->body_offset = calloc((size_t)g->n_nodes + 1, sizeof *mp->body_offset);
  bn_status st = r && first && last && mp->offset && mp->body_offset ? BN_OK : bn_fail(err, BN_E_NOMEM, "out of memory");
  int n = 0;
  if (!st) bn_liveness(g, first, last);
  for (int i = 0; i < g->n_nodes && !st; i++) {
    const bn_value *v = &g->values[g->nodes[i].out];
    r[n++] = (region){(int64_t)bn_value_bytes(v->dtype, &v->shape, max_tokens), 0, first[g->nodes[i].out],
                      last[g->nodes[i].out], -1, g->nodes[i].out};
    const bn_graph *b = g->nodes[i].body;
    for (int k = 0; b && k < b->n_nodes; k++) {
      const bn_value *bv = &b->values[b->nodes[k].out];
      if (b->nodes[k].out != b->outputs[0])
        r[n++] = (region){(int64_t)bn_value_bytes(bv->dtype, &bv->shape, max_tokens), 0, i, i, i, b->nodes[k].out};
    }
  }
  if (!st) {
    qsort(r, (size_t)n, sizeof *r, by_size);
    for (int i = 0; i < n; i++) {
      place(r, i);
      mp->sum_bytes += r[i].bytes;
      if (r[i].off + r[i].bytes > mp->arena_bytes) mp->arena_bytes = align(r[i].off + r[i].bytes);
    }
    for (int i = 0; i < g->n_nodes; i++) mp->offset[i] = -1;
    for (int i = 0; i < g->n_nodes && !st; i++) {
      const bn_graph *b = g->nodes[i].body;
      if (!b) continue;
      if (!(mp->body_offset[i] = malloc((size_t)b->n_values * sizeof **mp->body_offset)))
        st = bn_fail(err, BN_E_NOMEM, "out of memory");
      for (int k = 0; !st && k < b->n_values; k++) mp->body_offset[i][k] = -1;
    }
    for (int i = 0; i < n && !st; i++) {
      if (r[i].node < 0) mp->offset[g->values[r[i].value].node] = r[i].off;
      else mp->body_offset[r[i].node][r[i].value] = r[i].off;
    }
    for (int i = 0; i < g->n_nodes && !st; i++) /* a body's result is its node's output */
      if (g->nodes[i].body) mp->body_offset[i][g->nodes[i].body->outputs[0]] = mp->offset[i];
  }
  free(r), free(first), free(last);
  if (st) bn_memplan_free(mp);
  return st;
}
