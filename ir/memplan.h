/* A memory plan: where every activation of a step lives in one arena.
 * Computed by passes/plan_memory.c, stored in plans, used by the runtime.
 * Offsets are for steps of up to max_tokens tokens; a smaller step uses the
 * same offsets (rows are contiguous from the start of each buffer). */
#ifndef BN_MEMPLAN_H
#define BN_MEMPLAN_H

#include <stdint.h>

#include "ir.h"

enum { BN_ARENA_ALIGN = 64 };

typedef struct {
  int max_tokens;
  int64_t arena_bytes;   /* the arena's size */
  int64_t sum_bytes;     /* the sum of every planned buffer: what no reuse would need */
  int n_nodes;           /* of the graph; plans are keyed by node index, which printing keeps */
  int64_t *offset;       /* per node: the arena offset of its output */
  int64_t **body_offset; /* per fused node: per body value (inputs -1, the result = the node's offset) */
} bn_memplan;

void bn_memplan_free(bn_memplan *m);
/* Checks the plan against g: every node output (and body intermediate) has
 * an aligned region inside the arena, and no two values that are live at the
 * same time overlap. */
bn_status bn_memplan_check(const bn_memplan *m, const bn_graph *g, bn_error *err);

/* The arena offset of value v of g (a node output), or -1. */
static inline int64_t bn_memplan_value_offset(const bn_memplan *m, const bn_graph *g, int v) {
  return g->values[v].kind == BN_VAL_NODE ? m->offset[g->values[v].node] : -1;
}

/* Liveness: the first and last node index at which each value is live
 * (node outputs from their node to their last use; graph outputs to the end). */
void bn_liveness(const bn_graph *g, int *first, int *last);

#endif
