/* Running graphs with the reference kernels. bn_ref_run_node executes one
 * node (a fused node runs its body node by node) in an environment that says
 * where every value lives; the runtime's executor and the self-contained
 * interpreter below both use it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../ir/quant.h"
#include "ref.h"

static int64_t row_width(const bn_value *v) { return v->shape.rank ? v->shape.d[v->shape.rank - 1] : 1; }

int bn_ref_kv_layers(const bn_graph *g) {
  int n = 0;
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == BN_OP_ATTENTION && (int)g->nodes[i].attr[0] + 1 > n) n = (int)g->nodes[i].attr[0] + 1;
  return n;
}

int64_t bn_ref_kv_width(const bn_graph *g, int layer) {
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == BN_OP_ATTENTION && (int)g->nodes[i].attr[0] == layer)
      return (int64_t)g->nodes[i].attr[2] * (int64_t)g->nodes[i].attr[3];
  return 0;
}

static void widest(const bn_graph *g, int64_t *k) {
  for (int i = 0; i < g->n_values; i++)
    if (row_width(&g->values[i]) > *k) *k = row_width(&g->values[i]);
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].body) widest(g->nodes[i].body, k);
}

void bn_ref_scratch_size(const bn_graph *g, int max_tokens, int n_ctx, int64_t sz[6]) {
  int64_t k = 1;
  widest(g, &k);
  sz[0] = k * max_tokens;        /* q */
  sz[1] = k;                     /* trit */
  sz[2] = 4 * (int64_t)max_tokens; /* s */
  sz[3] = 4 * k;                 /* bscale */
  sz[4] = 4 * k;                 /* fw */
  sz[5] = 4 * (int64_t)n_ctx;    /* scores */
}

/* Value `id` with its data where env keeps it: inside a fused body a weight
 * is an input (%argN) whose bytes are the outer weight's. */
static bn_value at(const bn_ref_env *env, int id) {
  bn_value v = env->g->values[id];
  v.data = env->val[id];
  return v;
}

/* A small float weight (norm weights, scales) as floats. */
static const float *as_float(const bn_ref_env *env, int id) {
  bn_value w = at(env, id);
  uint64_t n = (uint64_t)bn_shape_numel(&w.shape, 0);
  if (w.dtype == BN_DT_F32) return w.data;
  bn_dequant(w.dtype, w.data, n, 0, n, env->scratch->fw);
  return env->scratch->fw;
}

void bn_ref_run_node(const bn_ref_env *env, int idx) {
  const bn_graph *g = env->g;
  const bn_node *n = &g->nodes[idx];
  const bn_value *in0 = &g->values[n->in[0]];
  bn_value w1 = n->n_in > 1 ? at(env, n->in[1]) : (bn_value){0}, *in1 = &w1;
  const bn_value *outv = &g->values[n->out];
  bn_ref_scratch *sc = env->scratch;
  void *y = env->val[n->out];
  float *yf = y;
  const float *a = env->val[n->in[0]], *b = n->n_in > 1 ? env->val[n->in[1]] : NULL;
  int64_t T = env->T, w = row_width(outv), k0 = row_width(in0), numel = T * w;
  switch (n->op) {
  case BN_OP_EMBED: {
    const int32_t *tok = env->val[n->in[0]];
    uint64_t total = (uint64_t)bn_shape_numel(&in1->shape, 0);
    for (int64_t t = 0; t < T; t++)
      bn_dequant(in1->dtype, in1->data, total, (uint64_t)(tok[t] * w), (uint64_t)w, yf + t * w);
    break;
  }
  case BN_OP_RMSNORM: { /* [T, w] as [T * w/group, group] when grouped */
    int64_t grp = n->attr[1] > 0 ? (int64_t)n->attr[1] : w;
    bn_ref_rmsnorm(a, T * (w / grp), grp, as_float(env, n->in[1]), (float)n->attr[0], yf);
    break;
  }
  case BN_OP_BITLINEAR: {
    float ts = n->n_in == 3 ? as_float(env, n->in[2])[0] : 1.0f;
    bn_ref_bitlinear(a, T, k0, w, in1, ts, yf, sc->q, sc->s, sc->trit, sc->bscale);
    break;
  }
  case BN_OP_ROPE: bn_ref_rope(a, T, (int)n->attr[0], (int)n->attr[1], (int)n->attr[2], (float)n->attr[3], env->pos, yf); break;
  case BN_OP_ATTENTION: {
    int layer = (int)n->attr[0];
    bn_ref_attention(a, b, env->val[n->in[2]], T, (int)n->attr[1], (int)n->attr[2], (int)n->attr[3], env->pos, env->n_ctx,
                     env->kv, env->kc[layer], env->vc[layer], sc->scores, yf);
    break;
  }
  case BN_OP_ADD: for (int64_t i = 0; i < numel; i++) yf[i] = a[i] + b[i]; break;
  case BN_OP_MUL: for (int64_t i = 0; i < numel; i++) yf[i] = a[i] * b[i]; break;
  case BN_OP_SILU: for (int64_t i = 0; i < numel; i++) yf[i] = a[i] / (1.0f + expf(-a[i])); break;
  case BN_OP_RELU2: for (int64_t i = 0; i < numel; i++) yf[i] = a[i] > 0 ? a[i] * a[i] : 0.0f; break;
  case BN_OP_OUTPUT_PROJ: bn_ref_matmul_f(a, T, k0, w, in1, sc->fw, yf); break;
  case BN_OP_QUANTIZE: bn_ref_quantize(a, T, k0, y); break;
  case BN_OP_TMATMUL: bn_ref_tmatmul((const uint8_t *)a, T, k0, w, in1, y, sc->trit, sc->bscale); break;
  case BN_OP_DEQUANT: {
    bn_value wv = at(env, n->in[2]);
    float ts = n->n_in == 4 ? as_float(env, n->in[3])[0] : 1.0f;
    bn_ref_dequant((const int32_t *)a, (const uint8_t *)b, T, row_width(&wv), w, &wv, ts, yf);
    break;
  }
  case BN_OP_SLICE: {
    int64_t off = (int64_t)n->attr[0];
    for (int64_t t = 0; t < T; t++) memcpy(yf + t * w, a + t * k0 + off, (size_t)w * sizeof *yf);
    break;
  }
  case BN_OP_FUSED: {
    bn_ref_env sub = *env;
    sub.g = n->body;
    sub.val = env->body_val[idx];
    sub.body_val = NULL;
    for (int i = 0; i < n->body->n_nodes; i++) bn_ref_run_node(&sub, i);
    break;
  }
  case BN_OP_COUNT: break;
  }
}

bn_status bn_ref_begin_step(bn_ref_env *env, int32_t *token_buf, const int32_t *tokens, int n, int pos, int max_tokens,
                            int n_ctx, bn_error *err) {
  const bn_graph *g = env->g;
  if (n < 1 || n > max_tokens) return bn_fail(err, BN_E_RANGE, "eval: %d tokens per step (1..%d)", n, max_tokens);
  if (pos < 0 || pos + n > n_ctx)
    return bn_fail(err, BN_E_RANGE, "eval: positions %d..%d exceed the context of %d", pos, pos + n - 1, n_ctx);
  for (int i = 0; i < g->n_nodes; i++) {
    const bn_node *nd = &g->nodes[i];
    if (nd->op != BN_OP_EMBED) continue;
    int64_t V = g->values[nd->in[1]].shape.d[0];
    for (int t = 0; t < n; t++)
      if (tokens[t] < 0 || tokens[t] >= V)
        return bn_fail(err, BN_E_RANGE, "eval: token id %d at index %d is outside the vocabulary (0..%lld)", tokens[t],
                       t, (long long)V - 1);
  }
  memcpy(token_buf, tokens, (size_t)n * sizeof *tokens);
  env->T = n;
  env->pos = pos;
  env->n_ctx = n_ctx;
  return BN_OK;
}

/* ---- the self-contained interpreter: buffers by liveness, KV cache, scratch ---- */

struct bn_ref {
  bn_ref_env env;
  int max_tokens, n_ctx, n_layers;
  void **slots;
  size_t *slot_size;
  int n_slots, cap_slots;
  int32_t *tokens; /* the i32 input */
  int tokens_id;
  bn_ref_scratch scratch;
  size_t bytes;
};

static void *xcalloc(bn_ref *r, size_t n, size_t sz) {
  r->bytes += n * sz;
  return calloc(n ? n : 1, sz);
}

/* Gives every node output of g a buffer from the slots from `first` on,
 * reusing the buffer of a value after its last use (never for an operand of
 * the same node: kernels are out of place). */
static bn_status assign_buffers(bn_ref *r, const bn_graph *g, void **val, int first, bn_error *err) {
  int *last = malloc((size_t)g->n_values * sizeof *last);
  int *slot_of = malloc((size_t)g->n_values * sizeof *slot_of);
  int *busy = calloc((size_t)(r->cap_slots), sizeof *busy);
  bn_status st = BN_OK;
  if (!last || !slot_of || !busy) st = bn_fail(err, BN_E_NOMEM, "reference interpreter: out of memory");
  for (int i = 0; i < g->n_values && !st; i++) last[i] = -1, slot_of[i] = -1;
  for (int i = 0; i < g->n_nodes && !st; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++) last[g->nodes[i].in[k]] = i;
  for (int i = 0; i < g->n_outputs && !st; i++) last[g->outputs[i]] = g->n_nodes;
  for (int i = 0; i < g->n_nodes && !st; i++) {
    const bn_value *v = &g->values[g->nodes[i].out];
    if (val[g->nodes[i].out]) continue; /* bound already: a body's result is its node's output */
    size_t need = (size_t)bn_value_bytes(v->dtype, &v->shape, r->max_tokens);
    int pick = -1;
    for (int s = first; s < r->n_slots; s++)
      if (!busy[s] && r->slot_size[s] >= need && (pick < 0 || r->slot_size[s] < r->slot_size[pick])) pick = s;
    if (pick < 0) {
      if (r->n_slots == r->cap_slots) {
        st = bn_fail(err, BN_E_NOMEM, "reference interpreter: too many buffers");
        break;
      }
      pick = r->n_slots++;
      r->slot_size[pick] = need;
      if (!(r->slots[pick] = xcalloc(r, need, 1)))
        st = bn_fail(err, BN_E_NOMEM, "reference interpreter: out of memory for %%%s", v->name);
    }
    busy[pick] = 1;
    slot_of[g->nodes[i].out] = pick;
    val[g->nodes[i].out] = r->slots[pick];
    for (int k = 0; k < g->nodes[i].n_in; k++) {
      int in = g->nodes[i].in[k];
      if (last[in] == i && slot_of[in] >= 0) busy[slot_of[in]] = 0;
    }
  }
  free(last), free(slot_of), free(busy);
  return st;
}

static int count_values(const bn_graph *g) {
  int n = g->n_values;
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].body) n += count_values(g->nodes[i].body);
  return n;
}

static bn_status bind(bn_ref *r, const bn_graph *g, void **val, bn_error *err) {
  for (int i = 0; i < g->n_values; i++) {
    const bn_value *v = &g->values[i];
    if (v->kind == BN_VAL_WEIGHT) {
      if (!v->data) return bn_fail(err, BN_E_INVALID, "weight %%%s has no data (a .bnir graph cannot be run alone)", v->name);
      val[i] = (void *)v->data;
    }
  }
  bn_status st = assign_buffers(r, g, val, 0, err);
  /* Bodies run one at a time, after the outer values they read were made:
   * their intermediates share a pool of slots apart from the outer ones. */
  int body_pool = r->n_slots;
  for (int i = 0; i < g->n_nodes && !st; i++) {
    const bn_node *n = &g->nodes[i];
    if (!n->body) continue;
    void **bv = calloc((size_t)n->body->n_values, sizeof *bv);
    if (!bv) return bn_fail(err, BN_E_NOMEM, "reference interpreter: out of memory");
    r->env.body_val[i] = bv;
    for (int k = 0, a = 0; k < n->body->n_values; k++)
      if (n->body->values[k].kind == BN_VAL_INPUT) bv[k] = val[n->in[a++]];
    bv[n->body->outputs[0]] = val[n->out];
    if ((st = assign_buffers(r, n->body, bv, body_pool, err))) return st;
  }
  return st;
}

bn_status bn_ref_create(const bn_graph *g, int max_tokens, int n_ctx, bn_ref **out, bn_error *err) {
  *out = NULL;
  if (max_tokens < 1 || n_ctx < 1) return bn_fail(err, BN_E_INVALID, "max_tokens and n_ctx must be positive");
  bn_status st = bn_graph_verify(g, err);
  if (st) return st;
  bn_ref *r = calloc(1, sizeof *r);
  if (!r) return bn_fail(err, BN_E_NOMEM, "out of memory");
  r->env.g = g;
  r->max_tokens = max_tokens;
  r->n_ctx = n_ctx;
  r->tokens_id = -1;
  r->cap_slots = count_values(g) + 1;
  r->slots = calloc((size_t)r->cap_slots, sizeof *r->slots);
  r->slot_size = calloc((size_t)r->cap_slots, sizeof *r->slot_size);
  r->env.val = calloc((size_t)g->n_values, sizeof *r->env.val);
  r->env.body_val = calloc((size_t)g->n_nodes + 1, sizeof *r->env.body_val);
  r->n_layers = bn_ref_kv_layers(g);
  r->env.kc = calloc((size_t)r->n_layers + 1, sizeof *r->env.kc);
  r->env.vc = calloc((size_t)r->n_layers + 1, sizeof *r->env.vc);
  int64_t sz[6];
  bn_ref_scratch_size(g, max_tokens, n_ctx, sz);
  r->scratch.q = xcalloc(r, (size_t)sz[0], 1);
  r->scratch.trit = xcalloc(r, (size_t)sz[1], 1);
  r->scratch.s = xcalloc(r, (size_t)sz[2], 1);
  r->scratch.bscale = xcalloc(r, (size_t)sz[3], 1);
  r->scratch.fw = xcalloc(r, (size_t)sz[4], 1);
  r->scratch.scores = xcalloc(r, (size_t)sz[5], 1);
  r->env.scratch = &r->scratch;
  r->tokens = xcalloc(r, (size_t)max_tokens, sizeof *r->tokens);
  if (!r->slots || !r->slot_size || !r->env.val || !r->env.body_val || !r->env.kc || !r->env.vc || !r->scratch.q ||
      !r->scratch.trit || !r->scratch.s || !r->scratch.bscale || !r->scratch.fw || !r->scratch.scores || !r->tokens) {
    bn_ref_free(r);
    return bn_fail(err, BN_E_NOMEM, "reference interpreter: out of memory");
  }
  for (int L = 0; L < r->n_layers; L++) {
    size_t kvw = (size_t)bn_ref_kv_width(g, L);
    r->env.kc[L] = xcalloc(r, kvw * (size_t)n_ctx, sizeof(float));
    r->env.vc[L] = xcalloc(r, kvw * (size_t)n_ctx, sizeof(float));
    if (!r->env.kc[L] || !r->env.vc[L]) {
      bn_ref_free(r);
      return bn_fail(err, BN_E_NOMEM, "reference interpreter: out of memory for the KV cache (%d positions)", n_ctx);
    }
  }
  for (int i = 0; i < g->n_values; i++)
    if (g->values[i].kind == BN_VAL_INPUT) {
      if (g->values[i].dtype != BN_DT_I32 || r->tokens_id >= 0) {
        bn_ref_free(r);
        return bn_fail(err, BN_E_UNSUPPORTED, "input %%%s: only one i32 token input is supported", g->values[i].name);
      }
      r->tokens_id = i;
      r->env.val[i] = r->tokens;
    }
  if ((st = bind(r, g, r->env.val, err))) {
    bn_ref_free(r);
    return st;
  }
  *out = r;
  return BN_OK;
}

bn_status bn_ref_eval(bn_ref *r, const int32_t *tokens, int n, int pos, const float **out, bn_error *err) {
  const bn_graph *g = r->env.g;
  bn_status st = bn_ref_begin_step(&r->env, r->tokens, tokens, n, pos, r->max_tokens, r->n_ctx, err);
  if (st) return st;
  for (int i = 0; i < g->n_nodes; i++) bn_ref_run_node(&r->env, i);
  *out = r->env.val[g->outputs[0]];
  return BN_OK;
}

int64_t bn_ref_output_width(const bn_ref *r) { return row_width(&r->env.g->values[r->env.g->outputs[0]]); }

size_t bn_ref_bytes(const bn_ref *r) { return r->bytes; }

void bn_ref_free(bn_ref *r) {
  if (!r) return;
  for (int i = 0; i < r->n_slots; i++) free(r->slots[i]);
  for (int L = 0; L < r->n_layers && r->env.kc; L++) free(r->env.kc[L]), free(r->env.vc[L]);
  if (r->env.body_val)
    for (int i = 0; i < r->env.g->n_nodes; i++) free(r->env.body_val[i]);
  free(r->slots), free(r->slot_size), free(r->env.val), free(r->env.body_val), free(r->env.kc), free(r->env.vc);
  free(r->scratch.q), free(r->scratch.trit), free(r->scratch.s), free(r->scratch.bscale), free(r->scratch.fw);
  free(r->scratch.scores), free(r->tokens);
  free(r);
}
