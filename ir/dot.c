/* The graph as Graphviz DOT: a box per node coloured by the kind of its op, a fused node
 * as a cluster holding its body, edges labelled with the value's type. Layers (values named
 * "lN.") outside a range collapse into one box per run of hidden layers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "sbuf.h"

/* The kind of an op, for its colour. */
static const char *colour(bn_op op) {
  switch (op) {
  case BN_OP_BITLINEAR:
  case BN_OP_TMATMUL:
  case BN_OP_OUTPUT_PROJ: return "#9ecae1"; /* matrix products */
  case BN_OP_QUANTIZE:
  case BN_OP_DEQUANT: return "#c6dbef";     /* int8 codes in and out */
  case BN_OP_RMSNORM: return "#a1d99b";
  case BN_OP_ATTENTION:
  case BN_OP_ROPE: return "#fdae6b";
  case BN_OP_EMBED:
  case BN_OP_SLICE: return "#d9d9d9";
  default: return "#f0f0f0";                /* element-wise */
  }
}

/* The layer a node's result belongs to ("l12.q" -> 12), -1 outside every layer. */
static int layer_of(const char *name) {
  if (name[0] != 'l' || name[1] < '0' || name[1] > '9') return -1;
  char *end;
  long l = strtol(name + 1, &end, 10);
  return *end == '.' && l < 1000000 ? (int)l : -1;
}

/* name inside a quoted DOT string: quotes and backslashes escaped, control bytes dropped (names come from files) */
static const char *q(const char *name, char *buf, size_t cap) {
  size_t n = 0;
  for (const char *c = name; *c && n + 3 < cap; c++) {
    if ((unsigned char)*c < 0x20) continue;
    if (*c == '"' || *c == '\\') buf[n++] = '\\';
    buf[n++] = *c;
  }
  buf[n] = 0;
  return buf;
}

typedef struct {
  const bn_graph *g;
  bn_sbuf *b;
  int lo, hi;   /* shown layers (lo > hi: all) */
  int *box;     /* per node: the collapsed box it falls in (-1: shown); a box is named by its first layer */
  char (*src)[48]; /* per value: the DOT id its edges leave from */
  int *fed;        /* per value: 1 + the box that has an edge from it already */
  char qb[512];
} dot;

static int hidden(const dot *d, int layer) { return d->lo <= d->hi && layer >= 0 && (layer < d->lo || layer > d->hi); }

static void edge(dot *d, const char *from, const char *to, const bn_value *v) {
  bn_sbuf_put(d->b, "  \"%s\" -> \"%s\" [label=\"", from, to);
  bn_sbuf_type(d->b, v);
  bn_sbuf_put(d->b, "\"];\n");
}

/* A plain node's box, or a fused node's cluster of body nodes; edges from its operands. */
static void node(dot *d, int i) {
  const bn_graph *g = d->g;
  const bn_node *n = &g->nodes[i];
  const char *name = g->values[n->out].name;
  if (!n->body) {
    bn_sbuf_put(d->b, "  \"n%d\" [label=\"%s\\n%%%s\", fillcolor=\"%s\"];\n", i, bn_op_table[n->op].name,
                q(name, d->qb, sizeof d->qb), colour(n->op));
    for (int k = 0; k < n->n_in; k++)
      if (d->src[n->in[k]][0]) {
        char to[24];
        snprintf(to, sizeof to, "n%d", i);
        edge(d, d->src[n->in[k]], to, &g->values[n->in[k]]);
      }
    snprintf(d->src[n->out], sizeof d->src[0], "n%d", i);
    return;
  }
  const bn_graph *body = n->body;
  bn_sbuf_put(d->b, "  subgraph \"cluster_%d\" {\n    label=\"fused %%%s\"; style=\"rounded,filled\"; fillcolor=\"#f3eefa\";\n",
              i, q(name, d->qb, sizeof d->qb));
  for (int k = 0; k < body->n_nodes; k++)
    bn_sbuf_put(d->b, "    \"n%d.%d\" [label=\"%s\", fillcolor=\"%s\"];\n", i, k, bn_op_table[body->nodes[k].op].name,
                colour(body->nodes[k].op));
  bn_sbuf_put(d->b, "  }\n");
  int *arg = calloc((size_t)body->n_values + 1, sizeof *arg), a = 0; /* body input -> outer operand */
  if (!arg) return (void)(d->b->oom = 1);
  for (int v = 0; v < body->n_values; v++) arg[v] = body->values[v].kind == BN_VAL_INPUT && a < n->n_in ? n->in[a++] : -1;
  for (int k = 0; k < body->n_nodes; k++) {
    const bn_node *bk = &body->nodes[k];
    char to[32], from[32];
    snprintf(to, sizeof to, "n%d.%d", i, k);
    for (int j = 0; j < bk->n_in; j++) {
      int v = bk->in[j];
      if (arg[v] >= 0 && d->src[arg[v]][0]) edge(d, d->src[arg[v]], to, &g->values[arg[v]]);
      else if (body->values[v].kind == BN_VAL_NODE) {
        snprintf(from, sizeof from, "n%d.%d", i, body->values[v].node);
        edge(d, from, to, &body->values[v]);
      }
    }
  }
  free(arg);
  snprintf(d->src[n->out], sizeof d->src[0], "n%d.%d", i, body->values[body->outputs[0]].node);
}

char *bn_graph_dot(const bn_graph *g, int lo, int hi) {
  bn_sbuf b = {0};
  dot d = {.g = g, .b = &b, .lo = lo, .hi = hi, .box = calloc((size_t)g->n_nodes + 1, sizeof *d.box),
           .src = calloc((size_t)g->n_values + 1, sizeof *d.src), .fed = calloc((size_t)g->n_values + 1, sizeof *d.fed)};
  if (!d.box || !d.src || !d.fed) return free(d.box), free(d.src), free(d.fed), NULL;
  bn_sbuf_put(&b, "digraph \"%s\" {\n  rankdir=TB; graph [fontname=\"Helvetica\", fontsize=11]; node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", "
              "fontsize=10]; edge [fontname=\"Helvetica\", fontsize=8, color=\"#666666\"];\n", q(g->arch, d.qb, sizeof d.qb));
  for (int v = 0; v < g->n_values; v++)
    if (g->values[v].kind == BN_VAL_INPUT) {
      bn_sbuf_put(&b, "  \"v%d\" [shape=ellipse, label=\"%%%s\", fillcolor=\"#ffffff\"];\n", v, q(g->values[v].name, d.qb, sizeof d.qb));
      snprintf(d.src[v], sizeof d.src[0], "v%d", v);
    }
  int run = -1; /* the first layer of the run of hidden layers being collapsed, its box */
  for (int i = 0; i < g->n_nodes; i++) {
    int L = layer_of(g->values[g->nodes[i].out].name);
    if (!hidden(&d, L)) {
      run = -1;
      node(&d, i);
      continue;
    }
    if (run < 0 || L < run) { /* a new box: "layers a..b" with its last layer filled in below */
      run = L;
      int last = L, count = 0;
      for (int k = i; k < g->n_nodes; k++) {
        int Lk = layer_of(g->values[g->nodes[k].out].name);
        if (!hidden(&d, Lk) || Lk < L) break;
        last = Lk, count++;
      }
      bn_sbuf_put(&b, "  \"box%d\" [shape=box3d, label=\"layers %d..%d\\n%d nodes\", fillcolor=\"#e8e8e8\"];\n", i, L,
                  last, count);
      d.box[i] = i + 1;
    } else d.box[i] = d.box[i - 1];
    char name[24];
    snprintf(name, sizeof name, "box%d", d.box[i] - 1);
    for (int k = 0; k < g->nodes[i].n_in; k++) { /* the box's inputs from shown nodes, once each */
      int v = g->nodes[i].in[k];
      if (d.src[v][0] && strcmp(d.src[v], name) && d.fed[v] != d.box[i]) {
        edge(&d, d.src[v], name, &g->values[v]);
        d.fed[v] = d.box[i]; /* later readers in the box: no second edge */
      }
    }
    snprintf(d.src[g->nodes[i].out], sizeof d.src[0], "%s", name);
  }
  for (int i = 0; i < g->n_outputs; i++) {
    int v = g->outputs[i];
    bn_sbuf_put(&b, "  \"out%d\" [shape=ellipse, label=\"output %%%s\", fillcolor=\"#ffffff\"];\n", i,
                q(g->values[v].name, d.qb, sizeof d.qb));
    char to[24];
    snprintf(to, sizeof to, "out%d", i);
    if (d.src[v][0]) edge(&d, d.src[v], to, &g->values[v]);
  }
  bn_sbuf_put(&b, "}\n");
  free(d.box), free(d.src), free(d.fed);
  if (b.oom) return free(b.buf), NULL;
  return b.buf;
}
