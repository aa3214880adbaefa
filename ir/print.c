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
#include "sbuf.h"

void bn_sbuf_put(bn_sbuf *b, const char *fmt, ...) {
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

void bn_sbuf_type(bn_sbuf *b, const bn_value *v) {
  bn_sbuf_put(b, "%s[", bn_dtype_table[v->dtype].name);
  for (int i = 0; i < v->shape.rank; i++) {
    int64_t d = v->shape.d[i];
    if (i) bn_sbuf_put(b, ", ");
    if (d == BN_DIM_T) bn_sbuf_put(b, "T");
    else if (d == BN_DIM_P) bn_sbuf_put(b, "P");
    else bn_sbuf_put(b, "%lld", (long long)d);
  }
  bn_sbuf_put(b, "]");
}

static void put_graph(bn_sbuf *b, const bn_graph *g, const char *ind) {
  for (int i = 0; i < g->n_values; i++) {
    const bn_value *v = &g->values[i];
    if (v->kind == BN_VAL_NODE) continue;
    bn_sbuf_put(b, "%s%s %%%s : ", ind, v->kind == BN_VAL_INPUT ? "input" : "weight", v->name);
    bn_sbuf_type(b, v);
    bn_sbuf_put(b, "\n");
  }
  for (int i = 0; i < g->n_nodes; i++) {
    const bn_node *n = &g->nodes[i];
    const bn_op_info *info = &bn_op_table[n->op];
    bn_sbuf_put(b, "%s%%%s = %s", ind, g->values[n->out].name, info->name);
    for (int k = 0; k < n->n_in; k++) bn_sbuf_put(b, "%s%%%s", k ? ", " : " ", g->values[n->in[k]].name);
    int first = 1;
    for (int a = 0; a < BN_MAX_ATTR; a++) {
      const char *nm = info->attr[a];
      if (!nm || (nm[0] == '?' && n->attr[a] == 0)) continue;
      bn_sbuf_put(b, "%s%s = %.17g", first ? " {" : ", ", nm + (nm[0] == '?'), n->attr[a]);
      first = 0;
    }
    if (!first) bn_sbuf_put(b, "}");
    if (n->body) {
      bn_sbuf_put(b, " {\n");
      put_graph(b, n->body, "      ");
      bn_sbuf_put(b, "%s}", ind);
    }
    bn_sbuf_put(b, " : ");
    bn_sbuf_type(b, &g->values[n->out]);
    bn_sbuf_put(b, "\n");
  }
  for (int i = 0; i < g->n_outputs; i++) bn_sbuf_put(b, "%soutput %%%s\n", ind, g->values[g->outputs[i]].name);
}

char *bn_graph_print(const bn_graph *g) {
  bn_sbuf b = {0};
  bn_sbuf_put(&b, "bnc.ir 1\ngraph \"%s\" {\n", g->arch);
  put_graph(&b, g, "  ");
  bn_sbuf_put(&b, "}\n");
  if (b.oom) {
    free(b.buf);
    return NULL;
  }
  return b.buf;
}
