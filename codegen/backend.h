/* The seam between the runtime and its code generators. A backend is one const
 * table of operations (QBE's target struct, ggml's ggml_backend_i); the registry
 * lists those compiled in. The executor, the plan reader and writer and the CLI
 * know this interface and nothing of any backend. docs/backends.md says how to
 * add one. */
#ifndef BN_BACKEND_H
#define BN_BACKEND_H

#include "kernels.h"

/* Object code of one kernel, by symbol name. */
typedef struct {
  const char *name;
  const void *data;
  size_t size;
} bn_kobj;

/* A plan's object code (bnc compile --aot): the kernels of one graph, made by one
 * backend for cpu with features (the "+feature" list a host must have to run them). */
typedef struct {
  const char *backend, *cpu, *features;
  const bn_kobj *objs;
  int n;
} bn_objcode;
void bn_objcode_free(bn_objcode *c); /* one that bn_codegen_objects made */

typedef struct bn_kcache bn_kcache; /* codegen/kcache.h */

typedef struct {
  const char *target; /* "native" (NULL), or a portable target the backend knows ("x86-64-v3") */
  const char *isa;    /* the native target's instruction set ("avx2", "avx512"); NULL: the host's best */
  const bn_kcache *cache;   /* the kernel disk cache (outlives the instance); NULL: none */
  const bn_objcode *code;   /* the plan's object code, trusted by the caller; used where this host can run it */
  /* for backends that run whole steps (run_graph): the graph, its memory plan, the context */
  const bn_graph *g;
  const void *memplan;
  int n_ctx;
  bn_dtype kv; /* the K/V caches' element type (F32, F16) */
  const void *device; /* the plan's device section (a GPU backend's library), trusted by no one: the backend
                       * checks it; NULL: none */
  size_t device_bytes;
} bn_backend_opts;

/* Where an instance's kernels came from and the time it took: built now (and stored
 * in the disk cache), loaded from the cache, or from the plan's object code. */
typedef struct {
  const char *backend;
  int built, stored, cached, aot;
  double seconds;
} bn_codegen_part;
typedef struct {
  int built, stored, cached, aot;
  double seconds;
  int n_parts; /* a backend made of others (auto): each one's share */
  bn_codegen_part part[4];
} bn_codegen_counts;

/* What an instance generates for. lanes: 32-bit lanes of its vectors (peak kernel's work). */
typedef struct {
  const char *isa, *cpu, *features;
  int lanes;
} bn_codegen_info;

/* One step handed to a backend that runs whole graphs (GPUs): tokens[0..n) at pos..;
 * out: the logits it leaves, [n x n_vocab] (or the last row with last_only); node_seconds: per node
 * of the graph, where the backend adds the time its work took (zeroed by the caller; may be left). */
typedef struct {
  const int32_t *tokens;
  int n, pos, last_only;
  const float *out;
  double *node_seconds;
} bn_graph_step;

typedef struct bn_backend {
  const char *name, *about; /* "llvm", and a line for --help */
  const char *targets;      /* the compile targets it knows, space-separated ("native x86-64-v3") */
  /* an instance for opts' target; an unknown target or a CPU that cannot run it is an error */
  bn_status (*open)(const bn_backend_opts *opts, void **self, bn_error *err);
  /* can it build key's kernel? (0: the node runs on the reference kernels) */
  int (*supports)(void *self, const bn_kkey *key);
  /* the callable kernels of keys[0..n) (each supported), built or taken from the
   * cache or the plan's code; fns[i] has the family's function type */
  bn_status (*prepare)(void *self, const bn_kkey *keys, int n, void **fns, bn_error *err);
  /* NULL for host backends; else the executor hands it every step whole */
  bn_status (*run_graph)(void *self, bn_graph_step *step, bn_error *err);
  /* object code of keys[0..n) for a plan (NULL: the backend stores none) */
  bn_status (*objects)(void *self, const bn_kkey *keys, int n, bn_objcode *out, bn_error *err);
  /* a kernel's source or assembly as text, malloc'd; emit names the form (NULL: none) */
  char *(*text)(void *self, const bn_kkey *key, const char *emit, bn_error *err);
  const char *emits; /* the forms text takes, space-separated: "llvm asm" */
  bn_codegen_info (*info)(void *self);
  bn_codegen_counts (*counts)(void *self);
  /* why opts.code is not used ("this CPU lacks avx512vnni"); NULL: used, or none given */
  const char *(*code_missing)(void *self);
  void (*close)(void *self);
} bn_backend;

/* The registry: every backend compiled in, the reference one first. */
int bn_backend_count(void);
const bn_backend *bn_backend_at(int i);
const bn_backend *bn_backend_find(const char *name); /* NULL: none of that name */
const bn_backend *bn_backend_default(void);          /* the fastest compiled in */
/* Adds an embedder's (or a test's) backend, before any other thread looks one up; at most 8.
 * It needs a name (not taken), supports, and prepare or run_graph. */
bn_status bn_backend_register(const bn_backend *be, bn_error *err);
/* Makes a registered backend the default (a program that links one the library lacks: bnc's asmjit). */
void bn_backend_set_default(const bn_backend *be);
/* "ref, llvm" (for --help and errors) */
const char *bn_backend_names(void);

/* An open backend: the calls below check its table for what it lacks. */
typedef struct bn_codegen bn_codegen;
bn_status bn_codegen_open(const bn_backend *be, const bn_backend_opts *opts, bn_codegen **out, bn_error *err);
const bn_backend *bn_codegen_backend(const bn_codegen *cg);
int bn_codegen_supports(bn_codegen *cg, const bn_kkey *key);
bn_status bn_codegen_prepare(bn_codegen *cg, const bn_kkey *keys, int n, void **fns, bn_error *err);
bn_status bn_codegen_get(bn_codegen *cg, const bn_kkey *key, void **fn, bn_error *err); /* one kernel */
/* The object code of every unique supported kernel of g's nodes (bnc compile --aot). */
bn_status bn_codegen_objects(bn_codegen *cg, const bn_graph *g, bn_objcode *out, bn_error *err);
bn_status bn_codegen_objects_of(bn_codegen *cg, const bn_kkey *keys, int n, bn_objcode *out, bn_error *err);
char *bn_codegen_text(bn_codegen *cg, const bn_kkey *key, const char *emit, bn_error *err);
bn_codegen_info bn_codegen_get_info(bn_codegen *cg);
bn_codegen_counts bn_codegen_get_counts(bn_codegen *cg);
const char *bn_codegen_code_missing(bn_codegen *cg);
int bn_codegen_runs_graphs(const bn_codegen *cg);
bn_status bn_codegen_run_graph(bn_codegen *cg, bn_graph_step *step, bn_error *err);
void bn_codegen_close(bn_codegen *cg);

#endif
