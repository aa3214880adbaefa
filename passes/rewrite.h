/* Rebuilding a graph: a pass copies the nodes it keeps and adds the ones it
 * makes, in order, into a new graph; value ids are mapped old -> new. Weights
 * and inputs are copied first; data the old graph owned moves over. */
#ifndef BN_REWRITE_H
#define BN_REWRITE_H

#include "pass.h"

typedef struct {
  const bn_graph *src;
  bn_graph dst;
  int *map;    /* src value id -> dst value id (-1: not yet) */
  int *uses;   /* src value id -> number of operand uses (+1 if a graph output) */
  int *reader; /* src value id -> the last node reading it (-1: none) */
  bn_error *err;
  bn_status st;
} bn_rw;

bn_status bn_rw_begin(bn_rw *rw, const bn_graph *src, bn_error *err);
/* Copies src node i with mapped operands (a body is deep-copied). */
int bn_rw_copy(bn_rw *rw, int node);
/* Adds a node over dst value ids; sets rw->st on failure. */
int bn_rw_add(bn_rw *rw, bn_op op, const char *name, const int *in, int n_in, const double *attr);
int bn_rw_add_fused(bn_rw *rw, const char *name, const int *in, int n_in, bn_graph *body);
/* Adds a weight owning data. */
int bn_rw_weight(bn_rw *rw, const char *name, bn_dtype t, bn_shape s, void *data, size_t nbytes);
/* The dst id of src value v (copied on demand for weights and inputs). */
int bn_rw_val(bn_rw *rw, int v);
/* Finishes: marks outputs, replaces *g (== src) by the new graph. */
bn_status bn_rw_end(bn_rw *rw, bn_graph *g);
void bn_rw_abort(bn_rw *rw);

/* The node producing src value v, or NULL. */
const bn_node *bn_rw_def(const bn_rw *rw, int v);

/* Building a fused body: inputs %arg0.. then nodes copied from src. */
typedef struct {
  bn_graph *g;
  const bn_graph *src;
  int *map; /* src value id -> body value id */
  int n_args;
  int ok;
  bn_error err; /* why a node could not be added (code 0: out of memory) */
} bn_body;

void bn_body_begin(bn_body *b, const bn_graph *src);
/* Makes src value v the next argument of the body. */
void bn_body_arg(bn_body *b, int v);
/* Copies src node i into the body (its operands must be args or earlier body nodes). */
void bn_body_node(bn_body *b, int node);
/* Goes on copying from another graph src, whose value v stands for body value `as`
 * (the body value an earlier source's value mapped to: see bn_body_id). */
void bn_body_continue(bn_body *b, const bn_graph *src, int v, int as);
/* The body value src value v maps to (-1: none yet). */
int bn_body_id(const bn_body *b, int v);
/* Marks the body's output (src value v); returns the body, or NULL on failure. */
bn_graph *bn_body_end(bn_body *b, int v);

/* Emits a fused node made of src nodes[0..n) (in graph order) over src
 * values args[0..n_args) as %arg0..; its result is src value `out`, which
 * maps to the new node. */
int bn_rw_fuse(bn_rw *rw, const int *nodes, int n, const int *args, int n_args, int out);
/* Emits one fused node running fused src node p's body, then fused src node m's, p's
 * result standing for m's first operand: its operands are p's, then m's others. Its
 * result is m's. */
int bn_rw_fuse_chain(bn_rw *rw, int p, int m);

/* A fusion a pass found: src nodes[0..n) in graph order, the last its head (where the fused
 * node goes; its result is the head's), over src values args[0..n_args) as %arg0..; or, with
 * chain >= 0, fused node `chain` run as the head's prologue (bn_rw_fuse_chain). */
typedef struct {
  int nodes[8], n, args[8], n_args, chain;
} bn_fusion;
/* Does src node i head a fusion? 1 and *f (f->chain is -1 unless set). */
typedef int (*bn_fusion_match)(const bn_rw *rw, int i, bn_fusion *f);
/* The fusion passes' loop: match every node, absorb each fusion's members, emit the fused
 * node at its head and copy every other node. */
bn_status bn_rw_fuse_matches(bn_graph *g, bn_fusion_match match, bn_error *err);

#endif
