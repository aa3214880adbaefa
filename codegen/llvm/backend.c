/* The LLVM backend's entry in the registry: the interface over bn_llvm. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llvm.h"

typedef struct {
  bn_llvm *j;
  char missing[64]; /* why the plan's object code is not used */
} llvm_be;

static bn_status be_open(const bn_backend_opts *o, void **self, bn_error *err) {
  const char *target = o->target ? o->target : "native";
  int force = !o->isa ? 0 : !strcmp(o->isa, "avx2") ? 1 + BN_ISA_AVX2 : !strcmp(o->isa, "avx512") ? 1 + BN_ISA_AVX512_VNNI : -1;
  if (force < 0) return bn_fail(err, BN_E_INVALID, "llvm: instruction set '%s' is unknown (avx2, avx512)", o->isa);
  llvm_be *b = calloc(1, sizeof *b);
  if (!b) return bn_fail(err, BN_E_NOMEM, "out of memory");
  bn_status st = bn_llvm_create_forced(target, force, &b->j, err);
  if (st) return free(b), st;
  bn_llvm_use_cache(b->j, o->cache);
  const bn_objcode *c = o->code;
  char feature[48];
  if (c && c->n && strcmp(c->backend, "llvm"))
    snprintf(b->missing, sizeof b->missing, "made by the %.24s backend", c->backend);
  else if (c && c->n && !bn_llvm_host_has(c->features, feature, sizeof feature))
    snprintf(b->missing, sizeof b->missing, "this CPU lacks %s", feature);
  else if (c && c->n && !bn_llvm_code_current(c))
    snprintf(b->missing, sizeof b->missing, "made by another build of bnc's code generator");
  else if (c && c->n) bn_llvm_provide(b->j, c);
  *self = b;
  return BN_OK;
}

static int be_supports(void *self, const bn_kkey *key) { return bn_llvm_supports(((llvm_be *)self)->j, key); }

static bn_status be_prepare(void *self, const bn_kkey *keys, int n, void **fns, bn_error *err) {
  bn_status st = BN_OK;
  for (int i = 0; i < n && !st; i++) st = bn_llvm_get(((llvm_be *)self)->j, &keys[i], &fns[i], err);
  return st;
}

static bn_status be_objects(void *self, const bn_kkey *keys, int n, bn_objcode *out, bn_error *err) {
  bn_llvm *j = ((llvm_be *)self)->j;
  const char *features, *cpu = bn_llvm_cpu(j, &features);
  bn_kobj *objs = calloc((size_t)n + 1, sizeof *objs);
  *out = (bn_objcode){.backend = strdup("llvm"), .cpu = strdup(cpu), .features = strdup(features), .objs = objs};
  bn_status st = objs && out->backend && out->cpu && out->features ? BN_OK : bn_fail(err, BN_E_NOMEM, "out of memory");
  for (int i = 0; i < n && !st; i++) {
    char name[128];
    bn_llvm_key_name(&keys[i], bn_llvm_isa(j), name, sizeof name);
    void *data;
    size_t size;
    if ((st = bn_llvm_object(j, &keys[i], &data, &size, err))) break;
    objs[out->n] = (bn_kobj){strdup(name), data, size};
    if (!objs[out->n++].name) st = bn_fail(err, BN_E_NOMEM, "out of memory");
  }
  if (st) bn_objcode_free(out);
  return st;
}

static char *be_text(void *self, const bn_kkey *key, const char *emit, bn_error *err) {
  if (strcmp(emit, "llvm") && strcmp(emit, "asm")) {
    bn_fail(err, BN_E_INVALID, "llvm: --emit=%s (llvm or asm)", emit);
    return NULL;
  }
  return bn_llvm_text(((llvm_be *)self)->j, key, emit, err);
}

static bn_codegen_info be_info(void *self) {
  bn_llvm *j = ((llvm_be *)self)->j;
  bn_codegen_info i = {.isa = bn_isa_name(bn_llvm_isa(j)), .lanes = bn_llvm_isa(j) == BN_ISA_AVX512_VNNI ? 16 : 8};
  i.cpu = bn_llvm_cpu(j, &i.features);
  return i;
}

static bn_codegen_counts be_counts(void *self) { return bn_llvm_get_counts(((llvm_be *)self)->j); }

static const char *be_missing(void *self) {
  llvm_be *b = self;
  return b->missing[0] ? b->missing : NULL;
}

static void be_close(void *self) {
  llvm_be *b = self;
  bn_llvm_free(b->j);
  free(b);
}

const bn_backend bn_backend_llvm = {
    .name = "llvm",
    .about = "kernels generated through LLVM-C for this CPU (AVX2, AVX-512 VNNI), split over the threads",
    .targets = "native x86-64-v3 x86-64-v4",
    .open = be_open,
    .supports = be_supports,
    .prepare = be_prepare,
    .objects = be_objects,
    .text = be_text,
    .emits = "llvm asm",
    .info = be_info,
    .counts = be_counts,
    .code_missing = be_missing,
    .close = be_close,
};
