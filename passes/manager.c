/* The pass manager: the pipeline, in order. Each entry is a file of passes/. */
#include <string.h>

#include "../ir/clock.h"
#include "pass.h"

static const bn_pass PIPELINE[] = {
    {"infer-shapes", bn_pass_infer_shapes, "recompute every node's type and shape from the op table"},
    {"lower-bitlinear", bn_pass_lower_bitlinear, "bitlinear -> quantize, tmatmul (int32), dequant"},
    {"pack-weights", bn_pass_pack_weights, "re-lay ternary weights (TQ1_0, TQ2_0, I2_S) as TP2 with a scale per row"},
    {"quantize-head", bn_pass_quantize_head, "the output projection's weights as Q8_0 or Q6_K when asked (bnc compile --head)"},
    {"fold-constants", bn_pass_fold_constants, "fold per-tensor scales into the packed row scales"},
    {"fuse-projections", bn_pass_fuse_projections, "matmuls sharing one quantized input (Q/K/V, gate/up) -> one over concatenated weights"},
    {"fuse-matmul", bn_pass_fuse_matmul, "tmatmul + dequant (+ residual add) -> one kernel"},
    {"fuse-gate", bn_pass_fuse_gate, "act(gate) * up + sub-norm + quantize -> one kernel"},
    {"fuse-norm-quant", bn_pass_fuse_norm_quant, "rmsnorm + quantize -> one kernel"},
    {"fuse-prologue", bn_pass_fuse_prologue, "norm + quantize -> the prologue of the matmul reading it"},
    {"dce", bn_pass_dce, "drop values and weights nothing uses"},
};

const bn_pass *bn_pass_list(int *n) {
  *n = (int)(sizeof PIPELINE / sizeof PIPELINE[0]);
  return PIPELINE;
}

const bn_pass *bn_pass_find(const char *name) {
  for (size_t i = 0; i < sizeof PIPELINE / sizeof PIPELINE[0]; i++)
    if (!strcmp(PIPELINE[i].name, name)) return &PIPELINE[i];
  static const bn_pass plan = {"plan-memory", NULL, "assign every activation an offset in one arena"};
  return !strcmp(name, "plan-memory") ? &plan : NULL;
}

bn_status bn_pass_run_pipeline(bn_graph *g, const bn_pass_opts *o, bn_memplan *mp, bn_pass_hook hook, void *user,
                               bn_error *err) {
  int n;
  const bn_pass *p = bn_pass_list(&n);
  for (int i = 0; i < n; i++) {
    double t0 = bn_clock_s();
    bn_status st = p[i].run(g, o, err);
    if (!st && o->verify) {
      bn_error e2;
      if (bn_graph_verify(g, &e2)) st = bn_fail(err, BN_E_INVALID, "after pass %s: %s", p[i].name, e2.msg);
    }
    if (st) return st;
    if (hook) hook(p[i].name, g, bn_clock_s() - t0, user);
  }
  double t0 = bn_clock_s();
  bn_status st = bn_plan_memory(g, o->max_tokens, mp, err);
  if (!st && o->verify) st = bn_memplan_check(mp, g, err);
  if (!st && hook) hook("plan-memory", g, bn_clock_s() - t0, user);
  return st;
}
