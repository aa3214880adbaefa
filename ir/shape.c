/* Shapes and the shape rules named in ops.def. */
#include <string.h>

#include "ir.h"

bn_shape bn_shape_make(int rank, const int64_t *d) {
  bn_shape s = {rank, {0}};
  for (int i = 0; i < rank; i++) s.d[i] = d[i];
  return s;
}

int64_t bn_shape_numel(const bn_shape *s, int64_t tokens) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++)
    n *= s->d[i] == BN_DIM_T ? tokens : s->d[i] == BN_DIM_P ? 0 : s->d[i];
  return n;
}

int bn_shape_eq(const bn_shape *a, const bn_shape *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->d[i] != b->d[i]) return 0;
  return 1;
}

static const bn_value *in_val(const bn_graph *g, const bn_node *n, int i) { return &g->values[n->in[i]]; }

static bn_status need_rank(const bn_graph *g, const bn_node *n, int i, int rank, bn_error *err) {
  const bn_value *v = in_val(g, n, i);
  if (v->shape.rank != rank)
    return bn_fail(err, BN_E_INVALID, "%s: operand %d (%%%s) has rank %d, expected %d",
                   bn_op_table[n->op].name, i, v->name, v->shape.rank, rank);
  return BN_OK;
}

/* embed(tokens[T], table[V, E]) -> [T, E] */
bn_status bn_shape_embed(const bn_graph *g, const bn_node *n, bn_shape *out, bn_error *err) {
  if (need_rank(g, n, 0, 1, err) || need_rank(g, n, 1, 2, err)) return err ? err->code : BN_E_INVALID;
  if (in_val(g, n, 0)->dtype != BN_DT_I32)
    return bn_fail(err, BN_E_INVALID, "embed: tokens %%%s must be i32", in_val(g, n, 0)->name);
  int64_t d[2] = {in_val(g, n, 0)->shape.d[0], in_val(g, n, 1)->shape.d[1]};
  *out = bn_shape_make(2, d);
  return BN_OK;
}

bn_status bn_shape_same(const bn_graph *g, const bn_node *n, bn_shape *out, bn_error *err) {
  *out = in_val(g, n, 0)->shape;
  if (n->op == BN_OP_RMSNORM) {
    const bn_value *x = in_val(g, n, 0), *w = in_val(g, n, 1);
    if (w->shape.rank != 1 || x->shape.rank < 1 || w->shape.d[0] != x->shape.d[x->shape.rank - 1])
      return bn_fail(err, BN_E_INVALID, "rmsnorm: weight %%%s does not match the last dim of %%%s",
                     w->name, x->name);
  }
  return BN_OK;
}

/* bitlinear / output_proj (x[T, K], W[N, K] [, scale[1]]) -> [T, N] */
bn_status bn_shape_linear(const bn_graph *g, const bn_node *n, bn_shape *out, bn_error *err) {
  if (need_rank(g, n, 0, 2, err) || need_rank(g, n, 1, 2, err)) return err ? err->code : BN_E_INVALID;
  const bn_value *x = in_val(g, n, 0), *w = in_val(g, n, 1);
  if (x->shape.d[1] != w->shape.d[1])
    return bn_fail(err, BN_E_INVALID, "%s: %%%s has %lld columns but weight %%%s has rows of %lld",
                   bn_op_table[n->op].name, x->name, (long long)x->shape.d[1], w->name,
                   (long long)w->shape.d[1]);
  int tern = bn_dtype_table[w->dtype].ternary;
  if (n->op == BN_OP_BITLINEAR && !tern)
    return bn_fail(err, BN_E_INVALID, "bitlinear: weight %%%s has non-ternary type %s", w->name,
                   bn_dtype_table[w->dtype].name);
  if (n->op == BN_OP_OUTPUT_PROJ && tern)
    return bn_fail(err, BN_E_INVALID, "output_proj: weight %%%s is ternary", w->name);
  if (n->n_in == 3 && bn_shape_numel(&in_val(g, n, 2)->shape, 0) != 1)
    return bn_fail(err, BN_E_INVALID, "bitlinear: scale %%%s must have one element", in_val(g, n, 2)->name);
  int64_t d[2] = {x->shape.d[0], w->shape.d[0]};
  *out = bn_shape_make(2, d);
  return BN_OK;
}

/* attention(q[T, H*D], k[T, Hkv*D], v[T, Hkv*D]) -> [T, H*D] */
bn_status bn_shape_attention(const bn_graph *g, const bn_node *n, bn_shape *out, bn_error *err) {
  for (int i = 0; i < 3; i++)
    if (need_rank(g, n, i, 2, err)) return err ? err->code : BN_E_INVALID;
  int64_t h = (int64_t)n->attr[1], hkv = (int64_t)n->attr[2], hd = (int64_t)n->attr[3];
  if (h <= 0 || hkv <= 0 || hd <= 0 || h % hkv)
    return bn_fail(err, BN_E_INVALID, "attention: bad heads=%lld kv_heads=%lld head_dim=%lld",
                   (long long)h, (long long)hkv, (long long)hd);
  if (in_val(g, n, 0)->shape.d[1] != h * hd || in_val(g, n, 1)->shape.d[1] != hkv * hd ||
      in_val(g, n, 2)->shape.d[1] != hkv * hd)
    return bn_fail(err, BN_E_INVALID, "attention: q/k/v widths do not match heads x head_dim");
  *out = in_val(g, n, 0)->shape;
  return BN_OK;
}

bn_status bn_shape_binary(const bn_graph *g, const bn_node *n, bn_shape *out, bn_error *err) {
  if (!bn_shape_eq(&in_val(g, n, 0)->shape, &in_val(g, n, 1)->shape))
    return bn_fail(err, BN_E_INVALID, "%s: %%%s and %%%s differ in shape", bn_op_table[n->op].name,
                   in_val(g, n, 0)->name, in_val(g, n, 1)->name);
  *out = in_val(g, n, 0)->shape;
  return BN_OK;
}
