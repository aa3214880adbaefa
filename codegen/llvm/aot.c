/* Ahead-of-time object code for a graph: every unique kernel the graph's
 * nodes select, compiled for the JIT's target (bnc compile --aot). */
#include <stdlib.h>
#include <string.h>

#include "llvm.h"

bn_status bn_llvm_aot_build(bn_llvm *j, const bn_graph *g, bn_llvm_aot *out, bn_error *err) {
  bn_isa isa = bn_llvm_isa(j);
  memset(out, 0, sizeof *out);
  bn_llvm_key *keys = malloc((size_t)g->n_nodes * sizeof *keys);
  bn_llvm_obj *objs = calloc((size_t)g->n_nodes + 1, sizeof *objs);
  const char *features;
  out->cpu = strdup(bn_llvm_cpu(j, &features));
  out->features = strdup(features);
  out->objs = objs;
  if (!keys || !objs || !out->cpu || !out->features) {
    free(keys);
    bn_llvm_aot_free(out);
    return bn_fail(err, BN_E_NOMEM, "out of memory");
  }
  bn_status st = BN_OK;
  for (int i = 0; i < g->n_nodes && !st; i++) {
    bn_llvm_key key;
    if (!bn_llvm_select(g, i, isa, &key)) continue;
    int seen = 0;
    for (int k = 0; k < out->n && !seen; k++) seen = bn_llvm_key_eq(&keys[k], &key);
    if (seen) continue;
    char name[128];
    bn_llvm_key_name(&key, isa, name, sizeof name);
    void *data;
    size_t size;
    if ((st = bn_llvm_object(j, &key, &data, &size, err))) break;
    keys[out->n] = key;
    objs[out->n] = (bn_llvm_obj){strdup(name), data, size};
    if (!objs[out->n++].name) st = bn_fail(err, BN_E_NOMEM, "out of memory");
  }
  free(keys);
  if (st) bn_llvm_aot_free(out);
  return st;
}

void bn_llvm_aot_free(bn_llvm_aot *a) {
  for (int i = 0; i < a->n; i++) free((char *)a->objs[i].name), free((void *)a->objs[i].data);
  free((void *)a->objs), free((char *)a->cpu), free((char *)a->features);
  memset(a, 0, sizeof *a);
}
