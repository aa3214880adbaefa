/* The kernel families' table, and which family computes a node: the patterns the
 * passes produce, recognized from a fused node's body (its op sequence and wiring)
 * and the types of its operands. Anything else runs the reference kernels. */
#include <stdio.h>
#include <string.h>

#include "kernels.h"
#include "ref/ref.h"

const bn_kfamily_info bn_kfamilies[BN_K_COUNT] = {
#define X(id, nm, ty, sp, k, r) [BN_K_##id] = {.name = nm, .type = #ty, .key = k, .ref = r, .split = sp},
#include "kernels.def"
#undef X
};

int bn_kkey_eq(const bn_kkey *a, const bn_kkey *b) {
  return a->family == b->family && a->k == b->k && a->n == b->n && a->variant == b->variant && a->eps == b->eps &&
         a->pro == b->pro && a->cache == b->cache;
}

void bn_kkey_describe(const bn_kkey *key, char *buf, size_t cap) {
  const char *fam = (unsigned)key->family < BN_K_COUNT ? bn_kfamilies[key->family].name : "?";
  snprintf(buf, cap, "%s v%d%s%s k%lld n%lld", fam, key->variant, key->pro ? " +prologue" : "",
           key->cache == BN_DT_F16 ? " f16 cache" : "", (long long)key->k, (long long)key->n);
}

/* A ternary matmul node, with or without a norm + quantize prologue: its key; 0 if not one. */
static int select_matmul(const bn_graph *g, const bn_node *n, bn_kkey *key) {
  int len = 0, nq = n->body ? bn_fused_norm_quant(n->body, &len) : -1, wi;
  if (nq > BN_FUSED_GATE_SILU) return 0; /* a prologue normalizes (fuse-prologue makes no other) */
  if (nq < 0) len = 0;
  int mode = n->body && n->body->n_nodes > len ? bn_fused_matmul(n->body, len) : -1;
  if (mode < 0 || bn_fused_tmatmul(n, &wi) != len || (len && n->body->nodes[len].in[0] != n->body->nodes[len - 1].out))
    return 0;
  const bn_value *w = &g->values[n->in[wi]];
  int grouped = w->dtype == BN_DT_TG2 || w->dtype == BN_DT_TG2H;
  if ((w->dtype != BN_DT_TP2 && w->dtype != BN_DT_TL2 && w->dtype != BN_DT_TP1 && !grouped) || w->shape.d[1] % 256)
    return 0;
  if (len && (g->values[n->in[0]].dtype != BN_DT_F32 || g->values[n->in[1]].dtype != BN_DT_F32 || wi != 2))
    return 0; /* operands: x, norm weights, w (, resid), floats */
  int family = w->dtype == BN_DT_TL2 ? BN_K_MATMUL_LUT : w->dtype == BN_DT_TP1 ? BN_K_MATMUL_T1
               : grouped ? BN_K_MATMUL_G : BN_K_MATMUL;
  *key = (bn_kkey){.family = family, .k = w->shape.d[1], .n = w->shape.d[0], .variant = mode,
                   .cache = grouped ? w->dtype : BN_DT_F32}; /* MATMUL_G: TG2 or TG2H */
  if (len) key->pro = 1 + nq, key->eps = (float)n->body->nodes[len - 2].attr[0]; /* the rmsnorm's */
  return 1;
}

/* BN_NQ_* if n is a norm + quantize kernel alone; else -1. */
static int nq_mode(const bn_node *n) {
  int len = 0, mode = n->body ? bn_fused_norm_quant(n->body, &len) : -1;
  return mode >= 0 && len == n->body->n_nodes ? mode : -1;
}

int bn_kernel_select(const bn_graph *g, int i, bn_kkey *key) {
  const bn_node *n = &g->nodes[i];
  memset(key, 0, sizeof *key);
  if (select_matmul(g, n, key)) return 1;
  if (n->op == BN_OP_OUTPUT_PROJ) {
    const bn_value *w = &g->values[n->in[1]];
    *key = (bn_kkey){.family = BN_K_MATMUL_F, .k = w->shape.d[1], .n = w->shape.d[0], .variant = (int)w->dtype};
    return 1;
  }
  if (n->op == BN_OP_ATTENTION) {
    int hd = (int)n->attr[3];
    *key = (bn_kkey){.family = BN_K_ATTENTION, .k = hd, .n = (int64_t)n->attr[1], .variant = (int)n->attr[2]};
    return 1;
  }
  if (n->op == BN_OP_ROPE) {
    int hd = (int)n->attr[1];
    if ((int)n->attr[2] != hd || hd % 2) return 0; /* whole heads rotated */
    *key = (bn_kkey){.family = BN_K_ROPE, .k = hd, .n = (int64_t)n->attr[0]};
    return 1;
  }
  if (n->op == BN_OP_EMBED) {
    const bn_value *w = &g->values[n->in[1]];
    if (g->values[n->out].dtype != BN_DT_F32) return 0;
    *key = (bn_kkey){.family = BN_K_EMBED, .k = w->shape.d[1], .n = w->shape.d[0], .variant = (int)w->dtype};
    return 1;
  }
  if (n->op == BN_OP_SLICE) {
    const bn_value *in = &g->values[n->in[0]], *out = &g->values[n->out];
    if (in->dtype != BN_DT_F32 || out->dtype != BN_DT_F32 || in->shape.rank != 2 || n->attr[0] > 1e9) return 0;
    *key = (bn_kkey){.family = BN_K_SLICE, .k = in->shape.d[1], .n = out->shape.d[1], .variant = (int)n->attr[0]};
    return 1;
  }
  if (n->op == BN_OP_RMSNORM) { /* alone: the final norm, or qwen3's per-head q/k norms (n: the group) */
    int64_t K = g->values[n->out].shape.d[1], group = (int64_t)n->attr[1];
    if (group < 0 || group > K || (group && K % group)) return 0;
    if (g->values[n->in[1]].dtype != BN_DT_F32 || g->values[n->in[0]].dtype != BN_DT_F32) return 0;
    *key = (bn_kkey){.family = BN_K_NORM_QUANT, .k = K, .n = group, .variant = BN_NQ_RMSNORM, .eps = (float)n->attr[0]};
    return 1;
  }
  if (n->op == BN_OP_QUANTIZE && g->values[n->in[0]].dtype == BN_DT_F32 && g->values[n->in[0]].shape.rank == 2) {
    *key = (bn_kkey){.family = BN_K_NORM_QUANT, .k = g->values[n->in[0]].shape.d[1], .variant = BN_NQ_QUANT};
    return 1; /* no sub-norm before it */
  }
  int mode = nq_mode(n);
  if (mode >= 0) { /* the node before the quantize: the rmsnorm (or, without one, the gate's product) */
    const bn_node *norm = &n->body->nodes[n->body->n_nodes - 2];
    int64_t K = n->body->values[norm->out].shape.d[1];
    if (g->values[n->in[0]].dtype != BN_DT_F32 || (bn_nq_normed(mode) && g->values[n->in[1]].dtype != BN_DT_F32)) return 0;
    *key = (bn_kkey){.family = BN_K_NORM_QUANT, .k = K, .variant = mode, .eps = bn_nq_normed(mode) ? (float)norm->attr[0] : 0};
    return 1;
  }
  return 0;
}

void bn_rope_table(float *table, int n_ctx, int dims, double base) {
  int half = dims / 2;
  for (int p = 0; p < n_ctx; p++)
    for (int i = 0; i < half; i++) /* the reference's angles */
      bn_ref_rope_angle(p, i, dims, base, &table[(size_t)p * half + i], &table[(size_t)(n_ctx + p) * half + i]);
}
