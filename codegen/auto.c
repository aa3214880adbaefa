/* The auto backend: each kernel from the first member that builds it, asmjit then LLVM, and the
 * reference kernels for the rest. asmjit emits a model's kernels in a few milliseconds and runs them
 * as fast or faster (docs/asmjit.md has the figures); LLVM (its disk cache, a plan's object code)
 * builds what asmjit does not. Members are found in the registry by name and opened when first
 * needed, so a model that asmjit covers never starts LLVM. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"

enum { MEMBERS = 2 };
static const char *const MEMBER[MEMBERS] = {"asmjit", "llvm"};

typedef struct {
  bn_backend_opts opts;
  bn_codegen *m[MEMBERS];
  int tried[MEMBERS];
} auto_be;

/* Member i, opened on first use; NULL where it is not compiled in or cannot run here. */
static bn_codegen *member(auto_be *b, int i) {
  if (!b->tried[i]) {
    b->tried[i] = 1;
    const bn_backend *be = bn_backend_find(MEMBER[i]);
    bn_error err = {0};
    if (be && bn_codegen_open(be, &b->opts, &b->m[i], &err)) b->m[i] = NULL;
  }
  return b->m[i];
}

/* The member that builds key's kernel: the first that supports it, or -1. */
static int pick(auto_be *b, const bn_kkey *key) {
  for (int i = 0; i < MEMBERS; i++)
    if (member(b, i) && bn_codegen_supports(b->m[i], key)) return i;
  return -1;
}

static bn_status au_open(const bn_backend_opts *o, void **self, bn_error *err) {
  auto_be *b = calloc(1, sizeof *b);
  if (!b) return bn_fail(err, BN_E_NOMEM, "out of memory");
  b->opts = *o;
  *self = b;
  return BN_OK;
}

static int au_supports(void *self, const bn_kkey *key) { return pick(self, key) >= 0; }

static bn_status au_prepare(void *self, const bn_kkey *keys, int n, void **fns, bn_error *err) {
  auto_be *b = self;
  bn_status st = BN_OK;
  for (int i = 0; i < n && !st; i++) st = bn_codegen_get(b->m[pick(b, &keys[i])], &keys[i], &fns[i], err);
  return st;
}

/* A plan's object code is LLVM's: every kernel of the graph it builds (the plan then runs fast on
 * --backend llvm too; auto takes from it what asmjit does not emit). */
static bn_status au_objects(void *self, const bn_kkey *keys, int n, bn_objcode *out, bn_error *err) {
  auto_be *b = self;
  bn_codegen *l = member(b, 1);
  if (!l) return bn_fail(err, BN_E_UNSUPPORTED, "auto: object code is LLVM's, and this bnc has no LLVM");
  bn_kkey *mine = malloc(((size_t)n + 1) * sizeof *mine);
  if (!mine) return bn_fail(err, BN_E_NOMEM, "out of memory");
  int m = 0;
  for (int i = 0; i < n; i++)
    if (bn_codegen_supports(l, &keys[i])) mine[m++] = keys[i];
  const bn_backend *be = bn_codegen_backend(l);
  bn_status st = be->objects ? bn_codegen_objects_of(l, mine, m, out, err)
                             : bn_fail(err, BN_E_UNSUPPORTED, "backend %s stores no object code", be->name);
  free(mine);
  return st;
}

static char *au_text(void *self, const bn_kkey *key, const char *emit, bn_error *err) {
  auto_be *b = self;
  int i = !strcmp(emit, "llvm") ? (member(b, 1) ? 1 : -1) : pick(b, key);
  if (i < 0) return bn_fail(err, BN_E_UNSUPPORTED, "auto: no member prints this kernel as %s", emit), NULL;
  return bn_codegen_text(b->m[i], key, emit, err);
}

static bn_codegen_info au_info(void *self) {
  auto_be *b = self;
  for (int i = 0; i < MEMBERS; i++)
    if (member(b, i)) return bn_codegen_get_info(b->m[i]);
  return (bn_codegen_info){.isa = "scalar", .cpu = "", .features = "", .lanes = 1};
}

/* The members' counts, summed, and each opened member's as a part. */
static bn_codegen_counts au_counts(void *self) {
  auto_be *b = self;
  bn_codegen_counts c = {0};
  for (int i = 0; i < MEMBERS; i++) {
    if (!b->m[i]) continue;
    bn_codegen_counts m = bn_codegen_get_counts(b->m[i]);
    c.built += m.built, c.stored += m.stored, c.cached += m.cached, c.aot += m.aot, c.seconds += m.seconds;
    c.part[c.n_parts++] = (bn_codegen_part){MEMBER[i], m.built, m.stored, m.cached, m.aot, m.seconds};
  }
  return c;
}

static const char *au_missing(void *self) {
  auto_be *b = self;
  return b->m[1] ? bn_codegen_code_missing(b->m[1]) : NULL;
}

static void au_close(void *self) {
  auto_be *b = self;
  for (int i = 0; i < MEMBERS; i++) bn_codegen_close(b->m[i]);
  free(b);
}

const bn_backend bn_backend_auto = {
    .name = "auto",
    .about = "each kernel from asmjit where it emits one (milliseconds to build), else from LLVM: docs/asmjit.md",
    .targets = "native x86-64-v3 x86-64-v4",
    .open = au_open,
    .supports = au_supports,
    .prepare = au_prepare,
    .objects = au_objects,
    .text = au_text,
    .emits = "asm llvm",
    .info = au_info,
    .counts = au_counts,
    .code_missing = au_missing,
    .close = au_close,
};
