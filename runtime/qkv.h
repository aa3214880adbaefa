/* A step's attention inputs in one phase.
 *
 * The fused q/k/v projection X = [q | k | v] reaches attention through three
 * column slices, two RoPEs and the K/V store, each its own node and meeting
 * of the threads: on large, 6 of the 11 a layer; a one-token step's move a
 * few KiB each, a prompt's copy q, k and v whole (2.4 % of large's prefill).
 * Each thread rotates and stores what its matmul share just computed (a
 * token's columns are contiguous in X): its tokens' every head, or its
 * whole heads of every token, by the tokens' positions and sequences. The
 * slices and RoPE nodes are skipped, and attention reads the rotated q from
 * scratch and the K/V already stored. */
#ifndef BN_RT_QKV_H
#define BN_RT_QKV_H

#include <stdint.h>

#include "../ir/ir.h"

enum { BN_QKV_ROPE_Q = 3, BN_QKV_ROPE_K = 4 }; /* in bn_qkv.skip */

typedef struct {
  int mm;      /* the projection's node */
  int skip[5]; /* the nodes a one-token step skips: the slices of q, k, v, then the RoPEs of q, k */
  int layer;
  int64_t head_dim, qw, kw; /* q's and k's columns of X (v's: kw) */
} bn_qkv;

/* Does attention node a read X through exactly that pattern (each slice and RoPE
 * output read by it alone, X by the slices alone)? If so, q describes it. */
int bn_qkv_find(const bn_graph *g, int a, bn_qkv *q);

#endif
