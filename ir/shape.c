/* Shapes, value sizes and the type rules named in ops.def. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ir.h"
#include "quant.h"

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

uint64_t bn_value_bytes(bn_dtype t, const bn_shape *s, int64_t tokens) {
  int64_t n = bn_shape_numel(s, tokens), k = s->rank ? s->d[s->rank - 1] : 1;
  if (n <= 0 || k <= 0) return 0;
  if (t == BN_DT_QA8) return (uint64_t)(n / k * bn_qa8_row_bytes(k));
  if (t == BN_DT_TP2) return k % 256 ? 0 : (uint64_t)(n / 4 + n / k * 4);
  if (t == BN_DT_TG2) return k % 256 ? 0 : (uint64_t)(n / 4 + n / 256 * 2);
  if (t == BN_DT_TG2H) return k % 256 ? 0 : (uint64_t)(n / 4 + n / 128 * 2);
  if (t == BN_DT_TP1) return k % 256 ? 0 : (uint64_t)(n / k * (bn_tp1_row_bytes((uint64_t)k) + 4));
  if (t == BN_DT_TL2) return k % 256 || n / k % 16 ? 0 : (uint64_t)(n / 4 + n / k * 4);
  return bn_dtype_nbytes(t, (uint64_t)n);
}

static const bn_value *in_val(const bn_graph *g, const bn_node *n, int i) { return &g->values[n->in[i]]; }

static bn_status need(const bn_graph *g, const bn_node *n, int i, int rank, int dtype, bn_error *err) {
  const bn_value *v = in_val(g, n, i);
  if (v->shape.rank != rank)
    return bn_fail(err, BN_E_INVALID, "%s: operand %d (%%%s) has rank %d, expected %d", bn_op_table[n->op].name, i,
                   v->name, v->shape.rank, rank);
  if (dtype >= 0 && v->dtype != (bn_dtype)dtype)
    return bn_fail(err, BN_E_INVALID, "%s: operand %d (%%%s) has type %s, expected %s", bn_op_table[n->op].name, i,
                   v->name, bn_dtype_table[v->dtype].name, bn_dtype_table[dtype].name);
  return BN_OK;
}
#define NEED(i, rank, dtype)                                                 \
  do {                                                                       \
    bn_status st_ = need(g, n, i, rank, dtype, err);                         \
    if (st_) return st_;                                                     \
  } while (0)

static bn_status out2(bn_dtype *dt, bn_shape *out, bn_dtype t, int64_t a, int64_t b) {
  int64_t d[2] = {a, b};
  *dt = t;
  *out = bn_shape_make(2, d);
  return BN_OK;
}

/* embed(tokens i32[T], table[V, E]) -> f32[T, E] */
bn_status bn_rule_embed(const bn_graph *g, const bn_node *n, bn_dtype *dt, bn_shape *out, bn_error *err) {
  NEED(0, 1, BN_DT_I32);
  NEED(1, 2, -1);
  return out2(dt, out, BN_DT_F32, in_val(g, n, 0)->shape.d[0], in_val(g, n, 1)->shape.d[1]);
}

/* Whether attribute v is a whole number in [lo, hi] (*out); checked before any cast: a double
 * beyond int64's range has no conversion. */
static int whole(double v, int64_t lo, int64_t hi, int64_t *out) {
  if (!(v >= (double)lo && v <= (double)hi)) return 0; /* NaN too */
  *out = (int64_t)v;
  return (double)*out == v;
}

bn_status bn_rule_same(const bn_graph *g, const bn_node *n, bn_dtype *dt, bn_shape *out, bn_error *err) {
  NEED(0, in_val(g, n, 0)->shape.rank, BN_DT_F32);
  *dt = BN_DT_F32;
  *out = in_val(g, n, 0)->shape;
  if (n->op == BN_OP_RMSNORM) {
    const bn_value *x = in_val(g, n, 0), *w = in_val(g, n, 1);
    int64_t last = x->shape.rank ? x->shape.d[x->shape.rank - 1] : 0, group = last;
    if (n->attr[1] != 0 && !whole(n->attr[1], 1, last, &group))
      return bn_fail(err, BN_E_INVALID, "rmsnorm: group=%g is not a whole number in 1..%lld", n->attr[1], (long long)last);
    if (w->shape.rank != 1 || x->shape.rank < 1 || last % group || w->shape.d[0] != group)
      return bn_fail(err, BN_E_INVALID, "rmsnorm: weight %%%s does not match the last dim of %%%s (or its group)", w->name,
                     x->name);
    if (!(n->attr[0] > 0 && n->attr[0] <= FLT_MAX && (float)n->attr[0] > 0)) /* kernels take it as a float */
      return bn_fail(err, BN_E_INVALID, "rmsnorm: eps=%g is not a positive float", n->attr[0]);
  }
  return BN_OK;
}

static bn_status check_weight(const bn_graph *g, const bn_node *n, int i, int64_t k, int ternary, bn_error *err) {
  const bn_value *w = in_val(g, n, i);
  if (w->shape.rank != 2 || w->shape.d[1] != k)
    return bn_fail(err, BN_E_INVALID, "%s: weight %%%s does not have rows of %lld", bn_op_table[n->op].name, w->name,
                   (long long)k);
  if (bn_dtype_table[w->dtype].ternary != ternary || w->dtype == BN_DT_QA8)
    return bn_fail(err, BN_E_INVALID, "%s: weight %%%s has %sternary type %s", bn_op_table[n->op].name, w->name,
                   ternary ? "non-" : "", bn_dtype_table[w->dtype].name);
  return BN_OK;
}

/* bitlinear / output_proj (x f32[T, K], W[N, K] [, scale f32[1]]) -> f32[T, N] */
bn_status bn_rule_linear(const bn_graph *g, const bn_node *n, bn_dtype *dt, bn_shape *out, bn_error *err) {
  NEED(0, 2, BN_DT_F32);
  const bn_value *x = in_val(g, n, 0);
  bn_status st = check_weight(g, n, 1, x->shape.d[1], n->op == BN_OP_BITLINEAR, err);
  if (st) return st;
  if (n->n_in == 3 && (bn_shape_numel(&in_val(g, n, 2)->shape, 0) != 1 || in_val(g, n, 2)->dtype != BN_DT_F32))
    return bn_fail(err, BN_E_INVALID, "bitlinear: scale %%%s must be one f32", in_val(g, n, 2)->name);
  return out2(dt, out, BN_DT_F32, x->shape.d[0], in_val(g, n, 1)->shape.d[0]);
}

/* heads and head_dim at most MAX_HEADS (an imported model's embedding_length is at most that) */
enum { MAX_HEADS = 1 << 16, MAX_LAYER = 1 << 20 };

/* rope(x f32[T, heads*head_dim]) {heads, head_dim, dims, base} -> x's shape: the first dims
 * (even) of each head rotate */
bn_status bn_rule_rope(const bn_graph *g, const bn_node *n, bn_dtype *dt, bn_shape *out, bn_error *err) {
  NEED(0, 2, BN_DT_F32);
  int64_t h, hd, dims;
  if (!whole(n->attr[0], 1, MAX_HEADS, &h) || !whole(n->attr[1], 1, MAX_HEADS, &hd) ||
      !whole(n->attr[2], 0, hd, &dims) || dims % 2 || !(n->attr[3] > 0 && n->attr[3] <= FLT_MAX && (float)n->attr[3] > 0))
    return bn_fail(err, BN_E_INVALID, "rope: bad heads=%g head_dim=%g dims=%g base=%g", n->attr[0], n->attr[1],
                   n->attr[2], n->attr[3]);
  const bn_value *x = in_val(g, n, 0);
  if (x->shape.d[1] != h * hd)
    return bn_fail(err, BN_E_INVALID, "rope: %%%s has %lld columns, not heads x head_dim = %lld", x->name,
                   (long long)x->shape.d[1], (long long)(h * hd));
  *dt = BN_DT_F32;
  *out = x->shape;
  return BN_OK;
}

/* attention(q[T, H*D], k[T, Hkv*D], v[T, Hkv*D]) -> [T, H*D] */
bn_status bn_rule_attention(const bn_graph *g, const bn_node *n, bn_dtype *dt, bn_shape *out, bn_error *err) {
  for (int i = 0; i < 3; i++) NEED(i, 2, BN_DT_F32);
  int64_t layer, h, hkv, hd;
  if (!whole(n->attr[0], 0, MAX_LAYER, &layer) || !whole(n->attr[1], 1, MAX_HEADS, &h) ||
      !whole(n->attr[2], 1, MAX_HEADS, &hkv) || !whole(n->attr[3], 1, MAX_HEADS, &hd) || h % hkv)
    return bn_fail(err, BN_E_INVALID, "attention: bad layer=%g heads=%g kv_heads=%g head_dim=%g", n->attr[0],
                   n->attr[1], n->attr[2], n->attr[3]);
  if (in_val(g, n, 0)->shape.d[1] != h * hd || in_val(g, n, 1)->shape.d[1] != hkv * hd ||
      in_val(g, n, 2)->shape.d[1] != hkv * hd)
    return bn_fail(err, BN_E_INVALID, "attention: q/k/v widths do not match heads x head_dim");
  *dt = BN_DT_F32;
  *out = in_val(g, n, 0)->shape;
  return BN_OK;
}

bn_status bn_rule_binary(const bn_graph *g, const bn_node *n, bn_dtype *dt, bn_shape *out, bn_error *err) {
  NEED(0, in_val(g, n, 0)->shape.rank, BN_DT_F32);
  NEED(1, in_val(g, n, 0)->shape.rank, BN_DT_F32);
  if (!bn_shape_eq(&in_val(g, n, 0)->shape, &in_val(g, n, 1)->shape))
    return bn_fail(err, BN_E_INVALID, "%s: %%%s and %%%s differ in shape", bn_op_table[n->op].name,
                   in_val(g, n, 0)->name, in_val(g, n, 1)->name);
  *dt = BN_DT_F32;
  *out = in_val(g, n, 0)->shape;
  return BN_OK;
}

/* quantize(x f32[T, K]) -> qa8[T, K] */
bn_status bn_rule_quantize(const bn_graph *g, const bn_node *n, bn_dtype *dt, bn_shape *out, bn_error *err) {
  NEED(0, 2, BN_DT_F32);
  *dt = BN_DT_QA8;
  *out = in_val(g, n, 0)->shape;
  return BN_OK;
}

/* tmatmul(xq qa8[T, K], W ternary[N, K]) -> i32[T, N]: sum of q * t per row */
bn_status bn_rule_tmatmul(const bn_graph *g, const bn_node *n, bn_dtype *dt, bn_shape *out, bn_error *err) {
  NEED(0, 2, BN_DT_QA8);
  bn_status st = check_weight(g, n, 1, in_val(g, n, 0)->shape.d[1], 1, err);
  if (st) return st;
  bn_dtype w = in_val(g, n, 1)->dtype, acc = w == BN_DT_TG2 || w == BN_DT_TG2H ? BN_DT_F32 : BN_DT_I32; /* group-scaled sums */
  return out2(dt, out, acc, in_val(g, n, 0)->shape.d[0], in_val(g, n, 1)->shape.d[0]);
}

/* dequant(acc i32[T, N] (TG2: f32), xq qa8[T, K], W ternary[N, K] [, scale f32[1]]) -> f32[T, N] */
bn_status bn_rule_dequant(const bn_graph *g, const bn_node *n, bn_dtype *dt, bn_shape *out, bn_error *err) {
  NEED(0, 2, n->n_in > 2 && (in_val(g, n, 2)->dtype == BN_DT_TG2 || in_val(g, n, 2)->dtype == BN_DT_TG2H) ? BN_DT_F32 : BN_DT_I32);
  NEED(1, 2, BN_DT_QA8);
  const bn_value *acc = in_val(g, n, 0), *xq = in_val(g, n, 1);
  bn_status st = check_weight(g, n, 2, xq->shape.d[1], 1, err);
  if (st) return st;
  if (acc->shape.d[0] != xq->shape.d[0] || acc->shape.d[1] != in_val(g, n, 2)->shape.d[0])
    return bn_fail(err, BN_E_INVALID, "dequant: %%%s does not match %%%s x %%%s", acc->name, xq->name,
                   in_val(g, n, 2)->name);
  if (n->n_in == 4 && (bn_shape_numel(&in_val(g, n, 3)->shape, 0) != 1 || in_val(g, n, 3)->dtype != BN_DT_F32))
    return bn_fail(err, BN_E_INVALID, "dequant: scale %%%s must be one f32", in_val(g, n, 3)->name);
  return out2(dt, out, BN_DT_F32, acc->shape.d[0], acc->shape.d[1]);
}

/* slice(x f32[T, n]) {offset, width} -> f32[T, width]: columns offset.. */
bn_status bn_rule_slice(const bn_graph *g, const bn_node *n, bn_dtype *dt, bn_shape *out, bn_error *err) {
  NEED(0, 2, BN_DT_F32);
  int64_t off, w, cols = in_val(g, n, 0)->shape.d[1];
  if (!whole(n->attr[0], 0, cols, &off) || !whole(n->attr[1], 1, cols, &w) || off + w > cols)
    return bn_fail(err, BN_E_INVALID, "slice: columns %g..+%g outside the %lld of %%%s", n->attr[0], n->attr[1],
                   (long long)cols, in_val(g, n, 0)->name);
  return out2(dt, out, BN_DT_F32, in_val(g, n, 0)->shape.d[0], w);
}

/* fused(args...) -> the body's output; the body's inputs match the operands. */
bn_status bn_rule_fused(const bn_graph *g, const bn_node *n, bn_dtype *dt, bn_shape *out, bn_error *err) {
  const bn_graph *b = n->body;
  if (!b || b->n_outputs != 1)
    return bn_fail(err, BN_E_INVALID, "fused: needs a body with one output");
  int k = 0;
  for (int i = 0; i < b->n_values; i++) {
    const bn_value *v = &b->values[i];
    if (v->kind == BN_VAL_WEIGHT) return bn_fail(err, BN_E_INVALID, "fused: body declares weight %%%s", v->name);
    if (v->kind != BN_VAL_INPUT) continue;
    if (k >= n->n_in) return bn_fail(err, BN_E_INVALID, "fused: body has more inputs than the %d operands", n->n_in);
    const bn_value *a = in_val(g, n, k);
    if (a->dtype != v->dtype || !bn_shape_eq(&a->shape, &v->shape))
      return bn_fail(err, BN_E_INVALID, "fused: operand %d (%%%s) does not match body input %%%s", k, a->name, v->name);
    k++;
  }
  if (k != n->n_in) return bn_fail(err, BN_E_INVALID, "fused: %d operands but the body has %d inputs", n->n_in, k);
  for (int i = 0; i < b->n_nodes; i++)
    if (b->nodes[i].op == BN_OP_FUSED) return bn_fail(err, BN_E_INVALID, "fused: bodies do not nest");
  const bn_value *o = &b->values[b->outputs[0]];
  *dt = o->dtype;
  *out = o->shape;
  return BN_OK;
}
