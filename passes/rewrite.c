#include "rewrite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Why the last body on this thread failed, for bn_rw_add_fused (which gets only its NULL). */
static _Thread_local bn_error body_failure;

static int copy_value(bn_graph *dst, const bn_value *v) {
  return v->kind == BN_VAL_INPUT ? bn_graph_add_input(dst, v->name, v->dtype, v->shape)
                                 : bn_graph_add_weight(dst, v->name, v->dtype, v->shape, v->data, v->nbytes);
}

bn_status bn_rw_begin(bn_rw *rw, const bn_graph *src, bn_error *err) {
  memset(rw, 0, sizeof *rw);
  rw->src = src;
  rw->err = err;
  bn_graph_init(&rw->dst, src->arch);
  rw->map = malloc((size_t)(src->n_values + 1) * sizeof *rw->map);
  rw->uses = calloc((size_t)src->n_values + 1, sizeof *rw->uses);
  rw->reader = malloc((size_t)(src->n_values + 1) * sizeof *rw->reader);
  if (!rw->map || !rw->uses || !rw->reader) {
    bn_rw_abort(rw);
    return bn_fail(err, BN_E_NOMEM, "out of memory");
  }
  for (int i = 0; i < src->n_values; i++) rw->map[i] = rw->reader[i] = -1;
  for (int i = 0; i < src->n_nodes; i++)
    for (int k = 0; k < src->nodes[i].n_in; k++) rw->uses[src->nodes[i].in[k]]++, rw->reader[src->nodes[i].in[k]] = i;
  for (int i = 0; i < src->n_outputs; i++) rw->uses[src->outputs[i]]++;
  /* inputs first, in order: they are the graph's interface */
  for (int i = 0; i < src->n_values; i++)
    if (src->values[i].kind == BN_VAL_INPUT && bn_rw_val(rw, i) < 0) return rw->st;
  return BN_OK;
}

int bn_rw_val(bn_rw *rw, int v) {
  if (rw->map[v] >= 0 || rw->st) return rw->map[v];
  const bn_value *sv = &rw->src->values[v];
  if (sv->kind == BN_VAL_NODE) {
    rw->st = bn_fail(rw->err, BN_E_INVALID, "rewrite: %%%s is used before it is made", sv->name);
    return -1;
  }
  if ((rw->map[v] = copy_value(&rw->dst, sv)) < 0) rw->st = bn_fail(rw->err, BN_E_NOMEM, "out of memory");
  return rw->map[v];
}

const bn_node *bn_rw_def(const bn_rw *rw, int v) {
  const bn_value *sv = &rw->src->values[v];
  return sv->kind == BN_VAL_NODE ? &rw->src->nodes[sv->node] : NULL;
}

static bn_graph *copy_body(const bn_graph *b) {
  bn_body nb;
  bn_body_begin(&nb, b);
  for (int i = 0; i < b->n_values; i++)
    if (b->values[i].kind == BN_VAL_INPUT) bn_body_arg(&nb, i);
  for (int i = 0; i < b->n_nodes; i++) bn_body_node(&nb, i);
  return bn_body_end(&nb, b->outputs[0]);
}

int bn_rw_copy(bn_rw *rw, int node) {
  const bn_node *n = &rw->src->nodes[node];
  int in[BN_MAX_IN];
  for (int k = 0; k < n->n_in; k++) in[k] = bn_rw_val(rw, n->in[k]);
  const char *name = rw->src->values[n->out].name;
  int out = n->body ? bn_rw_add_fused(rw, name, in, n->n_in, copy_body(n->body))
                    : bn_rw_add(rw, n->op, name, in, n->n_in, n->attr);
  if (out >= 0) rw->map[n->out] = out;
  return out;
}

int bn_rw_add(bn_rw *rw, bn_op op, const char *name, const int *in, int n_in, const double *attr) {
  if (rw->st) return -1;
  int out = bn_graph_add_node(&rw->dst, op, name, in, n_in, attr, rw->err);
  if (out < 0) rw->st = rw->err->code ? rw->err->code : BN_E_INVALID;
  return out;
}

int bn_rw_add_fused(bn_rw *rw, const char *name, const int *in, int n_in, bn_graph *body) {
  if (rw->st || !body) {
    if (body) bn_graph_free(body), free(body);
    if (!rw->st && body_failure.code) /* the inner message, not "out of memory" */
      rw->st = bn_fail(rw->err, body_failure.code, "fusing %%%s: %s", name, body_failure.msg);
    else if (!rw->st) rw->st = bn_fail(rw->err, BN_E_NOMEM, "out of memory building a fused body");
    body_failure = (bn_error){0};
    return -1;
  }
  int out = bn_graph_add_fused(&rw->dst, name, in, n_in, body, rw->err);
  if (out < 0) rw->st = rw->err->code ? rw->err->code : BN_E_INVALID;
  return out;
}

int bn_rw_weight(bn_rw *rw, const char *name, bn_dtype t, bn_shape s, void *data, size_t nbytes) {
  if (rw->st || !bn_graph_own(&rw->dst, data)) {
    if (!rw->st) rw->st = bn_fail(rw->err, BN_E_NOMEM, "out of memory");
    return -1;
  }
  int id = bn_graph_add_weight(&rw->dst, name, t, s, data, nbytes);
  if (id < 0) rw->st = bn_fail(rw->err, BN_E_NOMEM, "out of memory");
  return id;
}

bn_status bn_rw_end(bn_rw *rw, bn_graph *g) {
  for (int i = 0; i < rw->src->n_outputs && !rw->st; i++) {
    int v = rw->map[rw->src->outputs[i]];
    if (v < 0) rw->st = bn_fail(rw->err, BN_E_INVALID, "rewrite: output %%%s was dropped", rw->src->values[rw->src->outputs[i]].name);
    else if (bn_graph_mark_output(&rw->dst, v)) rw->st = bn_fail(rw->err, BN_E_NOMEM, "out of memory");
  }
  if (rw->st) {
    bn_status st = rw->st;
    bn_rw_abort(rw);
    return st;
  }
  /* owned data (packed weights) moves to the new graph */
  for (int i = 0; i < g->n_owned; i++)
    if (!bn_graph_own(&rw->dst, g->owned[i])) {
      bn_rw_abort(rw);
      return bn_fail(rw->err, BN_E_NOMEM, "out of memory");
    }
  g->n_owned = 0;
  free(rw->map), free(rw->uses), free(rw->reader);
  bn_graph_free(g);
  *g = rw->dst;
  return BN_OK;
}

void bn_rw_abort(bn_rw *rw) {
  bn_graph_free(&rw->dst);
  free(rw->map), free(rw->uses), free(rw->reader);
  rw->map = rw->uses = rw->reader = NULL;
}

void bn_body_begin(bn_body *b, const bn_graph *src) {
  b->src = src;
  b->err = (bn_error){0};
  b->n_args = 0;
  b->g = calloc(1, sizeof *b->g);
  b->map = malloc((size_t)(src->n_values + 1) * sizeof *b->map);
  b->ok = b->g && b->map;
  if (b->g) bn_graph_init(b->g, "body");
  for (int i = 0; b->map && i < src->n_values; i++) b->map[i] = -1;
}

void bn_body_arg(bn_body *b, int v) {
  if (!b->ok) return;
  char name[16];
  snprintf(name, sizeof name, "arg%d", b->n_args++);
  const bn_value *sv = &b->src->values[v];
  b->ok = (b->map[v] = bn_graph_add_input(b->g, name, sv->dtype, sv->shape)) >= 0;
}

void bn_body_node(bn_body *b, int node) {
  if (!b->ok) return;
  const bn_node *n = &b->src->nodes[node];
  int in[BN_MAX_IN];
  for (int k = 0; k < n->n_in; k++)
    if ((in[k] = b->map[n->in[k]]) < 0) b->ok = 0;
  if (!b->ok) return;
  b->ok = (b->map[n->out] = bn_graph_add_node(b->g, n->op, b->src->values[n->out].name, in, n->n_in, n->attr, &b->err)) >= 0;
}

void bn_body_continue(bn_body *b, const bn_graph *src, int v, int as) {
  if (!b->ok) return;
  int *map = realloc(b->map, (size_t)(src->n_values + 1) * sizeof *map);
  if (!map) {
    b->ok = 0;
    return;
  }
  b->map = map, b->src = src;
  for (int i = 0; i < src->n_values; i++) map[i] = -1;
  map[v] = as;
}

int bn_body_id(const bn_body *b, int v) { return b->ok ? b->map[v] : -1; }

bn_graph *bn_body_end(bn_body *b, int v) {
  bn_graph *g = b->g;
  if (b->ok && (b->map[v] < 0 || bn_graph_mark_output(g, b->map[v]))) b->ok = 0;
  free(b->map);
  if (!b->ok) body_failure = b->err;
  if (!b->ok && g) {
    bn_graph_free(g);
    free(g);
    g = NULL;
  }
  return g;
}

int bn_rw_fuse_chain(bn_rw *rw, int p, int m) {
  const bn_node *P = &rw->src->nodes[p], *M = &rw->src->nodes[m];
  const bn_graph *pb = P->body, *mb = M->body;
  int in[BN_MAX_IN], n_in = 0, first = -1;
  if (P->n_in + M->n_in - 1 > BN_MAX_IN) {
    rw->st = bn_fail(rw->err, BN_E_INVALID, "rewrite: %%%s and %%%s have too many operands to fuse",
                     rw->src->values[P->out].name, rw->src->values[M->out].name);
    return -1;
  }
  bn_body b;
  bn_body_begin(&b, pb);
  for (int i = 0; i < pb->n_values; i++)
    if (pb->values[i].kind == BN_VAL_INPUT) bn_body_arg(&b, i), in[n_in] = bn_rw_val(rw, P->in[n_in]), n_in++;
  for (int i = 0; i < pb->n_nodes; i++) bn_body_node(&b, i);
  for (int i = 0; i < mb->n_values && first < 0; i++)
    if (mb->values[i].kind == BN_VAL_INPUT) first = i;
  bn_body_continue(&b, mb, first, bn_body_id(&b, pb->outputs[0]));
  for (int i = first + 1, k = 1; i < mb->n_values; i++)
    if (mb->values[i].kind == BN_VAL_INPUT) bn_body_arg(&b, i), in[n_in++] = bn_rw_val(rw, M->in[k++]);
  for (int i = 0; i < mb->n_nodes; i++) bn_body_node(&b, i);
  int id = bn_rw_add_fused(rw, rw->src->values[M->out].name, in, n_in, bn_body_end(&b, mb->outputs[0]));
  if (id >= 0) rw->map[M->out] = id;
  return id;
}

int bn_rw_fuse(bn_rw *rw, const int *nodes, int n, const int *args, int n_args, int out) {
  bn_body b;
  bn_body_begin(&b, rw->src);
  int in[BN_MAX_IN];
  for (int k = 0; k < n_args; k++) {
    bn_body_arg(&b, args[k]);
    in[k] = bn_rw_val(rw, args[k]);
  }
  for (int k = 0; k < n; k++) bn_body_node(&b, nodes[k]);
  int id = bn_rw_add_fused(rw, rw->src->values[out].name, in, n_args, bn_body_end(&b, out));
  if (id >= 0) rw->map[out] = id;
  return id;
}

bn_status bn_rw_fuse_matches(bn_graph *g, bn_fusion_match match, bn_error *err) {
  bn_rw rw;
  bn_status st = bn_rw_begin(&rw, g, err);
  char *absorbed = calloc((size_t)g->n_nodes + 1, 1);
  if (!st && !absorbed) st = bn_fail(err, BN_E_NOMEM, "out of memory");
  bn_fusion f;
  for (int i = 0; i < g->n_nodes && !st; i++)
    if ((f.chain = -1, match(&rw, i, &f)))
      for (int k = 0; k < (f.chain >= 0 ? 1 : f.n - 1); k++) absorbed[f.chain >= 0 ? f.chain : f.nodes[k]] = 1;
  for (int i = 0; i < g->n_nodes && !st && !rw.st; i++) {
    if (absorbed[i]) continue;
    if (!(f.chain = -1, match(&rw, i, &f))) bn_rw_copy(&rw, i);
    else if (f.chain >= 0) bn_rw_fuse_chain(&rw, f.chain, i);
    else bn_rw_fuse(&rw, f.nodes, f.n, f.args, f.n_args, g->nodes[i].out);
  }
  free(absorbed);
  if (st) return bn_rw_abort(&rw), st;
  return bn_rw_end(&rw, g);
}
