/* dce: removes nodes whose value nothing live reads (and no output is), then
 * weights nothing reads. One backward sweep finds them all: a value's uses
 * come after its definition. */
#include <stdlib.h>

#include "rewrite.h"

bn_status bn_pass_dce(bn_graph *g, const bn_pass_opts *o, bn_error *err) {
  (void)o;
  int *live = calloc((size_t)g->n_values + 1, sizeof *live);
  if (!live) return bn_fail(err, BN_E_NOMEM, "out of memory");
  for (int i = 0; i < g->n_outputs; i++) live[g->outputs[i]] = 1;
  for (int i = g->n_nodes - 1; i >= 0; i--) /* uses come after definitions: one backward sweep */
    if (live[g->nodes[i].out])
      for (int k = 0; k < g->nodes[i].n_in; k++) live[g->nodes[i].in[k]] = 1;
  bn_rw rw;
  bn_status st = bn_rw_begin(&rw, g, err);
  for (int i = 0; i < g->n_nodes && !st && !rw.st; i++)
    if (live[g->nodes[i].out]) bn_rw_copy(&rw, i);
  free(live);
  return st ? st : bn_rw_end(&rw, g); /* weights are copied on first use, so unused ones vanish */
}
