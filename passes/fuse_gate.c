/* fuse-gate: the FFN's middle, from the concatenated gate|up projection to
 * the quantized input of ffn_down,
 *     g = slice y; u = slice y; m = act(g) * u; q = quantize(rmsnorm(m, w))
 * (act = silu or relu2, each value read once; llama's and qwen3's have no
 * rmsnorm: q = quantize(m)) becomes one kernel reading y and writing q: the
 * F-wide float rows never go back to memory. */
#include "rewrite.h"

static const bn_node *def1(const bn_rw *rw, int v, bn_op op) {
  const bn_node *n = bn_rw_def(rw, v);
  return n && n->op == op && rw->uses[v] == 1 ? n : NULL;
}

/* Quantize node i heads the pattern: its six nodes (five without the rmsnorm) in graph order, over y
 * and the norm weights (y alone). */
static int match(const bn_rw *rw, int i, bn_fusion *f) {
  const bn_graph *g = rw->src;
  const bn_node *q = &g->nodes[i];
  if (q->op != BN_OP_QUANTIZE) return 0;
  const bn_node *r = def1(rw, q->in[0], BN_OP_RMSNORM);
  const bn_node *m = def1(rw, r ? r->in[0] : q->in[0], BN_OP_MUL);
  if (!m) return 0;
  const bn_node *a = def1(rw, m->in[0], BN_OP_RELU2);
  if (!a) a = def1(rw, m->in[0], BN_OP_SILU);
  const bn_node *sg = a ? def1(rw, a->in[0], BN_OP_SLICE) : NULL, *su = def1(rw, m->in[1], BN_OP_SLICE);
  if (!sg || !su || sg->in[0] != su->in[0]) return 0;
  const bn_node *list[6] = {sg, su, a, m, r ? r : q, q};
  int n = r ? 6 : 5;
  *f = (bn_fusion){.n = n, .args = {sg->in[0], r ? r->in[1] : -1}, .n_args = r ? 2 : 1, .chain = -1};
  for (int k = 0; k < n; k++) f->nodes[k] = g->values[list[k]->out].node;
  for (int k = 1; k < n; k++) /* graph order (the quantize, reading all, comes last) */
    for (int j = k; j > 0 && f->nodes[j - 1] > f->nodes[j]; j--) {
      int t = f->nodes[j];
      f->nodes[j] = f->nodes[j - 1], f->nodes[j - 1] = t;
    }
  return 1;
}

bn_status bn_pass_fuse_gate(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  return bn_rw_fuse_matches(g, match, err);
}
