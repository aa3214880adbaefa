/* The backend registry, and the calls on an open backend that check its table. */
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const bn_backend bn_backend_ref, bn_backend_auto;
#ifdef BN_WITH_LLVM
extern const bn_backend bn_backend_llvm;
#endif

/* the compiled-in backends, the default last (bn_backend_default takes it), then those registered
 * (auto's asmjit member among them: a library of its own) */
enum { BUILT_IN = 2
#ifdef BN_WITH_LLVM
                  + 1
#endif
       , MAX_BACKENDS = BUILT_IN + 8 };
static const bn_backend *registry[MAX_BACKENDS] = {
    &bn_backend_ref,
#ifdef BN_WITH_LLVM
    &bn_backend_llvm,
#endif
    &bn_backend_auto,
};
static int n_backends = BUILT_IN;
static const bn_backend *chosen_default; /* bn_backend_set_default's; NULL: the last built in */
static char names[MAX_BACKENDS * 24];

int bn_backend_count(void) { return n_backends; }
const bn_backend *bn_backend_at(int i) { return i >= 0 && i < n_backends ? registry[i] : NULL; }
const bn_backend *bn_backend_default(void) { return chosen_default ? chosen_default : registry[BUILT_IN - 1]; }
void bn_backend_set_default(const bn_backend *be) { chosen_default = be; }

const bn_backend *bn_backend_find(const char *name) {
  for (int i = 0; name && i < n_backends; i++)
    if (!strcmp(registry[i]->name, name)) return registry[i];
  return NULL;
}

bn_status bn_backend_register(const bn_backend *be, bn_error *err) {
  if (!be || !be->name || !be->supports || (!be->prepare && !be->run_graph))
    return bn_fail(err, BN_E_INVALID, "backend: a backend needs a name, supports and prepare or run_graph");
  if (bn_backend_find(be->name)) return bn_fail(err, BN_E_INVALID, "backend: '%s' is registered already", be->name);
  if (n_backends == MAX_BACKENDS) return bn_fail(err, BN_E_INVALID, "backend: no room for '%s'", be->name);
  registry[n_backends++] = be;
  names[0] = 0;
  return BN_OK;
}

const char *bn_backend_names(void) {
  if (!names[0])
    for (int i = 0; i < n_backends; i++) {
      size_t len = strlen(names);
      snprintf(names + len, sizeof names - len, "%s%.20s", i ? ", " : "", registry[i]->name);
    }
  return names;
}

struct bn_codegen {
  const bn_backend *be;
  void *self;
};

bn_status bn_codegen_open(const bn_backend *be, const bn_backend_opts *opts, bn_codegen **out, bn_error *err) {
  *out = NULL;
  bn_codegen *cg = calloc(1, sizeof *cg);
  if (!cg) return bn_fail(err, BN_E_NOMEM, "out of memory");
  cg->be = be;
  bn_status st = be->open ? be->open(opts ? opts : &(bn_backend_opts){0}, &cg->self, err) : BN_OK;
  if (st) return free(cg), st;
  *out = cg;
  return BN_OK;
}

const bn_backend *bn_codegen_backend(const bn_codegen *cg) { return cg->be; }

int bn_codegen_supports(bn_codegen *cg, const bn_kkey *key) {
  return (unsigned)key->family < BN_K_COUNT && cg->be->supports && cg->be->supports(cg->self, key);
}

bn_status bn_codegen_prepare(bn_codegen *cg, const bn_kkey *keys, int n, void **fns, bn_error *err) {
  for (int i = 0; i < n; i++)
    if (!bn_codegen_supports(cg, &keys[i])) {
      char k[96];
      bn_kkey_describe(&keys[i], k, sizeof k);
      return bn_fail(err, BN_E_UNSUPPORTED, "backend %s: no kernel for %s", cg->be->name, k);
    }
  return n ? cg->be->prepare(cg->self, keys, n, fns, err) : BN_OK;
}

bn_status bn_codegen_get(bn_codegen *cg, const bn_kkey *key, void **fn, bn_error *err) {
  return bn_codegen_prepare(cg, key, 1, fn, err);
}

bn_status bn_codegen_objects(bn_codegen *cg, const bn_graph *g, bn_objcode *out, bn_error *err) {
  memset(out, 0, sizeof *out);
  if (!cg->be->objects) return bn_fail(err, BN_E_UNSUPPORTED, "backend %s stores no object code", cg->be->name);
  bn_kkey *keys = malloc(((size_t)g->n_nodes + 1) * sizeof *keys);
  if (!keys) return bn_fail(err, BN_E_NOMEM, "out of memory");
  int n = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    bn_kkey key;
    if (!bn_kernel_select(g, i, &key) || !bn_codegen_supports(cg, &key)) continue;
    int seen = 0;
    for (int k = 0; k < n && !seen; k++) seen = bn_kkey_eq(&keys[k], &key);
    if (!seen) keys[n++] = key;
  }
  bn_status st = bn_codegen_objects_of(cg, keys, n, out, err);
  free(keys);
  return st;
}

bn_status bn_codegen_objects_of(bn_codegen *cg, const bn_kkey *keys, int n, bn_objcode *out, bn_error *err) {
  memset(out, 0, sizeof *out);
  if (!cg->be->objects) return bn_fail(err, BN_E_UNSUPPORTED, "backend %s stores no object code", cg->be->name);
  return cg->be->objects(cg->self, keys, n, out, err);
}

void bn_objcode_free(bn_objcode *c) {
  for (int i = 0; i < c->n; i++) free((char *)c->objs[i].name), free((void *)c->objs[i].data);
  free((void *)c->objs), free((char *)c->backend), free((char *)c->cpu), free((char *)c->features);
  memset(c, 0, sizeof *c);
}

char *bn_codegen_text(bn_codegen *cg, const bn_kkey *key, const char *emit, bn_error *err) {
  if (!cg->be->text) {
    bn_fail(err, BN_E_UNSUPPORTED, "backend %s prints no kernel text", cg->be->name);
    return NULL;
  }
  return cg->be->text(cg->self, key, emit, err);
}

bn_codegen_info bn_codegen_get_info(bn_codegen *cg) {
  return cg->be->info ? cg->be->info(cg->self) : (bn_codegen_info){.isa = "scalar", .cpu = "", .features = "", .lanes = 1};
}

bn_codegen_counts bn_codegen_get_counts(bn_codegen *cg) {
  return cg->be->counts ? cg->be->counts(cg->self) : (bn_codegen_counts){0};
}

const char *bn_codegen_code_missing(bn_codegen *cg) { return cg->be->code_missing ? cg->be->code_missing(cg->self) : NULL; }

int bn_codegen_runs_graphs(const bn_codegen *cg) { return cg->be->run_graph != NULL; }

bn_status bn_codegen_run_graph(bn_codegen *cg, bn_graph_step *step, bn_error *err) {
  return cg->be->run_graph(cg->self, step, err);
}

void bn_codegen_close(bn_codegen *cg) {
  if (!cg) return;
  if (cg->be->close) cg->be->close(cg->self);
  free(cg);
}

/* The reference backend: no generated kernel; the executor runs every node on codegen/ref. */
static int ref_supports(void *self, const bn_kkey *key) { return 0; }
const bn_backend bn_backend_ref = {
    .name = "ref",
    .about = "the reference kernels (codegen/ref): the oracle, portable C",
    .targets = "native",
    .supports = ref_supports,
};
