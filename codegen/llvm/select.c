/* Which generated kernel computes a node: the patterns the passes produce,
 * recognized from a fused node's body (its op sequence and wiring) and the
 * types of its operands. Anything else runs the reference kernels. */
#include <math.h>
#include <string.h>

#include "llvm.h"

static int body_is(const bn_node *n, const bn_op *ops, int count) {
  if (!n->body || n->body->n_nodes != count) return 0;
  for (int i = 0; i < count; i++)
    if (n->body->nodes[i].op != ops[i]) return 0;
  return 1;
}

/* BN_NQ_* if n is rmsnorm + quantize, or the gate (slice 0..F, slice F..2F,
 * relu2|silu of the first, mul, rmsnorm, quantize); else -1. */
static int nq_mode(const bn_node *n) {
  static const bn_op nq[2] = {BN_OP_RMSNORM, BN_OP_QUANTIZE};
  if (body_is(n, nq, 2)) return BN_NQ_PLAIN;
  if (!n->body || n->body->n_nodes != 6) return -1;
  const bn_node *b = n->body->nodes;
  int relu2 = b[2].op == BN_OP_RELU2;
  if (b[0].op != BN_OP_SLICE || b[1].op != BN_OP_SLICE || (!relu2 && b[2].op != BN_OP_SILU) || b[3].op != BN_OP_MUL ||
      b[4].op != BN_OP_RMSNORM || b[5].op != BN_OP_QUANTIZE)
    return -1;
  double F = b[0].attr[1];
  if (b[0].attr[0] != 0 || b[1].attr[0] != F || b[1].attr[1] != F || b[2].in[0] != b[0].out || b[3].in[0] != b[2].out ||
      b[3].in[1] != b[1].out || b[4].in[0] != b[3].out || b[5].in[0] != b[4].out ||
      n->body->values[b[0].in[0]].shape.d[1] != 2 * (int64_t)F)
    return -1;
  return relu2 ? BN_NQ_GATE_RELU2 : BN_NQ_GATE_SILU;
}

int bn_llvm_select(const bn_graph *g, int i, bn_isa isa, bn_llvm_key *key) {
  const bn_node *n = &g->nodes[i];
  int lanes = isa == BN_ISA_AVX512_VNNI ? 16 : 8;
  static const bn_op mm2[2] = {BN_OP_TMATMUL, BN_OP_DEQUANT}, mm3[3] = {BN_OP_TMATMUL, BN_OP_DEQUANT, BN_OP_ADD};
  memset(key, 0, sizeof *key);
  int with_add = body_is(n, mm3, 3);
  if (with_add || body_is(n, mm2, 2)) {
    const bn_value *w = &g->values[n->in[1]];
    if ((w->dtype != BN_DT_TP2 && w->dtype != BN_DT_TL2) || n->body->nodes[1].n_in != 3 || w->shape.d[1] % 256) return 0;
    int family = w->dtype == BN_DT_TL2 ? BN_K_MATMUL_LUT : BN_K_MATMUL;
    *key = (bn_llvm_key){family, w->shape.d[1], w->shape.d[0], with_add ? BN_MM_DQ_ADD : BN_MM_DQ, 0};
    return 1;
  }
  if (n->op == BN_OP_OUTPUT_PROJ) {
    const bn_value *w = &g->values[n->in[1]];
    int64_t block = bn_gen_matmul_f_block(w->dtype, isa);
    if (!block || w->shape.d[1] % block) return 0;
    *key = (bn_llvm_key){BN_K_MATMUL_F, w->shape.d[1], w->shape.d[0], (int)w->dtype, 0};
    return 1;
  }
  if (n->op == BN_OP_ATTENTION) {
    int hd = (int)n->attr[3];
    if (hd % lanes || hd / lanes > 32) return 0;
    *key = (bn_llvm_key){BN_K_ATTENTION, hd, (int64_t)n->attr[1], (int)n->attr[2], 0};
    return 1;
  }
  if (n->op == BN_OP_ROPE) {
    int hd = (int)n->attr[1];
    if ((int)n->attr[2] != hd || hd % 2 || hd / 2 % 8) return 0; /* whole heads, lanes that divide half a head */
    *key = (bn_llvm_key){BN_K_ROPE, hd, (int64_t)n->attr[0], 0, 0};
    return 1;
  }
  if (n->op == BN_OP_EMBED) {
    const bn_value *w = &g->values[n->in[1]];
    int64_t block = bn_gen_matmul_f_block(w->dtype, isa);
    if (!block || w->shape.d[1] % block || g->values[n->out].dtype != BN_DT_F32) return 0;
    *key = (bn_llvm_key){BN_K_EMBED, w->shape.d[1], w->shape.d[0], (int)w->dtype, 0};
    return 1;
  }
  if (n->op == BN_OP_SLICE) {
    const bn_value *in = &g->values[n->in[0]], *out = &g->values[n->out];
    if (in->dtype != BN_DT_F32 || out->dtype != BN_DT_F32 || in->shape.rank != 2 || n->attr[0] > 1e9) return 0;
    *key = (bn_llvm_key){BN_K_SLICE, in->shape.d[1], out->shape.d[1], (int)n->attr[0], 0};
    return 1;
  }
  if (n->op == BN_OP_RMSNORM) { /* alone: the final norm */
    int64_t K = g->values[n->out].shape.d[1];
    if (g->values[n->in[1]].dtype != BN_DT_F32 || g->values[n->in[0]].dtype != BN_DT_F32 || K % lanes) return 0;
    *key = (bn_llvm_key){BN_K_NORM_QUANT, K, 0, BN_NQ_RMSNORM, (float)n->attr[0]};
    return 1;
  }
  int mode = nq_mode(n);
  if (mode >= 0) {
    const bn_node *norm = &n->body->nodes[n->body->n_nodes - 2];
    int64_t K = n->body->values[norm->out].shape.d[1];
    if (g->values[n->in[1]].dtype != BN_DT_F32 || K % lanes) return 0;
    *key = (bn_llvm_key){BN_K_NORM_QUANT, K, 0, mode, (float)norm->attr[0]};
    return 1;
  }
  return 0;
}

void bn_rope_table(float *table, int n_ctx, int dims, double base) {
  int half = dims / 2;
  for (int p = 0; p < n_ctx; p++)
    for (int i = 0; i < half; i++) {
      double theta = (double)p * pow(base, -2.0 * i / dims); /* as bn_ref_rope */
      table[(size_t)p * half + i] = (float)cos(theta);
      table[(size_t)(n_ctx + p) * half + i] = (float)sin(theta);
    }
}
