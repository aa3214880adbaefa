/* The printer: the textual IR that ir/irparse.y reads back.
 *
 *   bnc.ir 1
 *   graph "bitnet" {
 *     input %tokens : i32[T]
 *     weight %token_embd.weight : f16[600, 256]
 *     %x = embed %tokens, %token_embd.weight : f32[T, 256]
 *     %h = rmsnorm %x, %w {eps = 9.9999997473787516e-06} : f32[T, 256]
 *     output %logits
 *   }
 *
 * A fused node prints its body, a graph over inputs %arg0.., between braces.
 * Attributes print with %.17g so that print -> parse -> print is exact. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

typedef struct {
  char *buf;
  size_t len, cap;
  int oom;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    int n = vsnprintf(b->buf ? b->buf + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) { b->oom = 1; return; }
    if ((size_t)n < room) { b->len += (size_t)n; return; }
    size_t nc = b->cap ? b->cap * 2 : 4096;
    while (nc - b->len <= (size_t)n) nc *= 2;
    char *p = realloc(b->buf, nc);
    if (!p) { b->oom = 1; return; }
    b->buf = p;
    b->cap = nc;
  }
}

static void put_type(sbuf *b, const bn_value *v) {
  put(b, "%s[", bn_dtype_table[v->dtype].name);
  for (int i = 0; i < v->shape.rank; i++) {
    int64_t d = v->shape.d[i];
    if (i) put(b, ", ");
    if (d == BN_DIM_T) put(b, "T");
    else if (d == BN_DIM_P) put(b, "P");
    else put(b, "%lld", (long long)d);
  }
  put(b, "]");
}

static void put_graph(sbuf *b, const bn_graph *g, const char *ind) {
  for (int i = 0; i < g->n_values; i++) {
    const bn_value *v = &g->values[i];
    if (v->kind == BN_VAL_NODE) continue;
    put(b, "%s%s %%%s : ", ind, v->kind == BN_VAL_INPUT ? "input" : "weight", v->name);
    put_type(b, v);
    put(b, "\n");
  }
  for (int i = 0; i < g->n_nodes; i++) {
    const bn_node *n = &g->nodes[i];
    const bn_op_info *info = &bn_op_table[n->op];
    put(b, "%s%%%s = %s", ind, g->values[n->out].name, info->name);
    for (int k = 0; k < n->n_in; k++) put(b, "%s%%%s", k ? ", " : " ", g->values[n->in[k]].name);
    int first = 1;
    for (int a = 0; a < BN_MAX_ATTR; a++) {
      if (!info->attr[a]) continue;
      put(b, "%s%s = %.17g", first ? " {" : ", ", info->attr[a], n->attr[a]);
      first = 0;
    }
    if (!first) put(b, "}");
    if (n->body) {
      put(b, " {\n");
      put_graph(b, n->body, "      ");
      put(b, "%s}", ind);
    }
    put(b, " : ");
    put_type(b, &g->values[n->out]);
    put(b, "\n");
  }
  for (int i = 0; i < g->n_outputs; i++) put(b, "%soutput %%%s\n", ind, g->values[g->outputs[i]].name);
}

char *bn_graph_print(const bn_graph *g) {
  sbuf b = {0};
  put(&b, "bnc.ir 1\ngraph \"%s\" {\n", g->arch);
  put_graph(&b, g, "  ");
  put(&b, "}\n");
  if (b.oom) {
    free(b.buf);
    return NULL;
  }
  return b.buf;
}
