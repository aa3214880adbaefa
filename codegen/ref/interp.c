/* The reference interpreter: runs any graph node by node with the kernels
 * of kernels.c. Buffers are assigned once at create time by liveness (a
 * value's buffer is reused after its last use), so eval allocates nothing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../ir/quant.h"
#include "ref.h"

struct bn_ref {
  const bn_graph *g;
  int max_tokens, n_ctx;
  float **val;     /* per value: its buffer (node outputs and float inputs) */
  float **slots;   /* distinct buffers */
  size_t *slot_size;
  int n_slots;
  int32_t *tokens; /* the i32 input */
  float **kc, **vc; /* per node: KV cache of attention nodes */
  int8_t *q, *trit;
  float *s, *bscale, *fw, *scores;
  size_t bytes;
};

static void *xcalloc(bn_ref *r, size_t n, size_t sz) {
  r->bytes += n * sz;
  return calloc(n ? n : 1, sz);
}

static int64_t row_width(const bn_value *v) { return v->shape.rank ? v->shape.d[v->shape.rank - 1] : 1; }

static bn_status assign_buffers(bn_ref *r, bn_error *err) {
  const bn_graph *g = r->g;
  int *last = malloc((size_t)g->n_values * sizeof *last);
  int *slot_of = malloc((size_t)g->n_values * sizeof *slot_of);
  int *busy = calloc((size_t)g->n_values + 1, sizeof *busy);
  r->slots = calloc((size_t)g->n_values + 1, sizeof *r->slots);
  r->slot_size = calloc((size_t)g->n_values + 1, sizeof *r->slot_size);
  if (!last || !slot_of || !busy || !r->slots || !r->slot_size) {
    free(last), free(slot_of), free(busy);
    return bn_fail(err, BN_E_NOMEM, "reference interpreter: out of memory");
  }
  for (int i = 0; i < g->n_values; i++) last[i] = -1, slot_of[i] = -1;
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++) last[g->nodes[i].in[k]] = i;
  for (int i = 0; i < g->n_outputs; i++) last[g->outputs[i]] = g->n_nodes; /* outputs live to the end */
  bn_status st = BN_OK;
  for (int i = 0; i < g->n_nodes && !st; i++) {
    const bn_value *v = &g->values[g->nodes[i].out];
    size_t need = (size_t)bn_shape_numel(&v->shape, r->max_tokens);
    int pick = -1;
    for (int s = 0; s < r->n_slots; s++)
      if (!busy[s] && r->slot_size[s] >= need && (pick < 0 || r->slot_size[s] < r->slot_size[pick])) pick = s;
    if (pick < 0) {
      pick = r->n_slots++;
      r->slot_size[pick] = need;
      if (!(r->slots[pick] = xcalloc(r, need, sizeof(float))))
        st = bn_fail(err, BN_E_NOMEM, "reference interpreter: out of memory for %%%s", v->name);
    }
    busy[pick] = 1;
    slot_of[g->nodes[i].out] = pick;
    r->val[g->nodes[i].out] = r->slots[pick];
    /* Release operands whose last use is this node (after the output took its slot: no aliasing). */
    for (int k = 0; k < g->nodes[i].n_in; k++) {
      int in = g->nodes[i].in[k];
      if (last[in] == i && slot_of[in] >= 0) busy[slot_of[in]] = 0;
    }
  }
  free(last), free(slot_of), free(busy);
  return st;
}

bn_status bn_ref_create(const bn_graph *g, int max_tokens, int n_ctx, bn_ref **out, bn_error *err) {
  *out = NULL;
  if (max_tokens < 1 || n_ctx < 1) return bn_fail(err, BN_E_INVALID, "max_tokens and n_ctx must be positive");
  bn_status st = bn_graph_verify(g, err);
  if (st) return st;
  bn_ref *r = calloc(1, sizeof *r);
  if (!r) return bn_fail(err, BN_E_NOMEM, "out of memory");
  r->g = g;
  r->max_tokens = max_tokens;
  r->n_ctx = n_ctx;
  int64_t max_k = 1;
  for (int i = 0; i < g->n_values; i++) max_k = max_k > row_width(&g->values[i]) ? max_k : row_width(&g->values[i]);
  r->val = calloc((size_t)g->n_values, sizeof *r->val);
  r->kc = calloc((size_t)g->n_nodes + 1, sizeof *r->kc);
  r->vc = calloc((size_t)g->n_nodes + 1, sizeof *r->vc);
  r->tokens = xcalloc(r, (size_t)max_tokens, sizeof *r->tokens);
  r->q = xcalloc(r, (size_t)(max_k * max_tokens), 1);
  r->trit = xcalloc(r, (size_t)max_k, 1);
  r->s = xcalloc(r, (size_t)max_tokens, sizeof(float));
  r->bscale = xcalloc(r, (size_t)max_k, sizeof(float));
  r->fw = xcalloc(r, (size_t)max_k, sizeof(float));
  r->scores = xcalloc(r, (size_t)n_ctx, sizeof(float));
  if (!r->val || !r->kc || !r->vc || !r->tokens || !r->q || !r->trit || !r->s || !r->bscale || !r->fw || !r->scores) {
    bn_ref_free(r);
    return bn_fail(err, BN_E_NOMEM, "reference interpreter: out of memory");
  }
  for (int i = 0; i < g->n_nodes; i++) {
    const bn_node *n = &g->nodes[i];
    if (n->op != BN_OP_ATTENTION) continue;
    size_t kvw = (size_t)n->attr[2] * (size_t)n->attr[3];
    r->kc[i] = xcalloc(r, kvw * (size_t)n_ctx, sizeof(float));
    r->vc[i] = xcalloc(r, kvw * (size_t)n_ctx, sizeof(float));
    if (!r->kc[i] || !r->vc[i]) {
      bn_ref_free(r);
      return bn_fail(err, BN_E_NOMEM, "reference interpreter: out of memory for the KV cache (%d positions)", n_ctx);
    }
  }
  for (int i = 0; i < g->n_values; i++) {
    const bn_value *v = &g->values[i];
    if (v->kind == BN_VAL_WEIGHT && !v->data) {
      bn_ref_free(r);
      return bn_fail(err, BN_E_INVALID, "weight %%%s has no data (a .bnir graph cannot be run alone)", v->name);
    }
    if (v->kind == BN_VAL_INPUT && v->dtype != BN_DT_I32) {
      bn_ref_free(r);
      return bn_fail(err, BN_E_UNSUPPORTED, "input %%%s: only i32 token inputs are supported", v->name);
    }
  }
  if ((st = assign_buffers(r, err))) {
    bn_ref_free(r);
    return st;
  }
  *out = r;
  return BN_OK;
}

/* A small float weight (norm weights, scales) as floats, in r->fw. */
static const float *as_float(bn_ref *r, const bn_value *w) {
  uint64_t n = (uint64_t)bn_shape_numel(&w->shape, 0);
  if (w->dtype == BN_DT_F32) return w->data;
  bn_dequant(w->dtype, w->data, n, 0, n, r->fw);
  return r->fw;
}

static void run_node(bn_ref *r, int idx, int64_t T, int pos) {
  const bn_graph *g = r->g;
  const bn_node *n = &g->nodes[idx];
  const bn_value *in0 = &g->values[n->in[0]], *in1 = n->n_in > 1 ? &g->values[n->in[1]] : NULL;
  const bn_value *outv = &g->values[n->out];
  float *y = r->val[n->out];
  const float *a = r->val[n->in[0]], *b = n->n_in > 1 ? r->val[n->in[1]] : NULL;
  int64_t w = row_width(outv), numel = T * w;
  switch (n->op) {
  case BN_OP_EMBED: {
    uint64_t total = (uint64_t)bn_shape_numel(&in1->shape, 0);
    for (int64_t t = 0; t < T; t++)
      bn_dequant(in1->dtype, in1->data, total, (uint64_t)(r->tokens[t] * w), (uint64_t)w, y + t * w);
    break;
  }
  case BN_OP_RMSNORM: bn_ref_rmsnorm(a, T, w, as_float(r, in1), (float)n->attr[0], y); break;
  case BN_OP_BITLINEAR: {
    float ts = n->n_in == 3 ? as_float(r, &g->values[n->in[2]])[0] : 1.0f;
    bn_ref_bitlinear(a, T, row_width(in0), w, in1, ts, y, r->q, r->s, r->trit, r->bscale);
    break;
  }
  case BN_OP_ROPE:
    bn_ref_rope(a, T, (int)n->attr[0], (int)n->attr[1], (int)n->attr[2], (float)n->attr[3], pos, y);
    break;
  case BN_OP_ATTENTION:
    bn_ref_attention(a, b, r->val[n->in[2]], T, (int)n->attr[1], (int)n->attr[2], (int)n->attr[3], pos, r->kc[idx],
                     r->vc[idx], r->scores, y);
    break;
  case BN_OP_ADD: for (int64_t i = 0; i < numel; i++) y[i] = a[i] + b[i]; break;
  case BN_OP_MUL: for (int64_t i = 0; i < numel; i++) y[i] = a[i] * b[i]; break;
  case BN_OP_SILU: for (int64_t i = 0; i < numel; i++) y[i] = a[i] / (1.0f + expf(-a[i])); break;
  case BN_OP_RELU2:
    for (int64_t i = 0; i < numel; i++) y[i] = a[i] > 0 ? a[i] * a[i] : 0.0f;
    break;
  case BN_OP_OUTPUT_PROJ: bn_ref_matmul_f(a, T, row_width(in0), w, in1, r->fw, y); break;
  case BN_OP_COUNT: break;
  }
}

bn_status bn_ref_eval(bn_ref *r, const int32_t *tokens, int n, int pos, const float **out, bn_error *err) {
  const bn_graph *g = r->g;
  if (n < 1 || n > r->max_tokens)
    return bn_fail(err, BN_E_RANGE, "eval: %d tokens per call (1..%d)", n, r->max_tokens);
  if (pos < 0 || pos + n > r->n_ctx)
    return bn_fail(err, BN_E_RANGE, "eval: positions %d..%d exceed the context of %d", pos, pos + n - 1, r->n_ctx);
  for (int i = 0; i < g->n_nodes; i++) {
    const bn_node *nd = &g->nodes[i];
    if (nd->op != BN_OP_EMBED) continue;
    int64_t V = g->values[nd->in[1]].shape.d[0];
    for (int t = 0; t < n; t++)
      if (tokens[t] < 0 || tokens[t] >= V)
        return bn_fail(err, BN_E_RANGE, "eval: token id %d at index %d is outside the vocabulary (0..%lld)", tokens[t], t,
                       (long long)V - 1);
  }
  memcpy(r->tokens, tokens, (size_t)n * sizeof *tokens);
  for (int i = 0; i < g->n_nodes; i++) run_node(r, i, n, pos);
  *out = r->val[g->outputs[0]];
  return BN_OK;
}

int64_t bn_ref_output_width(const bn_ref *r) { return row_width(&r->g->values[r->g->outputs[0]]); }

size_t bn_ref_bytes(const bn_ref *r) { return r->bytes; }

void bn_ref_free(bn_ref *r) {
  if (!r) return;
  for (int i = 0; i < r->n_slots; i++) free(r->slots[i]);
  if (r->kc)
    for (int i = 0; i < r->g->n_nodes; i++) free(r->kc[i]), free(r->vc[i]);
  free(r->slots), free(r->slot_size), free(r->val), free(r->kc), free(r->vc), free(r->tokens);
  free(r->q), free(r->trit), free(r->s), free(r->bscale), free(r->fw), free(r->scores);
  free(r);
}
