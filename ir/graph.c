/* Graph construction: values, nodes, outputs and the string pool. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"

#define GROW(arr, n, cap)                                            \
  ((n) < (cap) ? 1 : grow((void **)&(arr), &(cap), sizeof *(arr)))

static int grow(void **p, int *cap, size_t elem) {
  int nc = *cap ? *cap * 2 : 16;
  void *q = realloc(*p, (size_t)nc * elem);
  if (!q) return 0;
  *p = q;
  *cap = nc;
  return 1;
}

void bn_graph_init(bn_graph *g, const char *arch) {
  memset(g, 0, sizeof *g);
  snprintf(g->arch, sizeof g->arch, "%s", arch ? arch : "");
}

void bn_graph_free(bn_graph *g) {
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].body) {
      bn_graph_free(g->nodes[i].body);
      free(g->nodes[i].body);
    }
  for (int i = 0; i < g->n_owned; i++) free(g->owned[i]);
  free(g->owned);
  for (int i = 0; i < g->n_strings; i++) free(g->strings[i]);
  free(g->strings);
  free(g->values);
  free(g->nodes);
  free(g->outputs);
  bn_strmap_free(&g->names);
  memset(g, 0, sizeof *g);
}

const char *bn_graph_intern(bn_graph *g, const char *s) {
  if (!GROW(g->strings, g->n_strings, g->cap_strings)) return NULL;
  char *c = strdup(s);
  if (c) g->strings[g->n_strings++] = c;
  return c;
}

static int add_value(bn_graph *g, bn_value_kind kind, const char *name, bn_dtype t, bn_shape s) {
  if (!GROW(g->values, g->n_values, g->cap_values)) return -1;
  const char *nm = bn_graph_intern(g, name);
  if (!nm || bn_strmap_set(&g->names, nm, strlen(nm), g->n_values)) return -1;
  bn_value *v = &g->values[g->n_values];
  memset(v, 0, sizeof *v);
  v->kind = kind;
  v->name = nm;
  v->dtype = t;
  v->shape = s;
  v->node = -1;
  return g->n_values++;
}

int bn_graph_add_input(bn_graph *g, const char *name, bn_dtype t, bn_shape s) {
  return add_value(g, BN_VAL_INPUT, name, t, s);
}

int bn_graph_add_weight(bn_graph *g, const char *name, bn_dtype t, bn_shape s, const void *data,
                        size_t nbytes) {
  int id = add_value(g, BN_VAL_WEIGHT, name, t, s);
  if (id >= 0) {
    g->values[id].data = data;
    g->values[id].nbytes = nbytes;
  }
  return id;
}

int bn_graph_add_node_typed(bn_graph *g, bn_op op, const char *out_name, const int *in, int n_in,
                            const double *attr, bn_dtype t, bn_shape s) {
  if (n_in > BN_MAX_IN || !GROW(g->nodes, g->n_nodes, g->cap_nodes)) return -1;
  int out = add_value(g, BN_VAL_NODE, out_name, t, s);
  if (out < 0) return -1;
  bn_node *n = &g->nodes[g->n_nodes];
  memset(n, 0, sizeof *n);
  n->op = op;
  n->n_in = n_in;
  memcpy(n->in, in, (size_t)n_in * sizeof *in);
  for (int a = 0; attr && a < BN_MAX_ATTR; a++) /* only the attributes the op declares are read */
    if (bn_op_table[op].attr[a]) n->attr[a] = attr[a];
  n->out = out;
  g->values[out].node = g->n_nodes;
  g->n_nodes++;
  return out;
}

void *bn_graph_own(bn_graph *g, void *data) {
  if (!data || !GROW(g->owned, g->n_owned, g->cap_owned)) {
    free(data);
    return NULL;
  }
  g->owned[g->n_owned++] = data;
  return data;
}

static int add_checked(bn_graph *g, bn_op op, const char *out_name, const int *in, int n_in, const double *attr,
                       bn_graph *body, bn_error *err) {
  const bn_op_info *info = &bn_op_table[op];
  if (n_in < info->min_in || n_in > info->max_in) {
    bn_fail(err, BN_E_INVALID, "%s: takes %d..%d operands, got %d", info->name, info->min_in,
            info->max_in, n_in);
    return -1;
  }
  for (int i = 0; i < n_in; i++)
    if (in[i] < 0 || in[i] >= g->n_values) {
      bn_fail(err, BN_E_INVALID, "%s %%%s: operand %d is not a value", info->name, out_name, i);
      return -1;
    }
  bn_node tmp = {.op = op, .n_in = n_in, .body = body};
  memcpy(tmp.in, in, (size_t)n_in * sizeof *in);
  for (int a = 0; attr && a < BN_MAX_ATTR; a++)
    if (info->attr[a]) tmp.attr[a] = attr[a];
  bn_shape s;
  bn_dtype t;
  if (info->rule(g, &tmp, &t, &s, err)) return -1;
  int out = bn_graph_add_node_typed(g, op, out_name, in, n_in, attr, t, s);
  if (out < 0) return bn_fail(err, BN_E_NOMEM, "out of memory adding %s", info->name), -1;
  g->nodes[g->n_nodes - 1].body = body;
  return out;
}

int bn_graph_add_node(bn_graph *g, bn_op op, const char *out_name, const int *in, int n_in, const double *attr,
                      bn_error *err) {
  return add_checked(g, op, out_name, in, n_in, attr, NULL, err);
}

int bn_graph_add_fused(bn_graph *g, const char *out_name, const int *in, int n_in, bn_graph *body, bn_error *err) {
  int out = add_checked(g, BN_OP_FUSED, out_name, in, n_in, NULL, body, err);
  if (out < 0) {
    bn_graph_free(body);
    free(body);
  }
  return out;
}

int bn_graph_mark_output(bn_graph *g, int value) {
  if (!GROW(g->outputs, g->n_outputs, g->cap_outputs)) return -1;
  g->outputs[g->n_outputs++] = value;
  return 0;
}

int bn_graph_find_value(const bn_graph *g, const char *name, size_t len) {
  int i = bn_strmap_get(&g->names, name, len);
  /* a value renamed since keeps its old key: the name must still be its own */
  return i >= 0 && i < g->n_values && strlen(g->values[i].name) == len && !memcmp(g->values[i].name, name, len) ? i : -1;
}

int bn_graph_rename_value(bn_graph *g, int id, const char *name) {
  const char *nm = bn_graph_intern(g, name);
  if (!nm || bn_strmap_set(&g->names, nm, strlen(nm), id)) return -1;
  g->values[id].name = nm;
  return 0;
}
