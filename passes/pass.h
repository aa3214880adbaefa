/* The pass manager and the passes. Each pass rewrites a graph in place (by
 * rebuilding it, see rewrite.h); the pipeline runs them in order and the
 * verifier after each. */
#ifndef BN_PASS_H
#define BN_PASS_H

#include <stdio.h>

#include "../ir/memplan.h"

typedef struct {
  int max_tokens;  /* largest step the memory plan serves (prompt chunk) */
  int verify;      /* run the verifier after every pass */
  const int64_t *lut, *t1; /* relayout-lut, relayout-t1: n_lut, n_t1 pairs (K, N) of matmul shapes they re-lay */
  int n_lut, n_t1;
  const char *head;    /* quantize-head: "q8_0", "q6_k" re-quantize the output projection's weights; NULL, "exact": not */
  double *head_error;  /* where quantize-head writes the head's relative rms error (NULL: nowhere) */
} bn_pass_opts;

typedef bn_status (*bn_pass_fn)(bn_graph *g, const bn_pass_opts *o, bn_error *err);

typedef struct {
  const char *name;
  bn_pass_fn run;
  const char *what;
} bn_pass;

/* Called after each pass with its name and time (seconds). */
typedef void (*bn_pass_hook)(const char *pass, const bn_graph *g, double seconds, void *user);

const bn_pass *bn_pass_list(int *n);
const bn_pass *bn_pass_find(const char *name);
/* Runs every pass in order, then plans memory into *mp. */
bn_status bn_pass_run_pipeline(bn_graph *g, const bn_pass_opts *o, bn_memplan *mp, bn_pass_hook hook, void *user,
                               bn_error *err);

/* The passes (one file each). */
bn_status bn_pass_infer_shapes(bn_graph *g, const bn_pass_opts *o, bn_error *err);
bn_status bn_pass_lower_bitlinear(bn_graph *g, const bn_pass_opts *o, bn_error *err);
bn_status bn_pass_pack_weights(bn_graph *g, const bn_pass_opts *o, bn_error *err);
bn_status bn_pass_quantize_head(bn_graph *g, const bn_pass_opts *o, bn_error *err);
bn_status bn_pass_fold_constants(bn_graph *g, const bn_pass_opts *o, bn_error *err);
bn_status bn_pass_fuse_projections(bn_graph *g, const bn_pass_opts *o, bn_error *err);
bn_status bn_pass_fuse_matmul(bn_graph *g, const bn_pass_opts *o, bn_error *err);
bn_status bn_pass_fuse_gate(bn_graph *g, const bn_pass_opts *o, bn_error *err);
bn_status bn_pass_fuse_norm_quant(bn_graph *g, const bn_pass_opts *o, bn_error *err);
bn_status bn_pass_fuse_prologue(bn_graph *g, const bn_pass_opts *o, bn_error *err);
bn_status bn_pass_dce(bn_graph *g, const bn_pass_opts *o, bn_error *err);
/* Not in the pipeline: bnc compile --tune runs it after, with the shapes it chose (in place,
 * node and value indices unchanged). */
bn_status bn_pass_relayout_lut(bn_graph *g, const bn_pass_opts *o, bn_error *err);
/* Not in the pipeline either: bnc compile --weights t1 (or --tune) re-lays the TP2 weights of the shapes in
 * o->t1 as TP1. */
bn_status bn_pass_relayout_t1(bn_graph *g, const bn_pass_opts *o, bn_error *err);
/* The unique shapes (K, N) of g's fused matmuls over TP2 weights, as pairs in kn
 * (room for 2 x g->n_nodes); returns how many: what --tune measures and --lut re-lays. */
int bn_pass_matmul_shapes(const bn_graph *g, int64_t *kn);
/* Memory planning is the pipeline's last step; it produces a plan, not a graph. */
bn_status bn_plan_memory(const bn_graph *g, int max_tokens, bn_memplan *mp, bn_error *err);

#endif
